"""Pipelines of tasks run for real: order, parallelism, failures, retries, timeouts, locks, secrets.

Shell tasks run real programs, SQL tasks real PostgreSQL, HTTP tasks a real
server on loopback, flow tasks the shipped example flow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.connections.live_servers import PG_HOST, PG_PORT, postgres_database
from tests.launchers import holding_runner, launched_with

from flowport.connections.secrets import SECRET_KEY_ENV
from flowport.errors import Forbidden, ValidationFailed
from flowport.model.pipeline import PipelineDocumentError
from flowport.orchestrate import create_launcher
from flowport.services import auth, connections, flow_records, instance, jobs, pipelines
from flowport.services import launcher as launchers
from flowport.services.pipelines import LocksHeld
from flowport.services.settings import settings
from flowport.store import jobs as jobs_repo
from flowport.store.database import DATABASE_URL_ENV, transaction

TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def _initialized(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (DATABASE_URL_ENV, flow_records.DATA_DIR_ENV, launchers.LAUNCHER_ENV, SECRET_KEY_ENV):
        monkeypatch.delenv(name, raising=False)
    instance.init_instance()
    flow_records.data_dir().mkdir(parents=True, exist_ok=True)
    with launched_with("inline"):
        yield


def shell(name: str, command: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "type": "shell", "command": command, **more}


def make(tasks: list[dict[str, Any]], name: str = "p", **more: Any) -> dict[str, Any]:
    return pipelines.create_pipeline({"name": name, "tasks": tasks, **more})


def run(pipeline: dict[str, Any], **options: Any) -> dict[str, Any]:
    started = pipelines.start_pipeline(pipeline["id"], **options)
    return wait_run(started["id"])


def wait_run(run_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        result = pipelines.get_run(run_id)
        if result["status"] in ("Complete", "Failed", "Canceled"):
            return result
        assert time.monotonic() < deadline, result
        time.sleep(0.05)


def tasks_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["task"]: t for t in result["tasks"]}


def read(path: str) -> str:
    return Path(path).read_text()


def data(name: str) -> str:
    return str(flow_records.data_dir() / name)


def test_tasks_run_in_dependency_order_and_independent_ones_in_parallel() -> None:
    # b and c both wait for a; each of b and c waits until the other has started: only parallel runs end.
    log = data("order.log")
    pipeline = make(
        [
            shell("a", f"echo a >> {log}"),
            shell(
                "b",
                f"touch {data('b.started')}; while [ ! -e {data('c.started')} ]; do sleep 0.02; done; "
                f"echo b >> {log}",
                after=["a"],
                timeout=20,
            ),
            shell(
                "c",
                f"touch {data('c.started')}; while [ ! -e {data('b.started')} ]; do sleep 0.02; done; "
                f"echo c >> {log}",
                after=["a"],
                timeout=20,
            ),
            shell("d", f"echo d >> {log}", after=["b", "c"]),
        ]
    )
    result = run(pipeline)
    assert result["status"] == "Complete", result
    lines = read(log).split()
    assert lines[0] == "a" and lines[-1] == "d" and sorted(lines[1:3]) == ["b", "c"]
    assert all(t["status"] == "Complete" and t["attempts"] == 1 for t in result["tasks"])
    # The run is a job group of its own: in the outbox, with its pipeline.
    group = jobs.get_job_group(result["id"])
    assert group["pipeline"] == {"id": pipeline["id"]} and group["status"] == "Complete"


def test_a_failure_skips_what_depends_on_it_and_fail_fast_stops_the_rest() -> None:
    pipeline = make(
        [
            shell("bad", "echo about to fail; exit 3"),
            shell("after_bad", f"touch {data('after_bad')}", after=["bad"]),
            shell("slow", "sleep 30", timeout=60),
        ]
    )
    began = time.monotonic()
    result = run(pipeline)
    tasks = tasks_of(result)
    assert result["status"] == "Failed" and "bad" in result["error"]
    assert tasks["bad"]["status"] == "Failed"
    assert "exited with status 3" in tasks["bad"]["message"] and "about to fail" in tasks["bad"]["message"]
    assert tasks["after_bad"]["status"] == "Skipped" and not os.path.exists(data("after_bad"))
    # Fail fast: the long task was stopped, not waited for.
    assert tasks["slow"]["status"] == "Canceled" and time.monotonic() - began < 20


def test_continue_on_failure_lets_independent_tasks_finish() -> None:
    pipeline = make(
        [
            shell("bad", "exit 1"),
            shell("skipped", "true", after=["bad"]),
            shell("other", f"sleep 0.3; touch {data('other')}"),
        ],
        continue_on_failure=True,
    )
    result = run(pipeline)
    tasks = tasks_of(result)
    assert result["status"] == "Failed"
    assert tasks["other"]["status"] == "Complete" and os.path.exists(data("other"))
    assert (
        tasks["skipped"]["status"] == "Skipped"
        and "upstream task 'bad' failed" in tasks["skipped"]["message"]
    )


def test_a_failing_try_is_retried_with_backoff_and_a_timeout_fails_it() -> None:
    counter = data("tries")
    flaky = shell(
        "flaky",
        f"echo x >> {counter}; [ $(wc -l < {counter}) -ge 3 ]",
        retries=3,
        retry_delay=0.1,
        retry_backoff=2,
    )
    slow = shell("slow", "sleep 30", timeout=0.5, retries=1, retry_delay=0)
    pipeline = make([flaky, slow], continue_on_failure=True)
    began = time.monotonic()
    result = run(pipeline)
    tasks = tasks_of(result)
    assert tasks["flaky"]["status"] == "Complete" and tasks["flaky"]["attempts"] == 3
    assert read(counter).count("x") == 3
    assert tasks["slow"]["status"] == "Failed" and tasks["slow"]["attempts"] == 2
    assert "timed out" in tasks["slow"]["message"] and "after 2 tries" in tasks["slow"]["message"]
    assert time.monotonic() - began < 15


def test_parameters_reach_tasks_and_unknown_overrides_are_refused() -> None:
    pipeline = make(
        [shell("echo", f"echo ${{greeting}}-${{target}} > {data('out.txt')}")],
        parameters={"greeting": "hello"},
    )
    assert run(pipeline)["status"] == "Complete"
    assert read(data("out.txt")).strip() == "hello-dev"
    assert run(pipeline, overrides={"greeting": "hi", "target": "prod"})["status"] == "Complete"
    assert read(data("out.txt")).strip() == "hi-prod"
    with pytest.raises(ValidationFailed, match="greting"):
        pipelines.start_pipeline(pipeline["id"], overrides={"greting": "typo"})


def test_shell_tasks_get_secrets_masked_and_never_the_servers_environment() -> None:
    connections.add_connection(
        {
            "name": "git",
            "vendor": "postgresql",
            "host": "127.0.0.1",
            "params": {"defaultDatabase": "postgres"},
            "credentials": [{"username": "bot", "password": "s3cr3t-token-value"}],
        }
    )
    pipeline = make(
        [
            shell(
                "env",
                'echo "token=$TOKEN store=${FLOWPORT_DATABASE_URL:-none} home=${FLOWPORT_HOME:-none}"; '
                f'printf %s "$TOKEN" > {data("token")}',
                secrets={"TOKEN": {"connection": "git"}},
            )
        ]
    )
    result = run(pipeline)
    (task,) = result["tasks"]
    assert result["status"] == "Complete"
    # The program got the value; the log shows it masked; the server's variables never reached it.
    assert read(data("token")) == "s3cr3t-token-value"
    assert "token=****" in task["log"] and "s3cr3t" not in json.dumps(result)
    assert "store=none home=none" in task["log"]


def test_a_shell_tasks_folder_must_be_inside_the_file_roots() -> None:
    pipeline = make([shell("escape", "true", cwd="/etc")])
    result = run(pipeline)
    (task,) = result["tasks"]
    assert result["status"] == "Failed" and task["status"] == "Failed"
    assert "/etc" in task["message"]


def test_a_flow_task_runs_the_flow_as_a_child_job() -> None:
    folder = resources.files("flowport") / "examples" / "orders"
    (flow_records.data_dir() / "orders.csv").write_bytes((folder / "orders.csv").read_bytes())
    flow = flow_records.create_flow(json.loads((folder / "flow.json").read_text()))
    pipeline = make(
        [{"name": "load", "type": "flow", "flow": flow["name"]}, shell("next", "true", after=["load"])]
    )
    result = run(pipeline)
    assert result["status"] == "Complete", result
    load = tasks_of(result)["load"]
    child = jobs.get_job_group(load["job"]["id"])
    assert child["status"] == "Complete" and child["trigger"] == "pipeline"
    assert child["parent"] == {"id": result["id"]} and child["flow"] == {"id": flow["id"]}


def test_a_sql_task_commits_all_its_statements_or_none(monkeypatch: pytest.MonkeyPatch) -> None:
    with postgres_database() as database:
        connections.add_connection(
            {
                "name": "wh",
                "vendor": "postgresql",
                "host": PG_HOST,
                "port": PG_PORT,
                "params": {"defaultDatabase": database},
                "credentials": [{"username": "postgres"}],
            }
        )
        good = make(
            [
                {
                    "name": "ddl",
                    "type": "sql",
                    "connection": "wh",
                    "statements": ["CREATE TABLE t (id int)", "INSERT INTO t VALUES (1), (2)"],
                }
            ],
            name="good",
        )
        assert run(good)["status"] == "Complete"
        bad = make(
            [
                {
                    "name": "half",
                    "type": "sql",
                    "connection": "wh",
                    "statements": ["INSERT INTO t VALUES (3)", "INSERT INTO missing VALUES (4)"],
                }
            ],
            name="bad",
        )
        result = run(bad)
        (task,) = result["tasks"]
        assert result["status"] == "Failed" and "statement 2 failed" in task["message"]
        assert "nothing was committed" in task["message"]
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname=database) as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)


@pytest.fixture
def http_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            status = 500 if self.path == "/broken" else 200
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"got " + body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_an_http_task_checks_the_answers_status(http_server: str) -> None:
    pipeline = make(
        [
            {
                "name": "ok",
                "type": "http",
                "method": "POST",
                "url": f"{http_server}/ok",
                "json": {"run": "${run_id}"},
            },
            {
                "name": "broken",
                "type": "http",
                "method": "POST",
                "url": f"{http_server}/broken",
                "after": ["ok"],
            },
        ]
    )
    result = run(pipeline)
    tasks = tasks_of(result)
    assert tasks["ok"]["status"] == "Complete" and f'"run":"{result["id"]}"' in tasks["ok"]["log"].replace(
        " ", ""
    )
    assert tasks["broken"]["status"] == "Failed" and "answered 500" in tasks["broken"]["message"]


def test_documents_are_validated_with_every_problem_named() -> None:
    with pytest.raises(PipelineDocumentError) as cycle:
        make([shell("a", "true", after=["b"]), shell("b", "true", after=["a"])])
    assert "cycle: a -> b -> a" in cycle.value.message
    with pytest.raises(PipelineDocumentError) as unknown:
        make([shell("a", "echo ${nope}", after=["ghost"])])
    assert "'ghost', which is not a task" in unknown.value.message and "${nope}" in unknown.value.message
    with pytest.raises(ValidationFailed) as missing:
        make(
            [
                {"name": "f", "type": "flow", "flow": "No Such Flow"},
                {"name": "s", "type": "sql", "connection": "nowhere", "statements": ["select 1"]},
            ]
        )
    assert "No flow named 'No Such Flow'" in missing.value.message and "'nowhere'" in missing.value.message


def test_an_editor_needs_execute_code_for_shell_tasks() -> None:
    auth.create_user("ed", "a-long-password-1", role="editor")
    editor = auth.authenticate_basic("ed", "a-long-password-1")
    with pytest.raises(Forbidden, match="execute-code"):
        pipelines.create_pipeline({"name": "p", "tasks": [shell("a", "id")]}, user=editor)
    # HTTP tasks need only the network, which editors have by default.
    created = pipelines.create_pipeline(
        {"name": "h", "tasks": [{"name": "a", "type": "http", "url": "http://127.0.0.1:9/"}]}, user=editor
    )
    assert created["name"] == "h"


def _hold_runs() -> Any:
    # A launcher whose worker never starts the run: it stays Pending, holding its locks.
    return create_launcher("inline", holding_runner)


def test_twenty_concurrent_triggers_let_exactly_one_run_hold_the_lock() -> None:
    pipeline = make([shell("t", "true", lock="shared-task")])
    launchers.use_launcher(_hold_runs())
    outcomes: list[Any] = []
    barrier = threading.Barrier(20)

    def trigger() -> None:
        barrier.wait()
        try:
            outcomes.append(pipelines.start_pipeline(pipeline["id"]))
        except Exception as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=trigger) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    started = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if isinstance(o, LocksHeld)]
    assert len(started) == 1 and len(refused) == 19, outcomes
    holder = started[0]["id"]
    assert (
        f"held by task 't' of pipeline run {holder}" in refused[0].message and "since" in refused[0].message
    )
    assert pipelines.list_locks()["data"] == [
        {
            "name": "shared-task",
            "task": "t",
            "pipeline": {"id": pipeline["id"]},
            "run": {"id": holder},
            "since": pipelines.list_locks()["data"][0]["since"],
        }
    ]
    # Only the one run was recorded; cancelling it releases the lock in the same move.
    assert pipelines.list_runs()["count"] == 1
    assert pipelines.cancel_run(holder)["status"] == "Canceled"
    assert pipelines.list_locks()["count"] == 0
    launchers.use_launcher("inline")
    assert run(pipeline)["status"] == "Complete"
    assert pipelines.list_locks()["count"] == 0


def test_a_run_that_never_started_has_its_locks_reclaimed_by_lease() -> None:
    pipeline = make([{"name": "f", "type": "http", "url": "http://127.0.0.1:9/", "lock": True}])
    launchers.use_launcher(_hold_runs())
    held = pipelines.start_pipeline(pipeline["id"])
    assert held["status"] == "Pending" and pipelines.list_locks()["count"] == 1
    with pytest.raises(LocksHeld):
        pipelines.start_pipeline(pipeline["id"])
    time.sleep(0.2)
    assert jobs.fail_stale_job_groups(lease_seconds=0.1) == 1
    assert pipelines.get_run(held["id"])["status"] == "Failed"
    assert pipelines.list_locks()["count"] == 0


def test_a_sigkilled_pipeline_worker_has_its_locks_reclaimed_and_its_program_stops() -> None:
    marker = data("started")
    pipeline = make([shell("long", f"touch {marker}; sleep 60", lock="db-refresh")])
    launchers.use_launcher(_hold_runs())
    run_id = pipelines.start_pipeline(pipeline["id"])["id"]
    # The run's worker: a separate process running the real pipeline runner, killed with SIGKILL mid-task.
    code = (
        "import sys; from flowport.services.runs import job_task; "
        "from flowport.services.pipeline_runner import run_job_group; "
        f"run_job_group(job_task({run_id}))"
    )
    env = {**os.environ, "FLOWPORT_HOME": str(settings().home)}
    worker = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(marker):
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert pipelines.get_run(run_id)["status"] == "InProgress"
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    assert pipelines.list_locks()["data"][0]["run"] == {"id": run_id}
    time.sleep(0.3)
    assert jobs.fail_stale_job_groups(lease_seconds=0.2, only_running=True) == 1
    assert pipelines.get_run(run_id)["status"] == "Failed"
    assert pipelines.list_locks()["count"] == 0
    with transaction() as session:
        events = [(e.from_status, e.to_status) for e in jobs_repo.events_of(session, run_id)]
    assert events[-1] == ("InProgress", "Failed")


def test_a_schedule_runs_a_pipeline_with_its_interval_and_waits_or_skips_on_held_locks() -> None:
    from datetime import UTC, datetime

    from flowport.services import schedules
    from flowport.services.scheduler import Scheduler

    out = data("ds.txt")
    pipeline = make([shell("stamp", f"echo ${{ds}} >> {out}", lock="stamp")], name="daily")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    waiting = schedules.create_schedule(
        {
            "name": "daily",
            "pipeline": {"id": pipeline["id"]},
            "cron": "@daily",
            "startDate": start.isoformat(),
        },
        now=datetime(2026, 11, 2, 0, 30, tzinfo=UTC),
    )
    assert waiting["pipeline"] == {"id": pipeline["id"]} and waiting["lockPolicy"] == "wait"
    now = [datetime(2026, 11, 2, 0, 30, tzinfo=UTC)]
    scheduler = Scheduler(clock=lambda: now[0])
    tick = scheduler.run_once()
    ((_, logical, run_id),) = tick.created
    assert logical == datetime(2026, 11, 1, tzinfo=UTC)
    result = wait_run(run_id)
    assert result["status"] == "Complete" and result["trigger"] == "schedule"
    assert result["parameters"]["ds"] == "2026-11-01" and read(out).split() == ["2026-11-01"]

    # Another run holds the lock: the waiting schedule keeps its date due, the skipping one records a skip.
    launchers.use_launcher(_hold_runs())
    holder = pipelines.start_pipeline(pipeline["id"])["id"]
    now[0] = datetime(2026, 11, 3, 0, 30, tzinfo=UTC)
    tick = scheduler.run_once()
    assert tick.created == [] and waiting["id"] in tick.waiting
    assert schedules.get_schedule(waiting["id"])["nextLogicalDate"] == "2026-11-02T00:00:00.000Z"
    schedules.update_schedule(waiting["id"], {"lockPolicy": "skip"})
    tick = scheduler.run_once()
    assert tick.refused and "skipped" in schedules.get_schedule(waiting["id"])["lastError"]
    skipped = pipelines.list_runs(pipeline=pipeline["id"], status="Canceled")["data"]
    assert [r["logicalDate"] for r in skipped] == ["2026-11-02T00:00:00.000Z"]
    assert pipelines.list_locks()["data"][0]["run"] == {"id": holder}


def test_an_editor_may_not_run_a_pipeline_whose_flow_needs_a_permission_it_lacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flowport.services.permissions import EDITOR_PERMISSIONS_ENV

    folder = resources.files("flowport") / "examples" / "orders"
    flow = flow_records.create_flow(json.loads((folder / "flow.json").read_text()))
    pipeline = make([{"name": "load", "type": "flow", "flow": flow["name"]}])
    auth.create_user("ed2", "a-long-password-2", role="editor")
    editor = auth.authenticate_basic("ed2", "a-long-password-2")
    # The operator takes file access away from editors after the pipeline was stored: the run is refused.
    monkeypatch.setenv(EDITOR_PERMISSIONS_ENV, "network")
    with pytest.raises(Forbidden, match="read-filesystem"):
        pipelines.start_pipeline(pipeline["id"], actor=editor)
    assert pipelines.list_runs()["count"] == 0
