"""Repository functions for job groups and their jobs, and the job state machine.

Every status change goes through :func:`transition`, the one state machine:
it refuses a move the lifecycle does not allow (:data:`TRANSITIONS`), stamps
the times (``started_at`` entering InProgress, ``finished_at`` entering a final
status), and writes a ``job_events`` row (the outbox webhooks, the UI and the
scheduler read) in the caller's transaction. :func:`update_job` cannot change
a status. Status changes are conditional updates (``UPDATE ... WHERE status
IN (...)``) so that the API process cancelling a job and the worker starting
or finishing it can never overwrite each other's outcome: whoever moves the
status first wins, the other sees ``False``. Functions only flush: the
service owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.orm import Session

from flowport.errors import ValidationFailed
from flowport.store import _lookup
from flowport.store._paging import count_of
from flowport.store.tables import JOB_STATUSES, JOB_TRIGGERS, Job, JobEvent, JobGroup, TaskLock, utcnow

__all__ = [
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "TRANSITIONS",
    "active_group_of_flow",
    "children_of",
    "count_active_streams",
    "count_groups",
    "count_jobs",
    "create_group",
    "create_job",
    "events_of",
    "get_group",
    "get_job",
    "heartbeat",
    "jobs_of",
    "list_groups",
    "list_jobs",
    "record_progress",
    "request_cancel",
    "stale_groups",
    "transition",
    "update_job",
]

FINAL_STATUSES = frozenset({"Complete", "Failed", "Canceled"})
ACTIVE_STATUSES = frozenset({"Created", "Pending", "InProgress"})
#: The lifecycle: the statuses a job group may move to from each status.
TRANSITIONS: Mapping[str, frozenset[str]] = {
    "Created": frozenset({"Pending", "Canceled", "Failed"}),
    "Pending": frozenset({"InProgress", "Canceled", "Failed"}),
    # Back to Pending: a try whose worker was lost, handed back for the next try.
    "InProgress": frozenset({"Pending", "Complete", "Failed", "Canceled"}),
    "Complete": frozenset(),
    "Failed": frozenset(),
    "Canceled": frozenset(),
}
# A job's own fields; its status changes only through transition().
_JOB_FIELDS = frozenset({"metrics", "run_id", "error", "log", "started_at", "finished_at"})


def _check_status(status: str) -> None:
    if status not in JOB_STATUSES:
        raise ValidationFailed(f"Unknown job status '{status}'; expected one of {', '.join(JOB_STATUSES)}")


def create_group(
    session: Session,
    *,
    flow_id: int | None,
    deployment_id: int | None = None,
    parameters: Mapping[str, Any] | None = None,
    creator_id: int | None = None,
    status: str = "Created",
    trigger: str = "manual",
    schedule_id: int | None = None,
    logical_date: datetime | None = None,
    data_interval: tuple[datetime, datetime] | None = None,
    attempt: int = 1,
    pipeline_id: int | None = None,
    parent_id: int | None = None,
) -> JobGroup:
    """Insert a job group (with a new session id).

    Raises:
        Conflict: ``schedule_id`` already has a run for ``logical_date`` (one run per logical date).
    """
    _check_status(status)
    if trigger not in JOB_TRIGGERS:
        raise ValidationFailed(f"Unknown trigger '{trigger}'; expected one of {', '.join(JOB_TRIGGERS)}")
    now = utcnow()
    row = JobGroup(
        flow_id=flow_id,
        deployment_id=deployment_id,
        status=status,
        parameters=dict(parameters or {}),
        created_at=now,
        updated_at=now,
        creator_id=creator_id,
        triggered_by=trigger,
        schedule_id=schedule_id,
        logical_date=logical_date,
        data_interval_start=data_interval[0] if data_interval else None,
        data_interval_end=data_interval[1] if data_interval else None,
        attempt=attempt,
        pipeline_id=pipeline_id,
        parent_id=parent_id,
    )
    session.add(row)
    if schedule_id is None:
        session.flush()
    else:
        when = logical_date.isoformat() if logical_date else "no logical date"
        _lookup.flush_or_conflict(
            session, f"Schedule {schedule_id} already has a run for {when} (attempt {attempt})"
        )
    return row


def create_job(session: Session, *, job_group_id: int, flow_id: int | None, status: str = "Created") -> Job:
    """Insert a job of a job group."""
    _check_status(status)
    now = utcnow()
    row = Job(
        job_group_id=job_group_id,
        flow_id=flow_id,
        status=status,
        metrics=[],
        log="",
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return row


def get_group(session: Session, job_group_id: int) -> JobGroup:
    """The job group with this id; NotFound otherwise."""
    return _lookup.get_or_404(session, JobGroup, job_group_id, "job group")


def get_job(session: Session, job_id: int) -> Job:
    """The job with this id; NotFound otherwise."""
    return _lookup.get_or_404(session, Job, job_id, "job")


def _groups(
    query: Select[Any], flow_id: int | None, deployment_id: int | None, status: str | None
) -> Select[Any]:
    if flow_id is not None:
        query = query.where(JobGroup.flow_id == flow_id)
    if deployment_id is not None:
        query = query.where(JobGroup.deployment_id == deployment_id)
    if status is not None:
        _check_status(status)
        query = query.where(JobGroup.status == status)
    return query


def list_groups(
    session: Session,
    *,
    flow_id: int | None = None,
    deployment_id: int | None = None,
    status: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Sequence[JobGroup]:
    """Job groups, newest first, filtered by flow, deployment and status."""
    query = _groups(select(JobGroup), flow_id, deployment_id, status).order_by(JobGroup.id.desc())
    return _lookup.listed(session, query, limit=limit, offset=offset)


def count_groups(
    session: Session,
    *,
    flow_id: int | None = None,
    deployment_id: int | None = None,
    status: str | None = None,
) -> int:
    """How many job groups :func:`list_groups` would return without paging."""
    return count_of(session, _groups(select(JobGroup.id), flow_id, deployment_id, status))


def list_jobs(
    session: Session, *, job_group_id: int | None = None, limit: int | None = None, offset: int = 0
) -> Sequence[Job]:
    """Jobs in id order, of one job group or of all."""
    query = select(Job).order_by(Job.id)
    if job_group_id is not None:
        query = query.where(Job.job_group_id == job_group_id)
    return _lookup.listed(session, query, limit=limit, offset=offset)


def count_jobs(session: Session, *, job_group_id: int | None = None) -> int:
    """How many jobs :func:`list_jobs` would return without paging."""
    query = select(Job.id)
    if job_group_id is not None:
        query = query.where(Job.job_group_id == job_group_id)
    return count_of(session, query)


def jobs_of(session: Session, job_group_id: int) -> list[Job]:
    """Every job of a job group, in id order."""
    return list(list_jobs(session, job_group_id=job_group_id))


def transition(
    session: Session,
    job_group_id: int,
    *,
    from_statuses: Iterable[str],
    to_status: str,
    group_values: Mapping[str, Any] | None = None,
    job_values: Mapping[str, Any] | None = None,
    when: datetime | None = None,
    message: str | None = None,
) -> bool:
    """Move a job group, and its jobs in the same statuses, to ``to_status`` if it is in ``from_statuses``.

    The one place a status changes (see the module's docstring): a move the
    lifecycle does not allow is refused (ValidationFailed), ``started_at`` and
    ``finished_at`` are stamped, and a ``job_events`` row records the move.

    Returns:
        True when the job group moved; False when it was not in ``from_statuses``
        (someone else changed it first) or does not exist.
    """
    _check_status(to_status)
    sources = sorted(set(from_statuses))
    illegal = [s for s in sources if to_status not in TRANSITIONS.get(s, frozenset())]
    if illegal:
        raise ValidationFailed(f"A job cannot move from {', '.join(illegal)} to {to_status}")
    now = when or utcnow()
    group = session.scalar(select(JobGroup).where(JobGroup.id == job_group_id, JobGroup.status.in_(sources)))
    if group is None:
        return False
    stamps: dict[str, Any] = {}
    if to_status == "InProgress":
        stamps["started_at"] = now
    if to_status in FINAL_STATUSES:
        stamps["finished_at"] = now
    previous = group.status
    moved = session.execute(
        update(JobGroup)
        .where(JobGroup.id == job_group_id, JobGroup.status == previous)
        .values(status=to_status, updated_at=now, **{**stamps, **dict(group_values or {})})
        .execution_options(synchronize_session="fetch")
    )
    if getattr(moved, "rowcount", 0) != 1:
        return False
    session.execute(
        update(Job)
        .where(Job.job_group_id == job_group_id, Job.status.in_(sources))
        .values(status=to_status, updated_at=now, **{**stamps, **dict(job_values or {})})
        .execution_options(synchronize_session="fetch")
    )
    if to_status in FINAL_STATUSES:
        # A run that ended holds no task lock any more: released with the move, whoever ends it.
        session.execute(delete(TaskLock).where(TaskLock.job_group_id == job_group_id))
    error = (group_values or {}).get("error")
    session.add(
        JobEvent(
            job_group_id=job_group_id,
            from_status=previous,
            to_status=to_status,
            message=message if message is not None else (str(error) if error else None),
            at=now,
        )
    )
    session.flush()
    return True


def children_of(session: Session, job_group_id: int) -> list[JobGroup]:
    """The job groups a job group started (a pipeline run's jobs, a partitioned run's partitions)."""
    return list(
        session.scalars(select(JobGroup).where(JobGroup.parent_id == job_group_id).order_by(JobGroup.id))
    )


def events_of(session: Session, job_group_id: int) -> list[JobEvent]:
    """The status changes of a job group, oldest first."""
    return list(
        session.scalars(select(JobEvent).where(JobEvent.job_group_id == job_group_id).order_by(JobEvent.id))
    )


def heartbeat(session: Session, job_group_id: int, when: datetime | None = None) -> None:
    """Record that the worker running the job group is alive (its lease is renewed)."""
    session.execute(
        update(JobGroup)
        .where(JobGroup.id == job_group_id)
        .values(heartbeat_at=when or utcnow())
        .execution_options(synchronize_session="fetch")
    )


def active_group_of_flow(session: Session, flow_id: int) -> int | None:
    """The id of a job group of the flow that has not ended, if any."""
    found = session.scalar(
        select(JobGroup.id)
        .where(JobGroup.flow_id == flow_id, JobGroup.status.in_(sorted(ACTIVE_STATUSES)))
        .limit(1)
    )
    return int(found) if found is not None else None


def count_active_streams(session: Session) -> int:
    """Streaming flows' jobs not ended yet (each holds a worker while it runs)."""
    from flowport.store.tables import FlowRecord

    return int(
        session.scalar(
            select(func.count(JobGroup.id))
            .join(FlowRecord, FlowRecord.id == JobGroup.flow_id)
            .where(
                FlowRecord.type == "streaming",
                JobGroup.status.in_(sorted(ACTIVE_STATUSES)),
                JobGroup.parent_id.is_(None),
            )
        )
        or 0
    )


def record_progress(session: Session, job_group_id: int, result: Mapping[str, Any]) -> None:
    """Keep a running job group's result so far (a streaming job's live totals) and renew its lease."""
    now = utcnow()
    session.execute(
        update(JobGroup)
        .where(JobGroup.id == job_group_id, JobGroup.status == "InProgress")
        .values(result=dict(result), heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )


def stale_groups(session: Session, older_than: datetime) -> list[JobGroup]:
    """Active job groups whose worker has not been heard of since ``older_than`` (lease expired).

    A running job's last heartbeat, or for one not started yet its last
    change, is what counts.
    """
    query = select(JobGroup).where(JobGroup.status.in_(sorted(ACTIVE_STATUSES)))
    return [
        row
        for row in session.scalars(query.order_by(JobGroup.id))
        if (row.heartbeat_at or row.updated_at) < older_than
    ]


def update_job(session: Session, job: Job | int, changes: Mapping[str, Any]) -> Job:
    """Apply ``changes`` (metrics, run_id, error, log, started_at, finished_at) to a job.

    Never its status: that changes only through :func:`transition`.
    """
    _lookup.check_fields(changes, _JOB_FIELDS, "job")
    if isinstance(job, int):
        job = get_job(session, job)
    for key, value in changes.items():
        setattr(job, key, list(value) if key == "metrics" else value)
    job.updated_at = utcnow()
    session.flush()
    return job


def request_cancel(session: Session, group: JobGroup, when: datetime | None = None) -> JobGroup:
    """Raise the cancel flag a running job's worker polls (once: the first request's time is kept)."""
    if group.cancel_requested_at is None:
        group.cancel_requested_at = when or utcnow()
        group.updated_at = group.cancel_requested_at
        session.flush()
    return group
