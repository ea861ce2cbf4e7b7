"""Jobs run in the caller's thread: :meth:`submit` returns when the job has ended (the CLI, tests)."""

from __future__ import annotations

from typing import ClassVar

from flowport.orchestrate.launcher import JobLauncher
from flowport.orchestrate.task import JobTask
from flowport.orchestrate.worker import work

__all__ = ["InlineLauncher"]


class InlineLauncher(JobLauncher):
    """Runs each job at once, in the thread that submits it."""

    kind: ClassVar[str] = "inline"

    def submit(self, task: JobTask) -> None:
        """Run the job now; returns when it has ended."""
        work(task, self.runner)
