"""Jobs: real runs of stored flows in the local process pool (and the in-process launchers).

The process pool is shared by the tests of this module (a worker gets the
store's URL and home with each job, so it serves every test's instance)
and shut down at the end.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

import pytest
from tests.connections.live_servers import PLANTED, postgres_database
from tests.launchers import launched_with, run_inline

from flowport.connections.secrets import SECRET_KEY_ENV
from flowport.errors import Conflict, Forbidden, NotFound, ValidationFailed
from flowport.services import auth, connections, flow_records, flows, instance, jobs, runs, schedules
from flowport.services import launcher as launchers
from flowport.store import jobs as jobs_repo
from flowport.store.database import DATABASE_URL_ENV, dispose_engines, transaction
from flowport.store.tables import utcnow

TIMEOUT = 120.0


@pytest.fixture(scope="module", autouse=True)
def _pool() -> Iterator[None]:
    yield
    launchers.shutdown_launcher()


@pytest.fixture(autouse=True)
def _initialized(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        DATABASE_URL_ENV,
        flow_records.DATA_DIR_ENV,
        launchers.EXECUTOR_ENV,
        launchers.LAUNCHER_ENV,
        launchers.WORKERS_ENV,
        SECRET_KEY_ENV,
    ):
        monkeypatch.delenv(name, raising=False)
    instance.init_instance()


def example_flow() -> dict[str, Any]:
    """The shipped orders flow stored in the instance, its CSV in the data folder."""
    folder = resources.files("flowport") / "examples" / "orders"
    data = flow_records.data_dir()
    data.mkdir(parents=True, exist_ok=True)
    (data / "orders.csv").write_bytes((folder / "orders.csv").read_bytes())
    return flow_records.create_flow(json.loads((folder / "flow.json").read_text()))


def long_flow(rows: int = 400_000) -> dict[str, Any]:
    """A flow that takes several seconds: a big CSV in batches of 50 through a per-batch SQL query."""
    data = flow_records.data_dir()
    data.mkdir(parents=True, exist_ok=True)
    with (data / "big.csv").open("w") as file:
        file.write("id,name,total\n")
        file.writelines(f"{i},name{i},{i % 1000}.5\n" for i in range(rows))
    return flow_records.create_flow(
        {
            "name": "Long",
            "configuration": {"batch_size": 50},
            "stages": [
                {
                    "name": "Big_01",
                    "plugin": {"name": "csv_file_origin"},
                    "configuration": {"path": "big.csv"},
                },
                {
                    "name": "Sql_01",
                    "plugin": {"name": "sql"},
                    "configuration": {"query": "SELECT *, upper(name) AS loud FROM input", "per_batch": True},
                },
                {
                    "name": "Out_01",
                    "plugin": {"name": "csv_file_destination"},
                    "configuration": {"path": "out/big.csv"},
                },
            ],
            "edges": [{"from": "Big_01", "to": "Sql_01"}, {"from": "Sql_01", "to": "Out_01"}],
        }
    )


def wait_until(condition: Any, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def assert_complete_with_metrics(group: dict[str, Any]) -> None:
    assert group["status"] == "Complete", group["error"]
    assert group["startedAt"] and group["finishedAt"] and group["error"] is None
    job = group["jobs"]["data"][0]
    assert job["status"] == "Complete" and job["runId"]
    stages = job["metrics"]
    assert list(stages) == ["Orders_01", "Types_01", "Filter_01", "JSON_01", "Parquet_01"]
    assert stages["Orders_01"]["outputRecords"] == 199
    assert stages["JSON_01"]["inputRecords"] == stages["Filter_01"]["outputRecords"] > 0
    assert set(stages["Types_01"]) == {
        "inputRecords", "outputRecords", "errorRecords", "inputBatches", "outputBatches", "seconds",
    }  # fmt: skip
    assert group["result"]["status"] == "Complete" and group["result"]["stages"] == stages
    assert jobs.get_job_group_metrics(group["id"])["stages"] == stages
    written = flow_records.data_dir() / "out" / "orders.jsonl"
    assert len(written.read_text().splitlines()) == stages["JSON_01"]["outputRecords"]


# -- the process pool ------------------------------------------------------------------------


def test_a_file_flow_runs_in_the_process_pool_to_complete() -> None:
    editor = auth.create_user("eve", "Editor-passw0rd", "editor")
    flow = example_flow()
    started = runs.run_flow(flow["id"], user=editor)
    assert started["status"] in ("Pending", "InProgress", "Complete")
    assert started["flow"] == {"id": flow["id"]} and started["creator"] == {"id": editor.id}
    assert started["jobs"]["count"] == 1 and len(started["sessionId"]) == 36
    group = jobs.wait_for_job_group(started["id"], timeout=TIMEOUT)
    assert_complete_with_metrics(group)
    logs = jobs.get_job_group_logs(group["id"])
    assert "running flow 'Wrangle Orders'" in logs and "Complete in" in logs


def test_a_postgresql_store_is_opened_by_the_worker_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    with postgres_database("flowport_jobs") as name:
        monkeypatch.setenv(DATABASE_URL_ENV, f"postgresql://postgres@127.0.0.1:5432/{name}")
        try:
            instance.init_instance()
            flow = example_flow()
            started = runs.run_flow(flow["id"], overrides={"min_total": "20"})
            group = jobs.wait_for_job_group(started["id"], timeout=TIMEOUT)
            assert_complete_with_metrics(group)
            assert group["parameters"] == {"min_total": "20"}
        finally:
            dispose_engines()


def test_a_failing_flow_ends_failed_with_the_error() -> None:
    flow = flow_records.create_flow(
        {
            "name": "Missing input",
            "stages": [
                {
                    "name": "In_01",
                    "plugin": {"name": "csv_file_origin"},
                    "configuration": {"path": "absent.csv"},
                },
                {"name": "Trash_01", "plugin": {"name": "trash"}},
            ],
            "edges": [{"from": "In_01", "to": "Trash_01"}],
        }
    )
    group = jobs.wait_for_job_group(runs.run_flow(flow["id"])["id"], timeout=TIMEOUT)
    assert group["status"] == "Failed"
    assert "absent.csv" in group["error"]
    assert group["result"]["status"] == "Failed" and "absent.csv" in group["result"]["error"]["message"]
    job = group["jobs"]["data"][0]
    assert job["status"] == "Failed" and job["error"] == group["error"] and job["finishedAt"]
    assert "Failed" in jobs.get_job_group_logs(group["id"])


def test_cancel_a_running_job_and_a_pending_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # One worker: the second job waits in the queue while the first runs.
    launchers.shutdown_launcher()
    monkeypatch.setenv(launchers.WORKERS_ENV, "1")
    try:
        long = long_flow()
        running = runs.run_flow(long["id"])
        queued = runs.run_flow(example_flow()["id"])
        assert queued["status"] == "Pending"

        def reading() -> bool:
            stages = jobs.get_job_group_metrics(running["id"])["stages"]
            return bool(stages) and stages["Big_01"]["outputRecords"] > 0

        wait_until(reading)
        assert jobs.get_job_group(running["id"])["status"] == "InProgress"

        cancelled_early = jobs.cancel_job_group(queued["id"])
        assert cancelled_early["status"] == "Canceled" and cancelled_early["startedAt"] is None
        assert cancelled_early["jobs"]["data"][0]["status"] == "Canceled"

        requested = jobs.cancel_job_group(running["id"])
        assert requested["cancelRequested"] and requested["status"] in ("InProgress", "Canceled")
        group = jobs.wait_for_job_group(running["id"], timeout=30)
        assert group["status"] == "Canceled" and group["error"] == "Canceled while running"
        read = group["jobs"]["data"][0]["metrics"]["Big_01"]["outputRecords"]
        assert 0 < read < 400_000
        assert not (flow_records.data_dir() / "out" / "big.csv").exists()  # the destination was aborted
        assert "cancel requested" in jobs.get_job_group_logs(running["id"])

        # The worker, free again, leaves the cancelled job alone.
        time.sleep(1.0)
        again = jobs.get_job_group(queued["id"], embed_jobs=True)
        assert again["status"] == "Canceled" and again["jobs"]["data"][0]["startedAt"] is None
        assert jobs.cancel_job_group(queued["id"])["status"] == "Canceled"  # idempotent
    finally:
        launchers.shutdown_launcher()


def test_bad_worker_count_fails_the_job_it_could_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    launchers.shutdown_launcher()
    monkeypatch.setenv(launchers.WORKERS_ENV, "none")
    flow = example_flow()
    with pytest.raises(ValidationFailed, match="FLOWPORT_WORKERS"):
        runs.run_flow(flow["id"])
    (group,) = jobs.list_job_groups()["data"]
    assert group["status"] == "Failed" and "FLOWPORT_WORKERS" in group["error"]


# -- in-process launchers ------------------------------------------------------------------


def test_inline_runs_before_returning_and_thread_in_the_background(monkeypatch: pytest.MonkeyPatch) -> None:
    flow = example_flow()
    inline = run_inline(flow["id"])
    assert_complete_with_metrics(inline)
    assert "Complete in" in jobs.get_job_group_logs(inline["id"])
    monkeypatch.setenv(launchers.LAUNCHER_ENV, "thread")
    assert launchers.configured_kind() == "thread" and launchers.launcher().kind == "thread"
    background = runs.run_flow(flow["id"])
    assert_complete_with_metrics(jobs.wait_for_job_group(background["id"], timeout=TIMEOUT))
    monkeypatch.setenv(launchers.LAUNCHER_ENV, "kubernetes")
    with pytest.raises(ValidationFailed, match="FLOWPORT_LAUNCHER"):
        launchers.configured_kind()
    # Celery needs a broker; the message says which setting named it and what to set.
    monkeypatch.setenv(launchers.LAUNCHER_ENV, "celery")
    with pytest.raises(
        ValidationFailed, match=r"FLOWPORT_LAUNCHER names the launcher 'celery'.*FLOWPORT_BROKER_URL"
    ):
        launchers.configured_kind()
    # The setting's earlier name is still read.
    monkeypatch.delenv(launchers.LAUNCHER_ENV)
    monkeypatch.setenv(launchers.EXECUTOR_ENV, "inline")
    assert launchers.configured_kind() == "inline"


def test_cancel_a_thread_job_while_it_runs() -> None:
    long = long_flow(rows=200_000)
    with launched_with("thread"):
        running = runs.run_flow(long["id"])
    wait_until(lambda: jobs.get_job_group(running["id"])["status"] == "InProgress")
    jobs.cancel_job_group(running["id"])
    assert jobs.wait_for_job_group(running["id"], timeout=30)["status"] == "Canceled"


def test_an_invalid_flow_is_refused_before_any_job_exists() -> None:
    broken = flow_records.create_flow(
        {"name": "Broken", "stages": [{"name": "T", "plugin": {"name": "trash"}}]}
    )
    with pytest.raises(flows.FlowInvalid) as caught:
        run_inline(broken["id"])
    assert caught.value.details["issues"][0]["code"] == "FIRST_STAGE_NOT_ORIGIN"
    assert jobs.list_job_groups()["count"] == 0
    with pytest.raises(NotFound):
        run_inline(404)
    with pytest.raises(ValidationFailed, match="parameter name"):
        run_inline(broken["id"], overrides={"not valid": "1"})


def test_roles_lists_and_conflicts() -> None:
    viewer = auth.create_user("vic", "Viewer-passw0rd", "viewer")
    flow = example_flow()
    with pytest.raises(Forbidden):
        run_inline(flow["id"], user=viewer)
    first = run_inline(flow["id"])
    second = run_inline(flow["id"], overrides={"min_total": 1000})
    assert second["parameters"] == {"min_total": "1000"}
    assert second["result"]["stages"]["Filter_01"]["outputRecords"] == 0
    assert second["status"] == "Failed"  # nothing reached a destination: fail_on_no_output
    with pytest.raises(Forbidden):
        jobs.cancel_job_group(first["id"], user=viewer)
    with pytest.raises(Conflict, match="already ended"):
        jobs.cancel_job_group(first["id"])
    with pytest.raises(NotFound):
        jobs.cancel_job_group(404)

    listed = jobs.list_job_groups(flow_id=flow["id"])
    assert listed["count"] == 2 and [g["id"] for g in listed["data"]] == [second["id"], first["id"]]
    assert "jobs" not in listed["data"][0]
    assert jobs.list_job_groups(status="Failed")["count"] == 1
    assert jobs.list_job_groups(limit=1)["data"][0]["id"] == second["id"]
    with pytest.raises(ValidationFailed, match="Unknown job status"):
        jobs.list_job_groups(status="Done")
    job_list = jobs.list_jobs(first["id"])
    assert job_list["count"] == 1 and job_list["data"][0]["jobGroup"] == {"id": first["id"]}
    assert jobs.get_job(job_list["data"][0]["id"]) == job_list["data"][0]
    assert "jobs" not in jobs.get_job_group(first["id"])
    for call in (
        lambda: jobs.get_job_group(404),
        lambda: jobs.list_jobs(404),
        lambda: jobs.get_job(404),
        lambda: jobs.get_job_group_metrics(404),
        lambda: jobs.get_job_group_logs(404),
    ):
        with pytest.raises(NotFound):
            call()


def test_interrupted_job_groups_are_failed_at_start() -> None:
    flow = example_flow()
    with transaction(instance.store_url()) as s:
        ids = []
        for status in ("Pending", "InProgress"):
            group = jobs_repo.create_group(s, flow_id=flow["id"], status=status)
            jobs_repo.create_job(s, job_group_id=group.id, flow_id=flow["id"], status=status)
            ids.append(group.id)
    done = run_inline(flow["id"])
    assert jobs.fail_interrupted_job_groups() == 2
    for group_id in ids:
        group = jobs.get_job_group(group_id, embed_jobs=True)
        assert group["status"] == "Failed" and "stopped" in group["error"]
        assert group["jobs"]["data"][0]["status"] == "Failed"
    assert jobs.get_job_group(done["id"])["status"] == "Complete"


def test_wait_times_out_on_a_job_that_does_not_end() -> None:
    flow = example_flow()
    with transaction(instance.store_url()) as s:
        group_id = jobs_repo.create_group(s, flow_id=flow["id"], status="Pending").id
    with pytest.raises(TimeoutError, match="still Pending"):
        jobs.wait_for_job_group(group_id, timeout=0.2)


# -- secrets ------------------------------------------------------------------------------


class _EchoingApi(BaseHTTPRequestHandler):
    # A careless server that quotes the credentials it was sent in its error body.
    def do_GET(self) -> None:
        body = json.dumps({"error": f"bad credentials {self.headers.get('Authorization')}"}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def echoing_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_planted_credential_appears_in_no_job_result_or_log(echoing_api: str) -> None:
    connections.add_connection(
        {
            "name": "Source API",
            "vendor": "http",
            "params": {"baseUrl": echoing_api},
            "credentialType": "bearer",
            "credentials": [{"token": PLANTED}],
        }
    )
    flow = flow_records.create_flow(
        {
            "name": "From the API",
            "stages": [
                {
                    "name": "Api_01",
                    "plugin": {"name": "http_api_origin"},
                    "configuration": {"connection": "Source API", "url": "items", "max_retries": 0},
                },
                {"name": "Trash_01", "plugin": {"name": "trash"}},
            ],
            "edges": [{"from": "Api_01", "to": "Trash_01"}],
        }
    )
    group = jobs.wait_for_job_group(runs.run_flow(flow["id"])["id"], timeout=TIMEOUT)
    assert group["status"] == "Failed" and "400" in group["error"]
    everything = json.dumps(
        [group, jobs.list_jobs(group["id"]), jobs.get_job_group_metrics(group["id"])]
    ) + jobs.get_job_group_logs(group["id"])
    assert PLANTED not in everything


# -- the state machine and its outbox --------------------------------------------------------


def test_every_status_change_of_a_run_is_in_the_outbox() -> None:
    flow = example_flow()
    group = run_inline(flow["id"])
    assert group["status"] == "Complete" and group["trigger"] == "manual" and group["attempt"] == 1
    assert group["heartbeatAt"] is not None or group["finishedAt"] is not None
    with instance.transaction() as session:
        moves = [(e.from_status, e.to_status) for e in jobs_repo.events_of(session, group["id"])]
        row = jobs_repo.get_group(session, group["id"])
        assert row.started_at is not None and row.finished_at is not None
    assert moves == [("Created", "Pending"), ("Pending", "InProgress"), ("InProgress", "Complete")]


def test_a_job_whose_worker_stopped_is_failed_by_lease_and_a_live_one_is_not() -> None:
    flow = example_flow()
    old = utcnow() - timedelta(minutes=5)
    with instance.transaction() as session:
        abandoned = jobs_repo.create_group(session, flow_id=flow["id"])
        alive = jobs_repo.create_group(session, flow_id=flow["id"])
        for group in (abandoned, alive):
            jobs_repo.transition(session, group.id, from_statuses={"Created"}, to_status="Pending")
            jobs_repo.transition(session, group.id, from_statuses={"Pending"}, to_status="InProgress")
        jobs_repo.heartbeat(session, abandoned.id, old)
        jobs_repo.heartbeat(session, alive.id)
        abandoned_id, alive_id = abandoned.id, alive.id
    assert jobs.fail_stale_job_groups(lease_seconds=60) == 1
    failed = jobs.get_job_group(abandoned_id)
    assert failed["status"] == "Failed" and "no heartbeat for 60s" in failed["error"]
    assert jobs.get_job_group(alive_id)["status"] == "InProgress"
    with instance.transaction() as session:
        assert jobs_repo.events_of(session, abandoned_id)[-1].to_status == "Failed"


def test_one_run_per_schedule_and_logical_date() -> None:
    flow = example_flow()
    schedule = schedules.create_schedule({"name": "daily", "flow": {"id": flow["id"]}, "cron": "@daily"})
    day = datetime(2026, 12, 1, tzinfo=UTC)
    with instance.transaction() as session:
        jobs_repo.create_group(
            session, flow_id=flow["id"], trigger="schedule", schedule_id=schedule["id"], logical_date=day
        )
    with pytest.raises(Conflict, match="already has a run"), instance.transaction() as session:
        jobs_repo.create_group(
            session, flow_id=flow["id"], trigger="schedule", schedule_id=schedule["id"], logical_date=day
        )
    with instance.transaction() as session:  # a backfill's reprocessing is the next attempt
        jobs_repo.create_group(
            session,
            flow_id=flow["id"],
            trigger="backfill",
            schedule_id=schedule["id"],
            logical_date=day,
            attempt=2,
        )
    with pytest.raises(ValidationFailed, match="Unknown trigger"), instance.transaction() as session:
        jobs_repo.create_group(session, flow_id=flow["id"], trigger="cron")
