"""A job whose worker was lost: told from a live worker's job, retried or failed by its flow's policy.

These run the claim a redelivered task goes through and the lease sweep on
the embedded store, with real processes for the workers (a dead one is a
process that exited; a live one is this test process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from importlib import resources
from typing import Any

import pytest

from flowport.orchestrate import JobTask
from flowport.services import flow_records, instance, jobs, runs
from flowport.services import launcher as launchers
from flowport.services.settings import InvalidSettings, settings
from flowport.services.worker_loss import claim, recover_lost
from flowport.store import jobs as jobs_repo
from flowport.store.database import DATABASE_URL_ENV
from flowport.store.tables import utcnow

LEASE = 30.0


@pytest.fixture(autouse=True)
def _instance(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (DATABASE_URL_ENV, "FLOWPORT_LAUNCHER", "FLOWPORT_BROKER_URL", "FLOWPORT_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    instance.init_instance()


def _flow(retries: int) -> dict[str, Any]:
    folder = resources.files("flowport") / "examples" / "orders"
    document = json.loads((folder / "flow.json").read_text())
    document.pop("uuid", None)
    document["name"] = f"Orders retried {retries}"
    document["configuration"] = {**document.get("configuration", {}), "worker_lost_retries": retries}
    data = flow_records.data_dir()
    data.mkdir(parents=True, exist_ok=True)
    (data / "orders.csv").write_bytes((folder / "orders.csv").read_bytes())
    return flow_records.create_flow(document)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _running(flow_id: int, *, pid: int, heartbeat_age: float = 0.0) -> JobTask:
    """A job group InProgress on worker process ``pid`` of this host, as a worker leaves it."""
    import socket

    with instance.transaction() as session:
        group = jobs_repo.create_group(session, flow_id=flow_id)
        jobs_repo.create_job(session, job_group_id=group.id, flow_id=flow_id)
        jobs_repo.transition(session, group.id, from_statuses={"Created"}, to_status="Pending")
        jobs_repo.transition(
            session,
            group.id,
            from_statuses={"Pending"},
            to_status="InProgress",
            group_values={"worker": "w-test", "worker_host": socket.gethostname(), "worker_pid": pid},
        )
        jobs_repo.heartbeat(session, group.id, utcnow() - timedelta(seconds=heartbeat_age))
        group_id = group.id
    return runs.job_task(group_id)


def _row(group_id: int) -> Any:
    with instance.transaction() as session:
        row = jobs_repo.get_group(session, group_id)
        session.expunge(row)
        return row


def _moves(group_id: int) -> list[tuple[str, str]]:
    with instance.transaction() as session:
        return [(e.from_status, e.to_status) for e in jobs_repo.events_of(session, group_id)]


def test_a_delivery_of_a_job_a_live_worker_runs_changes_nothing() -> None:
    task = _running(_flow(1)["id"], pid=os.getpid())
    before = _row(task.job_group_id)
    assert claim(task, LEASE) is False
    after = _row(task.job_group_id)
    assert (after.status, after.tries, after.updated_at) == ("InProgress", 1, before.updated_at)
    assert _moves(task.job_group_id)[-1] == ("Pending", "InProgress")


def test_a_dead_worker_process_on_this_host_hands_the_job_back_for_its_next_try() -> None:
    task = _running(_flow(1)["id"], pid=_dead_pid())
    assert claim(task, LEASE) is True
    row = _row(task.job_group_id)
    assert (row.status, row.tries, row.worker, row.worker_pid) == ("Pending", 2, None, None)
    assert _moves(task.job_group_id)[-1] == ("InProgress", "Pending")
    # The next try runs to the end, recording itself as running here.
    launchers.use_launcher("inline")
    try:
        from flowport.services.pipeline_runner import run_job_group

        assert run_job_group(task) == "Complete"
    finally:
        launchers.use_launcher(None)
    done = _row(task.job_group_id)
    assert done.status == "Complete" and done.tries == 2 and done.worker_pid == os.getpid()


def test_without_retries_left_a_lost_worker_fails_the_job_with_why() -> None:
    flow = _flow(0)
    task = _running(flow["id"], pid=_dead_pid())
    assert claim(task, LEASE) is False
    row = _row(task.job_group_id)
    assert row.status == "Failed"
    assert "worker w-test stopped" in row.error and "worker_lost_retries" in row.error
    # A second try that was lost too uses up a policy of one retry.
    retried = _running(_flow(1)["id"], pid=_dead_pid())
    with instance.transaction() as session:
        session.get(type(row), retried.job_group_id).tries = 2
    assert claim(retried, LEASE) is False
    assert "all 2 tries were used" in _row(retried.job_group_id).error


def test_a_delivery_of_an_ended_job_changes_nothing() -> None:
    task = _running(_flow(1)["id"], pid=_dead_pid())
    with instance.transaction() as session:
        jobs_repo.transition(session, task.job_group_id, from_statuses={"InProgress"}, to_status="Complete")
    before = _row(task.job_group_id)
    moves = _moves(task.job_group_id)
    assert claim(task, LEASE) is False
    assert _row(task.job_group_id).updated_at == before.updated_at and _moves(task.job_group_id) == moves


def test_another_hosts_worker_is_alive_until_its_lease_expires() -> None:
    task = _running(_flow(1)["id"], pid=os.getpid())
    with instance.transaction() as session:
        jobs_repo.get_group(session, task.job_group_id).worker_host = "elsewhere.example"
    assert claim(task, LEASE) is False and _row(task.job_group_id).status == "InProgress"
    with instance.transaction() as session:
        jobs_repo.heartbeat(session, task.job_group_id, utcnow() - timedelta(seconds=LEASE + 5))
    assert claim(task, LEASE) is True and _row(task.job_group_id).tries == 2


def test_the_lease_sweep_retries_by_policy_and_resubmits(monkeypatch: pytest.MonkeyPatch) -> None:
    retried = _running(_flow(1)["id"], pid=os.getpid(), heartbeat_age=120)
    failed = _running(_flow(0)["id"], pid=os.getpid(), heartbeat_age=120)
    submitted: list[JobTask] = []

    class Recording(launchers.JobLauncher):
        kind = "recording"

        def submit(self, task: JobTask) -> None:
            submitted.append(task)

    launchers.use_launcher(Recording(lambda task: "Complete"))
    try:
        assert jobs.fail_stale_job_groups(lease_seconds=60, only_running=True) == 1
    finally:
        launchers.use_launcher(None)
    assert _row(failed.job_group_id).status == "Failed"
    assert (_row(retried.job_group_id).status, _row(retried.job_group_id).tries) == ("Pending", 2)
    assert [(t.job_group_id, t.attempt) for t in submitted] == [(retried.job_group_id, 2)]


def test_a_local_pool_that_lost_its_process_retries_through_the_launcher() -> None:
    task = _running(_flow(1)["id"], pid=_dead_pid())
    submitted: list[JobTask] = []

    class Recording(launchers.JobLauncher):
        kind = "recording"

        def submit(self, task: JobTask) -> None:
            submitted.append(task)

    launchers.use_launcher(Recording(lambda task: "Complete"))
    try:
        recover_lost(task, "The worker process running the job stopped unexpectedly")
    finally:
        launchers.use_launcher(None)
    assert _row(task.job_group_id).status == "Pending"
    assert [(t.job_group_id, t.attempt) for t in submitted] == [(task.job_group_id, 2)]


def test_a_broker_url_means_celery_and_its_password_is_never_repeated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOWPORT_BROKER_URL", "redis://:hunter2-planted@queue:6379/0")
    assert settings().launcher == "celery"
    monkeypatch.setenv("FLOWPORT_LAUNCHER", "process")  # named explicitly: it wins over the broker
    assert settings().launcher == "process"
    monkeypatch.setenv("FLOWPORT_BROKER_URL", "http://user:hunter2-planted@queue/")
    with pytest.raises(InvalidSettings) as raised:
        _ = settings().broker_url
    assert "hunter2-planted" not in str(raised.value) and "FLOWPORT_BROKER_URL" in str(raised.value)
