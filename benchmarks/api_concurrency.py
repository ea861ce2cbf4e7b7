"""The API under load: 50 concurrent clients on ``GET /v4/flows`` (1,000 flows stored) and
``POST /v4/flows/{id}/run``, with the SQLite and the PostgreSQL metadata stores.

    .venv/bin/python benchmarks/api_concurrency.py [--store sqlite|postgresql|all] [--clients 50]

Each store gets a real ``flowport server`` (``--launcher thread``) in a
temporary ``FLOWPORT_HOME``. The PostgreSQL store is a database this
benchmark creates (``flowport_bench_api_<pid>_<time>``) and drops at the end;
it never touches another one. 1,000 flows are stored (CSV origin of a
three-line file -> trash), then every client (its own connection, all
started together, an editor's API token) sends its requests one after the
other: ``GET /v4/flows`` (the first page, 25 flows, and the total; after a
warm-up round of two requests per client that is not counted), then
``POST /v4/flows/{id}/run`` (validate the flow, record a job group, start
the job). Prints p50/p99 latency of each and how many requests did not
answer 200/201 (the first such answer is printed). The goal for the list is p99 <= 50 ms.
The clients are lean keep-alive HTTP/1.1 clients (``load_client.py``): they
share the machine's two cores with the server, and httpx's own cost per
request would otherwise be most of what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from auth_concurrency import ADMIN_PASSWORD, Latencies, flowport_server
from load_client import run_client

FLOWS = 1000
GOAL_LIST_P99_MS = 50.0
OPERATOR = ("bench-editor", "Bench-editor-password-1")


def _psql(sql: str) -> None:
    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            sql,
        ],
        check=True,
    )


@contextmanager
def postgres_store() -> Iterator[str]:
    """A metadata database created for this run and dropped after it (never another one)."""
    name = f"flowport_bench_api_{os.getpid()}_{int(time.time())}"
    _psql(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _write_input(home: Path) -> None:
    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "tiny.csv").write_text("id,name\n1,a\n2,b\n")


def store_flows(url: str, flows: int) -> list[int]:
    """``flows`` runnable flows (8 writers at a time) and the editor; their ids."""
    with httpx.Client(base_url=url, auth=("admin", ADMIN_PASSWORD), timeout=120) as admin:
        response = admin.post(
            "/v4/users", json={"name": OPERATOR[0], "password": OPERATOR[1], "role": "editor"}
        )
        response.raise_for_status()

        def create(n: int) -> int:
            document = {
                "name": f"Bench {n}",
                "stages": [
                    {
                        "name": "Csv_01",
                        "plugin": {"name": "csv_file_origin"},
                        "configuration": {"path": "tiny.csv"},
                    },
                    {"name": "Trash_01", "plugin": {"name": "trash"}},
                ],
                "edges": [{"from": "Csv_01", "to": "Trash_01"}],
            }
            answer = admin.post("/v4/flows", json=document)
            answer.raise_for_status()
            return int(answer.json()["id"])

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(create, range(flows)))


def create_token(url: str) -> str:
    response = httpx.post(f"{url}/v4/apiTokens", json={"name": "bench"}, auth=OPERATOR, timeout=60)
    response.raise_for_status()
    token: str = response.json()["token"]
    return token


async def _client(
    url: str, token: str, method: str, paths: list[str], start: asyncio.Event, failures: list[str]
) -> list[float]:
    try:
        return await run_client(url, method, paths, {"Authorization": f"Bearer {token}"}, start, failures)
    except (OSError, RuntimeError, asyncio.IncompleteReadError) as exc:
        failures.append(f"{method}: {type(exc).__name__} {exc}")
        return []


async def _phase(url: str, token: str, method: str, paths: list[list[str]], failures: list[str]) -> Latencies:
    start = asyncio.Event()
    tasks = [asyncio.create_task(_client(url, token, method, p, start, failures)) for p in paths]
    await asyncio.sleep(0.1)
    began = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks)
    return Latencies([s for result in results for s in result], time.perf_counter() - began)


Measured = dict[str, tuple[Latencies, list[str]]]


def measure(store: str, clients: int, requests: int, runs: int, flows: int) -> Measured:
    """Both phases against a fresh server on ``store``: latencies and the failed answers."""

    def go(extra: dict[str, str]) -> Measured:
        with flowport_server(extra, _write_input) as url:
            ids = store_flows(url, flows)
            token = create_token(url)
            results: Measured = {}
            failures: list[str] = []
            # A warm-up round, not counted: the first answer at a store generation goes through the route
            # (a few milliseconds), the repeated ones are what is measured (steady state, as wrk does).
            asyncio.run(_phase(url, token, "GET", [["/v4/flows"] * 2 for _ in range(clients)], failures))
            listing = [["/v4/flows"] * requests for _ in range(clients)]
            results["GET /v4/flows"] = (asyncio.run(_phase(url, token, "GET", listing, failures)), failures)
            running = [
                [f"/v4/flows/{ids[(c * runs + r) % len(ids)]}/run" for r in range(runs)]
                for c in range(clients)
            ]
            failures = []
            results["POST /v4/flows/{id}/run"] = (
                asyncio.run(_phase(url, token, "POST", running, failures)),
                failures,
            )
            return results

    if store == "postgresql":
        with postgres_store() as database_url:
            return go({"FLOWPORT_DATABASE_URL": database_url})
    return go({})


def report(store: str, results: Measured) -> list[dict[str, object]]:
    """Rows for the summary table (a failed answer is counted, and its first one printed)."""
    rows: list[dict[str, object]] = []
    for name, (latencies, failures) in results.items():
        if failures:
            print(f"{store} {name}: {len(failures)} failed, first: {failures[0]}", file=sys.stderr)
        rows.append(
            {
                "store": store,
                "request": name,
                "p50_ms": latencies.percentile(50) * 1000,
                "p99_ms": latencies.percentile(99) * 1000,
                "req_s": latencies.throughput,
                "n": len(latencies.samples),
                "failed": len(failures),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=["sqlite", "postgresql", "all"], default="all")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=40, help="GET requests per client (default 40).")
    parser.add_argument("--runs", type=int, default=4, help="POST .../run requests per client (default 4).")
    parser.add_argument("--flows", type=int, default=FLOWS)
    parser.add_argument("--summary", action="store_true", help="End with a JSON line of summary rows.")
    args = parser.parse_args()
    stores = ["sqlite", "postgresql"] if args.store == "all" else [args.store]
    rows = [
        row
        for store in stores
        for row in report(store, measure(store, args.clients, args.requests, args.runs, args.flows))
    ]
    print(f"{args.clients} concurrent clients, {args.flows} flows stored")
    print(f"{'store':<12}{'request':<26}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'failed':>10}")
    for row in rows:
        print(
            f"{row['store']:<12}{row['request']:<26}{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}"
            f"{row['req_s']:>9.1f}{row['failed']:>6}/{row['n']}"
        )
    if args.summary:
        import json

        summary = []
        for row in rows:
            listing = str(row["request"]).startswith("GET")
            failed = f", {row['failed']} failed" if row["failed"] else ""
            summary.append(
                {
                    "case": f"api {row['request']} ({row['store']})".replace("/v4/flows", "flows"),
                    "size": f"{args.clients} clients",
                    "flowport": f"p50 {row['p50_ms']:.0f} / p99 {row['p99_ms']:.0f} ms{failed}",
                    "alternative": f"goal p99 <= {GOAL_LIST_P99_MS:.0f} ms" if listing else "-",
                    "ratio": GOAL_LIST_P99_MS / float(row["p99_ms"]) if listing else None,  # type: ignore[arg-type]
                    "rss": "-",
                }
            )
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
