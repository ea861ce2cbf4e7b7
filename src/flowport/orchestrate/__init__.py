"""The runtime machinery that runs jobs: launchers behind one interface and the worker entry point.

The services decide *what* runs and *when* (:mod:`flowport.services.runs`);
a :class:`JobLauncher` decides *where*: in the caller's thread
(:class:`InlineLauncher`), in a background thread (:class:`ThreadLauncher`),
in a local pool of processes (:class:`ProcessLauncher`), or on Celery
workers anywhere (:class:`CeleryLauncher`). Only a
:class:`JobTask` (a job group's id and where its instance lives) travels to
the place the job runs, where :func:`~flowport.orchestrate.worker.work`
hands it to the runner the services gave the launcher.
"""

from flowport.orchestrate.celery_launcher import CeleryLauncher
from flowport.orchestrate.inline import InlineLauncher
from flowport.orchestrate.launcher import JobLauncher, JobRunner, LaunchFailed, LostHandler
from flowport.orchestrate.process import ProcessLauncher
from flowport.orchestrate.registry import LAUNCHER_KINDS, LAUNCHERS, create_launcher
from flowport.orchestrate.task import JobTask
from flowport.orchestrate.thread import ThreadLauncher

__all__ = [
    "LAUNCHERS",
    "LAUNCHER_KINDS",
    "CeleryLauncher",
    "InlineLauncher",
    "JobLauncher",
    "JobRunner",
    "JobTask",
    "LaunchFailed",
    "LostHandler",
    "ProcessLauncher",
    "ThreadLauncher",
    "create_launcher",
]
