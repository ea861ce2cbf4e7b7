"""Repository functions for job groups and their jobs.

Status changes are conditional updates (``UPDATE ... WHERE status IN (...)``)
so that the API process cancelling a job and the worker starting or
finishing it can never overwrite each other's outcome: whoever moves the
status first wins, the other sees ``False``. Functions only flush: the
service owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from flowport.errors import ValidationFailed
from flowport.store import _lookup
from flowport.store._paging import count_of
from flowport.store.tables import JOB_STATUSES, Job, JobGroup, utcnow

__all__ = [
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "count_groups",
    "count_jobs",
    "create_group",
    "create_job",
    "get_group",
    "get_job",
    "jobs_of",
    "list_groups",
    "list_jobs",
    "request_cancel",
    "transition",
    "update_job",
]

FINAL_STATUSES = frozenset({"Complete", "Failed", "Canceled"})
ACTIVE_STATUSES = frozenset({"Created", "Pending", "InProgress"})
_JOB_FIELDS = frozenset({"status", "metrics", "run_id", "error", "log", "started_at", "finished_at"})


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
) -> JobGroup:
    """Insert a job group (with a new session id)."""
    _check_status(status)
    now = utcnow()
    row = JobGroup(
        flow_id=flow_id,
        deployment_id=deployment_id,
        status=status,
        parameters=dict(parameters or {}),
        created_at=now,
        updated_at=now,
        creator_id=creator_id,
    )
    session.add(row)
    session.flush()
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
) -> bool:
    """Move a job group, and its jobs in the same statuses, to ``to_status`` if it is in ``from_statuses``.

    Returns:
        True when the job group moved; False when it was not in ``from_statuses``
        (someone else changed it first) or does not exist.
    """
    _check_status(to_status)
    sources = sorted(set(from_statuses))
    now = when or utcnow()
    moved = session.execute(
        update(JobGroup)
        .where(JobGroup.id == job_group_id, JobGroup.status.in_(sources))
        .values(status=to_status, updated_at=now, **dict(group_values or {}))
        .execution_options(synchronize_session="fetch")
    )
    if getattr(moved, "rowcount", 0) != 1:
        return False
    session.execute(
        update(Job)
        .where(Job.job_group_id == job_group_id, Job.status.in_(sources))
        .values(status=to_status, updated_at=now, **dict(job_values or {}))
        .execution_options(synchronize_session="fetch")
    )
    session.flush()
    return True


def update_job(session: Session, job: Job | int, changes: Mapping[str, Any]) -> Job:
    """Apply ``changes`` (status, metrics, run_id, error, log, started_at, finished_at) to a job."""
    _lookup.check_fields(changes, _JOB_FIELDS, "job")
    if "status" in changes:
        _check_status(changes["status"])
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
