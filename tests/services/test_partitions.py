"""Partitioned ingest on the embedded default: files loaded by parallel local processes, published once.

The target is a real PostgreSQL table. A partition is made to fail by the
database itself: a CHECK constraint (copied onto the staging table by
``LIKE ... INCLUDING ALL``) calls a function that raises for one row of one
file while a sequence — which a rollback does not undo — is below a limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.connections.live_servers import PG_HOST, PG_PORT, postgres_database

from flowport.services import connections, flow_records, instance, jobs, runs
from flowport.services import launcher as launchers
from flowport.store import jobs as jobs_repo
from flowport.store.database import DATABASE_URL_ENV

TIMEOUT = 120.0
FILES, ROWS = 4, 2_000
GATED_ID = 2 * ROWS + 17  # a row of the third file


@pytest.fixture
def target(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name in (DATABASE_URL_ENV, "FLOWPORT_LAUNCHER", "FLOWPORT_BROKER_URL", "FLOWPORT_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    with postgres_database("flowport_parts") as name:
        dsn = {"host": PG_HOST, "port": PG_PORT, "user": "postgres", "dbname": name}
        with psycopg.connect(**dsn, autocommit=True) as conn:
            conn.execute("CREATE SEQUENCE gate")
            conn.execute(
                "CREATE FUNCTION gate_open(id integer, closed_for bigint) RETURNS boolean AS $$ BEGIN "
                f"IF id = {GATED_ID} AND nextval('gate') <= closed_for THEN "
                "RAISE EXCEPTION 'gate closed for row %', id; END IF; RETURN true; END $$ LANGUAGE plpgsql"
            )
            conn.execute("CREATE TABLE orders (id integer PRIMARY KEY, customer text, total numeric(10,2))")
            conn.execute("INSERT INTO orders VALUES (-1, 'before', 1.00), (-2, 'before', 2.00)")
        instance.init_instance()
        connections.add_connection(
            {
                "name": "warehouse",
                "vendor": "postgresql",
                "host": PG_HOST,
                "port": PG_PORT,
                "params": {"database": name},
                "credentials": [{"name": "username", "value": "postgres"}],
            }
        )
        launchers.use_launcher("process")
        try:
            yield dsn
        finally:
            launchers.shutdown_launcher()
            launchers.use_launcher(None)


def _files(count: int = FILES, rows: int = ROWS) -> None:
    folder = flow_records.data_dir() / "in"
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(count):
        with (folder / f"part-{f}.csv").open("w") as file:
            file.write("id,customer,total\n")
            file.writelines(f"{i},customer {i % 97},{i % 1000}.50\n" for i in range(f * rows, (f + 1) * rows))


def _flow(partitions: int, retries: int = 2, mode: str = "replace") -> dict[str, Any]:
    return flow_records.create_flow(
        {
            "name": f"Parts {partitions} {retries} {mode}",
            "configuration": {"partitions": partitions, "partition_retries": retries},
            "stages": [
                {
                    "name": "Files_01",
                    "plugin": {"name": "csv_file_origin"},
                    "configuration": {"path": "in/*.csv"},
                },
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
                    "configuration": {"connection": "warehouse", "table": "orders", "mode": mode},
                },
            ],
            "edges": [{"from": "Files_01", "to": "Types_01"}, {"from": "Types_01", "to": "Load_01"}],
        }
    )


def _rows(dsn: dict[str, Any]) -> tuple[int, int, list[str]]:
    with psycopg.connect(**dsn) as conn:
        count, total = conn.execute("SELECT count(*), coalesce(sum(id), 0) FROM orders").fetchone() or (0, 0)
        left = [
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE '%\\_\\_fp\\_%'")
        ]
        indexes = [r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'orders'")]
    return int(count), int(total), left + [f"index:{i}" for i in indexes if i != "orders_pkey"]


def _gate(dsn: dict[str, Any], closed_for: int) -> None:
    with psycopg.connect(**dsn, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE orders ADD CONSTRAINT gated CHECK (gate_open(id, {closed_for}))")


def _children(group_id: int) -> list[Any]:
    with instance.transaction() as session:
        rows = jobs_repo.children_of(session, group_id)
        for row in rows:
            session.expunge(row)
        return rows


def test_files_load_as_parallel_partitions_and_publish_once(target: dict[str, Any]) -> None:
    _files()
    _gate(target, 2)  # the third file's partition fails twice, then succeeds
    group = jobs.wait_for_job_group(runs.run_flow(_flow(2)["id"])["id"], timeout=TIMEOUT)
    assert group["status"] == "Complete", group["error"]
    n = FILES * ROWS
    assert _rows(target) == (n, n * (n - 1) // 2, [])
    partitions = group["result"]["partitions"]
    assert [p["rows"] for p in partitions] == [ROWS] * FILES
    assert [p["tries"] for p in partitions] == [1, 1, 3, 1]
    children = _children(group["id"])
    assert sorted(c.status for c in children) == ["Complete"] * FILES + ["Failed"] * 2
    assert all("gate closed" in c.error for c in children if c.status == "Failed")
    # The job's metrics add up the partitions' (the successful tries).
    assert group["result"]["stages"]["Load_01"]["inputRecords"] == n
    assert "Published 8000 rows from 4 partition(s)" in jobs.get_job_group_logs(group["id"])


def test_a_partition_that_keeps_failing_leaves_the_target_as_it_was(target: dict[str, Any]) -> None:
    _files()
    _gate(target, 100)
    before = _rows(target)
    group = jobs.wait_for_job_group(runs.run_flow(_flow(3, retries=1)["id"])["id"], timeout=TIMEOUT)
    assert group["status"] == "Failed"
    assert "partition 2" in group["error"] and "failed 2 time(s)" in group["error"]
    assert "gate closed" in group["error"]
    assert _rows(target) == before  # and no staging table left
    assert all(c.status in ("Complete", "Failed", "Canceled") for c in _children(group["id"]))


def test_append_adds_every_file_once(target: dict[str, Any]) -> None:
    _files(count=3, rows=500)
    group = jobs.wait_for_job_group(runs.run_flow(_flow(3, mode="append")["id"])["id"], timeout=TIMEOUT)
    assert group["status"] == "Complete", group["error"]
    n = 1500
    assert _rows(target) == (n + 2, n * (n - 1) // 2 - 3, [])


def test_a_flow_that_cannot_be_split_runs_as_one_task_and_says_why(target: dict[str, Any]) -> None:
    _files(count=1, rows=100)
    group = jobs.wait_for_job_group(runs.run_flow(_flow(4)["id"])["id"], timeout=TIMEOUT)
    assert group["status"] == "Complete"
    assert _rows(target)[0] == 100 and _children(group["id"]) == []
    assert "matches 1 file(s); partitions need two or more" in jobs.get_job_group_logs(group["id"])


def test_a_file_that_leads_outside_the_roots_is_refused(target: dict[str, Any], tmp_path: Path) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_text("id,customer,total\n1,a,1.00\n")
    _files(count=2, rows=10)
    (flow_records.data_dir() / "in" / "part-9.csv").symlink_to(outside)  # inside the root by name only
    before = _rows(target)
    group = jobs.wait_for_job_group(runs.run_flow(_flow(2)["id"])["id"], timeout=TIMEOUT)
    assert group["status"] == "Failed" and "outside the instance's file roots" in group["error"]
    assert _rows(target) == before and _children(group["id"]) == []


def test_a_table_is_read_by_key_ranges_in_parallel(target: dict[str, Any]) -> None:
    n = FILES * ROWS
    with psycopg.connect(**target, autocommit=True) as conn:
        conn.execute("CREATE TABLE source (id integer, customer text, total numeric(10,2))")
        conn.execute(f"INSERT INTO source SELECT i, 'c' || i, i % 100 FROM generate_series(0, {n - 1}) i")
    _gate(target, 2)  # the range holding GATED_ID fails twice, then loads
    flow = flow_records.create_flow(
        {
            "name": "Key ranges",
            "configuration": {"partitions": 4},
            "stages": [
                {
                    "name": "Source_01",
                    "plugin": {"name": "sql_table_origin"},
                    "configuration": {"connection": "warehouse", "table": "source", "partition_column": "id"},
                },
                {
                    "name": "Load_01",
                    "plugin": {"name": "sql_table_destination"},
                    "configuration": {"connection": "warehouse", "table": "orders", "mode": "replace"},
                },
            ],
            "edges": [{"from": "Source_01", "to": "Load_01"}],
        }
    )
    group = jobs.wait_for_job_group(runs.run_flow(flow["id"])["id"], timeout=TIMEOUT)
    assert group["status"] == "Complete", group["error"]
    assert _rows(target) == (n, n * (n - 1) // 2, [])
    parts = group["result"]["partitions"]
    assert [p["part"] for p in parts] == [f"id in [{i * ROWS}, {(i + 1) * ROWS})" for i in range(4)]
    assert [p["tries"] for p in parts] == [1, 1, 3, 1] and [p["rows"] for p in parts] == [ROWS] * 4
    # A row without a key would be read by no range: the run refuses, the target stays.
    with psycopg.connect(**target, autocommit=True) as conn:
        conn.execute("INSERT INTO source VALUES (NULL, 'lost?', 1)")
    before = _rows(target)
    refused = jobs.wait_for_job_group(runs.run_flow(flow["id"])["id"], timeout=TIMEOUT)
    assert refused["status"] == "Failed" and "1 row(s) of source have no id" in refused["error"]
    assert _rows(target) == before
