"""The contract every JobLauncher keeps: submit runs the job once, cancel withdraws only queued
work, a job whose worker dies is failed (by the launcher noticing, or by the heartbeat lease)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from tests.launchers import dying_runner, recording_runner

from flowport.errors import ValidationFailed
from flowport.orchestrate import LAUNCHER_KINDS, JobLauncher, JobTask, create_launcher
from flowport.orchestrate.loop import Loop
from flowport.services import flow_records, instance, jobs
from flowport.services.job_runner import fail_lost_job
from flowport.services.settings import settings
from flowport.store import jobs as jobs_repo
from flowport.store.database import DATABASE_URL_ENV

Factory = Callable[..., JobLauncher]


@pytest.fixture(autouse=True)
def _instance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.delenv("FLOWPORT_DATA_DIR", raising=False)
    instance.init_instance()


# The celery launcher's workers are separate `flowport worker` processes with the services' runner:
# its contract is tested against real brokers in test_celery_workers.py.
@pytest.fixture(params=[kind for kind in LAUNCHER_KINDS if kind != "celery"])
def make(request: pytest.FixtureRequest) -> Iterator[Factory]:
    """Builds launchers of one kind (every kind in turn) for this instance; shuts them down after."""
    made: list[JobLauncher] = []

    def factory(runner: Callable[[JobTask], str], **options: Any) -> JobLauncher:
        launcher = create_launcher(
            str(request.param),
            runner,
            on_lost=fail_lost_job,
            worker_environment={"FLOWPORT_HOME": str(settings().home)},
            **options,
        )
        made.append(launcher)
        return launcher

    yield factory
    for launcher in made:
        launcher.shutdown(wait=True)


def _pending_job() -> JobTask:
    folder = resources.files("flowport") / "examples" / "orders"
    document = json.loads((folder / "flow.json").read_text())
    document["name"] = f"Orders {uuid.uuid4().hex[:8]}"
    document.pop("uuid", None)
    flow = flow_records.create_flow(document)
    with instance.transaction() as session:
        group = jobs_repo.create_group(session, flow_id=flow["id"], status="Pending")
        jobs_repo.create_job(session, job_group_id=group.id, flow_id=flow["id"], status="Pending")
        group_id = group.id
    base = flow_records.data_dir()
    base.mkdir(parents=True, exist_ok=True)
    return JobTask(group_id, instance.store_url(), str(settings().home), str(base))


def _ran(task: JobTask) -> Path:
    return Path(task.base_dir) / f"ran-{task.job_group_id}"


def _eventually(condition: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_submit_runs_each_job_once(make: Factory) -> None:
    launcher = make(recording_runner)
    tasks = [_pending_job() for _ in range(3)]
    assert launcher.healthy()
    for task in tasks:
        launcher.submit(task)
    for task in tasks:
        _eventually(_ran(task).exists)
    launcher.shutdown(wait=True)
    assert all(_ran(task).exists() for task in tasks)
    assert launcher.kind in LAUNCHER_KINDS


def test_cancel_withdraws_only_work_no_worker_has_started(
    make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWPORT_TEST_RUNNER_SECONDS", "1.5")
    launcher = make(recording_runner, workers=1)
    first, second = _pending_job(), _pending_job()
    launcher.submit(first)
    launcher.submit(second)
    withdrawn = launcher.cancel(second.job_group_id)
    assert launcher.cancel(first.job_group_id) is False  # started (or ended): never withdrawn
    launcher.shutdown(wait=True)
    time.sleep(0.2)
    assert _ran(first).exists()
    # Withdrawn means it never ran; not withdrawn means it ran to its end.
    assert _ran(second).exists() is not withdrawn
    if launcher.kind == "process":
        assert withdrawn  # one worker busy with the first: the second was still queued


def test_a_job_whose_worker_dies_is_failed(make: Factory) -> None:
    launcher = make(dying_runner)
    task = _pending_job()
    launcher.submit(task)
    _eventually(lambda: jobs.get_job_group(task.job_group_id)["status"] != "Pending")
    # The launcher may notice the death itself (a pool process exits); else the lease expires.
    sweep = Loop("lease", 0.1, lambda: jobs.fail_stale_job_groups(lease_seconds=0.3, only_running=True))
    sweep.start()
    try:
        group = _eventually(
            lambda: (g := jobs.get_job_group(task.job_group_id, embed_jobs=True))["status"] == "Failed" and g
        )
    finally:
        sweep.stop()
    assert "stopped" in group["error"]
    assert group["jobs"]["data"][0]["status"] == "Failed"
    events = [e["to"] for e in _events(task.job_group_id)]
    assert events[-2:] == ["InProgress", "Failed"]


def _events(job_group_id: int) -> list[dict[str, Any]]:
    with instance.transaction() as session:
        return [{"to": e.to_status} for e in jobs_repo.events_of(session, job_group_id)]


def test_an_unknown_kind_or_no_worker_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="Unknown job launcher 'kubernetes'"):
        create_launcher("kubernetes", recording_runner)
    with pytest.raises(ValidationFailed, match="needs a broker"):
        create_launcher("celery", recording_runner)
    with pytest.raises(ValidationFailed, match="at least 1 worker"):
        create_launcher("process", recording_runner, workers=0)
