"""``/v4/deployments`` and ``/v4/releases``: promote packages into this instance and run them.

A deployment holds import rules and releases; importing a package
(multipart field ``data``) creates a release that becomes the active one;
running the deployment runs the primary flow of its active release. The
rules and shapes are :mod:`flowport.services.deployments`'s.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, File, Form, Query, Response, UploadFile
from pydantic import Field

from flowport.api.bodies import parsed_by_service
from flowport.api.deps import AuthenticatedRoute, CurrentUser, Editor, Id, OptionalId, PageQuery
from flowport.api.errors import ERROR_RESPONSES
from flowport.api.presenters import answers, page
from flowport.model.import_rules import ObjectImportRule, ValueImportRule
from flowport.services import deployments
from flowport.services.schemas.deployments import (
    DeploymentCreate,
    DeploymentRead,
    DeploymentUpdate,
    ReleaseRead,
    ReleaseUpdate,
)
from flowport.services.schemas.flows import RunBody

__all__ = ["router"]

router = APIRouter(
    prefix="/v4", tags=["deployments"], route_class=AuthenticatedRoute, responses=ERROR_RESPONSES
)

Embed = Annotated[Literal["releases"] | None, Query(description="`releases`: embed the releases.")]
_UPLOAD = File(description="The package ZIP, as exported (GET /v4/flows/{id}/package).")
_NOTES = Form(description="Release notes (optional).")
_OBJECT_RULES = Body(
    description='`[{"tableName": "connections", "onCondition": {"uuid": DEV_UUID}, '
    '"withCondition": {"id": LOCAL_ID}}]`; replaces every object rule of the deployment.'
)
_VALUE_RULES = Body(
    description='`[{"type": "fileLocation" | "s3Bucket" | "tableName" | "parameter", "on": LITERAL or '
    '"/REGEX/", "with": REPLACEMENT}]`, applied in order; replaces every value rule of the deployment.'
)
# What the rule routes' bodies are, for the document (the service parses them, with its messages).
_Rule = TypeVar("_Rule")
_Rules = Annotated[list[_Rule], Field(max_length=deployments.MAX_RULES)]
_ZIP: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/zip": {}}, "description": "The package ZIP"}
}


# -- deployments -----------------------------------------------------------------------


@router.post("/deployments", status_code=201, responses=answers(DeploymentRead, 201))
def create_deployment(user: Editor, body: DeploymentCreate) -> dict[str, Any]:
    """Create a deployment (and the project its releases' flows live in)."""
    return deployments.create_deployment(body, user=user)


@router.get("/deployments", responses=answers(page(DeploymentRead)))
def list_deployments(
    _user: CurrentUser,
    page: PageQuery,
    name: Annotated[str | None, Query(max_length=255, description="Exact name.")] = None,
    embed: Embed = None,
) -> dict[str, Any]:
    """Deployments in creation order."""
    return deployments.list_deployments(
        name=name,
        limit=page.limit,
        offset=page.offset,
        no_limit=page.no_limit,
        embed_releases=embed == "releases",
    )


@router.get("/deployments/{deployment_id}", responses=answers(DeploymentRead))
def get_deployment(_user: CurrentUser, deployment_id: Id, embed: Embed = None) -> dict[str, Any]:
    """The deployment (``?embed=releases``: with its releases)."""
    return deployments.get_deployment(deployment_id, embed_releases=embed == "releases")


@router.patch("/deployments/{deployment_id}", responses=answers(DeploymentRead))
def patch_deployment(user: Editor, deployment_id: Id, body: DeploymentUpdate) -> dict[str, Any]:
    """Rename the deployment."""
    return deployments.patch_deployment(deployment_id, body, user=user)


@router.delete("/deployments/{deployment_id}", status_code=204, response_class=Response)
def delete_deployment(user: Editor, deployment_id: Id) -> Response:
    """Delete the deployment with its releases, rules and project; job history stays."""
    deployments.delete_deployment(deployment_id, user=user)
    return Response(status_code=204)


# -- import rules ------------------------------------------------------------------------


@router.get("/deployments/{deployment_id}/objectImportRules")
def get_object_import_rules(_user: CurrentUser, deployment_id: Id) -> dict[str, Any]:
    """The deployment's object import rules."""
    return deployments.get_object_import_rules(deployment_id)


@router.patch(
    "/deployments/{deployment_id}/objectImportRules",
    openapi_extra=parsed_by_service(_Rules[ObjectImportRule]),
)
def set_object_import_rules(
    user: Editor, deployment_id: Id, body: Annotated[list[Any], _OBJECT_RULES]
) -> dict[str, Any]:
    """Replace the object import rules; answers ``{"deleted": [the previous rules]}``."""
    return deployments.set_object_import_rules(deployment_id, body, user=user)


@router.get("/deployments/{deployment_id}/valueImportRules")
def get_value_import_rules(_user: CurrentUser, deployment_id: Id) -> dict[str, Any]:
    """The deployment's value import rules, in the order they apply."""
    return deployments.get_value_import_rules(deployment_id)


@router.patch(
    "/deployments/{deployment_id}/valueImportRules", openapi_extra=parsed_by_service(_Rules[ValueImportRule])
)
def set_value_import_rules(
    user: Editor, deployment_id: Id, body: Annotated[list[Any], _VALUE_RULES]
) -> dict[str, Any]:
    """Replace the value import rules; answers ``{"deleted": [the previous rules]}``."""
    return deployments.set_value_import_rules(deployment_id, body, user=user)


# -- releases ----------------------------------------------------------------------------


@router.post("/deployments/{deployment_id}/releases", status_code=201)
def import_release(
    user: Editor,
    deployment_id: Id,
    data: Annotated[UploadFile, _UPLOAD],
    notes: Annotated[str, _NOTES] = "",
    activate: Annotated[
        Literal["auto", "force"],
        Query(
            description="auto: activate the release only when every stage's connection resolves here "
            "(otherwise the previous active release keeps running); force: activate it anyway."
        ),
    ] = "auto",
) -> dict[str, Any]:
    """Import the package as a new release; it becomes the active one unless connections are unresolved."""
    return deployments.import_release(
        deployment_id, data.file.read(), user=user, notes=notes, activate=activate
    )


@router.post("/deployments/{deployment_id}/releases/dryRun")
def import_release_dry_run(
    user: Editor,
    deployment_id: Id,
    data: Annotated[UploadFile, _UPLOAD],
    notes: Annotated[str, _NOTES] = "",
) -> dict[str, Any]:
    """What importing the package would do, in the import's shape; nothing is stored."""
    return deployments.import_release(deployment_id, data.file.read(), user=user, notes=notes, dry_run=True)


@router.get("/releases", responses=answers(page(ReleaseRead)))
def list_releases(
    _user: CurrentUser,
    page: PageQuery,
    deployment_id: Annotated[OptionalId, Query(alias="deploymentId")] = None,
) -> dict[str, Any]:
    """Releases in creation order, of one deployment or of all."""
    return deployments.list_releases(
        deployment_id=deployment_id, limit=page.limit, offset=page.offset, no_limit=page.no_limit
    )


@router.get("/releases/{release_id}", responses=answers(ReleaseRead))
def get_release(_user: CurrentUser, release_id: Id) -> dict[str, Any]:
    """The release: notes, package uuid, active, its flows and the import rules that applied."""
    return deployments.get_release(release_id)


@router.get("/releases/{release_id}/diff")
def release_diff(
    _user: CurrentUser,
    release_id: Id,
    against: Annotated[
        str,
        Query(
            pattern=r"^(active|[1-9][0-9]{0,9})$",
            description="The release to compare with: its id, or 'active' (the deployment's active release).",
        ),
    ] = "active",
) -> dict[str, Any]:
    """What the release changes: flows added/removed/renamed, per stage the configuration keys
    added/removed/changed (secrets never shown), edges, artifact versions, parameters, import rules."""
    return deployments.release_diff(release_id, against if against == "active" else int(against))


@router.get("/releases/{release_id}/package", response_class=Response, responses=_ZIP)
def get_release_package(_user: CurrentUser, release_id: Id) -> Response:
    """The package ZIP the release was imported from, byte for byte."""
    return Response(
        content=deployments.get_release_package(release_id),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="release-{release_id}.zip"'},
    )


@router.patch(
    "/releases/{release_id}",
    openapi_extra=parsed_by_service(ReleaseUpdate),
    responses=answers(ReleaseRead),
)
def patch_release(
    user: Editor,
    release_id: Id,
    body: Annotated[dict[str, Any], Body(description='`{"active": true}` (a rollback when older).')],
) -> dict[str, Any]:
    """Activate (or deactivate) the release; nothing else about a release can change."""
    return deployments.patch_release(release_id, body, user=user)


@router.delete("/releases/{release_id}", status_code=204, response_class=Response)
def delete_release(user: Editor, release_id: Id) -> Response:
    """Delete the release and its flows; deleting the active one leaves none active."""
    deployments.delete_release(release_id, user=user)
    return Response(status_code=204)


# -- running -------------------------------------------------------------------------------


@router.post("/deployments/{deployment_id}/run", status_code=201)
def run_deployment(
    user: Editor, deployment_id: Id, body: Annotated[RunBody | None, Body()] = None
) -> dict[str, Any]:
    """Run the primary flow of the active release; answers ``{"data": [{"reason": "JobStarted", ...}]}``."""
    overrides = (body or RunBody()).overrides()
    return deployments.run_deployment(deployment_id, overrides, user=user, trigger="api")
