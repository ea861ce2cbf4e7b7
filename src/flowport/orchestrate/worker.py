"""The worker entry point: what runs in the place a job runs (a thread, a pool process, later a Celery task).

A worker gets a :class:`~flowport.orchestrate.task.JobTask` — the job
group's id and where its instance lives — and the runner the services
provide; the runner reads everything else from the store and records the
outcome there. A worker process serves one instance: it is configured once
when it starts (:func:`start_process`), never per job.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from flowport.orchestrate.launcher import JobRunner
from flowport.orchestrate.task import JobTask

__all__ = ["start_process", "work"]

_log = logging.getLogger(__name__)


def work(task: JobTask, runner: JobRunner) -> str:
    """Run one job with ``runner`` here and now; returns its final status.

    A runner records every outcome of a job itself and does not raise for a
    failing flow; an exception out of it means the job could not be
    recorded, and it propagates to the launcher, which reports the job lost.
    """
    _log.debug("Job group %s: worker %s starts attempt %s", task.job_group_id, os.getpid(), task.attempt)
    status = runner(task)
    _log.debug("Job group %s: worker %s ends with %s", task.job_group_id, os.getpid(), status)
    return status


def start_process(environment: Mapping[str, str]) -> None:
    """Configure a fresh worker process for the instance it serves (a pool's initializer).

    ``environment`` names the instance (``FLOWPORT_HOME``, the store URL);
    it is applied once, before the process takes its first job.
    """
    os.environ.update(environment)
