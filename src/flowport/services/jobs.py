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

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from flowport.errors import Conflict, NotFound, PathNotAllowed, UnresolvedParameters, ValidationFailed
from flowport.model.parameters import parameter_values, substitute
from flowport.services.auth import User, require_role
from flowport.services.file_roots import instance_roots
from flowport.services.flow_records import load_stored_flow
from flowport.services.instance import page_bounds, ref, timestamp, transaction
from flowport.services.launcher import launcher
from flowport.services.schemas.jobs import ErrorRecordsRead, JobGroupRead, JobRead
from flowport.services.settings import data_dir
from flowport.services.worker_loss import HEARTBEAT_LEASE as _LEASE
from flowport.store import jobs as _repo
from flowport.store import schedules as _schedules_repo
from flowport.store.tables import JOB_STATUSES, Job, JobGroup, utcnow

__all__ = [
    "ERROR_RECORDS_SHOWN",
    "FINAL_STATUSES",
    "HEARTBEAT_LEASE",
    "cancel_job_group",
    "error_record_lines",
    "fail_interrupted_job_groups",
    "fail_stale_job_groups",
    "get_error_records",
    "get_job",
    "get_job_group",
    "get_job_group_logs",
    "get_job_group_metrics",
    "job_dict",
    "job_group_dict",
    "list_job_groups",
    "list_jobs",
    "stop_job_group",
    "wait_for_job_group",
]

_log = logging.getLogger(__name__)

FINAL_STATUSES = _repo.FINAL_STATUSES
# How long a worker may stay silent before its job is taken as abandoned (retried or failed).
HEARTBEAT_LEASE = _LEASE


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
    schedule_id: int | None = None,
    status: str | None = None,
    limit: int | None = None,
    offset: int = 0,
    no_limit: bool = False,
) -> dict[str, Any]:
    """Job groups, newest first, as ``{"data": [...], "count": total}``, by flow, deployment, schedule
    (its scheduled and backfilled runs) and status."""
    if status is not None and status not in JOB_STATUSES:
        raise ValidationFailed(f"Unknown job status '{status}'; expected one of {', '.join(JOB_STATUSES)}")
    row_limit, row_offset = page_bounds(limit, offset, no_limit)
    with transaction() as session:
        if schedule_id is not None:
            # A schedule's runs, narrowed by the other filters here (the store lists them by schedule).
            runs = [
                r
                for r in _schedules_repo.runs_of(session, schedule_id, limit=None)
                if (flow_id is None or r.flow_id == flow_id)
                and (deployment_id is None or r.deployment_id == deployment_id)
                and (status is None or r.status == status)
            ]
            end = None if row_limit is None else row_offset + row_limit
            return {"data": [job_group_dict(r) for r in runs[row_offset:end]], "count": len(runs)}
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
        answer: dict[str, Any] = {"jobGroup": ref(row.id), "status": row.status, "stages": stages}
        streaming = (row.result or {}).get("streaming")
        if streaming is not None:  # a streaming job: micro-batches, records/s, failures, the last error
            answer["streaming"] = streaming
        return answer


def get_job_group_logs(job_group_id: int) -> str:
    """The log lines of a job group's jobs as text (secrets scrubbed); NotFound for an unknown group."""
    with transaction() as session:
        row = _repo.get_group(session, job_group_id)
        return "\n".join(job.log for job in _repo.jobs_of(session, row.id) if job.log)


# -- error records ------------------------------------------------------------------

#: How many error records :func:`get_error_records` shows by default.
ERROR_RECORDS_SHOWN = 20
_ERROR_RECORD_KEYS = ("stage", "code", "message", "policy", "time", "record")


@dataclass
class _ErrorFiles:
    """Where a job group's error records are: its error stage, the files it wrote, why there are none."""

    error_stage: str | None = None
    stored: bool = False
    files: list[Path] = field(default_factory=list)
    message: str | None = None
    counted: int = 0


def _error_files(job_group_id: int) -> _ErrorFiles:
    """The files the job group's error stage wrote (Write to File: ``<directory>/<prefix>-<run id>.jsonl``).

    The error stage is the one the flow has now: a flow whose error stage
    changed since the run may point elsewhere. Paths resolve as the run
    resolved them (the data folder, the instance's file roots).
    """
    found = _ErrorFiles()
    planned: list[tuple[str, dict[str, Any], str]] = []
    with transaction() as session:
        row = _repo.get_group(session, job_group_id)
        overrides = {str(k): str(v) for k, v in (row.parameters or {}).items()}
        jobs = _repo.jobs_of(session, row.id)
        if row.result is not None and "errorRecords" in row.result:
            found.counted = int(row.result["errorRecords"] or 0)
        else:  # still running: what the stages counted so far
            found.counted = sum(
                int(m.get("errorRecords") or 0) for job in jobs for m in _stages(job.metrics).values()
            )
        for job in jobs:
            if job.flow_id is None or job.run_id is None:
                continue
            try:
                stored = load_stored_flow(session, job.flow_id)
            except NotFound:
                found.message = "The flow of this job was deleted: its error stage is unknown"
                continue
            error_stage = stored.flow.error_stage
            found.error_stage = error_stage.plugin.name
            values = parameter_values(stored.flow, stored.parameter_sets, overrides)
            try:
                configuration = substitute(error_stage.configuration, values)
            except UnresolvedParameters as exc:
                found.message = (
                    f"The error stage's settings refer to parameters without a value: {exc.message}"
                )
                continue
            planned.append((error_stage.plugin.name, configuration, job.run_id))
    if found.error_stage is None and found.message is None:
        found.message = "This job group has no flow run with error records"
    for plugin, configuration, run_id in planned:
        if plugin != "write_to_file":
            found.message = (
                f"The flow's error stage ({plugin}) does not keep error records: "
                "choose Write to File as the error stage to keep them"
            )
            continue
        found.stored = True
        directory = configuration.get("directory")
        prefix = configuration.get("file_prefix") or "errors"
        if not isinstance(directory, str) or not isinstance(prefix, str) or "/" in prefix or "\\" in prefix:
            found.message = "The error stage's directory or file prefix is not set as a run needs it"
            continue
        roots = instance_roots()
        try:
            folder = roots.check(directory, base_dir=data_dir(), what="the error stage's directory")
            path = roots.check(folder / f"{prefix}-{run_id}.jsonl", what="the error records file")
        except PathNotAllowed as exc:
            found.message = exc.message
            continue
        if path.is_file():
            found.files.append(path)
    if found.stored and not found.files and found.message is None:
        found.message = "The run wrote no error records file"
    return found


def error_record_lines(job_group_id: int, *, user: User | None = None) -> Iterator[bytes]:
    """Every error record the job group's error stage stored, as JSON Lines (one record a line).

    Raises:
        NotFound: no such job group, or none stored (the message says why).
        Forbidden: a viewer (error records hold the records' data).
    """
    require_role(user, "editor")
    found = _error_files(job_group_id)
    if not found.files:
        raise NotFound(f"Job group {job_group_id} has no stored error records: {found.message}")

    def lines() -> Iterator[bytes]:
        for path in found.files:
            with path.open("rb") as handle:
                for line in handle:
                    yield line if line.endswith(b"\n") else line + b"\n"

    return lines()


def get_error_records(
    job_group_id: int, *, limit: int = ERROR_RECORDS_SHOWN, user: User | None = None
) -> dict[str, Any]:
    """The first ``limit`` error records of a job group and how many are stored (the error stage's files).

    Raises:
        NotFound: no such job group. Forbidden: a viewer (error records hold the records' data).
    """
    require_role(user, "editor")
    found = _error_files(job_group_id)
    shown: list[dict[str, Any]] = []
    count = 0
    for path in found.files:
        with path.open("rb") as handle:
            for line in handle:
                if not line.strip():
                    continue
                count += 1
                if len(shown) >= limit:
                    continue
                try:
                    item = json.loads(line)
                except ValueError:
                    item = {"message": "(a line of the error records file is not JSON)"}
                if not isinstance(item, dict):
                    item = {"record": item}
                shown.append({key: item.get(key) for key in _ERROR_RECORD_KEYS})
    return ErrorRecordsRead.shape(
        {
            "data": [{k: (v if k == "record" or v is None else str(v)) for k, v in r.items()} for r in shown],
            "count": count,
            "errorRecords": found.counted,
            "errorStage": found.error_stage,
            "stored": found.stored,
            "message": None if shown else found.message,
        }
    )


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
    """Deal with every active job group whose worker has not been heard of for ``lease_seconds``.

    A running job's worker renews its lease (``heartbeat_at``) every
    :data:`~flowport.services.job_runner.PROGRESS_INTERVAL` seconds; a job
    not started yet counts from its last change. Safe while other servers
    and workers share the store: a live worker's job is never touched. A
    running job whose worker is lost is retried when its flow allows
    (``worker_lost_retries``; resubmitted to the launcher) and failed
    otherwise (:mod:`flowport.services.worker_loss`). ``only_running``
    leaves queued jobs alone (a busy pool may hold a job Pending longer than
    the lease): what the periodic sweeps use.

    Returns:
        How many job groups were failed.
    """
    from flowport.services.runs import job_task
    from flowport.services.worker_loss import recover_stale

    retried, failed = recover_stale(lease_seconds, lambda group_id, kind: job_task(group_id, kind=kind))
    if not only_running:
        now = utcnow()
        message = f"No worker took the job within {lease_seconds:g}s"
        with transaction() as session:
            for row in _repo.stale_groups(session, now - timedelta(seconds=lease_seconds)):
                if row.status == "InProgress":
                    continue
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
    if retried:
        _log.warning("%s job group(s) whose worker stopped were started again", retried)
    return failed


def stop_job_group(job_group_id: int, *, user: User | None = None) -> dict[str, Any]:
    """Stop a streaming job: the micro-batch in flight commits and is acknowledged, then the job ends.

    The job ends Complete within about one micro-batch (its origin's
    ``batch_wait``); a job not started yet is Canceled at once. Stopping a
    stopped (ended) job again is a no-op.

    Raises:
        NotFound: no such job group. Conflict: a batch job (cancel it instead).
        Forbidden: a viewer.
    """
    require_role(user, "editor")
    with transaction() as session:
        row = _repo.get_group(session, job_group_id)
        streaming = (
            row.flow_id is not None and load_stored_flow(session, row.flow_id).flow.type == "streaming"
        )
        if not streaming:
            raise Conflict(
                f"Job group {job_group_id} runs a batch flow, which ends by itself: cancel it instead "
                f"(POST /v4/jobGroups/{job_group_id}/cancel)"
            )
        ended = row.status in ("Complete", "Failed", "Canceled")
    if ended:
        return get_job_group(job_group_id, embed_jobs=True)
    return cancel_job_group(job_group_id, user=user)


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
