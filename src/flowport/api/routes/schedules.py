"""``/v4/schedules`` and ``/v4/backfills``: when flows and deployments run on their own.

Every schedule answers its last run, its next logical date (``nextLogicalDate``,
the start of the interval the next run is for) and the wall-clock time that
run may start (``nextRunAt``, the interval's end). The rules are
:mod:`flowport.services.schedules`'s; the scheduler is :mod:`flowport.services.scheduler`'s.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from flowport.api.deps import AuthenticatedRoute, CurrentUser, Editor, Id, OptionalId, PageQuery
from flowport.api.errors import ERROR_RESPONSES
from flowport.api.presenters import answers, page
from flowport.services import schedules
from flowport.services.schemas.jobs import JobGroupRead
from flowport.services.schemas.schedules import (
    BackfillRead,
    BackfillRequest,
    ScheduleChanges,
    ScheduleCreate,
    ScheduleRead,
)

__all__ = ["router"]

router = APIRouter(
    prefix="/v4", tags=["schedules"], route_class=AuthenticatedRoute, responses=ERROR_RESPONSES
)


@router.post("/schedules", status_code=201, responses=answers(ScheduleRead, 201))
def create_schedule(user: Editor, body: ScheduleCreate) -> dict[str, Any]:
    """Create a schedule on a flow or a deployment (its active release)."""
    return schedules.create_schedule(body, user=user)


@router.get("/schedules", responses=answers(page(ScheduleRead)))
def list_schedules(
    _user: CurrentUser,
    page: PageQuery,
    flow_id: Annotated[OptionalId, Query(alias="flowId")] = None,
    deployment_id: Annotated[OptionalId, Query(alias="deploymentId")] = None,
    paused: bool | None = None,
) -> dict[str, Any]:
    """Schedules in creation order, each with its last run and next run."""
    return schedules.list_schedules(
        flow_id=flow_id,
        deployment_id=deployment_id,
        paused=paused,
        limit=page.limit,
        offset=page.offset,
        no_limit=page.no_limit,
    )


@router.get("/schedules/{schedule_id}", responses=answers(ScheduleRead))
def get_schedule(_user: CurrentUser, schedule_id: Id) -> dict[str, Any]:
    """The schedule, with its last run and next run."""
    return schedules.get_schedule(schedule_id)


@router.patch("/schedules/{schedule_id}", responses=answers(ScheduleRead))
def update_schedule(user: Editor, schedule_id: Id, body: ScheduleChanges) -> dict[str, Any]:
    """Change a schedule; new timing moves it to the interval in progress (no catch-up)."""
    return schedules.update_schedule(schedule_id, body, user=user)


@router.delete("/schedules/{schedule_id}", status_code=204, response_class=Response)
def delete_schedule(user: Editor, schedule_id: Id) -> Response:
    """Delete a schedule; its runs stay in the history."""
    schedules.delete_schedule(schedule_id, user=user)
    return Response(status_code=204)


@router.post("/schedules/{schedule_id}/pause", responses=answers(ScheduleRead))
def pause_schedule(user: Editor, schedule_id: Id) -> dict[str, Any]:
    """Pause: no new runs until resumed."""
    return schedules.pause_schedule(schedule_id, user=user)


@router.post("/schedules/{schedule_id}/resume", responses=answers(ScheduleRead))
def resume_schedule(
    user: Editor,
    schedule_id: Id,
    catch_up: Annotated[
        bool, Query(alias="catchUp", description="Run the intervals missed while paused (needs catchup).")
    ] = False,
) -> dict[str, Any]:
    """Resume; the intervals missed while paused are skipped unless ``catchUp=true``."""
    return schedules.resume_schedule(schedule_id, catch_up=catch_up, user=user)


@router.get("/schedules/{schedule_id}/runs", responses=answers(page(JobGroupRead)))
def schedule_runs(
    _user: CurrentUser,
    schedule_id: Id,
    limit: Annotated[int, Query(ge=1, le=1000)] = 25,
) -> dict[str, Any]:
    """The schedule's runs (scheduled and backfilled), newest first."""
    return schedules.schedule_runs(schedule_id, limit=limit)


@router.post("/schedules/{schedule_id}/backfills", status_code=201)
def create_backfill(user: Editor, schedule_id: Id, body: BackfillRequest) -> dict[str, Any]:
    """Backfill ``[start, end]`` in order under ``maxActiveRuns``; ``dryRun`` only answers the plan."""
    return schedules.create_backfill(schedule_id, body, user=user)


@router.get("/backfills", responses=answers(page(BackfillRead)))
def list_backfills(
    _user: CurrentUser, schedule_id: Annotated[OptionalId, Query(alias="scheduleId")] = None
) -> dict[str, Any]:
    """Backfills, newest first."""
    return schedules.list_backfills(schedule_id)


@router.post("/backfills/{backfill_id}/cancel", responses=answers(BackfillRead))
def cancel_backfill(user: Editor, backfill_id: Id) -> dict[str, Any]:
    """Stop a backfill creating runs (runs already created go on)."""
    return schedules.cancel_backfill(backfill_id, user=user)


@router.get("/scheduler")
def scheduler_status(_user: CurrentUser) -> dict[str, Any]:
    """Which process is the active scheduler and until when its lease runs."""
    return schedules.scheduler_status()
