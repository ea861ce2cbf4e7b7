"""Jobs run in a local pool of worker processes (``flowport server``'s default).

The pool starts ``workers`` processes with ``spawn`` (not ``fork``: the
parent has threads — the server, SQLAlchemy pools, DuckDB — that a forked
child would inherit half-locked), each configured for the instance once
(:func:`~flowport.orchestrate.worker.start_process`). Only the task
travels to a worker. A worker that dies (killed, out of memory) breaks the
pool: the jobs it held are reported lost and the next submit starts a new
pool.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from multiprocessing import get_context
from typing import ClassVar

from flowport.errors import ValidationFailed
from flowport.orchestrate.launcher import JobLauncher, JobRunner, LaunchFailed, LostHandler
from flowport.orchestrate.task import JobTask
from flowport.orchestrate.worker import start_process, work

__all__ = ["ProcessLauncher"]


class ProcessLauncher(JobLauncher):
    """A pool of ``workers`` local processes; jobs beyond that wait in the pool's queue (Pending)."""

    kind: ClassVar[str] = "process"

    def __init__(
        self,
        runner: JobRunner,
        *,
        on_lost: LostHandler | None = None,
        workers: int = 2,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(runner, on_lost=on_lost)
        if workers < 1:
            raise ValidationFailed(f"A process launcher needs at least 1 worker, not {workers}")
        self.workers = workers
        self._environment = dict(environment or {})
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._queued: dict[int, Future[str]] = {}

    def _get_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=get_context("spawn"),
                    initializer=start_process,
                    initargs=(self._environment,),
                )
            return self._pool

    def _drop_pool(self, pool: ProcessPoolExecutor | None = None) -> None:
        with self._lock:
            if pool is None or self._pool is pool:
                self._pool = None

    def submit(self, task: JobTask) -> None:
        """Queue the job for the pool; a broken pool is replaced once."""
        try:
            try:
                pool = self._get_pool()
                future = pool.submit(work, task, self.runner)
            except BrokenProcessPool:
                self._drop_pool()
                future = self._get_pool().submit(work, task, self.runner)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise LaunchFailed(
                f"Could not hand job group {task.job_group_id} to a worker process: {reason}"
            ) from exc
        with self._lock:
            self._queued[task.job_group_id] = future
        future.add_done_callback(partial(self._done, task))

    def _done(self, task: JobTask, future: Future[str]) -> None:
        with self._lock:
            if self._queued.get(task.job_group_id) is future:
                del self._queued[task.job_group_id]
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            return
        if isinstance(exc, BrokenProcessPool):
            self._drop_pool()
            self._lost(task, "The worker process running the job stopped unexpectedly")
        else:
            self._lost(task, f"The worker failed: {type(exc).__name__}: {exc}")

    def cancel(self, job_group_id: int) -> bool:
        """Withdraw the job from the pool's queue if no worker has taken it yet."""
        with self._lock:
            future = self._queued.get(job_group_id)
        return bool(future is not None and future.cancel())

    def healthy(self) -> bool:
        """False once a worker died and the pool has not been replaced yet."""
        with self._lock:
            pool = self._pool
        return pool is None or not getattr(pool, "_broken", False)

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the worker processes; queued jobs are withdrawn (they stay Pending in the store)."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._queued.clear()
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)
