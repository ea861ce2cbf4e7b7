"""Streaming flows on the real Redis and PostgreSQL: micro-batches acknowledged only after the commit.

A streaming job runs in a separate process (the worker) that is SIGKILLed
mid-stream; a new job of the same flow picks up what the killed one had
read and not acknowledged. Into an upsert keyed on the message id every
event lands exactly once; into an append at least once, with at most one
micro-batch of duplicates.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from tests.conftest import require_service
from tests.connections.live_servers import PG_HOST, PG_PORT, postgres_database

from flowport.orchestrate import JobLauncher, JobTask
from flowport.services import connections, flow_records, instance, jobs, parameter_sets, runs
from flowport.services import launcher as launchers
from flowport.services.settings import settings
from flowport.store.database import DATABASE_URL_ENV

TIMEOUT = 90.0
EVENTS, BATCH = 3_000, 200
REDIS_DB = 14


class _Held(JobLauncher):
    """Keeps jobs Pending: the test runs each in a worker process it can kill."""

    kind = "held"

    def submit(self, task: JobTask) -> None:
        del task


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    require_service("Redis", "127.0.0.1", 6379)
    for name in (DATABASE_URL_ENV, "FLOWPORT_LAUNCHER", "FLOWPORT_BROKER_URL", "FLOWPORT_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    with postgres_database("flowport_stream") as name:
        dsn = {"host": PG_HOST, "port": PG_PORT, "user": "postgres", "dbname": name}
        with psycopg.connect(**dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE events (_message_id text PRIMARY KEY, n text)")
            conn.execute("CREATE TABLE appended (_message_id text, n text)")
        instance.init_instance()
        for ref, vendor, params in (
            ("queue", "redis", {"database": REDIS_DB}),
            ("warehouse", "postgresql", {}),
        ):
            connections.add_connection(
                {
                    "name": ref,
                    "vendor": vendor,
                    "host": "127.0.0.1",
                    "port": 6379 if vendor == "redis" else PG_PORT,
                    "params": params or {"database": name},
                    "credentials": [] if vendor == "redis" else [{"name": "username", "value": "postgres"}],
                }
            )
        launchers.use_launcher(_Held(lambda task: "Pending"))
        try:
            yield dsn
        finally:
            launchers.use_launcher(None)


def _redis() -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)


def _publish(stream: str, start: int, count: int) -> None:
    client = _redis()
    pipe = client.pipeline()
    for i in range(start, start + count):
        pipe.xadd(stream, {"n": str(i)})
    pipe.execute()
    client.close()


def _flow(stream: str, table: str, mode: str, **config: Any) -> dict[str, Any]:
    load: dict[str, Any] = {"connection": "warehouse", "table": table, "mode": mode}
    if mode == "upsert":
        load["keys"] = ["_message_id"]
    return flow_records.create_flow(
        {
            "name": f"Stream {uuid.uuid4().hex[:6]}",
            "type": "streaming",
            "configuration": {"batch_size": BATCH, **config},
            "stages": [
                {
                    "name": "Events_01",
                    "plugin": {"name": "redis_streams_origin"},
                    "configuration": {"connection": "queue", "stream": stream, "batch_wait": 0.2},
                },
                {"name": "Load_01", "plugin": {"name": "sql_table_destination"}, "configuration": load},
            ],
            "edges": [{"from": "Events_01", "to": "Load_01"}],
        }
    )


def _worker(group_id: int) -> subprocess.Popen[bytes]:
    code = (
        "from flowport.services.runs import job_task; "
        "from flowport.services.pipeline_runner import run_job_group; "
        f"run_job_group(job_task({group_id}))"
    )
    env = {**os.environ, "FLOWPORT_HOME": str(settings().home)}
    return subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)


def _count(dsn: dict[str, Any], table: str) -> tuple[int, int]:
    with psycopg.connect(**dsn) as conn:
        found = conn.execute(f"SELECT count(*), count(DISTINCT n) FROM {table}").fetchone()
    assert found is not None
    return int(found[0]), int(found[1])


def _wait(condition: Any, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def _pending(stream: str) -> int:
    client = _redis()
    try:
        return int(client.xpending(stream, "flowport")["pending"])
    finally:
        client.close()


@pytest.mark.parametrize("mode", ["upsert", "append"])
def test_a_sigkilled_stream_resumes_without_losing_an_event(sink: dict[str, Any], mode: str) -> None:
    stream = f"events-{uuid.uuid4().hex[:8]}"
    table = "events" if mode == "upsert" else "appended"
    _publish(stream, 0, EVENTS)
    flow = _flow(stream, table, mode)
    first = runs.run_flow(flow["id"])["id"]
    worker = _worker(first)
    try:
        _wait(lambda: _count(sink, table)[0] >= EVENTS // 3)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    loaded_before_restart = _count(sink, table)[0]
    assert loaded_before_restart < EVENTS  # killed mid-stream
    _publish(stream, EVENTS, EVENTS)  # more arrive while nothing runs
    second = runs.run_flow(flow["id"])["id"]
    worker = _worker(second)
    try:
        _wait(lambda: _count(sink, table)[1] == 2 * EVENTS and _pending(stream) == 0)
        assert jobs.stop_job_group(second)["id"] == second
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    rows, distinct = _count(sink, table)
    assert distinct == 2 * EVENTS
    if mode == "upsert":
        assert rows == 2 * EVENTS  # effectively once
    else:
        assert 2 * EVENTS <= rows <= 2 * EVENTS + BATCH  # at least once, at most one micro-batch twice
    done = jobs.get_job_group(second)
    assert done["status"] == "Complete" and done["error"] is None
    assert done["result"]["streaming"]["stopped"] is True
    assert done["result"]["streaming"]["records"] >= 2 * EVENTS - loaded_before_restart


def test_stop_drains_the_micro_batch_in_flight_and_checkpoints_it(sink: dict[str, Any]) -> None:
    stream = f"events-{uuid.uuid4().hex[:8]}"
    flow = _flow(stream, "events", "upsert")
    group = runs.run_flow(flow["id"])["id"]
    worker = _worker(group)
    try:
        _wait(lambda: jobs.get_job_group(group)["status"] == "InProgress")
        _publish(stream, 0, 500)
        _wait(lambda: _count(sink, "events")[0] > 0)
        jobs.stop_job_group(group)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    # Whatever was read was committed and acknowledged; what was not read waits in the stream.
    loaded = _count(sink, "events")[0]
    client = _redis()
    try:
        info = {g["name"].decode(): g for g in client.xinfo_groups(stream)}["flowport"]
        assert info["pending"] == 0
        assert loaded + int(info["lag"]) == 500
    finally:
        client.close()
    metrics = jobs.get_job_group_metrics(group)
    assert metrics["status"] == "Complete" and metrics["streaming"]["records"] == loaded
    assert metrics["streaming"]["lag"] == 500 - loaded  # what the last micro-batch left waiting
    assert metrics["stages"]["Load_01"]["inputRecords"] == loaded


def _worker_sessions(dsn: dict[str, Any]) -> set[int]:
    """Backends connected to the sink database, but this test's own (named ``flowport-tests``)."""
    with psycopg.connect(**dsn, application_name="flowport-tests") as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name <> 'flowport-tests'",
            [dsn["dbname"]],
        ).fetchall()
    return {pid for (pid,) in rows}


def test_a_stream_connects_to_its_database_once_and_disconnects_when_it_ends(sink: dict[str, Any]) -> None:
    # Every micro-batch is a run of the flow, and its destination would connect afresh each time.
    stream = f"events-{uuid.uuid4().hex[:8]}"
    flow = _flow(stream, "appended", "append")
    group = runs.run_flow(flow["id"])["id"]
    worker = _worker(group)
    seen: set[int] = set()
    try:
        _wait(lambda: jobs.get_job_group(group)["status"] == "InProgress")
        for round_ in range(3):
            _publish(stream, 100 * round_, 100)
            _wait(
                lambda r=round_: (
                    _count({**sink, "application_name": "flowport-tests"}, "appended")[0] >= 100 * (r + 1)
                )
            )
            seen |= _worker_sessions(sink)
        jobs.stop_job_group(group)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    metrics = jobs.get_job_group_metrics(group)
    assert metrics["streaming"]["batches"] >= 3 and metrics["streaming"]["records"] == 300
    assert len(seen) == 1, f"the micro-batches used {len(seen)} database sessions"
    assert _wait(lambda: not _worker_sessions(sink), timeout=10) is True


def test_a_failing_micro_batch_is_retried_with_backoff_or_fails_the_job(sink: dict[str, Any]) -> None:
    with psycopg.connect(**sink, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE gate")
        conn.execute(
            "CREATE FUNCTION gate_open() RETURNS trigger AS $$ BEGIN IF nextval('gate') <= 2 THEN "
            "RAISE EXCEPTION 'gate closed'; END IF; RETURN NULL; END $$ LANGUAGE plpgsql"
        )
        conn.execute(
            "CREATE TRIGGER gated AFTER INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION gate_open()"
        )
    stream = f"events-{uuid.uuid4().hex[:8]}"
    _publish(stream, 0, 100)
    flow = _flow(stream, "events", "upsert", retry_initial_wait=0.1, retry_max_wait=0.2)
    group = runs.run_flow(flow["id"])["id"]
    worker = _worker(group)
    try:
        _wait(lambda: _count(sink, "events")[0] == 100)
        jobs.stop_job_group(group)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    done = jobs.get_job_group(group)
    assert done["status"] == "Complete"
    assert (
        done["result"]["streaming"]["failures"] == 2
        and "gate closed" in done["result"]["streaming"]["lastError"]
    )
    assert "trying again in 0.1s" in jobs.get_job_group_logs(group)
    # Without retries the first failure ends the job, and what it read stays unacknowledged.
    with psycopg.connect(**sink, autocommit=True) as conn:
        conn.execute("ALTER SEQUENCE gate RESTART")
    _publish(stream, 100, 10)
    strict = _flow(stream, "events", "upsert", retry_pipeline_on_error=False)
    group = runs.run_flow(strict["id"])["id"]
    worker = _worker(group)
    assert worker.wait(60) == 0
    failed = jobs.get_job_group(group)
    assert failed["status"] == "Failed" and "gate closed" in failed["error"]
    assert _count(sink, "events")[0] == 100 and _pending(stream) == 10


def test_dev_raw_data_source_with_parameter_set_values_stops_after_its_first_batch(
    sink: dict[str, Any],
) -> None:
    parameter_sets.create_parameter_set(
        {
            "name": "my_streaming_params",
            "parameters": {"data_format": "JSON", "stop_after_first_batch": "true", "number_of_threads": "3"},
        }
    )
    flow = flow_records.create_flow(
        {
            "name": "Raw",
            "type": "streaming",
            "parameter_sets": ["my_streaming_params"],
            "stages": [
                {
                    "name": "Raw_01",
                    "plugin": {"name": "dev_raw_data_source"},
                    "configuration": {
                        "data_format": "${my_streaming_params__data_format}",
                        "raw_data": '{"_message_id": "a", "n": "1"}\n{"_message_id": "b", "n": "2"}',
                        "stop_after_first_batch": "${my_streaming_params__stop_after_first_batch}",
                        "number_of_threads": "${my_streaming_params__number_of_threads}",
                    },
                },
                {
                    "name": "Load_01",
                    "plugin": {"name": "sql_table_destination"},
                    "configuration": {"connection": "warehouse", "table": "appended", "mode": "append"},
                },
            ],
            "edges": [{"from": "Raw_01", "to": "Load_01"}],
        }
    )
    group = runs.run_flow(flow["id"])["id"]
    worker = _worker(group)
    assert worker.wait(60) == 0
    done = jobs.get_job_group(group)
    assert done["status"] == "Complete", done["error"]
    assert done["result"]["streaming"]["batches"] == 1 and done["result"]["streaming"]["stopped"] is False
    assert _count(sink, "appended") == (6, 2)  # three threads' copies of the two records, once


def test_preview_reads_the_next_entries_and_leaves_the_group_as_it_was(sink: dict[str, Any]) -> None:
    stream = f"events-{uuid.uuid4().hex[:8]}"
    _publish(stream, 0, 30)
    flow = _flow(stream, "events", "upsert")
    stages = {s["instanceName"]: s for s in flow_records.preview_flow(flow["id"], rows=10)}
    shown = stages["Events_01"]["output"]
    assert [r["n"] for r in shown] == [str(i) for i in range(10)]
    client = _redis()
    try:
        group = {g["name"].decode(): g for g in client.xinfo_groups(stream)}["flowport"]
        assert (group["pending"], group["lag"]) == (0, 30)
    finally:
        client.close()
    assert _count(sink, "events") == (0, 0)


def test_streaming_jobs_leave_the_local_pool_a_worker_for_batch_jobs(
    sink: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowport.errors import Conflict

    class HeldPool(_Held):
        kind = "process"

    monkeypatch.setenv("FLOWPORT_WORKERS", "3")
    launchers.use_launcher(HeldPool(lambda task: "Pending"))
    first, second, third = (_flow(f"s-{i}-{uuid.uuid4().hex[:6]}", "events", "upsert") for i in range(3))
    held = [runs.run_flow(first["id"])["id"], runs.run_flow(second["id"])["id"]]
    with pytest.raises(
        Conflict, match="2 streaming job\\(s\\) already hold 2 of the 3 local worker processes"
    ):
        runs.run_flow(third["id"])
    # A batch flow still runs; a stopped stream frees its worker.
    batch = flow_records.create_flow(
        {
            "name": "Batch",
            "stages": [
                {"name": "Raw_01", "plugin": {"name": "dev_raw_data_source"}, "configuration": {}},
                {"name": "Trash_01", "plugin": {"name": "trash"}},
            ],
            "edges": [{"from": "Raw_01", "to": "Trash_01"}],
        }
    )
    assert runs.run_flow(batch["id"])["status"] == "Pending"
    jobs.stop_job_group(held[0])  # not started yet: canceled at once
    assert runs.run_flow(third["id"])["status"] == "Pending"
    launchers.use_launcher("inline")
    with pytest.raises(Conflict, match="needs a background launcher"):
        runs.run_flow(first["id"])


def test_reset_offsets_replays_a_stopped_stream_and_is_refused_while_it_runs(sink: dict[str, Any]) -> None:
    from flowport.errors import Conflict

    stream = f"events-{uuid.uuid4().hex[:8]}"
    _publish(stream, 0, 50)
    flow = _flow(stream, "appended", "append")
    group = runs.run_flow(flow["id"])["id"]
    with pytest.raises(Conflict, match=f"Job group {group} of this flow is running or waiting"):
        flow_records.reset_flow_offsets(flow["id"], "earliest")
    worker = _worker(group)
    try:
        _wait(lambda: _count(sink, "appended")[0] == 50 and _pending(stream) == 0)
        jobs.stop_job_group(group)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    answer = flow_records.reset_flow_offsets(flow["id"], "earliest")
    assert answer == {"flow": {"id": flow["id"]}, "position": "earliest", "stages": ["Events_01"]}
    group = runs.run_flow(flow["id"])["id"]
    worker = _worker(group)
    try:
        _wait(lambda: _count(sink, "appended")[0] == 100 and _pending(stream) == 0)  # every event again
        jobs.stop_job_group(group)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    assert _count(sink, "appended") == (100, 50)
    client = _redis()
    try:
        flow_records.reset_flow_offsets(flow["id"], "earliest")
        flow_records.reset_flow_offsets(flow["id"], "latest")
        newest = client.xrevrange(stream, count=1)[0][0]
        group_info = {g["name"].decode(): g for g in client.xinfo_groups(stream)}["flowport"]
        assert group_info["last-delivered-id"] == newest  # only what arrives from now is read
    finally:
        client.close()
    from flowport.errors import StageError

    with pytest.raises(StageError, match="cannot move the group to 'nonsense'"):
        flow_records.reset_flow_offsets(flow["id"], "nonsense")
