"""Scale-out on Celery: two real `flowport worker` processes on the real Redis and RabbitMQ.

Every test runs once per broker. The store is a PostgreSQL database the
workers share with this process (as machines would), the target another
one. Jobs go through the CeleryLauncher into the broker; the workers take
them. Worker deaths are real SIGKILLs, of a pool process (the worker's main
process hands the message back at once) or, on RabbitMQ, of the whole
worker (the broker redelivers when its connection drops).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from tests.conftest import require_service
from tests.connections.live_servers import PG_HOST, PG_PORT, postgres_database

from flowport.orchestrate import JobTask
from flowport.orchestrate.celery_launcher import QUEUES, CeleryLauncher
from flowport.services import connections, flow_records, instance, jobs, runs
from flowport.services import launcher as launchers
from flowport.services.pipeline_runner import run_job_group
from flowport.services.worker_loss import recover_lost
from flowport.services.workers import list_workers
from flowport.store import jobs as jobs_repo
from flowport.store.database import dispose_engines

TIMEOUT = 90.0
ROWS = 150_000
BROKERS = {
    "redis": ("Redis", 6379, "redis://127.0.0.1:6379/11"),
    "rabbitmq": ("RabbitMQ", 5672, "amqp://guest:guest@127.0.0.1:5672//"),
}


@dataclass
class Cluster:
    broker: str
    env: dict[str, str]
    target: dict[str, Any]
    logs: Path
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.workers[name] = subprocess.Popen(
            [sys.executable, "-m", "flowport.cli.main", "worker", "--name", name, "--concurrency", "1"],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: any(w["name"] == name and w["state"] == "running" for w in list_workers()["data"]))

    def stop(self) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.workers.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")


def wait_until(condition: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _purge(broker_url: str) -> None:
    from kombu import Connection

    with Connection(broker_url, connect_timeout=5) as connection:
        channel = connection.default_channel
        for queue in QUEUES.values():
            try:
                channel.queue_purge(queue)
            except Exception:
                channel = connection.channel()  # the queue does not exist yet (the broker closed the channel)


@pytest.fixture(scope="module", params=sorted(BROKERS))
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    what, port, broker_url = BROKERS[request.param]
    require_service(what, "127.0.0.1", port)
    home = tmp_path_factory.mktemp("celery-home")
    with postgres_database("flowport_celery") as store, postgres_database("flowport_target") as target:
        env = {
            "FLOWPORT_HOME": str(home),
            "FLOWPORT_DATABASE_URL": f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{store}",
            "FLOWPORT_BROKER_URL": broker_url,
            "FLOWPORT_SECRET_KEY": Fernet.generate_key().decode(),
            # One data folder (and file roots) for the workers and this process, as a shared mount.
            "FLOWPORT_DATA_DIR": str(home / "data"),
        }
        _purge(broker_url)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            instance.init_instance()
            connections.add_connection(
                {
                    "name": "warehouse",
                    "vendor": "postgresql",
                    "host": PG_HOST,
                    "port": PG_PORT,
                    "params": {"database": target},
                    "credentials": [{"name": "username", "value": "postgres"}],
                }
            )
            installed = launchers.use_launcher(
                CeleryLauncher(run_job_group, on_lost=recover_lost, broker_url=broker_url)
            )
            logs = tmp_path_factory.mktemp("worker-logs")
            running = Cluster(
                request.param,
                env,
                {"host": PG_HOST, "port": PG_PORT, "user": "postgres", "dbname": target},
                logs,
            )
            try:
                running.start("w1")
                running.start("w2")
                yield running
            finally:
                running.stop()
                launchers.use_launcher(None)
                assert installed is not None
                installed.shutdown()
                dispose_engines()


@pytest.fixture(autouse=True)
def _shared_store(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    # The conftest gives each test its own instance folder; the store, key and broker stay the cluster's.
    for key, value in cluster.env.items():
        if key != "FLOWPORT_HOME":
            monkeypatch.setenv(key, value)


def _orders_csv(rows: int, name: str = "orders.csv") -> Path:
    data = flow_records.data_dir()
    data.mkdir(parents=True, exist_ok=True)
    path = data / name
    with path.open("w") as file:
        file.write("id,customer,total\n")
        file.writelines(f"{i},customer {i % 977},{i % 1000}.25\n" for i in range(rows))
    return path


def _load_flow(
    name: str,
    retries: int,
    path: str = "orders.csv",
    table: str = "orders",
    mode: str = "replace",
    batch_size: int = 65536,
) -> dict[str, Any]:
    return flow_records.create_flow(
        {
            "name": name,
            "configuration": {"worker_lost_retries": retries, "batch_size": batch_size},
            "stages": [
                {"name": "Orders_01", "plugin": {"name": "csv_file_origin"}, "configuration": {"path": path}},
                {
                    "name": "Types_01",
                    "plugin": {"name": "field_mapper"},
                    "configuration": {
                        "fields": [
                            {"source": "id", "target": "id", "type": "integer"},
                            {"source": "customer", "target": "customer", "type": "string"},
                            {"source": "total", "target": "total", "type": "decimal(10,2)"},
                        ]
                    },
                },
                {
                    "name": "Load_01",
                    "plugin": {"name": "sql_table_destination"},
                    "configuration": {"connection": "warehouse", "table": table, "mode": mode},
                },
            ],
            "edges": [{"from": "Orders_01", "to": "Types_01"}, {"from": "Types_01", "to": "Load_01"}],
        }
    )


def _table(cluster: Cluster) -> tuple[int, str]:
    with psycopg.connect(**cluster.target) as conn:
        found = conn.execute(
            "SELECT count(*), coalesce(sum(id), 0), coalesce(sum(total), 0) FROM orders"
        ).fetchone()
    assert found is not None
    return int(found[0]), hashlib.sha256(repr(found).encode()).hexdigest()


def _work_tables(cluster: Cluster) -> list[str]:
    with psycopg.connect(**cluster.target) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE '%\\_\\_fp\\_%'").fetchall()
    return [r[0] for r in rows]


def _unmarked_work_tables(cluster: Cluster) -> list[str]:
    """Work tables other than a load's committed staging table (``<table>__fp_copy_<run>`` with
    Flowport's mark), which a load killed outright leaves for the next load to drop."""
    from flowport.stages.sql.vendors.postgres.load import COPY_TABLE_MARK

    with psycopg.connect(**cluster.target) as conn:
        rows = conn.execute(
            "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c "
            "WHERE c.relkind = 'r' AND c.relname LIKE '%\\_\\_fp\\_%'"
        ).fetchall()
    return [
        name for name, mark in rows if not (name.startswith("orders__fp_copy_") and mark == COPY_TABLE_MARK)
    ]


def _group_row(group_id: int) -> Any:
    with instance.transaction() as session:
        row = jobs_repo.get_group(session, group_id)
        session.expunge(row)
        return row


def _ended(group_id: int) -> Any:
    return wait_until(
        lambda: (row := _group_row(group_id)).status in ("Complete", "Failed", "Canceled") and row
    )


def test_jobs_spread_over_both_workers(cluster: Cluster) -> None:
    _orders_csv(ROWS)
    # Appends: six loads may run at once into one table (concurrent replaces of one table would race).
    with psycopg.connect(**cluster.target, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS spread")
        conn.execute("CREATE TABLE spread (id integer, customer text, total numeric(10,2))")
    flow = _load_flow("Spread", 0, table="spread", mode="append")
    started = [runs.run_flow(flow["id"])["id"] for _ in range(6)]
    ended = [_ended(group_id) for group_id in started]
    assert [row.status for row in ended] == ["Complete"] * 6, [row.error for row in ended]
    assert {row.worker for row in ended} == {"w1", "w2"}
    with psycopg.connect(**cluster.target) as conn:
        assert conn.execute("SELECT count(*) FROM spread").fetchone() == (6 * ROWS,)
    # Whatever worker ran it, the job's log is in the store.
    logs = [jobs.get_job_group_logs(g) for g in started]
    assert all(f"Load_01: {ROWS} records in" in log for log in logs)


def _pool_process(worker: subprocess.Popen[bytes]) -> int:
    import psutil

    children = psutil.Process(worker.pid).children()
    assert children, "the worker has no pool process"
    return int(children[0].pid)


def test_a_worker_sigkilled_during_a_replace_load_never_leaves_partial_data(cluster: Cluster) -> None:
    """Ten kills at random moments of a load: target unchanged or complete, the job retried or failed."""
    # Twice the rows of the other tests: the load must last long enough for most kills to land in it.
    rows = 2 * ROWS
    _orders_csv(rows)
    # Batches of 10,000: the load takes long enough for most kills to land while it runs.
    retried_flow = _load_flow("Retried", 1, batch_size=10_000)
    failing_flow = _load_flow("Not retried", 0, batch_size=10_000)
    before = runs.run_flow(retried_flow["id"])["id"]
    assert _ended(before).status == "Complete"
    complete = _table(cluster)
    assert complete[0] == rows
    pick = random.Random(20261204)
    killed_mid_run = 0
    for round_ in range(10):
        retries = round_ % 2 == 0
        # The target differs from a complete load before each round, so "unchanged" and "complete" differ.
        with psycopg.connect(**cluster.target, autocommit=True) as conn:
            conn.execute("DELETE FROM orders WHERE id >= 100")
        unchanged = _table(cluster)
        group_id = runs.run_flow((retried_flow if retries else failing_flow)["id"])["id"]
        wait_until(lambda g=group_id: _group_row(g).status != "Pending")
        time.sleep(pick.uniform(0.0, 0.5))
        row = _group_row(group_id)
        whole = cluster.broker == "rabbitmq" and round_ % 4 == 1
        if row.status == "InProgress":
            worker = cluster.workers[row.worker]
            if whole:  # the whole worker: its broker connection drops, the broker redelivers
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
            else:  # a pool process: the worker's main process hands the message back
                os.kill(row.worker_pid, signal.SIGKILL)
        ended = _ended(group_id)
        if whole and row.status == "InProgress":
            cluster.start(row.worker)
        target = _table(cluster)
        assert target in (unchanged, complete), f"round {round_}: partial target {target}"
        # The staging table is committed for a second COPY stream (copy_streams left empty): a load
        # killed outright may leave it, marked, and the next load of the table drops it.
        assert _unmarked_work_tables(cluster) == [], f"round {round_}: work tables left"
        if ended.tries > 1 or ended.status == "Failed":
            killed_mid_run += 1
        if ended.status == "Complete":
            assert target == complete
            assert ended.tries <= (2 if retries else 1)
        else:
            assert not retries, f"round {round_}: a retried flow failed: {ended.error}"
            # Unchanged, or complete when the kill came after the target's commit and before the job
            # recorded its end (the job cannot know the commit happened): never partial (asserted above).
            assert ended.status == "Failed" and "worker running the job stopped" in ended.error
        # Nothing stays InProgress, and the move back for a retry is in the job's history.
        if ended.tries > 1:
            with instance.transaction() as session:
                moves = [(e.from_status, e.to_status) for e in jobs_repo.events_of(session, group_id)]
            assert ("InProgress", "Pending") in moves and moves[-1] == ("InProgress", "Complete")
    assert killed_mid_run >= 5, f"only {killed_mid_run} of 10 kills landed while the job ran"
    # The next load drops what the killed ones left.
    after = runs.run_flow(failing_flow["id"])["id"]
    assert _ended(after).status == "Complete"
    assert _table(cluster) == complete
    assert _work_tables(cluster) == []


def test_a_redelivered_task_for_a_finished_job_changes_nothing(cluster: Cluster) -> None:
    _orders_csv(1_000)
    flow = _load_flow("Once", 0)
    group_id = runs.run_flow(flow["id"])["id"]
    done = _ended(group_id)
    assert done.status == "Complete"
    target = _table(cluster)
    with instance.transaction() as session:
        events = len(jobs_repo.events_of(session, group_id))
    launcher = launchers.launcher()
    before = {name: cluster.log(name).count("this delivery does nothing") for name in cluster.workers}
    launcher.submit(runs.job_task(group_id))  # the same job, delivered again
    wait_until(
        lambda: (
            sum(cluster.log(n).count("this delivery does nothing") for n in cluster.workers)
            > sum(before.values())
        )
    )
    again = _group_row(group_id)
    assert (again.status, again.tries, again.updated_at, again.result) == (
        done.status,
        done.tries,
        done.updated_at,
        done.result,
    )
    with instance.transaction() as session:
        assert len(jobs_repo.events_of(session, group_id)) == events
    assert _table(cluster) == target


def test_workers_are_listed_and_sigterm_lets_the_running_job_finish(cluster: Cluster) -> None:
    _orders_csv(ROWS)
    flow = _load_flow("Listed", 0)
    group_id = runs.run_flow(flow["id"])["id"]
    row = wait_until(lambda: (r := _group_row(group_id)).status == "InProgress" and r)
    listed = {w["name"]: w for w in list_workers()["data"]}
    assert set(listed) >= {"w1", "w2"}
    assert listed[row.worker]["queues"] == ["jobs", "pipelines", "partitions"]
    assert listed[row.worker]["state"] == "running" and listed[row.worker]["concurrency"] == 1
    assert group_id in listed[row.worker]["jobs"]
    # A graceful stop (SIGTERM to the worker, as kill, systemd or docker stop send it): the worker takes
    # nothing more, finishes the job and records that it stopped.
    worker = cluster.workers[row.worker]
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(60) == 0
    done = _group_row(group_id)
    assert (done.status, done.tries) == ("Complete", 1)
    stopped = {w["name"]: w for w in list_workers(include_stopped=True)["data"]}[row.worker]
    assert stopped["state"] == "stopped" and stopped["jobs"] == []
    assert row.worker not in {w["name"] for w in list_workers()["data"]}
    cluster.start(row.worker)


def test_a_job_task_carries_no_store_url_or_secret(cluster: Cluster) -> None:
    from flowport.orchestrate.celery_launcher import _message

    task = runs.job_task(1)
    assert isinstance(task, JobTask)
    sent = repr(_message(task))
    assert cluster.env["FLOWPORT_DATABASE_URL"] not in sent and "postgresql" not in sent
    assert cluster.env["FLOWPORT_SECRET_KEY"] not in sent


def test_a_partitioned_load_of_eight_files_retries_one_partition_alone(cluster: Cluster) -> None:
    """Eight files on both workers; the database refuses one file twice (a CHECK whose function raises
    while a sequence, which rollbacks do not undo, is below 3); the run ends complete, rows exact."""
    files, rows = 8, 3_000
    gated = 5 * rows + 11
    with psycopg.connect(**cluster.target, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS events")
        conn.execute("DROP SEQUENCE IF EXISTS gate")
        conn.execute("CREATE SEQUENCE gate")
        conn.execute(
            "CREATE OR REPLACE FUNCTION gate_open(id integer) RETURNS boolean AS $$ BEGIN "
            f"IF id = {gated} AND nextval('gate') <= 2 THEN RAISE EXCEPTION 'gate closed for row %', id; "
            "END IF; RETURN true; END $$ LANGUAGE plpgsql"
        )
        conn.execute("CREATE TABLE events (id integer PRIMARY KEY, customer text, total numeric(10,2))")
        conn.execute("ALTER TABLE events ADD CONSTRAINT gated CHECK (gate_open(id))")
    folder = flow_records.data_dir() / "events"
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        with (folder / f"part-{f}.csv").open("w") as file:
            file.write("id,customer,total\n")
            file.writelines(f"{i},customer {i % 97},{i % 1000}.25\n" for i in range(f * rows, (f + 1) * rows))
    flow = _load_flow("Partitioned", 0, path="events/*.csv")
    document = flow_records.get_flow_document(flow["id"]).model_dump(by_alias=True, mode="json")
    document["configuration"].update({"partitions": 4, "partition_retries": 2})
    document["stages"][2]["configuration"]["table"] = "events"
    flow_records.update_flow(flow["id"], document)
    group_id = runs.run_flow(flow["id"])["id"]
    ended = _ended(group_id)
    group = jobs.get_job_group(group_id)
    assert ended.status == "Complete", ended.error
    n = files * rows
    with psycopg.connect(**cluster.target) as conn:
        found = conn.execute("SELECT count(*), sum(id), count(DISTINCT id) FROM events").fetchone()
    assert found == (n, n * (n - 1) // 2, n)
    assert [p["tries"] for p in group["result"]["partitions"]] == [1, 1, 1, 1, 1, 3, 1, 1]
    assert [p["rows"] for p in group["result"]["partitions"]] == [rows] * files
    with instance.transaction() as session:
        children = jobs_repo.children_of(session, group_id)
        workers = {c.worker for c in children if c.status == "Complete"}
        failed = [c for c in children if c.status == "Failed"]
    assert len(children) == files + 2 and len(failed) == 2
    assert all("gate closed" in (c.error or "") for c in failed)
    assert workers <= {"w1", "w2"} and len(workers) == 2  # the partitions ran on both workers
    assert _work_tables(cluster) == []
