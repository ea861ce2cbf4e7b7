"""``/v4/pipelines``, ``/v4/pipelineRuns``, ``/v4/locks``: DAGs of tasks, their runs, task locks.

A pipeline's body is its ``flowport.pipeline/1`` document (JSON Schema:
``flowport schema pipeline``). Starting a run whose task lock another run
holds answers 409 naming the holder, its run and since when.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response

from flowport.api.bodies import parsed_by_service
from flowport.api.deps import AuthenticatedRoute, CurrentUser, Editor, Id, OptionalId, PageQuery
from flowport.api.errors import ERROR_RESPONSES
from flowport.api.presenters import answers, page
from flowport.model.pipeline import Pipeline
from flowport.services import pipelines
from flowport.services.schemas.flows import RunBody
from flowport.services.schemas.pipelines import LockRead, PipelineRead, PipelineRunRead

__all__ = ["router"]

router = APIRouter(
    prefix="/v4", tags=["pipelines"], route_class=AuthenticatedRoute, responses=ERROR_RESPONSES
)

_DOCUMENT = (
    "A flowport.pipeline/1 document: name, description, parameters, continue_on_failure, max_parallel "
    "and tasks (flow, deployment, shell, dbt, sql, http) with `after` dependencies."
)
RunStatus = Literal["Created", "Pending", "InProgress", "Complete", "Failed", "Canceled"]


@router.get("/pipelines", responses=answers(page(PipelineRead)))
def list_pipelines(
    _user: CurrentUser,
    page: PageQuery,
    project_id: Annotated[OptionalId, Query(alias="projectId")] = None,
    name: Annotated[str | None, Query(max_length=255, description="Part of the name.")] = None,
) -> dict[str, Any]:
    """Pipelines in creation order (without their documents)."""
    return pipelines.list_pipelines(
        project=project_id, name=name, limit=page.limit, offset=page.offset, no_limit=page.no_limit
    )


@router.post(
    "/pipelines",
    status_code=201,
    openapi_extra=parsed_by_service(Pipeline),
    responses=answers(PipelineRead, 201),
)
def create_pipeline(
    user: Editor,
    body: Annotated[dict[str, Any], Body(description=_DOCUMENT)],
    project_id: Annotated[OptionalId, Query(alias="projectId")] = None,
) -> dict[str, Any]:
    """Store a pipeline, validated: its graph, what its tasks refer to, the permissions they need."""
    return pipelines.create_pipeline(body, project=project_id, user=user)


@router.get("/pipelines/{pipeline_id}", responses=answers(PipelineRead))
def get_pipeline(_user: CurrentUser, pipeline_id: Id) -> dict[str, Any]:
    """The pipeline with its document."""
    return pipelines.get_pipeline(pipeline_id)


@router.patch("/pipelines/{pipeline_id}", responses=answers(PipelineRead))
def update_pipeline(
    user: Editor,
    pipeline_id: Id,
    body: Annotated[
        dict[str, Any],
        Body(description="Top-level keys of the document to change (`tasks` is replaced whole)."),
    ],
) -> dict[str, Any]:
    """Change the pipeline's document, validated again as a whole (runs already started keep theirs)."""
    return pipelines.update_pipeline(pipeline_id, body, user=user)


@router.delete("/pipelines/{pipeline_id}", status_code=204, response_class=Response)
def delete_pipeline(user: Editor, pipeline_id: Id) -> Response:
    """Delete the pipeline and its schedules; its runs stay in the history."""
    pipelines.delete_pipeline(pipeline_id, user=user)
    return Response(status_code=204)


@router.get(
    "/pipelines/{pipeline_id}/package",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "The package ZIP"}},
)
def export_pipeline(
    user: CurrentUser,
    pipeline_id: Id,
    with_plain_text_credentials: Annotated[bool, Query(alias="withPlainTextCredentials")] = False,
) -> Response:
    """The package of the pipeline and the flows its flow tasks run; import it with POST /v4/flows/package."""
    data = pipelines.export_pipeline(
        pipeline_id, user=user, plain_text_credentials=with_plain_text_credentials
    )
    return Response(
        content=data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="pipeline-{pipeline_id}.zip"'},
    )


@router.post("/pipelines/{pipeline_id}/run", status_code=201, responses=answers(PipelineRunRead, 201))
def run_pipeline(user: Editor, pipeline_id: Id, body: RunBody | None = None) -> dict[str, Any]:
    """Start a run now; 409 when one of its task locks is held (the answer names the holder)."""
    overrides = body.overrides() if body is not None else {}
    return pipelines.start_pipeline(pipeline_id, "manual", user, overrides=overrides)


@router.get("/pipelineRuns", responses=answers(page(PipelineRunRead)))
def list_runs(
    _user: CurrentUser,
    page: PageQuery,
    pipeline_id: Annotated[OptionalId, Query(alias="pipelineId")] = None,
    status: RunStatus | None = None,
) -> dict[str, Any]:
    """Pipeline runs, newest first."""
    return pipelines.list_runs(
        pipeline=pipeline_id, status=status, limit=page.limit, offset=page.offset, no_limit=page.no_limit
    )


@router.get("/pipelineRuns/{run_id}", responses=answers(PipelineRunRead))
def get_run(_user: CurrentUser, run_id: Id) -> dict[str, Any]:
    """A pipeline run with each task's status, tries, job, message and log."""
    return pipelines.get_run(run_id)


@router.post("/pipelineRuns/{run_id}/cancel", responses=answers(PipelineRunRead))
def cancel_run(user: Editor, run_id: Id) -> dict[str, Any]:
    """Cancel a run: queued, at once; running, its tasks are stopped and its locks released."""
    return pipelines.cancel_run(run_id, user=user)


@router.get("/locks", responses=answers(page(LockRead)))
def list_locks(_user: CurrentUser) -> dict[str, Any]:
    """Held task locks: name, task, pipeline, the run holding it and since when."""
    return pipelines.list_locks()
