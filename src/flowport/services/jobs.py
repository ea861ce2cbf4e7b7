"""Jobs: running stored flows outside the request, and what became of each run.

:func:`run_flow` validates the flow, records a job group (one request to
run) with one job (one execution of the flow), and hands the job group's
id to an executor; it returns at once. Status moves
``Created → Pending → InProgress → Complete | Failed | Canceled``.

Executors:

- ``process`` (default, what ``flowport server`` uses): a local pool of
  ``FLOWPORT_WORKERS`` (default 2) processes started with ``spawn``. Each
  worker opens the metadata store itself from the URL and home it is
  given, so nothing but an id travels to it.
- ``thread``: a background thread of this process (tests, small tools).
- ``inline``: in the caller's thread, returning when the job has ended (the CLI, tests).

``FLOWPORT_EXECUTOR`` chooses the default. The worker writes per-stage
metrics every :data:`PROGRESS_INTERVAL` seconds and at the end, polls the
job group's cancel flag (set by :func:`cancel_job_group`) and then cancels
the run, and keeps the ``flowport`` log lines of the run in the job's
``log``. Messages and log lines are scrubbed of the secrets of every
connection the run used; results hold metrics and messages only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

from flowport.connections.spec import ConnectionSpec
from flowport.engine import FlowRun, RunResult, StageMetrics
from flowport.errors import Conflict, FlowportError, ValidationFailed
from flowport.plugins.file_roots import FileRoots
from flowport.services import flows as _flows
from flowport.services.auth import User, require_role
from flowport.services.connections import StoreConnectionLookup
from flowport.services.file_roots import instance_roots, protected_files
from flowport.services.flow_records import check_overrides, data_dir, load_stored_flow
from flowport.services.instance import page_bounds, ref, store_url, timestamp, transaction
from flowport.services.permissions import require_flow_permissions
from flowport.services.settings import file_setting, settings
from flowport.services.stage_state import StoreStageState
from flowport.store import jobs as _repo
from flowport.store.database import DATABASE_URL_ENV
from flowport.store.tables import JOB_STATUSES, Job, JobGroup, utcnow

__all__ = [
    "EXECUTOR_ENV",
    "FINAL_STATUSES",
    "HEARTBEAT_LEASE",
    "PROGRESS_INTERVAL",
    "WORKERS_ENV",
    "ExecutorKind",
    "JobTask",
    "cancel_job_group",
    "default_executor",
    "execute_job",
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
    "run_flow",
    "shutdown_workers",
    "wait_for_job_group",
]

_log = logging.getLogger(__name__)

ExecutorKind = Literal["process", "thread", "inline"]
EXECUTOR_ENV = "FLOWPORT_EXECUTOR"
WORKERS_ENV = "FLOWPORT_WORKERS"
FINAL_STATUSES = _repo.FINAL_STATUSES
# How often a running job's metrics are written, its cancel flag read and its lease renewed.
PROGRESS_INTERVAL = 0.5
# How long a worker may stay silent before its job is failed as abandoned.
HEARTBEAT_LEASE = 30.0
# A job log keeps its last lines; older ones are dropped (and counted) so a
# chatty run cannot fill the metadata store.
_MAX_LOG_LINES = 5000
_MAX_LOG_LINE_CHARS = 2000

_pool_lock = threading.Lock()
_pool_executor: ProcessPoolExecutor | None = None


# -- what the API shows ------------------------------------------------------------

_METRIC_KEYS = {
    "input_records": "inputRecords",
    "output_records": "outputRecords",
    "error_records": "errorRecords",
    "input_batches": "inputBatches",
    "output_batches": "outputBatches",
    "seconds": "seconds",
}


def _metrics(metrics: Mapping[str, StageMetrics]) -> list[dict[str, Any]]:
    # Stored as a list in flow order: PostgreSQL's JSONB does not keep the
    # order of an object's keys, and stages read best in the flow's order.
    return [
        {"stage": name, **{_METRIC_KEYS.get(k, k): v for k, v in m.to_dict().items()}}
        for name, m in metrics.items()
    ]


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
    return {
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


def job_group_dict(row: JobGroup, jobs: list[Job] | None = None) -> dict[str, Any]:
    """A job group as the API shows it; ``jobs`` embeds its jobs as ``{"data", "count"}``."""
    data: dict[str, Any] = {
        "id": row.id,
        "status": row.status,
        "sessionId": str(row.session_id),
        "flow": ref(row.flow_id),
        "deployment": ref(row.deployment_id),
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
    return data


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


# -- running -------------------------------------------------------------------


@dataclass(frozen=True)
class JobTask:
    """What a worker needs to run a job group: its id and where the instance lives.

    The store URL may hold the database's password: it travels to the
    worker over the pool's pipe and is kept out of the task's repr.
    """

    job_group_id: int
    database_url: str = field(repr=False)
    home: str
    base_dir: str
    #: The instance's file roots when the job was accepted: the worker opens files inside them only.
    file_roots: tuple[str, ...] = ()


def default_executor() -> ExecutorKind:
    """The executor :func:`run_flow` uses unless told: ``FLOWPORT_EXECUTOR`` or ``process``."""
    kind = os.environ.get(EXECUTOR_ENV, "").strip() or "process"
    if kind not in ("process", "thread", "inline"):
        raise ValidationFailed(f"{EXECUTOR_ENV} must be process, thread or inline, not '{kind}'")
    return kind  # type: ignore[return-value]


def run_flow(
    flow_id: int,
    *,
    overrides: Mapping[str, Any] | None = None,
    user: User | None = None,
    executor: ExecutorKind | None = None,
    base_dir: Path | None = None,
    deployment_id: int | None = None,
) -> dict[str, Any]:
    """Start a job running a stored flow and return its job group (with its jobs embedded).

    The flow is validated first, with its project's parameter sets and the
    ``overrides``; the run itself happens outside this call (unless
    ``executor="inline"``). Relative paths resolve against ``base_dir``
    (default :func:`~flowport.services.flow_records.data_dir`).
    ``deployment_id`` records the deployment the run is for (its active
    release's primary flow).

    Raises:
        NotFound: no such flow. FlowInvalid (ValidationFailed, ``details`` =
        the validation result): the flow is not valid; no job is created.
        ValidationFailed: malformed overrides. Forbidden: a viewer, or a
        restricted stage the user has no permission for.
    """
    require_role(user, "editor")
    kind = executor or default_executor()
    if kind not in ("process", "thread", "inline"):
        raise ValidationFailed(f"Unknown executor '{kind}': expected process, thread or inline")
    values = check_overrides(overrides)
    folder = (base_dir or data_dir()).resolve()
    roots = instance_roots()
    with transaction() as session:
        stored = load_stored_flow(session, flow_id)
        require_flow_permissions(user, stored.flow, action="run")
        stored.check(values)
        group = _repo.create_group(
            session,
            flow_id=flow_id,
            deployment_id=deployment_id,
            parameters=values,
            creator_id=user.id if user else None,
        )
        _repo.create_job(session, job_group_id=group.id, flow_id=flow_id)
        group_id = group.id
    _log.info("Job group %s created for flow %s (%s executor)", group_id, flow_id, kind)
    assert roots.roots is not None
    task = JobTask(
        group_id, store_url(), str(settings().home), str(folder), tuple(str(r) for r in roots.roots)
    )
    _dispatch(task, kind)
    return get_job_group(group_id, embed_jobs=True)


def _dispatch(task: JobTask, kind: ExecutorKind) -> None:
    with transaction(task.database_url) as session:
        _repo.transition(session, task.job_group_id, from_statuses={"Created"}, to_status="Pending")
    if kind == "inline":
        execute_job(task)
        return
    if kind == "thread":
        name = f"flowport-job-{task.job_group_id}"
        threading.Thread(target=execute_job, args=(task,), name=name, daemon=True).start()
        return
    try:
        future = _submit(task)
    except Exception as exc:
        _fail(task, f"Could not hand the job to a worker process: {type(exc).__name__}: {exc}")
        raise
    future.add_done_callback(lambda done: _after_worker(task, done))


def _workers() -> int:
    raw = os.environ.get(WORKERS_ENV, "").strip() or str(file_setting("jobs", "workers") or "").strip() or "2"
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if count < 1:
        raise ValidationFailed(f"{WORKERS_ENV} must be a whole number of at least 1, not '{raw}'")
    return count


def _pool() -> ProcessPoolExecutor:
    global _pool_executor
    with _pool_lock:
        if _pool_executor is None:
            # spawn, not fork: the parent has threads (the server, SQLAlchemy
            # pools, DuckDB) that a forked child would inherit half-locked.
            _pool_executor = ProcessPoolExecutor(max_workers=_workers(), mp_context=get_context("spawn"))
        return _pool_executor


def _submit(task: JobTask) -> Future[str]:
    global _pool_executor
    try:
        return _pool().submit(_worker_main, task)
    except BrokenProcessPool:
        # A worker died (killed, out of memory): start a new pool once.
        with _pool_lock:
            _pool_executor = None
        return _pool().submit(_worker_main, task)


def shutdown_workers(*, wait: bool = True) -> None:
    """Stop the worker processes (server shutdown, tests); queued jobs stay Pending.

    Jobs left Pending or InProgress are failed by :func:`fail_interrupted_job_groups`
    when the instance starts again.
    """
    global _pool_executor
    with _pool_lock:
        pool, _pool_executor = _pool_executor, None
    if pool is not None:
        pool.shutdown(wait=wait, cancel_futures=True)


def _after_worker(task: JobTask, future: Future[str]) -> None:
    # The worker records every outcome itself; an exception here means the
    # process died or could not even open the store.
    if future.cancelled():
        return
    exc = future.exception()
    if exc is None:
        return
    if isinstance(exc, BrokenProcessPool):
        global _pool_executor
        with _pool_lock:
            _pool_executor = None
        message = "The worker process running the job stopped unexpectedly"
    else:
        message = f"The worker failed: {type(exc).__name__}: {exc}"
    _fail(task, message)


def _fail(task: JobTask, message: str) -> None:
    """Mark a job group that has not ended Failed (best effort: the store may be what failed)."""
    now = utcnow()
    try:
        with transaction(task.database_url) as session:
            moved = _repo.transition(
                session,
                task.job_group_id,
                from_statuses=_repo.ACTIVE_STATUSES,
                to_status="Failed",
                group_values={"finished_at": now, "error": message},
                job_values={"finished_at": now, "error": message},
            )
        if moved:
            _log.error("Job group %s failed: %s", task.job_group_id, message)
    except Exception:
        _log.exception("Could not mark job group %s failed", task.job_group_id)


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


def fail_stale_job_groups(lease_seconds: float = HEARTBEAT_LEASE) -> int:
    """Fail every active job group whose worker has not been heard of for ``lease_seconds``; how many.

    A running job's worker renews its lease (``heartbeat_at``) every
    :data:`PROGRESS_INTERVAL` seconds; a job not started yet counts from its
    last change. Safe while other servers and workers share the store: a
    live worker's job is never failed.
    """
    now = utcnow()
    with transaction() as session:
        stale = _repo.stale_groups(session, now - timedelta(seconds=lease_seconds))
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
    _log.info("Cancel of job group %s requested", job_group_id)
    return get_job_group(job_group_id, embed_jobs=True)


# -- the worker ------------------------------------------------------------------


class _LogCapture(logging.Handler):
    """Keeps the formatted ``flowport`` log records of one run, scrubbed of connection secrets."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._lines: deque[str] = deque(maxlen=_MAX_LOG_LINES)
        self._dropped = 0
        self._lock = threading.Lock()
        self.version = 0
        self.scrubbers: list[Callable[[str], str]] = []

    def scrub(self, text: str) -> str:
        """``text`` without any secret of the connections the run has used."""
        for scrub in list(self.scrubbers):
            text = scrub(text)
        return text

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record's lines (scrubbed, each at most 2000 characters)."""
        try:
            text = self.scrub(self.format(record))
        except Exception:
            self.handleError(record)
            return
        with self._lock:
            for line in text.splitlines() or [""]:
                if len(self._lines) == self._lines.maxlen:
                    self._dropped += 1
                self._lines.append(line[:_MAX_LOG_LINE_CHARS])
            self.version += 1

    def text(self) -> str:
        """Every line kept, with a first line saying how many older ones were dropped."""
        with self._lock:
            lines = list(self._lines)
            dropped = self._dropped
        if dropped:
            lines.insert(0, f"... {dropped} earlier log line(s) dropped")
        return "\n".join(lines)


_level_lock = threading.Lock()
_level_users = 0
_saved_level = logging.NOTSET


@contextmanager
def _capturing(capture: _LogCapture) -> Iterator[None]:
    # The 'flowport' logger must pass INFO records for the job log to have
    # them; its level is lowered while any job of this process runs.
    global _level_users, _saved_level
    logger = logging.getLogger("flowport")
    with _level_lock:
        if _level_users == 0:
            _saved_level = logger.level
            if logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
        _level_users += 1
    logger.addHandler(capture)
    try:
        yield
    finally:
        logger.removeHandler(capture)
        with _level_lock:
            _level_users -= 1
            if _level_users == 0:
                logger.setLevel(_saved_level)


class _ScrubbingLookup(StoreConnectionLookup):
    """The store's connections for a run, remembering each one so its secrets can be scrubbed."""

    def __init__(
        self, url: str, home: Path, capture: _LogCapture, file_roots: FileRoots, base_dir: Path
    ) -> None:
        super().__init__(url, home=home, file_roots=file_roots, base_dir=base_dir)
        self._capture = capture

    def get(self, ref: str) -> ConnectionSpec:
        """The connection, after noting its secrets for scrubbing."""
        spec = super().get(ref)
        if spec.scrub not in self._capture.scrubbers:
            self._capture.scrubbers.append(spec.scrub)
        return spec


def _worker_main(task: JobTask) -> str:
    # Entry point in a pool process: the instance is the one of the task,
    # whatever environment the process was spawned with.
    os.environ["FLOWPORT_HOME"] = task.home
    os.environ[DATABASE_URL_ENV] = task.database_url
    return execute_job(task)


def _result_dict(result: RunResult, scrub: Callable[[str], str]) -> dict[str, Any]:
    error = None
    if result.error is not None:
        error = {"stage": result.error_stage, "message": scrub(result.error)}
    return {
        "status": result.status,
        "runId": result.run_id,
        "seconds": round(result.seconds, 3),
        "errorRecords": result.error_records,
        "error": error,
        "stages": _metrics(result.stages),
    }


def execute_job(task: JobTask) -> str:
    """Run a Pending job group to its end, recording everything in the store; returns the final status.

    This is what every executor calls (in a pool process, a thread, or
    inline). A job group that is no longer Pending (cancelled while
    queued) is left as it is. Never raises for a failing flow: the failure
    is the job's outcome.
    """
    capture = _LogCapture()
    with _capturing(capture):
        try:
            return _execute(task, capture)
        except BaseException as exc:
            message = exc.message if isinstance(exc, FlowportError) else f"{type(exc).__name__}: {exc}"
            _log.error("Job group %s could not run: %s", task.job_group_id, capture.scrub(message))
            _log.debug("%s", capture.scrub(traceback.format_exc()))
            _finish(task, None, "Failed", capture.scrub(message), None, capture)
            if not isinstance(exc, Exception):
                raise
            return "Failed"


def _execute(task: JobTask, capture: _LogCapture) -> str:
    url = task.database_url
    now = utcnow()
    with transaction(url) as session:
        if not _repo.transition(
            session,
            task.job_group_id,
            from_statuses={"Pending"},
            to_status="InProgress",
            group_values={"started_at": now},
            job_values={"started_at": now},
        ):
            status = _repo.get_group(session, task.job_group_id).status
            _log.info("Job group %s is %s: not started", task.job_group_id, status)
            return status
        group = _repo.get_group(session, task.job_group_id)
        overrides = {str(k): str(v) for k, v in (group.parameters or {}).items()}
        if group.flow_id is None:
            raise ValidationFailed("The flow of this job was deleted before the job started")
        stored = load_stored_flow(session, group.flow_id)
    _log.info(
        "Job group %s: running flow '%s' (id %s) in process %s",
        task.job_group_id,
        stored.flow.name,
        stored.flow_id,
        os.getpid(),
    )
    # Parameter sets may have changed since the request was accepted.
    stored.check(overrides)
    base_dir = Path(task.base_dir)
    base_dir.mkdir(parents=True, exist_ok=True)
    # Confined whatever the worker's environment: the roots travel with the task.
    roots = FileRoots.confined([Path(r) for r in task.file_roots], protected_files())
    run = _flows.start_run(
        stored.flow,
        overrides=overrides,
        parameter_sets=stored.parameter_sets,
        base_dir=base_dir,
        connections=_ScrubbingLookup(url, Path(task.home), capture, roots, base_dir),
        file_roots=roots,
        # Offsets in the store under the flow's uuid: any worker resumes where the last run stopped.
        stage_state=StoreStageState(stored.flow.uuid, url=url, legacy_dir=base_dir),
    )
    result = _watch(task, run, capture)
    for name, m in result.stages.items():
        _log.info(
            "Stage %s: %s records in, %s out, %s errors, %.2fs",
            name,
            m.input_records,
            m.output_records,
            m.error_records,
            m.seconds,
        )
    _log.info(
        "Job group %s: %s in %.2fs (%s error records)",
        task.job_group_id,
        result.status,
        result.seconds,
        result.error_records,
    )
    error = capture.scrub(result.error) if result.error is not None and result.status == "Failed" else None
    if result.status == "Canceled":
        error = "Canceled while running"
    _finish(task, run, result.status, error, _result_dict(result, capture.scrub), capture)
    return result.status


def _watch(task: JobTask, run: FlowRun, capture: _LogCapture) -> RunResult:
    cancelled = False
    written_version = -1
    while True:
        try:
            return run.wait(PROGRESS_INTERVAL)
        except TimeoutError:
            pass
        try:
            with transaction(task.database_url) as session:
                changes: dict[str, Any] = {"metrics": _metrics(run.metrics), "run_id": run.context.run_id}
                if capture.version != written_version:
                    written_version = capture.version
                    changes["log"] = capture.text()
                for job in _repo.jobs_of(session, task.job_group_id):
                    _repo.update_job(session, job, changes)
                # The worker's lease: a job whose heartbeat stops is failed by whoever sees it.
                _repo.heartbeat(session, task.job_group_id)
                flag = _repo.get_group(session, task.job_group_id).cancel_requested_at
        except Exception as exc:
            # A busy or briefly unreachable store must not stop the run: the
            # next round (or the end) writes the metrics again.
            _log.warning("Job group %s: progress not recorded: %s", task.job_group_id, type(exc).__name__)
            continue
        if flag is not None and not cancelled:
            cancelled = True
            _log.info("Job group %s: cancel requested, stopping the run", task.job_group_id)
            run.cancel()


def _finish(
    task: JobTask,
    run: FlowRun | None,
    status: str,
    error: str | None,
    result: dict[str, Any] | None,
    capture: _LogCapture,
) -> None:
    now = utcnow()
    job_changes: dict[str, Any] = {"error": error, "log": capture.text()}
    if run is not None:
        job_changes["metrics"] = _metrics(run.metrics)
        job_changes["run_id"] = run.context.run_id
    with transaction(task.database_url) as session:
        # The job's record and status move together, through the state machine (and its outbox).
        _repo.transition(
            session,
            task.job_group_id,
            from_statuses={"InProgress"} if status == "Complete" else _repo.ACTIVE_STATUSES,
            to_status=status,
            group_values={"error": error, "result": result},
            job_values=job_changes,
            when=now,
        )
