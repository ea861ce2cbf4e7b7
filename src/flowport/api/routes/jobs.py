"""``/v4/jobGroups``: what became of each run, its jobs, per-stage metrics and logs; cancel."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from flowport.api.deps import AuthenticatedRoute, CurrentUser, Editor, Id, OptionalId, PageQuery
from flowport.api.errors import ERROR_RESPONSES
from flowport.api.presenters import answers, page
from flowport.services import jobs
from flowport.services.schemas.jobs import ErrorRecordsRead, JobGroupRead, JobRead

__all__ = ["router"]

router = APIRouter(
    prefix="/v4/jobGroups", tags=["jobs"], route_class=AuthenticatedRoute, responses=ERROR_RESPONSES
)

Status = Literal["Created", "Pending", "InProgress", "Complete", "Failed", "Canceled"]


@router.get("", responses=answers(page(JobGroupRead)))
def list_job_groups(
    _user: CurrentUser,
    page: PageQuery,
    flow_id: Annotated[OptionalId, Query(alias="flowId")] = None,
    deployment_id: Annotated[OptionalId, Query(alias="deploymentId")] = None,
    schedule_id: Annotated[OptionalId, Query(alias="scheduleId")] = None,
    status: Status | None = None,
) -> dict[str, Any]:
    """Job groups, newest first, of one flow, deployment or schedule (scheduled and backfilled runs)
    and/or in one status."""
    return jobs.list_job_groups(
        flow_id=flow_id,
        deployment_id=deployment_id,
        schedule_id=schedule_id,
        status=status,
        limit=page.limit,
        offset=page.offset,
        no_limit=page.no_limit,
    )


@router.get("/{job_group_id}", responses=answers(JobGroupRead))
def get_job_group(
    _user: CurrentUser,
    job_group_id: Id,
    embed: Annotated[Literal["jobs"] | None, Query(description="`jobs`: embed the jobs.")] = None,
) -> dict[str, Any]:
    """The job group: status, parameters, result (per-stage metrics), error."""
    return jobs.get_job_group(job_group_id, embed_jobs=embed == "jobs")


@router.get("/{job_group_id}/jobs", responses=answers(page(JobRead)))
def list_jobs(_user: CurrentUser, job_group_id: Id, page: PageQuery) -> dict[str, Any]:
    """The jobs of the job group."""
    return jobs.list_jobs(job_group_id, limit=page.limit, offset=page.offset, no_limit=page.no_limit)


@router.get("/{job_group_id}/metrics")
def get_metrics(_user: CurrentUser, job_group_id: Id) -> dict[str, Any]:
    """Per-stage metrics (``inputRecords``, ``outputRecords``, ``errorRecords``, ...) as they grow."""
    return jobs.get_job_group_metrics(job_group_id)


@router.get(
    "/{job_group_id}/logs",
    # Response (no media type of its own): the errors stay documented as JSON, as they are sent.
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "The log"}},
)
def get_logs(_user: CurrentUser, job_group_id: Id) -> PlainTextResponse:
    """The log lines of the job group's jobs, as text (connection secrets scrubbed)."""
    return PlainTextResponse(jobs.get_job_group_logs(job_group_id))


@router.get("/{job_group_id}/errorRecords", responses=answers(ErrorRecordsRead))
def get_error_records(
    user: Editor,
    job_group_id: Id,
    limit: Annotated[int, Query(ge=1, le=1000)] = jobs.ERROR_RECORDS_SHOWN,
) -> dict[str, Any]:
    """The first error records the flow's error stage stored for the run (Write to File), how many it
    stored, and why none are shown when none are; editors only (they hold the records' data)."""
    return jobs.get_error_records(job_group_id, limit=limit, user=user)


@router.get(
    "/{job_group_id}/errorRecords/download",
    response_class=Response,
    responses={
        200: {
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
            "description": "Every stored error record, one JSON object a line",
        }
    },
)
def download_error_records(user: Editor, job_group_id: Id) -> StreamingResponse:
    """Every error record stored for the run as JSON Lines (404 when none are stored); editors only."""
    lines = jobs.error_record_lines(job_group_id, user=user)
    return StreamingResponse(
        lines,
        media_type="application/x-ndjson",
        headers={
            "Content-Disposition": f'attachment; filename="job-group-{job_group_id}-error-records.jsonl"'
        },
    )


@router.post("/{job_group_id}/stop", responses=answers(JobGroupRead))
def stop_job_group(user: Editor, job_group_id: Id) -> dict[str, Any]:
    """Stop a streaming job: the micro-batch in flight commits and is acknowledged, then it ends Complete."""
    return jobs.stop_job_group(job_group_id, user=user)


@router.post("/{job_group_id}/cancel", responses=answers(JobGroupRead))
def cancel_job_group(user: Editor, job_group_id: Id) -> dict[str, Any]:
    """Cancel the job group: at once when not started, within a second when running."""
    return jobs.cancel_job_group(job_group_id, user=user)
