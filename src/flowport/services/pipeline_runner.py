"""The pipeline runner: what a worker does with a pipeline run — its tasks in dependency order.

:func:`run_job_group` is the runner every launcher is given: a job group with
a pipeline goes to :func:`execute_pipeline`, any other to the flow runner
(:func:`~flowport.services.job_runner.execute_job`).

A run moves Pending → InProgress through the store's state machine, then
starts each task whose ``after`` tasks are Complete, up to the pipeline's
``max_parallel`` at once, each try under the task's timeout, a failed try
retried after ``retry_delay * retry_backoff ** (try - 1)`` seconds. A task whose
upstream failed is Skipped; after a failure, unless ``continue_on_failure``,
no task starts any more and the running ones are stopped (fail fast). The
run's heartbeat lease is renewed while it runs and its cancel flag polled:
a cancel stops every running task. The final status moves with the release
of the run's task locks in one transaction.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from flowport.errors import FlowportError
from flowport.model.parameters import substitute
from flowport.model.pipeline import Pipeline, Task, pipeline_from_dict
from flowport.orchestrate import JobTask
from flowport.plugins.file_roots import FileRoots
from flowport.services.file_roots import protected_files
from flowport.services.instance import transaction
from flowport.services.job_runner import execute_job
from flowport.services.tasks import TaskContext, TaskFailed, runner_for
from flowport.services.worker_loss import HEARTBEAT_LEASE, claim, running_here
from flowport.store import jobs as _jobs_repo
from flowport.store import pipelines as _repo
from flowport.store.tables import JobGroup, utcnow

__all__ = ["FLUSH_INTERVAL", "HEARTBEAT_INTERVAL", "execute_pipeline", "run_job_group"]

_log = logging.getLogger("flowport.services.pipelines")

#: How often a running pipeline renews its lease and reads its cancel flag.
HEARTBEAT_INTERVAL = 1.0
#: How often the task runs' changes are written (together, in one transaction).
FLUSH_INTERVAL = 0.1


def run_job_group(task: JobTask) -> str:
    """Run a job group, whatever it runs (a flow or a pipeline); returns its final status.

    A delivery of a job that has ended, or that a live worker runs, does
    nothing; one whose worker was lost retries or fails it by the flow's
    policy (:func:`~flowport.services.worker_loss.claim`): a task redelivered
    by a broker is safe to run.
    """
    try:
        if not claim(task, HEARTBEAT_LEASE):
            with transaction(task.database_url) as session:
                return _jobs_repo.get_group(session, task.job_group_id).status
        with transaction(task.database_url) as session:
            pipeline_id = _jobs_repo.get_group(session, task.job_group_id).pipeline_id
            is_pipeline = pipeline_id is not None or bool(_repo.task_runs_of(session, task.job_group_id))
    except Exception:
        # The flow runner records what it can about a job group it cannot read.
        return execute_job(task)
    return execute_pipeline(task) if is_pipeline else execute_job(task)


class _Run:
    """One pipeline run in progress: statuses, the stop signal, the store writes."""

    def __init__(self, task: JobTask, group: JobGroup, pipeline: Pipeline, project_id: int) -> None:
        self.task = task
        self.url = task.database_url
        self.group_id = group.id
        self.pipeline_id = group.pipeline_id
        self.project_id = project_id
        self.pipeline = pipeline
        self.values = {str(k): str(v) for k, v in (group.parameters or {}).items()}
        self.values["run_id"] = str(group.id)
        self.status: dict[str, str] = {t.name: "Created" for t in pipeline.tasks}
        self.stopping = threading.Event()
        self.cancelled = False
        self.failed: list[str] = []
        self.base_dir = Path(task.base_dir)
        self.roots = FileRoots.confined([Path(r) for r in task.file_roots], protected_files())
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending: dict[str, dict[str, Any]] = {}

    def record(self, name: str, **changes: Any) -> None:
        """Note a task run's changes; they reach the store with the next flush (within
        :data:`FLUSH_INTERVAL` seconds), many tasks' changes in one transaction."""
        with self._lock:
            if "status" in changes:
                self.status[name] = changes["status"]
            self._pending.setdefault(name, {}).update(changes)

    def flush(self) -> None:
        """Write every noted change in one transaction."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            if not pending:
                return
            with transaction(self.url) as session:
                _repo.update_task_runs(session, self.group_id, pending)

    def skip(self, names: set[str] | list[str], message: str) -> None:
        now = utcnow()
        for name in names:
            if self.status[name] == "Created":
                self.record(name, status="Skipped", message=message, finished_at=now)


def _flusher(run: _Run, done: threading.Event) -> None:
    while not done.wait(FLUSH_INTERVAL):
        try:
            run.flush()
        except Exception as exc:
            # A busy store must not stop the run: the next flush writes the changes.
            _log.warning(
                "Pipeline run %s: task records not written yet: %s", run.group_id, type(exc).__name__
            )


def _heartbeat(run: _Run, done: threading.Event) -> None:
    while not done.wait(HEARTBEAT_INTERVAL):
        try:
            with transaction(run.url) as session:
                _jobs_repo.heartbeat(session, run.group_id)
                flag = _jobs_repo.get_group(session, run.group_id).cancel_requested_at
        except Exception as exc:
            _log.warning("Pipeline run %s: heartbeat not recorded: %s", run.group_id, type(exc).__name__)
            continue
        if flag is not None and not run.cancelled:
            run.cancelled = True
            _log.info("Pipeline run %s: cancel requested, stopping its tasks", run.group_id)
            run.stopping.set()


def _one_task(run: _Run, task: Task) -> str:
    """Run a task with its retries; returns its final status (recorded)."""
    name = task.name
    try:
        resolved: Task = type(task).model_validate(substitute(task.model_dump(by_alias=True), run.values))
    except FlowportError as exc:
        run.record(name, status="Failed", message=exc.message, finished_at=utcnow())
        return "Failed"
    runner = runner_for(task.type)
    attempt = 0
    while True:
        attempt += 1
        context = TaskContext(
            run_id=run.group_id,
            pipeline_id=run.pipeline_id,
            project_id=run.project_id,
            values=run.values,
            database_url=run.url,
            home=Path(run.task.home),
            base_dir=run.base_dir,
            file_roots=run.roots,
            stopping=run.stopping,
            deadline=time.monotonic() + task.timeout if task.timeout else None,
        )
        context.on_child = lambda child: run.record(name, child_group_id=child)
        run.record(name, status="InProgress", attempts=attempt, started_at=utcnow(), message=None)
        try:
            summary = runner(resolved, context)
        except TaskFailed as exc:
            message = exc.message
        except FlowportError as exc:
            message = context.mask(exc.message)
        except Exception as exc:
            message = context.mask(f"{type(exc).__name__}: {exc}")
            _log.debug(
                "Pipeline run %s, task %s:\n%s", run.group_id, name, context.mask(traceback.format_exc())
            )
        else:
            run.record(name, status="Complete", message=summary, log=context.output(), finished_at=utcnow())
            return "Complete"
        if run.stopping.is_set():
            status = "Canceled"
            message = f"Stopped: {message}"
        elif attempt <= task.retries:
            wait_s = task.retry_wait(attempt)
            context.log(f"try {attempt} failed: {message}; retrying in {wait_s:g}s")
            run.record(
                name, status="InProgress", message=f"try {attempt} failed: {message}", log=context.output()
            )
            if not run.stopping.wait(wait_s):
                continue
            status, message = "Canceled", f"Stopped while waiting to retry: {message}"
        else:
            status = "Failed"
            if attempt > 1:
                message = f"{message} (after {attempt} tries)"
        run.record(name, status=status, message=message, log=context.output(), finished_at=utcnow())
        _log.info("Pipeline run %s: task '%s' %s: %s", run.group_id, name, status, message)
        return status


def _drive(run: _Run) -> None:
    pipeline = run.pipeline
    tasks = {t.name: t for t in pipeline.tasks}
    dependents = pipeline.dependents()
    waiting = {t.name: len(set(t.after)) for t in pipeline.tasks}
    ready = deque(name for name in pipeline.order() if waiting[name] == 0)
    running: dict[Future[str], str] = {}
    with ThreadPoolExecutor(max_workers=pipeline.max_parallel, thread_name_prefix="flowport-task") as pool:
        while True:
            while ready and len(running) < pipeline.max_parallel and not run.stopping.is_set():
                name = ready.popleft()
                if run.status[name] != "Created":
                    continue
                if tasks[name].type == "empty":
                    # Nothing to run: done here, without a worker thread (as Airflow's EmptyOperator).
                    now = utcnow()
                    run.record(
                        name,
                        status="Complete",
                        attempts=1,
                        started_at=now,
                        finished_at=now,
                        message="nothing to do",
                    )
                    for child in dict.fromkeys(dependents[name]):
                        waiting[child] -= 1
                        if waiting[child] == 0:
                            ready.append(child)
                    continue
                running[pool.submit(_one_task, run, tasks[name])] = name
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                try:
                    status = future.result()
                except Exception as exc:  # a store error while recording
                    status = "Failed"
                    _log.error(
                        "Pipeline run %s: task '%s' could not be recorded: %s", run.group_id, name, exc
                    )
                    run.record(name, status="Failed", message=f"{type(exc).__name__}: {exc}")
                if status == "Complete":
                    for child in dict.fromkeys(dependents[name]):
                        waiting[child] -= 1
                        if waiting[child] == 0:
                            ready.append(child)
                elif status == "Failed":
                    run.failed.append(name)
                    run.skip(sorted(pipeline.downstream(name)), f"Skipped: upstream task '{name}' failed")
                    if not pipeline.continue_on_failure and not run.stopping.is_set():
                        _log.info(
                            "Pipeline run %s: task '%s' failed, stopping (fail fast)", run.group_id, name
                        )
                        run.stopping.set()
        left = [n for n, s in run.status.items() if s == "Created"]
        if run.cancelled:
            run.skip(left, "Skipped: the run was canceled")
        elif run.failed:
            run.skip(left, f"Skipped: task '{run.failed[0]}' failed and the pipeline stops on failure")


def execute_pipeline(task: JobTask) -> str:
    """Run a Pending pipeline run to its end, recording every task; returns the run's final status.

    Never raises for a failing task: the failure is the run's outcome.
    """
    now = utcnow()
    try:
        with transaction(task.database_url) as session:
            if not _jobs_repo.transition(
                session,
                task.job_group_id,
                from_statuses={"Pending"},
                to_status="InProgress",
                group_values={"started_at": now, **running_here()},
            ):
                status = _jobs_repo.get_group(session, task.job_group_id).status
                _log.info("Pipeline run %s is %s: not started", task.job_group_id, status)
                return status
            group = _jobs_repo.get_group(session, task.job_group_id)
            document = (group.result or {}).get("document")
            if document is None and group.pipeline_id is not None:
                document = _repo.get_by_id(session, group.pipeline_id).document
            project_id = _repo.get_by_id(session, group.pipeline_id).project_id if group.pipeline_id else 0
        pipeline = pipeline_from_dict(document, source=f"pipeline run {task.job_group_id}")
    except Exception as exc:
        message = exc.message if isinstance(exc, FlowportError) else f"{type(exc).__name__}: {exc}"
        _log.error("Pipeline run %s could not start: %s", task.job_group_id, message)
        _end(task, "Failed", message, None)
        return "Failed"
    run = _Run(task, group, pipeline, project_id)
    _log.info("Pipeline run %s: '%s', %s task(s)", run.group_id, pipeline.name, len(pipeline.tasks))
    done = threading.Event()
    helpers = [
        threading.Thread(target=_heartbeat, args=(run, done), name="flowport-pipeline-lease", daemon=True),
        threading.Thread(target=_flusher, args=(run, done), name="flowport-pipeline-records", daemon=True),
    ]
    for helper in helpers:
        helper.start()
    try:
        _drive(run)
    except Exception as exc:
        _log.error("Pipeline run %s failed: %s: %s", run.group_id, type(exc).__name__, exc)
        run.failed.append(f"(runner: {type(exc).__name__})")
    finally:
        done.set()
        for helper in helpers:
            helper.join(5.0)
    run.flush()  # every task's record is in the store before the run's status says it ended
    counts: dict[str, int] = {}
    for value in run.status.values():
        counts[value] = counts.get(value, 0) + 1
    summary = {"document": document, "tasks": counts}
    if run.cancelled:
        status, error = "Canceled", "Canceled while running"
    elif run.failed:
        status = "Failed"
        error = f"Task(s) failed: {', '.join(run.failed)}"
    else:
        status, error = "Complete", None
    _end(task, status, error, summary)
    _log.info("Pipeline run %s: %s (%s)", run.group_id, status, counts)
    return status


def _end(task: JobTask, status: str, error: str | None, result: dict[str, Any] | None) -> None:
    values: dict[str, Any] = {"error": error}
    if result is not None:
        values["result"] = result
    with transaction(task.database_url) as session:
        # Status, outbox event and the release of the run's task locks: one transaction.
        _jobs_repo.transition(
            session,
            task.job_group_id,
            from_statuses={"InProgress"} if status == "Complete" else _jobs_repo.ACTIVE_STATUSES,
            to_status=status,
            group_values=values,
        )
