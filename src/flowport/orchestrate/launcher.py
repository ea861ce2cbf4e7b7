"""The one interface every way of running jobs implements, and the registry that picks one.

A launcher is given a *runner* (the service-layer function that runs one
job and records everything about it in the store) and hands it
:class:`~flowport.orchestrate.task.JobTask` objects. It knows nothing of
flows or of the store: a job's status moves only through the store's state
machine, which the runner and the services drive. What a launcher adds is
*where* the job runs, and noticing when the place it runs in disappears
(the ``on_lost`` handler), besides the heartbeat lease the services check.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from flowport.errors import LaunchFailed
from flowport.orchestrate.task import JobTask

__all__ = ["JobLauncher", "JobRunner", "LaunchFailed", "LostHandler"]

#: Runs one job to its end, recording it in the store; returns the final status.
#: Never raises for a failing flow.
JobRunner = Callable[[JobTask], str]
#: Called with a task and a message when the place the job ran in vanished before the runner recorded an end.
LostHandler = Callable[[JobTask, str], None]


class JobLauncher(ABC):
    """Where jobs run. Implementations: one file each in :mod:`flowport.orchestrate`.

    Args:
        runner: the function that runs a job; for a process launcher it must
            be a module-level function (it is sent by reference).
        on_lost: told when a job's worker vanished without recording an end.
    """

    #: The name settings use for this launcher (``FLOWPORT_LAUNCHER``).
    kind: ClassVar[str]

    def __init__(self, runner: JobRunner, *, on_lost: LostHandler | None = None) -> None:
        self.runner = runner
        self.on_lost = on_lost

    @abstractmethod
    def submit(self, task: JobTask) -> None:
        """Hand the job over; returns at once (inline: when the job has ended).

        Raises:
            LaunchFailed: no worker could take it.
        """

    def cancel(self, job_group_id: int) -> bool:
        """Withdraw a job that no worker has started; True when it was withdrawn.

        A running job is cancelled through the store (its worker polls the
        cancel flag), not here: this only stops queued work from starting.
        """
        del job_group_id
        return False

    def healthy(self) -> bool:
        """Whether the launcher can take jobs now."""
        return True

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop taking jobs; ``wait`` for the running ones. Queued ones stay Pending in the store."""
        del wait

    def _lost(self, task: JobTask, message: str) -> None:
        if self.on_lost is not None:
            self.on_lost(task, message)
