"""Jobs: what became of each run, and cancelling one.

A job group is one request to run (:func:`flowport.services.runs.start`
records it with one job, one execution of the flow, and hands it to the
instance's launcher). Status moves
``Created → Pending → InProgress → Complete | Failed | Canceled`` through
the store's state machine only (:func:`flowport.store.jobs.transition`),
which writes a ``job_events`` row for each move. A running job's worker
renews a heartbeat lease; :func:`fail_stale_job_groups` fails the jobs whose
worker went silent, safe while other servers and workers share the store.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from flowport.errors import Conflict, ValidationFailed
from flowport.services.auth import User, require_role
from flowport.services.instance import page_bounds, ref, timestamp, transaction
from flowport.services.launcher import launcher
from flowport.services.schemas.jobs import JobGroupRead, JobRead
from flowport.store import jobs as _repo
from flowport.store.tables import JOB_STATUSES, Job, JobGroup, utcnow

__all__ = [
    "FINAL_STATUSES",
    "HEARTBEAT_LEASE",
    "cancel_job_group",
    "fail_interrupted_job_groups",
    "fail_stale_job_groups",
    "get_job",
    "get_job_group",
    "get_job_group_logs",
    "get_job_group_metrics",
    "job_dict",
    "job_group_dict",
    "list_job_groups",
    "list_jobs",
    "wait_for_job_group",
]

_log = logging.getLogger(__name__)

FINAL_STATUSES = _repo.FINAL_STATUSES
# How long a worker may stay silent before its job is failed as abandoned.
HEARTBEAT_LEASE = 30.0


# -- what the API shows ------------------------------------------------------------


def _stages(stored: Any) -> dict[str, dict[str, Any]]:
    """Stored per-stage metrics as the API shows them: ``{stage name: metrics}`` in flow order."""
    if isinstance(stored, list):
        return {item["stage"]: {k: v for k, v in item.items() if k != "stage"} for item in stored}
    return dict(stored or {})


def _result(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    if stored is None:
        return None
    return {**stored, "stages": _stages(stored.get("stages"))}


def job_dict(row: Job) -> dict[str, Any]:
    """A job as the API shows it (its log is served apart: :func:`get_job_group_logs`)."""
    return JobRead.shape(
        {
            "id": row.id,
            "jobGroup": ref(row.job_group_id),
            "flow": ref(row.flow_id),
            "status": row.status,
            "runId": row.run_id,
            "metrics": _stages(row.metrics),
            "error": row.error,
            "createdAt": timestamp(row.created_at),
            "updatedAt": timestamp(row.updated_at),
            "startedAt": timestamp(row.started_at),
            "finishedAt": timestamp(row.finished_at),
        }
    )


def job_group_dict(row: JobGroup, jobs: list[Job] | None = None) -> dict[str, Any]:
    """A job group as the API shows it; ``jobs`` embeds its jobs as ``{"data", "count"}``."""
    data: dict[str, Any] = {
        "id": row.id,
        "status": row.status,
        "sessionId": str(row.session_id),
        "flow": ref(row.flow_id),
        "deployment": ref(row.deployment_id),
        "pipeline": ref(row.pipeline_id),
        "parent": ref(row.parent_id),
        "parameters": dict(row.parameters or {}),
        "result": _result(row.result),
        "error": row.error,
        "cancelRequested": row.cancel_requested_at is not None,
        "trigger": row.triggered_by,
        "schedule": ref(row.schedule_id),
        "logicalDate": timestamp(row.logical_date),
        "dataIntervalStart": timestamp(row.data_interval_start),
        "dataIntervalEnd": timestamp(row.data_interval_end),
        "attempt": row.attempt,
        "heartbeatAt": timestamp(row.heartbeat_at),
        "createdAt": timestamp(row.created_at),
        "updatedAt": timestamp(row.updated_at),
        "startedAt": timestamp(row.started_at),
        "finishedAt": timestamp(row.finished_at),
        "creator": ref(row.creator_id),
    }
    if jobs is not None:
        data["jobs"] = {"data": [job_dict(job) for job in jobs], "count": len(jobs)}
    return JobGroupRead.shape(data)


# -- reading -------------------------------------------------------------------


def get_job_group(job_group_id: int, *, embed_jobs: bool = False) -> dict[str, Any]:
    """The job group with this id (``?embed=jobs``: with its jobs); NotFound otherwise."""
    with transaction() as session:
        row = _repo.get_group(session, job_group_id)
        return job_group_dict(row, _repo.jobs_of(session, row.id) if embed_jobs else None)


def list_job_groups(
    *,
    flow_id: int | None = None,
    deployment_id: int | None = None,
    status: str | None = None,
    limit: int | None = None,
    offset: int = 0,
    no_limit: bool = False,
) -> dict[str, Any]:
    """Job groups, newest first, as ``{"data": [...], "count": total}``, by flow, deployment and status."""
    if status is not None and status not in JOB_STATUSES:
        raise ValidationFailed(f"Unknown job status '{status}'; expected one of {', '.join(JOB_STATUSES)}")
    row_limit, row_offset = page_bounds(limit, offset, no_limit)
    with transaction() as session:
        rows = _repo.list_groups(
            session,
            flow_id=flow_id,
            deployment_id=deployment_id,
            status=status,
            limit=row_limit,
            offset=row_offset,
        )
        total = _repo.count_groups(session, flow_id=flow_id, deployment_id=deployment_id, status=status)
        return {"data": [job_group_dict(r) for r in rows], "count": total}


def list_jobs(
    job_group_id: int, *, limit: int | None = None, offset: int = 0, no_limit: bool = False
) -> dict[str, Any]:
    """The jobs of a job group as ``{"data": [...], "count": total}``; NotFound for an unknown group."""
    row_limit, row_offset = page_bounds(limit, offset, no_limit)
    with transaction() as session:
        _repo.get_group(session, job_group_id)
        rows = _repo.list_jobs(session, job_group_id=job_group_id, limit=row_limit, offset=row_offset)
        total = _repo.count_jobs(session, job_group_id=job_group_id)
        return {"data": [job_dict(r) for r in rows], "count": total}


def get_job(job_id: int) -> dict[str, Any]:
    """The job with this id; NotFound otherwise."""
    with transaction() as session:
        return job_dict(_repo.get_job(session, job_id))


def get_job_group_metrics(job_group_id: int) -> dict[str, Any]:
    """Per-stage metrics of a job group: ``{"jobGroup": {"id"}, "status", "stages": {name: metrics}}``.

    Each stage's metrics are ``inputRecords``, ``outputRecords``,
    ``errorRecords``, ``inputBatches``, ``outputBatches`` and ``seconds``;
    they grow while the job runs.
    """
    with transaction() as session:
        row = _repo.get_group(session, job_group_id)
        stages: dict[str, Any] = {}
        for job in _repo.jobs_of(session, row.id):
            stages.update(_stages(job.metrics))
        return {"jobGroup": ref(row.id), "status": row.status, "stages": stages}


def get_job_group_logs(job_group_id: int) -> str:
    """The log lines of a job group's jobs as text (secrets scrubbed); NotFound for an unknown group."""
    with transaction() as session:
        row = _repo.get_group(session, job_group_id)
        return "\n".join(job.log for job in _repo.jobs_of(session, row.id) if job.log)


def wait_for_job_group(job_group_id: int, *, timeout: float = 60.0, poll: float = 0.1) -> dict[str, Any]:
    """Poll until the job group has ended and return it (with its jobs).

    Raises:
        TimeoutError: still running after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        group = get_job_group(job_group_id, embed_jobs=True)
        if group["status"] in FINAL_STATUSES:
            return group
        if time.monotonic() >= deadline:
            raise TimeoutError(f"Job group {job_group_id} is still {group['status']} after {timeout}s")
        time.sleep(poll)


# -- what became of jobs ---------------------------------------------------------


def fail_interrupted_job_groups() -> int:
    """Mark Failed every job group left Created, Pending or InProgress; returns how many.

    For the start of ``flowport server`` when its local pool is the only
    executor: nothing can still be running those jobs. Do not call it while
    other servers or workers share the store.
    """
    now = utcnow()
    message = "The instance stopped before the job finished"
    with transaction() as session:
        ids = [
            row.id
            for status in sorted(_repo.ACTIVE_STATUSES)
            for row in _repo.list_groups(session, status=status)
        ]
        failed = sum(
            _repo.transition(
                session,
                group_id,
                from_statuses=_repo.ACTIVE_STATUSES,
                to_status="Failed",
                group_values={"finished_at": now, "error": message},
                job_values={"finished_at": now, "error": message},
            )
            for group_id in ids
        )
    if failed:
        _log.warning("%s interrupted job group(s) marked Failed", failed)
    return failed


def fail_stale_job_groups(lease_seconds: float = HEARTBEAT_LEASE, *, only_running: bool = False) -> int:
    """Fail every active job group whose worker has not been heard of for ``lease_seconds``; how many.

    A running job's worker renews its lease (``heartbeat_at``) every
    :data:`~flowport.services.job_runner.PROGRESS_INTERVAL` seconds; a job
    not started yet counts from its last change. Safe while other servers
    and workers share the store: a live worker's job is never failed.
    ``only_running`` leaves queued jobs alone (a busy pool may hold a job
    Pending longer than the lease): what the server's periodic sweep uses.
    """
    now = utcnow()
    with transaction() as session:
        stale = _repo.stale_groups(session, now - timedelta(seconds=lease_seconds))
        if only_running:
            stale = [row for row in stale if row.status == "InProgress"]
        failed = 0
        for row in stale:
            message = (
                f"The worker running the job stopped (no heartbeat for {lease_seconds:g}s)"
                if row.status == "InProgress"
                else f"No worker took the job within {lease_seconds:g}s"
            )
            failed += _repo.transition(
                session,
                row.id,
                from_statuses={row.status},
                to_status="Failed",
                group_values={"error": message},
                job_values={"error": message},
            )
    if failed:
        _log.warning("%s job group(s) whose worker stopped were marked Failed", failed)
    return failed


def cancel_job_group(job_group_id: int, *, user: User | None = None) -> dict[str, Any]:
    """Cancel a job group and return it.

    A job not started yet (Created, Pending) is Canceled at once. A running
    one gets its cancel flag set; its worker cancels the run within about
    :data:`PROGRESS_INTERVAL` seconds and records Canceled (destinations are
    aborted, targets unchanged). Cancelling a Canceled job group again is a
    no-op.

    Raises:
        NotFound: no such job group. Conflict: it already Complete or Failed.
        Forbidden: a viewer.
    """
    require_role(user, "editor")
    now = utcnow()
    with transaction() as session:
        row = _repo.get_group(session, job_group_id)
        if row.status in ("Complete", "Failed"):
            raise Conflict(f"Job group {job_group_id} has already ended ({row.status})")
        if row.status != "Canceled":
            message = "Canceled before it started"
            if not _repo.transition(
                session,
                job_group_id,
                from_statuses={"Created", "Pending"},
                to_status="Canceled",
                group_values={"finished_at": now, "cancel_requested_at": now, "error": message},
                job_values={"finished_at": now, "error": message},
            ):
                _repo.request_cancel(session, _repo.get_group(session, job_group_id), now)
    # A job still queued in the launcher never starts (its worker would find it Canceled anyway).
    launcher().cancel(job_group_id)
    _log.info("Cancel of job group %s requested", job_group_id)
    return get_job_group(job_group_id, embed_jobs=True)
