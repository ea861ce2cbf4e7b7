"""``/v4/flows``: stored flows; create, read, change, duplicate, delete, validate, preview, run.

Flow documents (``flowport.flow/1``) are validated by the services; the
routes only check the shape of the small bodies they define themselves.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response

from flowport.api.bodies import parsed_by_service
from flowport.api.deps import (
    AuthenticatedRoute,
    CurrentUser,
    Editor,
    Id,
    OptionalId,
    PageQuery,
)
from flowport.api.errors import ERROR_RESPONSES
from flowport.api.presenters import FlowView, answers, flow_view, page
from flowport.model.flow import Flow
from flowport.services import flow_records, runs
from flowport.services.schemas.flows import (
    DuplicateBody,
    FlowChanges,
    PreviewBody,
    ResetOffsetsBody,
    ResetOffsetsRead,
    RunBody,
    ValidationRead,
)
from flowport.services.schemas.jobs import JobGroupRead

__all__ = ["router"]

_DOCUMENT = (
    "A flow document (`flowport.flow/1`, see `flowport schema flow`), or just "
    '`{"name", "description", "type"}` for an empty flow. Unknown keys are refused.'
)

router = APIRouter(
    prefix="/v4/flows", tags=["flows"], route_class=AuthenticatedRoute, responses=ERROR_RESPONSES
)


@router.get("", responses=answers(page(FlowView)))
def list_flows(
    _user: CurrentUser,
    page: PageQuery,
    name: Annotated[str | None, Query(max_length=255, description="Exact name.")] = None,
    flow_type: Annotated[Literal["batch", "streaming"] | None, Query(alias="type")] = None,
    project_id: Annotated[OptionalId, Query(alias="projectId")] = None,
    embed: Annotated[
        Literal["document"] | None, Query(description="`document`: each flow's document.")
    ] = None,
) -> dict[str, Any]:
    """Stored flows in creation order, of every project unless ``projectId`` is given."""
    result = flow_records.list_flows(
        project=project_id,
        name=name,
        flow_type=flow_type,
        limit=page.limit,
        offset=page.offset,
        no_limit=page.no_limit,
        include_document=embed == "document",
    )
    return {**result, "data": [flow_view(flow) for flow in result["data"]]}


@router.post("", status_code=201, openapi_extra=parsed_by_service(Flow), responses=answers(FlowView, 201))
def create_flow(
    user: Editor,
    body: Annotated[dict[str, Any], Body(description=_DOCUMENT)],
    project_id: Annotated[OptionalId, Query(alias="projectId")] = None,
) -> dict[str, Any]:
    """Store a new flow in the project (the default project without ``projectId``)."""
    return flow_view(flow_records.create_flow(body, project=project_id, user=user))


@router.get("/{flow_id}", responses=answers(FlowView))
def get_flow(_user: CurrentUser, flow_id: Id) -> dict[str, Any]:
    """The stored flow with its document."""
    return flow_view(flow_records.get_flow(flow_id))


@router.patch("/{flow_id}", openapi_extra=parsed_by_service(Flow | FlowChanges), responses=answers(FlowView))
def update_flow(
    user: Editor,
    flow_id: Id,
    body: Annotated[
        dict[str, Any],
        Body(
            description="A full flow document (its uuid cannot change), or only `name` and/or `description`."
        ),
    ],
) -> dict[str, Any]:
    """Replace the flow's document, or change only its name or description."""
    return flow_view(flow_records.update_flow(flow_id, body, user=user))


@router.delete("/{flow_id}", status_code=204, response_class=Response)
def delete_flow(user: Editor, flow_id: Id) -> Response:
    """Delete the flow; its jobs stay in the history."""
    flow_records.delete_flow(flow_id, user=user)
    return Response(status_code=204)


@router.post("/{flow_id}/duplicate", status_code=201, responses=answers(FlowView, 201))
def duplicate_flow(
    user: Editor, flow_id: Id, body: Annotated[DuplicateBody | None, Body()] = None
) -> dict[str, Any]:
    """Copy the flow (new uuid) into its project; the name defaults to "<name> (copy)"."""
    given = body or DuplicateBody()
    return flow_view(
        flow_records.duplicate_flow(flow_id, name=given.name, description=given.description, user=user)
    )


@router.get("/{flow_id}/validate", responses=answers(ValidationRead))
def validate_flow(_user: CurrentUser, flow_id: Id) -> dict[str, Any]:
    """Validate the flow: ``{success, message, issues}``, each issue ``{type, instanceName, code, ...}``."""
    return flow_records.validation_dict(flow_records.validate_flow(flow_id))


@router.post("/{flow_id}/preview")
def preview_flow(
    user: Editor, flow_id: Id, body: Annotated[PreviewBody | None, Body()] = None
) -> dict[str, Any]:
    """Run the first records through every stage and show them; nothing is written anywhere."""
    given = body or PreviewBody()
    stages = flow_records.preview_flow(flow_id, rows=given.rows, overrides=given.parameters, user=user)
    return {"data": stages, "count": len(stages)}


@router.post("/{flow_id}/resetOffsets", responses=answers(ResetOffsetsRead))
def reset_offsets(user: Editor, flow_id: Id, body: ResetOffsetsBody) -> dict[str, Any]:
    """Move a stopped streaming flow's origins to earliest, latest or an offset (409 while a job runs)."""
    return flow_records.reset_flow_offsets(flow_id, body.position, stages=body.stages, user=user)


@router.post("/{flow_id}/run", status_code=201, responses=answers(JobGroupRead, 201))
def run_flow(user: Editor, flow_id: Id, body: Annotated[RunBody | None, Body()] = None) -> dict[str, Any]:
    """Validate the flow and start a job running it; answers the job group (poll ``/v4/jobGroups/{id}``)."""
    overrides = (body or RunBody()).overrides()
    return runs.run_flow(flow_id, overrides=overrides, user=user, trigger="api")
