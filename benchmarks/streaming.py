"""Streaming benchmark: Redis Streams -> field mapper -> PostgreSQL, end to end, against bare references.

    .venv/bin/python benchmarks/streaming.py [--events 200000] [--rate 2000] [--seconds 10]

Measured in one run:

* ``redis-benchmark XADD``: the physical reference, how fast this Redis takes entries;
* ``bare consumer``: a hand-written loop with no processing (XREADGROUP 10,000 at a time, XACK):
  the ceiling for a Python consumer of this Redis;
* ``bare consumer + COPY``: the same loop writing each batch to PostgreSQL with psycopg's COPY and
  committing before the XACK — the least a correct hand-written at-least-once loader does;
* Flowport, a streaming job (append, then upsert keyed on the message id), micro-batches of 10,000:
  events/s from the job's start to the last event committed;
* latency: events published at a fixed ``--rate`` for ``--seconds``; each row's commit time (a
  ``clock_timestamp()`` default on the target) minus its publish time; p50 and p99.

The benchmark creates its own PostgreSQL database and Redis stream keys (in database 15) and drops
them; it never touches anything it did not create.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import redis

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS_DB = 15
BATCH = 10_000


def _admin(sql: str) -> None:
    with psycopg.connect(**PG, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql)


def _publish(client: Any, stream: str, count: int) -> float:
    started = time.perf_counter()
    for start in range(0, count, 5000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + 5000, count)):
            pipe.xadd(
                stream, {"id": str(i), "customer": f"Customer {i % 9973}", "total": f"{i % 50000 / 100:.2f}"}
            )
        pipe.execute()
    return time.perf_counter() - started


def _redis_benchmark(count: int) -> float:
    key = f"fp-bench-rb-{uuid.uuid4().hex[:8]}"
    out = subprocess.run(
        [
            "redis-benchmark",
            "-n",
            str(count),
            "-q",
            "-P",
            "16",
            "--dbnum",
            str(REDIS_DB),
            "XADD",
            key,
            "*",
            "f",
            "v",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    redis.Redis(db=REDIS_DB).delete(key)
    found = re.findall(r"([\d.]+) requests per second", out)
    return float(found[-1]) if found else float("nan")


def _bare(client: Any, stream: str, count: int, dsn: dict[str, Any] | None) -> float:
    client.xgroup_create(stream, "bare", id="0")
    seen = 0
    started = time.perf_counter()
    conn = psycopg.connect(**dsn) if dsn else None
    try:
        while seen < count:
            answer = client.xreadgroup("bare", "c", {stream: ">"}, count=BATCH, block=1000)
            entries = answer[0][1] if answer else []
            if conn is not None and entries:
                with conn.cursor().copy("COPY bare (id, customer, total) FROM STDIN") as copy:
                    for _, fields in entries:
                        copy.write_row(
                            (int(fields[b"id"]), fields[b"customer"].decode(), fields[b"total"].decode())
                        )
                conn.commit()
            if entries:
                client.xack(stream, "bare", *[i for i, _ in entries])
            seen += len(entries)
    finally:
        if conn is not None:
            conn.close()
    return count / (time.perf_counter() - started)


def _flow(stream: str, table: str, mode: str, wait: float) -> dict[str, Any]:
    load: dict[str, Any] = {"connection": "warehouse", "table": table, "mode": mode}
    if mode == "upsert":
        load["keys"] = ["_message_id"]
    return {
        "name": f"bench {mode} {uuid.uuid4().hex[:6]}",
        "type": "streaming",
        "configuration": {"batch_size": BATCH},
        "stages": [
            {
                "name": "Events",
                "plugin": {"name": "redis_streams_origin"},
                "configuration": {"connection": "queue", "stream": stream, "batch_wait": wait},
            },
            {
                "name": "Types",
                "plugin": {"name": "field_mapper"},
                "configuration": {
                    "fields": [
                        {"source": "_message_id", "target": "_message_id", "type": "string"},
                        {"source": "id", "target": "id", "type": "integer"},
                        {"source": "customer", "target": "customer", "type": "string"},
                        {"source": "total", "target": "total", "type": "decimal(10,2)"},
                        *(
                            [{"source": "sent", "target": "sent", "type": "bigint"}]
                            if table == "timed"
                            else []
                        ),
                    ]
                },
            },
            {"name": "Load", "plugin": {"name": "sql_table_destination"}, "configuration": load},
        ],
        "edges": [{"from": "Events", "to": "Types"}, {"from": "Types", "to": "Load"}],
    }


def _count(dsn: dict[str, Any], table: str) -> int:
    with psycopg.connect(**dsn) as conn:
        found = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(found[0]) if found else 0


def _stream_job(flow: dict[str, Any], dsn: dict[str, Any], table: str, count: int) -> float:
    from flowport.services import flow_records, jobs, runs

    flow_id = flow_records.create_flow(flow)["id"]
    started = time.perf_counter()
    group = runs.run_flow(flow_id)["id"]
    while _count(dsn, table) < count:
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    jobs.stop_job_group(group)
    jobs.wait_for_job_group(group, timeout=120)
    return count / seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rate", type=int, default=2_000, help="Events per second of the latency case.")
    parser.add_argument("--seconds", type=float, default=10.0, help="How long the latency case publishes.")
    parser.add_argument("--summary", action="store_true", help="End with a JSON line of summary rows.")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    database = f"flowport_bench_stream_{tag}"
    _admin(f'CREATE DATABASE "{database}"')
    dsn = {**PG, "dbname": database}
    home = Path(tempfile.mkdtemp(prefix="flowport-stream-bench-"))
    os.environ.update({"FLOWPORT_HOME": str(home), "FLOWPORT_LAUNCHER": "thread"})
    client = redis.Redis(db=REDIS_DB)
    streams = [f"fp-bench-{name}-{tag}" for name in ("bare", "copy", "append", "upsert", "timed")]
    results: list[tuple[str, float, str]] = []
    try:
        from flowport.services import connections, instance

        instance.init_instance()
        for name, vendor, port, params, creds in (
            ("queue", "redis", 6379, {"database": REDIS_DB}, []),
            (
                "warehouse",
                "postgresql",
                5432,
                {"database": database},
                [{"name": "username", "value": "postgres"}],
            ),
        ):
            connections.add_connection(
                {
                    "name": name,
                    "vendor": vendor,
                    "host": "127.0.0.1",
                    "port": port,
                    "params": params,
                    "credentials": creds,
                }
            )
        with psycopg.connect(**dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE bare (id integer, customer text, total numeric(10,2))")
            for table in ("appended", "upserted"):
                conn.execute(
                    f"CREATE TABLE {table} (_message_id text PRIMARY KEY, id integer, customer text, "
                    "total numeric(10,2))"
                )
            conn.execute(
                "CREATE TABLE timed (_message_id text, id integer, customer text, total numeric(10,2), "
                "sent bigint, committed timestamptz DEFAULT clock_timestamp())"
            )
        n = args.events
        rb = _redis_benchmark(n)
        results.append(("redis-benchmark XADD (pipelined 16)", rb, "physical reference"))
        publish = n / _publish(client, streams[0], n)
        results.append(("publish from Python (pipelined)", publish, ""))
        results.append(("bare consumer (XREADGROUP+XACK)", _bare(client, streams[0], n, None), ""))
        _publish(client, streams[1], n)
        copy = _bare(client, streams[1], n, dsn)
        results.append(("bare consumer + COPY + commit", copy, "the alternative"))
        for stream, table, mode in ((streams[2], "appended", "append"), (streams[3], "upserted", "upsert")):
            _publish(client, stream, n)
            rate = _stream_job(_flow(stream, table, mode, 0.2), dsn, table, n)
            results.append(
                (f"flowport stream -> PostgreSQL {mode}", rate, f"{rate / copy:.2f}x the alternative")
            )
        # Latency at a fixed rate.
        from flowport.services import flow_records, jobs, runs

        timed = flow_records.create_flow(_flow(streams[4], "timed", "append", 0.05))["id"]
        group = runs.run_flow(timed)["id"]
        time.sleep(1.0)
        total = int(args.rate * args.seconds)
        interval = 1.0 / args.rate
        started = time.perf_counter()
        for i in range(total):
            target = started + i * interval
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            client.xadd(
                streams[4],
                {"id": str(i), "customer": "c", "total": "1.00", "sent": str(time.time_ns() // 1000)},
            )
        while _count(dsn, "timed") < total:
            time.sleep(0.05)
        jobs.stop_job_group(group)
        jobs.wait_for_job_group(group, timeout=60)
        with psycopg.connect(**dsn) as conn:
            rows = conn.execute(
                "SELECT extract(epoch FROM committed) * 1000 - sent / 1000.0 FROM timed ORDER BY 1"
            ).fetchall()
        latencies = [float(r[0]) for r in rows]
        p50 = statistics.median(latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
    finally:
        for stream in streams:
            client.delete(stream)
        from flowport.store.database import dispose_engines

        dispose_engines()
        _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    print(f"\nStreaming: {n:,} events, micro-batches of {BATCH:,} (events/s)")
    print(f"{'case':<42}{'events/s':>12}  note")
    for name, rate, note in results:
        print(f"{name:<42}{rate:>12,.0f}  {note}")
    print(
        f"\nLatency publish -> commit at {args.rate:,} events/s for {args.seconds:g}s "
        f"(batch_wait 0.05 s): p50 {p50:.0f} ms, p99 {p99:.0f} ms over {len(latencies):,} events"
    )
    if args.summary:
        import json

        summary = [
            {
                "case": f"streaming Redis -> PG {name.rsplit(' ', 1)[-1]}",
                "size": f"{n:,} events",
                "flowport": f"{rate:,.0f} events/s",
                "alternative": f"bare consumer + COPY {copy:,.0f}/s",
                "ratio": rate / copy,
                "rss": "-",
            }
            for name, rate, _ in results
            if name.startswith("flowport")
        ]
        summary.append(
            {
                "case": "streaming latency publish -> commit",
                "size": f"{args.rate:,} events/s",
                "flowport": f"p50 {p50:.0f} / p99 {p99:.0f} ms",
                "alternative": "-",
                "ratio": None,
                "rss": "-",
            }
        )
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
