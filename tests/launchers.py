"""Running jobs in tests with a chosen launcher (the services take none: the instance's settings choose)."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flowport.orchestrate import JobTask
from flowport.services import runs
from flowport.services.launcher import use_launcher
from flowport.store import jobs as jobs_repo
from flowport.store.database import transaction


@contextmanager
def launched_with(kind: str) -> Iterator[None]:
    """Jobs started inside go to a launcher of ``kind``; the settings choose again afterwards."""
    use_launcher(kind)
    try:
        yield
    finally:
        # Jobs still running (thread, process) go on; new ones follow the settings.
        use_launcher(None)


def run_inline(flow_id: int, **options: Any) -> dict[str, Any]:
    """Run a stored flow to its end in this thread and return its job group."""
    with launched_with("inline"):
        return runs.run_flow(flow_id, **options)


# -- runners for the launcher contract tests (module level: a process pool sends them by reference) --


def recording_runner(task: JobTask) -> str:
    """Notes that the job ran (a file named after it in the task's folder) after a short pause."""
    time.sleep(float(os.environ.get("FLOWPORT_TEST_RUNNER_SECONDS", "0")))
    (Path(task.base_dir) / f"ran-{task.job_group_id}").write_text(str(os.getpid()))
    return "Complete"


def dying_runner(task: JobTask) -> str:
    """Starts the job (InProgress, a heartbeat) and then its worker dies without recording an end.

    In a pool process the process itself exits; elsewhere the runner just stops.
    """
    with transaction(task.database_url) as session:
        jobs_repo.transition(session, task.job_group_id, from_statuses={"Pending"}, to_status="InProgress")
        jobs_repo.heartbeat(session, task.job_group_id)
    if multiprocessing.parent_process() is not None:
        os._exit(1)
    return "InProgress"


def completing_runner(task: JobTask) -> str:
    """Ends the job Complete at once without running its flow (scheduler tests: timing, not data)."""
    with transaction(task.database_url) as session:
        jobs_repo.transition(session, task.job_group_id, from_statuses={"Pending"}, to_status="InProgress")
        jobs_repo.transition(session, task.job_group_id, from_statuses={"InProgress"}, to_status="Complete")
    return "Complete"


def holding_runner(task: JobTask) -> str:
    """Leaves the job Pending (a busy worker pool): it stays active until the test ends it."""
    del task
    return "Pending"
