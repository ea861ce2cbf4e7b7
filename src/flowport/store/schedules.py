"""Repository of schedules and backfills, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from flowport.store import _lookup
from flowport.store.tables import Backfill, JobGroup, ScheduleRecord, utcnow

__all__ = [
    "ACTIVE_STATUSES",
    "active_runs",
    "advance",
    "count",
    "count_runs",
    "create",
    "create_backfill",
    "due",
    "get_backfill",
    "get_by_id",
    "get_by_name",
    "last_runs",
    "list_",
    "list_backfills",
    "running_backfills",
    "runs_for",
    "runs_of",
    "update_schedule",
]

ACTIVE_STATUSES = ("Created", "Pending", "InProgress")


def _stamps(creator_id: int | None) -> dict[str, Any]:
    now = utcnow()
    return {"created_at": now, "updated_at": now, "creator_id": creator_id}


def create(session: Session, values: Mapping[str, Any], creator_id: int | None = None) -> ScheduleRecord:
    """Insert a schedule; Conflict when its name is taken."""
    row = ScheduleRecord(**dict(values), **_stamps(creator_id))
    session.add(row)
    _lookup.flush_or_conflict(session, f"A schedule named '{values.get('name')}' already exists")
    return row


def get_by_id(session: Session, schedule_id: int) -> ScheduleRecord:
    """The schedule with this id; NotFound otherwise."""
    return _lookup.get_or_404(session, ScheduleRecord, schedule_id, "schedule")


def get_by_name(session: Session, name: str) -> ScheduleRecord:
    """The schedule with this exact name; NotFound otherwise."""
    return _lookup.one_or_404(
        session, select(ScheduleRecord).where(ScheduleRecord.name == name), f"No schedule named '{name}'"
    )


def _filtered(flow_id: int | None, deployment_id: int | None, paused: bool | None) -> Any:
    query = select(ScheduleRecord)
    if flow_id is not None:
        query = query.where(ScheduleRecord.flow_id == flow_id)
    if deployment_id is not None:
        query = query.where(ScheduleRecord.deployment_id == deployment_id)
    if paused is not None:
        query = query.where(ScheduleRecord.paused == paused)
    return query


def list_(
    session: Session,
    *,
    flow_id: int | None = None,
    deployment_id: int | None = None,
    paused: bool | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Sequence[ScheduleRecord]:
    """Schedules in creation order."""
    query = _filtered(flow_id, deployment_id, paused).order_by(ScheduleRecord.id)
    return _lookup.listed(session, query, limit=limit, offset=offset)


def count(
    session: Session,
    *,
    flow_id: int | None = None,
    deployment_id: int | None = None,
    paused: bool | None = None,
) -> int:
    """How many schedules :func:`list_` would return with no paging."""
    query = _filtered(flow_id, deployment_id, paused).with_only_columns(func.count(ScheduleRecord.id))
    return int(session.scalar(query) or 0)


def update_schedule(session: Session, row: ScheduleRecord, changes: Mapping[str, Any]) -> ScheduleRecord:
    """Apply ``changes``; Conflict when a new name is taken."""
    _lookup.apply_changes(row, changes, copied="parameters" if "parameters" in changes else None)
    _lookup.flush_or_conflict(session, f"A schedule named '{row.name}' already exists")
    return row


def due(session: Session, now: datetime, *, limit: int = 1000) -> Sequence[ScheduleRecord]:
    """Unpaused schedules whose next interval has ended by ``now``, most overdue first.

    Reads only due rows (index on ``next_run_at``), so a tick costs what is due, not what exists.
    """
    query = (
        select(ScheduleRecord)
        .where(ScheduleRecord.next_run_at <= now, ScheduleRecord.paused.is_(False))
        .order_by(ScheduleRecord.next_run_at, ScheduleRecord.id)
        .limit(limit)
    )
    return session.scalars(query).all()


def advance(
    session: Session,
    schedule_id: int,
    expected: datetime | None,
    next_logical_date: datetime | None,
    next_run_at: datetime | None,
    *,
    last_error: str | None = None,
) -> bool:
    """Move a schedule's cursor from ``expected`` (compare-and-set); False when another process moved it."""
    cursor = ScheduleRecord.next_logical_date
    condition = cursor.is_(None) if expected is None else cursor == expected
    moved = session.execute(
        update(ScheduleRecord)
        .where(ScheduleRecord.id == schedule_id, condition)
        .values(
            next_logical_date=next_logical_date,
            next_run_at=next_run_at,
            last_error=last_error,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(moved, "rowcount", 0))


def active_runs(session: Session, schedule_id: int, trigger: str) -> int:
    """Runs of the schedule started by ``trigger`` (schedule or backfill) that have not ended."""
    query = select(func.count(JobGroup.id)).where(
        JobGroup.schedule_id == schedule_id,
        JobGroup.triggered_by == trigger,
        JobGroup.status.in_(ACTIVE_STATUSES),
    )
    return int(session.scalar(query) or 0)


def runs_for(session: Session, schedule_id: int, logical_date: datetime) -> Sequence[JobGroup]:
    """Every attempt of the schedule's run for ``logical_date``, oldest first."""
    query = (
        select(JobGroup)
        .where(JobGroup.schedule_id == schedule_id, JobGroup.logical_date == logical_date)
        .order_by(JobGroup.attempt)
    )
    return session.scalars(query).all()


def runs_of(session: Session, schedule_id: int, *, limit: int | None = 25) -> Sequence[JobGroup]:
    """The schedule's runs (scheduled and backfilled), newest first."""
    query = select(JobGroup).where(JobGroup.schedule_id == schedule_id).order_by(JobGroup.id.desc())
    return session.scalars(query.limit(limit) if limit is not None else query).all()


def count_runs(session: Session, schedule_id: int) -> int:
    """How many runs the schedule has."""
    return int(
        session.scalar(select(func.count(JobGroup.id)).where(JobGroup.schedule_id == schedule_id)) or 0
    )


def last_runs(session: Session, schedule_ids: Sequence[int]) -> dict[int, JobGroup]:
    """The latest run (highest id) of each schedule given."""
    if not schedule_ids:
        return {}
    latest = (
        select(func.max(JobGroup.id))
        .where(JobGroup.schedule_id.in_(list(schedule_ids)))
        .group_by(JobGroup.schedule_id)
    )
    rows = session.scalars(select(JobGroup).where(JobGroup.id.in_(latest))).all()
    return {int(row.schedule_id): row for row in rows if row.schedule_id is not None}


def create_backfill(session: Session, values: Mapping[str, Any], creator_id: int | None = None) -> Backfill:
    """Insert a backfill."""
    row = Backfill(**dict(values), **_stamps(creator_id))
    session.add(row)
    session.flush()
    return row


def get_backfill(session: Session, backfill_id: int) -> Backfill:
    """The backfill with this id; NotFound otherwise."""
    return _lookup.get_or_404(session, Backfill, backfill_id, "backfill")


def list_backfills(session: Session, *, schedule_id: int | None = None) -> Sequence[Backfill]:
    """Backfills, newest first."""
    query = select(Backfill).order_by(Backfill.id.desc())
    if schedule_id is not None:
        query = query.where(Backfill.schedule_id == schedule_id)
    return session.scalars(query).all()


def running_backfills(session: Session) -> Sequence[Backfill]:
    """Backfills still creating runs, oldest first."""
    return session.scalars(select(Backfill).where(Backfill.status == "Running").order_by(Backfill.id)).all()
