"""Packages: export flows as a ZIP, import a ZIP (or check what importing it would do).

``GET /v4/flows/{id}/package`` and ``POST /v4/packages`` export;
``POST /v4/flows/package`` imports the multipart field ``data`` and
``POST /v4/flows/package/dryRun`` reports the same without storing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Query, Response, UploadFile

from flowport.api.deps import AuthenticatedRoute, CurrentUser, Editor, Id, OptionalId
from flowport.api.errors import ERROR_RESPONSES
from flowport.api.presenters import flow_view
from flowport.services import packages
from flowport.services.schemas.packages import ExportBody

__all__ = ["router"]

router = APIRouter(tags=["packages"], route_class=AuthenticatedRoute, responses=ERROR_RESPONSES)

_ZIP: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/zip": {}}, "description": "The package ZIP"}
}
Resolution = Literal["skip", "replace", "rename"]
_RESOLUTION = Query(
    alias="conflictResolution",
    description="What to do with a flow whose uuid or name the project already has: "
    "`skip` (keep the local one), `replace` (the local id gets the package's document) or "
    '`rename` (store it as "<name> (1)" with a new uuid).',
)
_UPLOAD = File(description="The package ZIP, as exported.")


def _zip(data: bytes, filename: str) -> Response:
    return Response(
        content=data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _report(report: dict[str, Any]) -> dict[str, Any]:
    return {**report, "data": [flow_view(flow) for flow in report["data"]]}


@router.get("/v4/flows/{flow_id}/package", response_class=Response, responses=_ZIP)
def export_flow(
    user: CurrentUser,
    flow_id: Id,
    with_plain_text_credentials: Annotated[
        bool,
        Query(
            alias="withPlainTextCredentials",
            description="Admins only: also write the connections' credentials in clear "
            "(marked in the manifest).",
        ),
    ] = False,
) -> Response:
    """The flow's package ZIP: ``manifest.json`` and the flow's document; no credentials."""
    data = packages.export_flows([flow_id], user=user, plain_text_credentials=with_plain_text_credentials)
    return _zip(data, f"flow-{flow_id}.zip")


@router.post("/v4/packages", response_class=Response, responses=_ZIP)
def export_flows(user: CurrentUser, body: ExportBody) -> Response:
    """One package ZIP of several flows (in the order given)."""
    data = packages.export_flows(
        body.flow_ids, user=user, plain_text_credentials=body.with_plain_text_credentials
    )
    return _zip(data, "flows.zip")


@router.post("/v4/flows/package", status_code=201)
def import_package(
    user: Editor,
    data: Annotated[UploadFile, _UPLOAD],
    conflict_resolution: Annotated[Resolution, _RESOLUTION] = "skip",
    project_id: Annotated[OptionalId, Query(alias="projectId")] = None,
) -> dict[str, Any]:
    """Import a package into the project (default project without ``projectId``), all or nothing."""
    report = packages.import_package(
        data.file.read(), conflict_resolution=conflict_resolution, project=project_id, user=user
    )
    return _report(report)


@router.post("/v4/flows/package/dryRun")
def import_package_dry_run(
    user: Editor,
    data: Annotated[UploadFile, _UPLOAD],
    conflict_resolution: Annotated[Resolution, _RESOLUTION] = "skip",
    project_id: Annotated[OptionalId, Query(alias="projectId")] = None,
) -> dict[str, Any]:
    """What importing the package would do, in the import's shape; nothing is stored."""
    report = packages.import_package(
        data.file.read(),
        conflict_resolution=conflict_resolution,
        project=project_id,
        user=user,
        dry_run=True,
    )
    return _report(report)
