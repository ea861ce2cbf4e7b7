"""When the worker running a job is lost: tell a live worker's job from a dead one's, retry or fail.

A job's try records where it runs (``worker``, ``worker_host``,
``worker_pid`` of its job group) when it moves to InProgress. A worker is
*lost* when its process is gone (checked directly on the same host) or its
heartbeat lease expired (any host). What happens then is the flow's
``worker_lost_retries``: while tries remain, the job group goes back to
Pending as its next try (``tries`` + 1) and runs again (loads are atomic,
so every target is as it was before the lost try); otherwise it fails with
a message that says why. A pipeline run is never retried as a whole (its
tasks have their own retries): it fails.

Three places apply this: a redelivered Celery task finding its job
InProgress (:func:`claim`), a local pool whose process died
(:func:`recover_lost`, the launchers' ``on_lost``), and the lease sweep
(:func:`recover_stale`) that servers and workers run.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from flowport.orchestrate import JobTask
from flowport.services.flow_records import load_stored_flow
from flowport.services.instance import transaction
from flowport.store import jobs as _repo
from flowport.store.tables import JobGroup, utcnow

__all__ = [
    "HEARTBEAT_LEASE",
    "WORKER_NAME_ENV",
    "claim",
    "recover_lost",
    "recover_stale",
    "running_here",
    "worker_alive",
]

_log = logging.getLogger("flowport.services.jobs")

#: Set by ``flowport worker`` for the processes it starts: the name jobs record as their worker.
WORKER_NAME_ENV = "FLOWPORT_WORKER_NAME"
#: How long a worker may stay silent before its job is taken as abandoned (retried or failed).
HEARTBEAT_LEASE = 30.0
_ENDED = frozenset({"Complete", "Failed", "Canceled"})


def running_here() -> dict[str, Any]:
    """The job group columns that say this process runs the job (set with the move to InProgress)."""
    return {
        "worker": os.environ.get(WORKER_NAME_ENV) or f"{socket.gethostname()}:{os.getpid()}",
        "worker_host": socket.gethostname(),
        "worker_pid": os.getpid(),
        "heartbeat_at": utcnow(),
    }


def _process_started(pid: int) -> datetime | None:
    """When the process ``pid`` of this host started (None: there is no such process)."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None  # killed, not reaped yet: it runs nothing
        return datetime.fromtimestamp(process.create_time()).astimezone()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.Error:
        return utcnow() - timedelta(days=36500)  # cannot tell: count it alive


def worker_alive(group: JobGroup, lease_seconds: float, now: datetime | None = None) -> bool:
    """Whether the worker running ``group`` (InProgress) is still there.

    On the worker's own host its process is looked up (gone, or a newer
    process with its pid: lost at once); elsewhere the heartbeat lease
    decides.
    """
    now = now or utcnow()
    if group.worker_host == socket.gethostname() and group.worker_pid:
        started = _process_started(group.worker_pid)
        if started is None:
            return False
        begun = group.started_at or group.updated_at
        if begun is not None and started > begun + timedelta(seconds=1):
            return False  # the pid was reused by a process started after the job
    last = group.heartbeat_at or group.updated_at
    return last is None or last >= now - timedelta(seconds=lease_seconds)


def _retries_allowed(session: Any, group: JobGroup) -> int:
    """The flow's ``worker_lost_retries`` (0 for a pipeline run or a flow that cannot be read)."""
    if group.pipeline_id is not None or group.flow_id is None:
        return 0
    try:
        return int(load_stored_flow(session, group.flow_id).flow.configuration.worker_lost_retries)
    except Exception:
        return 0


def _hand_back_or_fail(session: Any, group: JobGroup, reason: str) -> str:
    """Move a lost try back to Pending as the next try, or fail the job; returns the new status."""
    allowed = _retries_allowed(session, group)
    tries = int(group.tries or 1)
    if tries <= allowed:
        message = f"Try {tries} stopped with its worker ({reason}); starting try {tries + 1} of {allowed + 1}"
        moved = _repo.transition(
            session,
            group.id,
            from_statuses={"InProgress"},
            to_status="Pending",
            group_values={
                "tries": tries + 1,
                "worker": None,
                "worker_host": None,
                "worker_pid": None,
                "heartbeat_at": utcnow(),
                "cancel_requested_at": None,
            },
            message=message,
        )
        if moved:
            _log.warning("Job group %s: %s", group.id, message)
            return "Pending"
        return _repo.get_group(session, group.id).status
    message = f"The worker running the job stopped ({reason})"
    if allowed:
        message += f"; all {allowed + 1} tries were used"
    else:
        message += "; the flow allows no retry (set worker_lost_retries in its configuration to retry)"
    now = utcnow()
    if _repo.transition(
        session,
        group.id,
        from_statuses=_repo.ACTIVE_STATUSES,
        to_status="Failed",
        group_values={"finished_at": now, "error": message},
        job_values={"finished_at": now, "error": message},
    ):
        _log.error("Job group %s failed: %s", group.id, message)
        return "Failed"
    return _repo.get_group(session, group.id).status


def claim(task: JobTask, lease_seconds: float) -> bool:
    """Whether this delivery of ``task`` should run it now (it is Pending, or its lost try was handed back).

    A job that has ended, or that a live worker is running, is left exactly as
    it is: a redelivered message changes nothing. A job whose worker was lost
    goes back to Pending as its next try (and this delivery runs it) or fails,
    by the flow's retry policy.
    """
    with transaction(task.database_url) as session:
        group = _repo.get_group(session, task.job_group_id)
        if group.status in _ENDED:
            _log.info(
                "Job group %s has already ended (%s): this delivery does nothing", group.id, group.status
            )
            return False
        if group.status != "InProgress":
            return True
        if worker_alive(group, lease_seconds):
            _log.info(
                "Job group %s is running on worker %s: this delivery does nothing", group.id, group.worker
            )
            return False
        where = f"worker {group.worker}" if group.worker else "its worker"
        return _hand_back_or_fail(session, group, f"{where} stopped") == "Pending"


def recover_lost(task: JobTask, message: str) -> None:
    """A launcher saw the process running ``task`` vanish: retry it (resubmitted) or fail it.

    Best effort: the store may be what failed, in which case the lease sweep
    deals with the job later.
    """
    try:
        with transaction(task.database_url) as session:
            group = _repo.get_group(session, task.job_group_id)
            if group.status in _ENDED:
                return
            if group.status == "InProgress":
                status = _hand_back_or_fail(session, group, message)
            else:  # never started: nothing ran, nothing to retry
                now = utcnow()
                _repo.transition(
                    session,
                    group.id,
                    from_statuses=_repo.ACTIVE_STATUSES,
                    to_status="Failed",
                    group_values={"finished_at": now, "error": message},
                    job_values={"finished_at": now, "error": message},
                )
                status = "Failed"
            tries = int(_repo.get_group(session, task.job_group_id).tries or 1)
    except Exception:
        _log.exception("Could not record that job group %s lost its worker", task.job_group_id)
        return
    if status == "Pending":
        _resubmit(replace(task, attempt=tries))


def _resubmit(task: JobTask) -> None:
    from flowport.services.launcher import launcher

    try:
        launcher().submit(task)
    except Exception as exc:
        # Recorded through the same path: the next try could not even be handed over.
        _log.error("Job group %s: the next try could not be handed to a worker: %s", task.job_group_id, exc)
        now = utcnow()
        try:
            with transaction(task.database_url) as session:
                _repo.transition(
                    session,
                    task.job_group_id,
                    from_statuses={"Pending"},
                    to_status="Failed",
                    group_values={"finished_at": now, "error": f"The retry could not be handed over: {exc}"},
                    job_values={"finished_at": now, "error": f"The retry could not be handed over: {exc}"},
                )
        except Exception:
            _log.exception("Could not mark job group %s failed", task.job_group_id)


def recover_stale(lease_seconds: float, make_task: Any = None) -> tuple[int, int]:
    """Deal with every running job whose worker is lost: ``(retried, failed)``.

    ``make_task(group_id, kind, tries)`` builds what a retried job is
    resubmitted with (:func:`flowport.services.runs.job_task`); without it a
    retried job waits Pending for a redelivery.
    """
    now = utcnow()
    retried: list[tuple[int, str, int]] = []
    failed = 0
    with transaction() as session:
        for row in _repo.stale_groups(session, now - timedelta(seconds=lease_seconds)):
            if row.status != "InProgress" or worker_alive(row, lease_seconds, now):
                continue
            status = _hand_back_or_fail(session, row, f"no heartbeat for {lease_seconds:g}s")
            if status == "Pending":
                kind = "pipeline" if row.pipeline_id is not None else "flow"
                retried.append((row.id, kind, int(row.tries or 1)))
            elif status == "Failed":
                failed += 1
    if make_task is not None:
        for group_id, kind, tries in retried:
            _resubmit(replace(make_task(group_id, kind), attempt=tries))
    return len(retried), failed
