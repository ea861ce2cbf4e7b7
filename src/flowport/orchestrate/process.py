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
from collections import deque
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
        #: Jobs waiting for a free worker (withdrawable), and how many are in the pool now.
        self._waiting: deque[JobTask] = deque()
        self._busy = 0
        self._stopped = False

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
        """Start the job on a free worker, or queue it here until one is free (a broken pool is replaced).

        At most ``workers`` jobs are in the pool at a time: the pool would otherwise mark queued jobs
        running as soon as it moves them to its call queue, and they could no longer be withdrawn.
        """
        with self._lock:
            if self._stopped:  # used again after a shutdown: a new pool, nothing in it
                self._stopped, self._busy = False, 0
            start = self._busy < self.workers
            if start:
                self._busy += 1
            else:
                self._waiting.append(task)
        if start:
            try:
                self._start(task)
            except Exception:
                with self._lock:
                    self._busy -= 1
                raise

    def _start(self, task: JobTask) -> None:
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
        future.add_done_callback(partial(self._done, task))

    def _done(self, task: JobTask, future: Future[str]) -> None:
        self._next()
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

    def _next(self) -> None:
        """A worker is free: start the oldest queued job on it."""
        with self._lock:
            following = self._waiting.popleft() if self._waiting and not self._stopped else None
            if following is None:
                self._busy = max(self._busy - 1, 0)
        if following is None:
            return
        try:
            self._start(following)
        except LaunchFailed as exc:
            self._lost(following, exc.message)
            self._next()

    def cancel(self, job_group_id: int) -> bool:
        """Withdraw the job if it is still queued here (no worker has taken it)."""
        with self._lock:
            for queued in self._waiting:
                if queued.job_group_id == job_group_id:
                    self._waiting.remove(queued)
                    return True
        return False

    def healthy(self) -> bool:
        """False once a worker died and the pool has not been replaced yet."""
        with self._lock:
            pool = self._pool
        return pool is None or not getattr(pool, "_broken", False)

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the worker processes; queued jobs are withdrawn (they stay Pending in the store)."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._waiting.clear()
            self._stopped = True
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)
