"""Schedules: what runs when, shown so that nobody has to guess; backfills of past logical dates.

A schedule targets a flow or a deployment (its *active* release, so a new
release keeps the schedule) with a cron or preset in a timezone, start and
end dates, ``catchup`` (off by default), ``max_active_runs`` and parameters.
Its cursor (``next_logical_date``) is set here when it is created or its
timing changes, and moved by the scheduler (:mod:`flowport.services.scheduler`)
as runs are created. Every answer shows the last run, the next logical date
**and** the wall-clock time its run will start.

Changing the cron, the timezone or the dates never catches up the past: the
cursor moves to the interval in progress. Resuming a paused schedule does
not either, unless asked (``catch_up=True``) and the schedule has ``catchup``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flowport.errors import Conflict, ValidationFailed
from flowport.model.timetable import Timetable
from flowport.services.auth import User, require_role
from flowport.services.instance import page_bounds, ref, timestamp, transaction
from flowport.services.jobs import job_group_dict
from flowport.services.schemas.common import parse_body
from flowport.services.schemas.schedules import (
    BackfillRead,
    BackfillRequest,
    ScheduleChanges,
    ScheduleCreate,
    ScheduleRead,
)
from flowport.store import deployments as _deployments_repo
from flowport.store import flows as _flows_repo
from flowport.store import pipelines as _pipelines_repo
from flowport.store import schedules as _repo
from flowport.store.tables import REPROCESS_POLICIES, Backfill, JobGroup, ScheduleRecord, utcnow

__all__ = [
    "BackfillRequest",
    "ScheduleChanges",
    "ScheduleCreate",
    "backfill_dict",
    "cancel_backfill",
    "create_backfill",
    "create_schedule",
    "delete_schedule",
    "get_schedule",
    "list_backfills",
    "list_schedules",
    "pause_schedule",
    "resume_schedule",
    "schedule_dict",
    "schedule_runs",
    "scheduler_status",
    "timetable_of",
    "update_schedule",
]

_log = logging.getLogger(__name__)


# -- shaping ---------------------------------------------------------------------------


def timetable_of(row: ScheduleRecord) -> Timetable:
    """The schedule's timetable (validated when it was stored)."""
    return Timetable.parse(row.cron, row.timezone, row.start_date, row.end_date)


def _run_summary(row: JobGroup | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "id": row.id,
        "status": row.status,
        "trigger": row.triggered_by,
        "logicalDate": timestamp(row.logical_date),
        "startedAt": timestamp(row.started_at),
        "finishedAt": timestamp(row.finished_at),
    }


def schedule_dict(row: ScheduleRecord, last_run: JobGroup | None = None) -> dict[str, Any]:
    """A schedule as the API shows it, with its last run, next logical date and when that run starts."""
    return ScheduleRead.shape(
        {
            "id": row.id,
            "name": row.name,
            "description": row.description,
            "flow": ref(row.flow_id),
            "deployment": ref(row.deployment_id),
            "pipeline": ref(row.pipeline_id),
            "cron": row.cron,
            "timezone": row.timezone,
            "startDate": timestamp(row.start_date),
            "endDate": timestamp(row.end_date),
            "catchup": row.catchup,
            "maxActiveRuns": row.max_active_runs,
            "lockPolicy": row.lock_policy,
            "paused": row.paused,
            "parameters": dict(row.parameters or {}),
            "lastRun": _run_summary(last_run),
            # The interval the next run is for, and the wall-clock time it may start (the interval's end).
            "nextLogicalDate": timestamp(row.next_logical_date),
            "nextRunAt": None if row.paused else timestamp(row.next_run_at),
            "lastError": row.last_error,
            "createdAt": timestamp(row.created_at),
            "updatedAt": timestamp(row.updated_at),
            "creator": ref(row.creator_id),
        }
    )


def backfill_dict(row: Backfill) -> dict[str, Any]:
    """A backfill as the API shows it."""
    return BackfillRead.shape(
        {
            "id": row.id,
            "schedule": ref(row.schedule_id),
            "start": timestamp(row.start_date),
            "end": timestamp(row.end_date),
            "reprocess": row.reprocess,
            "maxActiveRuns": row.max_active_runs,
            "nextLogicalDate": timestamp(row.next_logical_date),
            "status": row.status,
            "createdAt": timestamp(row.created_at),
            "updatedAt": timestamp(row.updated_at),
            "creator": ref(row.creator_id),
        }
    )


# -- the cursor ------------------------------------------------------------------------


def initial_cursor(timetable: Timetable, catchup: bool, now: datetime) -> datetime | None:
    """The first logical date a new (or re-timed) schedule runs.

    With ``catchup`` every interval from the start date; without, the latest
    complete interval (if it is after the start) and then the one in progress.
    """
    first = timetable.first(timetable.start or now)
    if first is None or catchup:
        return first
    latest = timetable.latest_complete(now)
    return max(first, latest) if latest is not None else first


def cursor_values(timetable: Timetable, cursor: datetime | None) -> dict[str, Any]:
    """The cursor columns for logical date ``cursor``: it and the time its run may start."""
    if cursor is None:
        return {"next_logical_date": None, "next_run_at": None}
    return {"next_logical_date": cursor, "next_run_at": timetable.interval(cursor).run_after}


# -- schedules --------------------------------------------------------------------------


def _target(session: Any, body: ScheduleCreate) -> dict[str, Any]:
    given = [t for t in (body.flow, body.deployment, body.pipeline) if t is not None]
    if len(given) != 1:
        raise ValidationFailed(
            'A schedule runs one target: give "flow": {"id": N}, "deployment": {"id": N} '
            'or "pipeline": {"id": N} (exactly one)'
        )
    target: dict[str, int | None] = {"flow_id": None, "deployment_id": None, "pipeline_id": None}
    if body.flow is not None:
        _flows_repo.get_by_id(session, body.flow.id)
        target["flow_id"] = body.flow.id
    elif body.deployment is not None:
        _deployments_repo.get_by_id(session, body.deployment.id)
        target["deployment_id"] = body.deployment.id
    else:
        assert body.pipeline is not None
        _pipelines_repo.get_by_id(session, body.pipeline.id)
        target["pipeline_id"] = body.pipeline.id
    return target


def _parameters(values: Mapping[str, Any]) -> dict[str, str]:
    from flowport.services.flow_records import check_overrides

    return check_overrides(values)


def _now(now: datetime | None) -> datetime:
    return now or utcnow()


def create_schedule(
    body: ScheduleCreate | Mapping[str, Any], *, user: User | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Store a schedule and set its cursor; returns it.

    Raises:
        ValidationFailed: a bad cron, preset, timezone or date range, bad
        parameters, or not exactly one target. NotFound: no such flow or
        deployment. Conflict: the name is taken. Forbidden: a viewer.
    """
    require_role(user, "editor")
    parsed: ScheduleCreate = parse_body(ScheduleCreate, body, "schedule")
    body = parsed
    timetable = Timetable.parse(body.cron, body.timezone, body.start_date, body.end_date)
    parameters = _parameters(body.parameters)
    with transaction() as session:
        target = _target(session, body)
        cursor = initial_cursor(timetable, body.catchup, _now(now))
        row = _repo.create(
            session,
            {
                "name": body.name,
                "description": body.description,
                **target,
                "cron": timetable.cron,
                "timezone": timetable.timezone,
                "start_date": timetable.start,
                "end_date": timetable.end,
                "catchup": body.catchup,
                "max_active_runs": body.max_active_runs,
                "lock_policy": body.lock_policy,
                "paused": body.paused,
                "parameters": parameters,
                **cursor_values(timetable, cursor),
            },
            creator_id=user.id if user else None,
        )
        _log.info("Schedule '%s' (id %s) created: %s %s", row.name, row.id, row.cron, row.timezone)
        return schedule_dict(row)


def _find(session: Any, reference: int | str) -> ScheduleRecord:
    if isinstance(reference, int) or str(reference).isdigit():
        return _repo.get_by_id(session, int(reference))
    return _repo.get_by_name(session, str(reference))


def get_schedule(reference: int | str) -> dict[str, Any]:
    """The schedule with this id (or name), with its last run; NotFound otherwise."""
    with transaction() as session:
        row = _find(session, reference)
        return schedule_dict(row, _repo.last_runs(session, [row.id]).get(row.id))


def list_schedules(
    *,
    flow_id: int | None = None,
    deployment_id: int | None = None,
    paused: bool | None = None,
    limit: int | None = None,
    offset: int = 0,
    no_limit: bool = False,
) -> dict[str, Any]:
    """Schedules as ``{"data": [...], "count": total}``, each with its last and next run."""
    row_limit, row_offset = page_bounds(limit, offset, no_limit)
    with transaction() as session:
        rows = _repo.list_(
            session,
            flow_id=flow_id,
            deployment_id=deployment_id,
            paused=paused,
            limit=row_limit,
            offset=row_offset,
        )
        last = _repo.last_runs(session, [r.id for r in rows])
        total = _repo.count(session, flow_id=flow_id, deployment_id=deployment_id, paused=paused)
        return {"data": [schedule_dict(r, last.get(r.id)) for r in rows], "count": total}


def update_schedule(
    reference: int | str,
    changes: ScheduleChanges | Mapping[str, Any],
    *,
    user: User | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Change a schedule; a new cron, timezone or date range moves the cursor to the present (no catch-up).

    Raises:
        ValidationFailed, NotFound, Conflict, Forbidden: as :func:`create_schedule`.
    """
    require_role(user, "editor")
    body: ScheduleChanges = parse_body(ScheduleChanges, changes, "schedule change")
    given = body.model_fields_set
    with transaction() as session:
        row = _find(session, reference)
        timetable = Timetable.parse(
            body.cron if "cron" in given and body.cron else row.cron,
            body.timezone if "timezone" in given and body.timezone else row.timezone,
            body.start_date if "start_date" in given else row.start_date,
            body.end_date if "end_date" in given else row.end_date,
        )
        values: dict[str, Any] = {}
        for field in ("name", "description", "catchup", "max_active_runs", "lock_policy"):
            if field in given and getattr(body, field) is not None:
                values[field] = getattr(body, field)
        if "parameters" in given and body.parameters is not None:
            values["parameters"] = _parameters(body.parameters)
        retimed = (
            timetable.cron != row.cron
            or timetable.timezone != row.timezone
            or timetable.start != row.start_date
            or timetable.end != row.end_date
        )
        if retimed:
            values.update(
                cron=timetable.cron,
                timezone=timetable.timezone,
                start_date=timetable.start,
                end_date=timetable.end,
            )
            # Never catch up because the timing changed: from the interval in progress on.
            current = _now(now)
            start = max(timetable.start, current) if timetable.start else current
            cursor = timetable.first(start) if timetable.once else _in_progress(timetable, current)
            values.update(cursor_values(timetable, cursor))
            values["last_error"] = None
        row = _repo.update_schedule(session, row, values)
        return schedule_dict(row, _repo.last_runs(session, [row.id]).get(row.id))


def _in_progress(timetable: Timetable, now: datetime) -> datetime | None:
    """The logical date of the interval in progress at ``now`` (or the first one, before the start)."""
    if timetable.start is not None and timetable.start > now:
        return timetable.first(timetable.start)
    current = timetable.fire_at_or_before(now)
    if timetable.end is not None and current > timetable.end:
        return None
    return current


def pause_schedule(reference: int | str, *, user: User | None = None) -> dict[str, Any]:
    """Pause a schedule: no new runs until it is resumed (runs in progress go on)."""
    require_role(user, "editor")
    with transaction() as session:
        row = _repo.update_schedule(session, _find(session, reference), {"paused": True})
        return schedule_dict(row, _repo.last_runs(session, [row.id]).get(row.id))


def resume_schedule(
    reference: int | str,
    *,
    catch_up: bool = False,
    user: User | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Resume a paused schedule. The intervals missed while paused are skipped unless ``catch_up``
    (and the schedule has ``catchup``): the next run is for the latest complete interval."""
    require_role(user, "editor")
    with transaction() as session:
        row = _find(session, reference)
        values: dict[str, Any] = {"paused": False}
        if row.next_logical_date is not None and not (catch_up and row.catchup):
            timetable = timetable_of(row)
            latest = timetable.latest_complete(_now(now))
            if latest is not None and latest > row.next_logical_date:
                values.update(cursor_values(timetable, latest))
        row = _repo.update_schedule(session, row, values)
        return schedule_dict(row, _repo.last_runs(session, [row.id]).get(row.id))


def delete_schedule(reference: int | str, *, user: User | None = None) -> None:
    """Delete a schedule (its runs stay in the history)."""
    require_role(user, "editor")
    with transaction() as session:
        row = _find(session, reference)
        session.delete(row)
        session.flush()


def schedule_runs(reference: int | str, *, limit: int = 25) -> dict[str, Any]:
    """The schedule's runs, newest first."""
    with transaction() as session:
        row = _find(session, reference)
        groups = _repo.runs_of(session, row.id, limit=limit)
        return {"data": [job_group_dict(g) for g in groups], "count": _repo.count_runs(session, row.id)}


# -- backfills ---------------------------------------------------------------------------


def _reprocess_policy(value: str) -> str:
    if value not in REPROCESS_POLICIES:
        raise ValidationFailed(f"reprocess must be one of {', '.join(REPROCESS_POLICIES)}, not '{value}'")
    return value


def backfill_plan(
    session: Any, row: ScheduleRecord, start: datetime, end: datetime, reprocess: str
) -> list[dict[str, Any]]:
    """What a backfill of ``[start, end]`` does for each logical date: create, reprocess or skip (and why)."""
    timetable = timetable_of(row)
    plan = []
    for logical_date in timetable.logical_dates(start, end):
        runs = _repo.runs_for(session, row.id, logical_date)
        latest = runs[-1] if runs else None
        if latest is None:
            action = "create"
        elif latest.status in _repo.ACTIVE_STATUSES:
            action = "skip (running)"
        elif reprocess == "all" or (reprocess == "failed" and latest.status in ("Failed", "Canceled")):
            action = "reprocess"
        else:
            action = f"skip ({latest.status})"
        plan.append(
            {
                "logicalDate": timestamp(logical_date),
                "action": action,
                "attempt": (latest.attempt + 1) if latest is not None else 1,
                "existingRun": ref(latest.id) if latest is not None else None,
            }
        )
    return plan


def create_backfill(
    reference: int | str,
    body: BackfillRequest | Mapping[str, Any],
    *,
    user: User | None = None,
) -> dict[str, Any]:
    """Backfill a schedule over ``[start, end]``: the scheduler creates the missing logical dates in order,
    at most ``maxActiveRuns`` at a time. ``dryRun`` answers the plan and stores nothing.

    Returns:
        ``{"backfill": {...} | None, "plan": [{"logicalDate", "action", "attempt", "existingRun"}]}``.

    Raises:
        ValidationFailed: start after end, an unknown reprocess policy, no
        logical date in the range. NotFound: no such schedule. Forbidden: a viewer.
    """
    require_role(user, "editor")
    parsed: BackfillRequest = parse_body(BackfillRequest, body, "backfill")
    body = parsed
    reprocess = _reprocess_policy(body.reprocess)
    start, end = body.start, body.end
    if start.tzinfo is None or end.tzinfo is None:
        raise ValidationFailed("Backfill start and end need a timezone (e.g. 2026-11-01T00:00:00Z)")
    if start > end:
        raise ValidationFailed(f"Backfill start {start.isoformat()} is after its end {end.isoformat()}")
    with transaction() as session:
        row = _find(session, reference)
        plan = backfill_plan(session, row, start, end, reprocess)
        if not plan:
            raise ValidationFailed(
                f"Schedule '{row.name}' ({row.cron}, {row.timezone}) has no logical date between "
                f"{timestamp(start)} and {timestamp(end)}"
            )
        if body.dry_run:
            return {"backfill": None, "plan": plan}
        first = timetable_of(row).first(start)
        backfill = _repo.create_backfill(
            session,
            {
                "schedule_id": row.id,
                "start_date": start,
                "end_date": end,
                "reprocess": reprocess,
                "max_active_runs": body.max_active_runs,
                "next_logical_date": first,
                "status": "Running",
            },
            creator_id=user.id if user else None,
        )
        _log.info("Backfill %s of schedule '%s': %s logical date(s)", backfill.id, row.name, len(plan))
        return {"backfill": backfill_dict(backfill), "plan": plan}


def list_backfills(reference: int | str | None = None) -> dict[str, Any]:
    """Backfills (of one schedule when given), newest first."""
    with transaction() as session:
        schedule_id = _find(session, reference).id if reference is not None else None
        rows = _repo.list_backfills(session, schedule_id=schedule_id)
        return {"data": [backfill_dict(r) for r in rows], "count": len(rows)}


def cancel_backfill(backfill_id: int, *, user: User | None = None) -> dict[str, Any]:
    """Stop a backfill creating runs (runs already created go on)."""
    require_role(user, "editor")
    with transaction() as session:
        row = _repo.get_backfill(session, backfill_id)
        if row.status == "Complete":
            raise Conflict(f"Backfill {backfill_id} has already created every run")
        row.status = "Canceled"
        row.updated_at = utcnow()
        return backfill_dict(row)


def scheduler_status() -> dict[str, Any]:
    """The active scheduler: ``{"holder", "acquiredAt", "expiresAt", "active"}`` (holder None: none yet)."""
    from flowport.store import leases as _leases

    with transaction() as session:
        lease = _leases.holder_of(session, "scheduler")
        if lease is None:
            return {"holder": None, "acquiredAt": None, "expiresAt": None, "active": False}
        return {
            "holder": lease.holder,
            "acquiredAt": timestamp(lease.acquired_at),
            "expiresAt": timestamp(lease.expires_at),
            "active": lease.expires_at > utcnow(),
        }
