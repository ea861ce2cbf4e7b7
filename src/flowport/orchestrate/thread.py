"""Jobs run in background threads of this process (small tools, tests, a server without a pool)."""

from __future__ import annotations

import threading
from typing import ClassVar

from flowport.orchestrate.launcher import JobLauncher, JobRunner, LostHandler
from flowport.orchestrate.task import JobTask
from flowport.orchestrate.worker import work

__all__ = ["ThreadLauncher"]


class ThreadLauncher(JobLauncher):
    """One daemon thread per job; :meth:`shutdown` can wait for them."""

    kind: ClassVar[str] = "thread"

    def __init__(self, runner: JobRunner, *, on_lost: LostHandler | None = None) -> None:
        super().__init__(runner, on_lost=on_lost)
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def submit(self, task: JobTask) -> None:
        """Start the job in a new thread and return."""
        thread = threading.Thread(
            target=self._run, args=(task,), name=f"flowport-job-{task.job_group_id}", daemon=True
        )
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _run(self, task: JobTask) -> None:
        try:
            work(task, self.runner)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def shutdown(self, *, wait: bool = True) -> None:
        """Wait for the running jobs' threads when ``wait``."""
        if not wait:
            return
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join()
