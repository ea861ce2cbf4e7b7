"""Scale-out: 8 CSV files -> field_mapper -> PostgreSQL ``replace``, on the embedded default and on Celery.

    .venv/bin/python benchmarks/scale_out.py [--rows-per-file 250000] [--repeat 2]

Cases, each measured in this run on the same files into the same table shape
(time from the job's start request to its Complete, median of ``--repeat``):

* ``embedded, one task``: the embedded default (local process pool), the flow
  as one task reading the glob (``partitions: 1``);
* ``embedded, 2 partitions``: the same, ``partitions: 2`` (two local processes);
* ``celery, 1 worker``: ``partitions: 8`` on one ``flowport worker`` (concurrency 1;
  the partitioned run takes the partitions itself when no other worker does);
* ``celery, 2 workers``: the same with two workers.

The store is a PostgreSQL database, the broker Redis (database 13), the
target another PostgreSQL database; the benchmark creates both databases and
drops them, and never touches one it did not create. Figures are rows per
second; the ratio column is against ``embedded, one task``. This machine has
2 cores that the workers share with PostgreSQL: more machines scale further.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from cryptography.fernet import Fernet

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
BROKER = "redis://127.0.0.1:6379/13"
FILES = 8


def _admin(sql: str) -> None:
    with psycopg.connect(**PG, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql)


def _files(folder: Path, per_file: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(FILES):
        with (folder / f"orders-{f}.csv").open("w") as file:
            file.write("order_id,customer,total\n")
            file.writelines(
                f"{i},Customer {i % 9973},{(i * 7919) % 50000 / 100:.2f}\n"
                for i in range(f * per_file, (f + 1) * per_file)
            )


def _flow(partitions: int) -> dict[str, Any]:
    return {
        "name": f"scale out {partitions} {uuid.uuid4().hex[:6]}",
        "configuration": {"partitions": partitions, "batch_size": 262144},
        "stages": [
            {"name": "Orders", "plugin": {"name": "csv_file_origin"}, "configuration": {"path": "in/*.csv"}},
            {
                "name": "Types",
                "plugin": {"name": "field_mapper"},
                "configuration": {
                    "fields": [
                        {"source": "order_id", "target": "order_id", "type": "integer"},
                        {"source": "customer", "target": "customer", "type": "string"},
                        {"source": "total", "target": "total", "type": "decimal(10,2)"},
                    ]
                },
            },
            {
                "name": "Load",
                "plugin": {"name": "sql_table_destination"},
                "configuration": {"connection": "warehouse", "table": "orders", "mode": "replace"},
            },
        ],
        "edges": [{"from": "Orders", "to": "Types"}, {"from": "Types", "to": "Load"}],
    }


def _start_workers(count: int, env: dict[str, str], logs: Path) -> list[subprocess.Popen[bytes]]:
    from flowport.services.workers import list_workers

    started = []
    for i in range(count):
        name = f"bench-{i}-{uuid.uuid4().hex[:4]}"
        log = (logs / f"{name}.log").open("ab")
        started.append(
            subprocess.Popen(
                [sys.executable, "-m", "flowport.cli.main", "worker", "--name", name, "--concurrency", "1"],
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        deadline = time.monotonic() + 60
        while not any(w["name"] == name and w["state"] == "running" for w in list_workers()["data"]):
            if time.monotonic() > deadline:
                raise SystemExit(f"worker {name} did not start; see {logs}")
            time.sleep(0.1)
    return started


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        if w.poll() is None:
            os.killpg(w.pid, signal.SIGTERM)
    for w in workers:
        try:
            w.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(w.pid, signal.SIGKILL)


def _time_job(flow_id: int, target: dict[str, Any], rows: int) -> float:
    from flowport.services import jobs, runs

    started = time.perf_counter()
    group = runs.run_flow(flow_id)
    done = jobs.wait_for_job_group(group["id"], timeout=1800)
    seconds = time.perf_counter() - started
    if done["status"] != "Complete":
        raise SystemExit(f"job {group['id']} ended {done['status']}: {done['error']}")
    with psycopg.connect(**target) as conn:
        found = conn.execute("SELECT count(*) FROM orders").fetchone()
    if found != (rows,):
        raise SystemExit(f"the target holds {found} rows, not {rows}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows-per-file", type=int, default=250_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--summary", action="store_true", help="End with a JSON line of summary rows.")
    args = parser.parse_args()
    rows = FILES * args.rows_per_file
    tag = uuid.uuid4().hex[:8]
    store_db, target_db = f"flowport_bench_store_{tag}", f"flowport_bench_target_{tag}"
    _admin(f'CREATE DATABASE "{store_db}"')
    _admin(f'CREATE DATABASE "{target_db}"')
    home = Path(tempfile.mkdtemp(prefix="flowport-scale-out-"))
    env = {
        "FLOWPORT_HOME": str(home),
        "FLOWPORT_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{store_db}",
        "FLOWPORT_SECRET_KEY": Fernet.generate_key().decode(),
        "FLOWPORT_DATA_DIR": str(home / "data"),
    }
    os.environ.update(env)
    target = {**PG, "dbname": target_db}
    workers: list[subprocess.Popen[bytes]] = []
    results: dict[str, float] = {}
    try:
        from kombu import Connection

        from flowport.orchestrate.celery_launcher import QUEUES, CeleryLauncher
        from flowport.services import connections, flow_records, instance
        from flowport.services import launcher as launchers
        from flowport.services.pipeline_runner import run_job_group
        from flowport.services.worker_loss import recover_lost

        instance.init_instance()
        connections.add_connection(
            {
                "name": "warehouse",
                "vendor": "postgresql",
                "host": PG["host"],
                "port": PG["port"],
                "params": {"database": target_db},
                "credentials": [{"name": "username", "value": "postgres"}],
            }
        )
        _files(home / "data" / "in", args.rows_per_file)
        with psycopg.connect(**target, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE orders (order_id integer PRIMARY KEY, customer text, total numeric(10,2))"
            )
        flows = {p: flow_records.create_flow(_flow(p))["id"] for p in (1, 2, 8)}

        def measure(name: str, flow_id: int) -> None:
            times = [_time_job(flow_id, target, rows) for _ in range(args.repeat)]
            results[name] = statistics.median(times)
            print(f"  {name}: {results[name]:.2f}s", flush=True)

        launchers.use_launcher("process")
        measure("embedded, one task", flows[1])
        measure("embedded, 2 partitions", flows[2])
        launchers.shutdown_launcher()
        with Connection(BROKER) as broker:
            for queue in QUEUES.values():
                broker.default_channel.queue_purge(queue)
        launchers.use_launcher(CeleryLauncher(run_job_group, on_lost=recover_lost, broker_url=BROKER))
        logs = home / "logs"
        logs.mkdir()
        env["FLOWPORT_BROKER_URL"] = BROKER
        workers = _start_workers(1, env, logs)
        measure("celery, 1 worker", flows[8])
        workers += _start_workers(1, env, logs)
        measure("celery, 2 workers", flows[8])
    finally:
        _stop(workers)
        from flowport.store.database import dispose_engines

        dispose_engines()
        _admin(f'DROP DATABASE IF EXISTS "{store_db}" WITH (FORCE)')
        _admin(f'DROP DATABASE IF EXISTS "{target_db}" WITH (FORCE)')
    base = results["embedded, one task"]
    print(
        f"\nScale-out: {FILES} files x {args.rows_per_file:,} rows -> PostgreSQL replace "
        f"(median of {args.repeat})"
    )
    print(f"{'case':<26}{'seconds':>10}{'rows/s':>14}{'ratio':>8}")
    for name, seconds in results.items():
        print(f"{name:<26}{seconds:>10.2f}{rows / seconds:>14,.0f}{base / seconds:>7.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "seconds": results}, indent=2))
    if args.summary:
        summary = [
            {
                "case": f"scale-out: {name}",
                "size": f"{FILES} x {args.rows_per_file:,}",
                "flowport": f"{seconds:.2f} s, {rows / seconds:,.0f} rows/s",
                "alternative": f"embedded, one task {base:.2f} s",
                "ratio": base / seconds,
                "rss": "-",
            }
            for name, seconds in results.items()
            if name != "embedded, one task"
        ]
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
