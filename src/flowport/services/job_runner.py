"""The job runner: what a worker does with a job group — run its flow and record everything in the store.

:func:`execute_job` is the runner every launcher of :mod:`flowport.orchestrate`
is given: it moves the job group Pending → InProgress through the store's
state machine, runs the flow with the instance's connections, file roots
and stage state, writes per-stage metrics and renews the job's heartbeat
lease every :data:`PROGRESS_INTERVAL` seconds, polls the cancel flag (set by
:func:`~flowport.services.jobs.cancel_job_group`) and cancels the run, and
keeps the ``flowport`` log lines of the run in the job's ``log``. Messages and
log lines are scrubbed of the secrets of every connection the run used;
results hold metrics and messages only. :func:`fail_lost_job` is the
launchers' ``on_lost`` handler.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flowport.connections.spec import ConnectionSpec
from flowport.engine import FlowRun, RunResult, StageMetrics
from flowport.errors import FlowportError, ValidationFailed
from flowport.model.flow import Flow
from flowport.model.parameters import parameter_values
from flowport.orchestrate import JobTask
from flowport.plugins.file_roots import FileRoots
from flowport.services import flows as _flows
from flowport.services.connections import StoreConnectionLookup
from flowport.services.file_roots import protected_files
from flowport.services.flow_records import StoredFlow, load_stored_flow
from flowport.services.instance import transaction
from flowport.services.partitions import partition_flow, plan, run_partitioned
from flowport.services.stage_state import StoreStageState
from flowport.services.streaming import StreamState, is_streaming, run_stream
from flowport.services.worker_loss import running_here
from flowport.store import jobs as _repo
from flowport.store.tables import utcnow

__all__ = ["PROGRESS_INTERVAL", "execute_job", "fail_lost_job", "metrics_list"]

_log = logging.getLogger("flowport.services.jobs")

# How often a running job's metrics are written, its cancel flag read and its lease renewed.
PROGRESS_INTERVAL = 0.5
# A job log keeps its last lines; older ones are dropped (and counted) so a
# chatty run cannot fill the metadata store.
_MAX_LOG_LINES = 5000
_MAX_LOG_LINE_CHARS = 2000

_METRIC_KEYS = {
    "input_records": "inputRecords",
    "output_records": "outputRecords",
    "error_records": "errorRecords",
    "input_batches": "inputBatches",
    "output_batches": "outputBatches",
    "seconds": "seconds",
}


def metrics_list(metrics: Mapping[str, StageMetrics]) -> list[dict[str, Any]]:
    # Stored as a list in flow order: PostgreSQL's JSONB does not keep the
    # order of an object's keys, and stages read best in the flow's order.
    return [
        {"stage": name, **{_METRIC_KEYS.get(k, k): v for k, v in m.to_dict().items()}}
        for name, m in metrics.items()
    ]


def fail_lost_job(task: JobTask, message: str) -> None:
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
        "stages": metrics_list(result.stages),
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
            group_values={"started_at": now, **running_here()},
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
    if task.partition is not None:  # one partition of a partitioned run: one file into the staging table
        stored.flow = partition_flow(stored.flow, task.partition)
    # Parameter sets may have changed since the request was accepted.
    stored.check(overrides)
    base_dir = Path(task.base_dir)
    base_dir.mkdir(parents=True, exist_ok=True)
    # Confined whatever the worker's environment: the roots travel with the task.
    roots = FileRoots.confined([Path(r) for r in task.file_roots], protected_files())
    if task.partition is None and stored.flow.configuration.partitions > 1:
        partitioned = _run_partitioned(task, stored, overrides, base_dir, roots, capture)
        if partitioned is not None:
            return partitioned
    if task.partition is None and is_streaming(stored.flow, _flows.plugin_registry()):
        return _run_streaming(task, stored, overrides, base_dir, roots, capture)
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


def _run_partitioned(
    task: JobTask,
    stored: StoredFlow,
    overrides: Mapping[str, str],
    base_dir: Path,
    roots: FileRoots,
    capture: _LogCapture,
) -> str | None:
    """Run a job as partition tasks when its flow can be split (None: it runs as one task)."""
    values = parameter_values(stored.flow, stored.parameter_sets, overrides)
    lookup = _ScrubbingLookup(task.database_url, Path(task.home), capture, roots, base_dir)
    split = plan(stored.flow, values, base_dir, roots, lookup)
    spec = None
    if not isinstance(split, str):
        spec = lookup.get(split.connection)
        if spec.vendor != "postgresql":
            split = f"a partitioned load needs a PostgreSQL destination, not {spec.vendor}"
    if isinstance(split, str) or spec is None:
        _log.warning(
            "Job group %s: partitions: %s is not used (%s); the flow runs as one task",
            task.job_group_id,
            stored.flow.configuration.partitions,
            split,
        )
        return None
    status, error, result = run_partitioned(
        task, stored.flow, split, spec, lambda line: _log.info("Job group %s: %s", task.job_group_id, line)
    )
    _log.info("Job group %s: %s in %.2fs", task.job_group_id, status, result["seconds"])
    error = capture.scrub(error) if error is not None else None
    if result.get("error"):
        result["error"]["message"] = error
    _finish(task, None, status, error, result, capture)
    return status


def _run_streaming(
    task: JobTask,
    stored: StoredFlow,
    overrides: Mapping[str, str],
    base_dir: Path,
    roots: FileRoots,
    capture: _LogCapture,
) -> str:
    """Run a streaming flow's job micro-batch after micro-batch until it is stopped (or fails for good)."""
    from flowport.stages.sql.kept import KEPT_CONNECTIONS, KeptConnections

    url = task.database_url
    lookup = _ScrubbingLookup(url, Path(task.home), capture, roots, base_dir)
    stage_state = StoreStageState(stored.flow.uuid, url=url, legacy_dir=base_dir)
    # The micro-batches' SQL stages connect once, not once per micro-batch (closed when the job ends).
    kept = KeptConnections()
    _log.info("Job group %s: streaming until stopped", task.job_group_id)

    def start(flow: Flow, run_id: str) -> FlowRun:
        return _flows.start_run(
            flow,
            overrides=overrides,
            parameter_sets=stored.parameter_sets,
            base_dir=base_dir,
            connections=lookup,
            file_roots=roots,
            stage_state=stage_state,
            run_id=run_id,
            resources={KEPT_CONNECTIONS: kept},
        )

    written = [-1]

    def progress(state: StreamState, run: FlowRun | None) -> bool:
        # About twice a second: the live totals, the job's metrics and log, the lease; the stop flag.
        try:
            with transaction(url) as session:
                live = state.result("InProgress", None)
                _repo.record_progress(session, task.job_group_id, live)
                changes: dict[str, Any] = {"metrics": live["stages"]}
                if run is not None:
                    changes["run_id"] = run.context.run_id
                if capture.version != written[0]:
                    written[0] = capture.version
                    changes["log"] = capture.text()
                for job in _repo.jobs_of(session, task.job_group_id):
                    _repo.update_job(session, job, changes)
                return _repo.get_group(session, task.job_group_id).cancel_requested_at is not None
        except Exception as exc:
            _log.warning("Job group %s: progress not recorded: %s", task.job_group_id, type(exc).__name__)
            return False

    try:
        status, error, state = run_stream(stored.flow, start, progress, run_prefix=f"j{task.job_group_id}")
    finally:
        kept.close()
    error = capture.scrub(error) if error is not None else None
    if state.last_error:
        state.last_error = capture.scrub(state.last_error)
    _log.info(
        "Job group %s: %s after %s micro-batch(es), %s records%s",
        task.job_group_id,
        status,
        state.batches,
        state.records,
        " (stopped)" if state.stopped else "",
    )
    result = state.result(status, error)
    now = utcnow()
    with transaction(url) as session:
        _repo.transition(
            session,
            task.job_group_id,
            from_statuses={"InProgress"} if status == "Complete" else _repo.ACTIVE_STATUSES,
            to_status=status,
            group_values={"error": error, "result": result},
            job_values={"error": error, "log": capture.text(), "metrics": result["stages"]},
            when=now,
        )
    return status


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
                changes: dict[str, Any] = {"metrics": metrics_list(run.metrics), "run_id": run.context.run_id}
                if capture.version != written_version:
                    written_version = capture.version
                    changes["log"] = capture.text()
                for job in _repo.jobs_of(session, task.job_group_id):
                    _repo.update_job(session, job, changes)
                # The worker's lease: a job whose heartbeat stops is failed by whoever sees it.
                _repo.heartbeat(session, task.job_group_id)
                if task.partition is not None:  # the partitioned run waits for it, alive
                    _repo.heartbeat(session, int(task.partition["parent"]))
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
        job_changes["metrics"] = metrics_list(run.metrics)
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
