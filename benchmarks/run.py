"""Flowport benchmarks: one command, ratios against alternatives measured in the same run.

    make bench                      # 1M and 10M rows
    make bench BENCH_ARGS="--rows 1000000"

Case ``csv_to_postgres``: the orders CSV -> field_mapper -> PostgreSQL
(``replace``: staging table, one-transaction swap) through Flowport, against
``psql \\copy`` of the same file into the same table shape, and against dlt
(installed in its own virtual environment ``benchmarks/.venv-dlt``; Arrow
tables from pyarrow's CSV reader with ``loader_file_format="csv"``, i.e.
COPY, its fastest documented path). The ratio column is throughput relative
to ``psql \\copy``.

Case ``csv_to_parquet``: an orders CSV -> field_mapper (casts) -> filter ->
Parquet, run by Flowport's engine, against the same work written by hand
as one DuckDB query. Each measurement runs in a fresh child process:
``wall`` includes interpreter start-up and imports, ``run`` is the work
alone (timed inside the child), peak RSS is that process's own
(``wait4``'s ``ru_maxrss``). Ratios are throughput relative to DuckDB.

Case ``auth``: 50 concurrent clients on ``GET /v4/flows`` of a real
``flowport server``, with HTTP Basic and with a bearer token; p50/p99
latency of both and their ratio (``benchmarks/auth_concurrency.py``, run
in its own process).

Case ``orchestration``: a pipeline of 1,000 no-op tasks (fan-out, join,
chain) against Dagster's ``execute_in_process`` and Prefect 3, each in its
own virtual environment, and the scheduler's tick with 10,000 active
schedules (``benchmarks/orchestration.py``, run in its own process).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
OUT = HERE / "out"

FIELDS = [
    ("order_id", "integer"),
    ("customer", "string"),
    ("country", "string"),
    ("total", "decimal(10,2)"),
    ("ordered_at", "timestamp"),
]


def generate_orders(rows: int) -> Path:
    """An orders CSV with ``rows`` rows (made once, reused)."""
    import duckdb

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"orders_{rows}.csv"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    con = duckdb.connect()
    con.execute(
        f"""
        COPY (
          SELECT i AS order_id,
                 'Customer ' || (i % 9973) AS customer,
                 ['US','DE','FR','GB','JP','BR'][(i % 6) + 1] AS country,
                 round(((i * 7919) % 50000) / 100.0, 2) AS total,
                 TIMESTAMP '2026-01-01 00:00:00' + to_seconds(i * 37) AS ordered_at
          FROM range({rows}) t(i)
        ) TO '{tmp}' (FORMAT csv, HEADER true)
        """
    )
    tmp.rename(path)
    return path


def flowport_flow(csv: Path, out: Path) -> dict:
    """The benchmark flow as a flow document."""
    return {
        "format": "flowport.flow/1",
        "name": "bench csv to parquet",
        "configuration": {"batch_size": 262144, "error_record_policy": "STAGE_RECORD"},
        "stages": [
            {"name": "Orders", "plugin": {"name": "csv_file_origin"}, "configuration": {"path": str(csv)}},
            {
                "name": "Types",
                "plugin": {"name": "field_mapper"},
                "configuration": {"fields": [{"source": n, "target": n, "type": t} for n, t in FIELDS]},
            },
            {"name": "Filter", "plugin": {"name": "filter"}, "configuration": {"condition": "total >= 20"}},
            {
                "name": "Parquet",
                "plugin": {"name": "parquet_file_destination"},
                "configuration": {"path": str(out)},
            },
        ],
        "edges": [
            {"from": "Orders", "to": "Types"},
            {"from": "Types", "to": "Filter"},
            {"from": "Filter", "to": "Parquet"},
        ],
    }


def duckdb_query(csv: Path, out: Path) -> str:
    """The same work as one hand-written DuckDB query (its fastest form: typed read)."""
    return f"""
        COPY (
          SELECT order_id, customer, country, total, ordered_at
          FROM read_csv('{csv}', header = true,
                        columns = {{'order_id': 'INTEGER', 'customer': 'VARCHAR', 'country': 'VARCHAR',
                                    'total': 'DECIMAL(10,2)', 'ordered_at': 'TIMESTAMP'}})
          WHERE total >= 20
        ) TO '{out}' (FORMAT parquet)
    """


# A database of this run's own: the benchmark never drops a database it did not create.
# Named once by the parent and handed to its children (which would otherwise name another one).
PG_DATABASE = (
    os.environ.get("FLOWPORT_BENCH_PG_DATABASE") or f"flowport_bench_{os.getpid()}_{int(time.time())}"
)
os.environ["FLOWPORT_BENCH_PG_DATABASE"] = PG_DATABASE
PG_TABLE_SQL = (
    "(order_id integer, customer varchar, country varchar, total numeric(10,2), ordered_at timestamp)"
)


class _BenchConnections:
    """The benchmark's PostgreSQL connection (no metadata store needed)."""

    def get(self, ref: str) -> object:
        from flowport.connections.spec import ConnectionSpec

        return ConnectionSpec(
            name=ref,
            vendor="postgresql",
            host="127.0.0.1",
            port=5432,
            username="postgres",
            params={"defaultDatabase": PG_DATABASE},
        )


def postgres_flow(csv: Path, table: str) -> dict:
    """CSV -> field_mapper -> PostgreSQL (replace) as a flow document."""
    return {
        "format": "flowport.flow/1",
        "name": "bench csv to postgres",
        "configuration": {"batch_size": 262144, "error_record_policy": "STAGE_RECORD"},
        "stages": [
            {"name": "Orders", "plugin": {"name": "csv_file_origin"}, "configuration": {"path": str(csv)}},
            {
                "name": "Types",
                "plugin": {"name": "field_mapper"},
                "configuration": {"fields": [{"source": n, "target": n, "type": t} for n, t in FIELDS]},
            },
            {
                "name": "Load",
                "plugin": {"name": "sql_table_destination"},
                "configuration": {"connection": "bench", "table": table, "mode": "replace"},
            },
        ],
        "edges": [{"from": "Orders", "to": "Types"}, {"from": "Types", "to": "Load"}],
    }


def _child(kind: str, csv: Path, out: Path) -> None:
    if kind == "flowport_pg":
        from flowport.engine import FlowRun, RunContext
        from flowport.model.document import flow_from_dict
        from flowport.services.flows import plugin_registry

        flow = flow_from_dict(postgres_flow(csv, str(out)))
        started = time.perf_counter()
        context = RunContext(base_dir=OUT, resources={"connections": _BenchConnections()})
        result = FlowRun(flow, plugin_registry(), context).start().wait()
        seconds = time.perf_counter() - started
        if result.status != "Complete":
            raise SystemExit(f"flowport run failed: {result.error}")
        print(json.dumps({"rows_out": result.stages["Load"].input_records, "seconds": seconds}))
        return
    if kind == "flowport":
        from flowport.engine import FlowRun, RunContext
        from flowport.model.document import flow_from_dict
        from flowport.services.flows import plugin_registry

        flow = flow_from_dict(flowport_flow(csv, out))
        started = time.perf_counter()
        result = FlowRun(flow, plugin_registry(), RunContext(base_dir=OUT)).start().wait()
        seconds = time.perf_counter() - started
        if result.status != "Complete":
            raise SystemExit(f"flowport run failed: {result.error}")
        rows = result.stages["Parquet"].input_records
    else:
        import duckdb

        started = time.perf_counter()
        con = duckdb.connect()
        con.execute(duckdb_query(csv, out))
        seconds = time.perf_counter() - started
        rows = con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0]
    print(json.dumps({"rows_out": rows, "seconds": seconds}))


def _psql(*args: str, database: str = PG_DATABASE) -> list[str]:
    return ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-q", *args]


def _pg_rows(table: str) -> int:
    out = subprocess.run(
        _psql("-tAc", f'SELECT count(*) FROM "{table}"'), capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


def prepare_postgres() -> None:
    """A new benchmark database, created by this run and dropped when it ends (never another one)."""
    subprocess.run(_psql("-c", f"CREATE DATABASE {PG_DATABASE}", database="postgres"), check=True)

    def drop() -> None:
        subprocess.run(
            _psql("-c", f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)", database="postgres"),
            check=False,
        )

    atexit.register(drop)


def dlt_python() -> Path | None:
    """dlt in its own virtual environment (benchmarks/.venv-dlt), installed on first use; None if it fails."""
    venv = HERE / ".venv-dlt"
    python = venv / "bin" / "python"
    if python.exists():
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "dlt[postgres]==1.31.0", "pyarrow==26.0.1"],
            check=True,
            timeout=600,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"dlt could not be installed ({exc}); it is left out", file=sys.stderr)
        shutil.rmtree(venv, ignore_errors=True)
        return None
    return python


def measure_command(command: list[str], rows_of: str | None = None, env: dict | None = None) -> dict:
    """Run a peer's command; wall time, peak RSS and, for a table, its row count."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{command[0]} failed: {proc.stderr.read() if proc.stderr else ''}")
    return {"wall": wall, "rss_mb": usage.ru_maxrss / 1024, "rows_out": _pg_rows(rows_of) if rows_of else 0}


def measure(kind: str, csv: Path, target: str | None = None) -> dict:
    """Run one case in a child process; wall time, rows out and peak RSS."""
    out = Path(target) if target else OUT / f"{kind}_{csv.stem}.parquet"
    if target is None and out.exists():
        out.unlink()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", kind, str(csv), str(out)], stdout=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    stdout = proc.stdout.read() if proc.stdout else ""
    if status != 0:
        raise SystemExit(f"{kind} failed on {csv.name}")
    report = json.loads(stdout.strip().splitlines()[-1])
    return {
        "wall": wall,
        "rss_mb": usage.ru_maxrss / 1024,
        "rows_out": report["rows_out"],
        "run": report["seconds"],
    }


def _row(case: str, rows: int, kind: str, r: dict, base: float, base_run: float | None) -> str:
    run = r.get("run")
    run_text = f"{run:>8.2f}{base_run / run:>9.2f}x" if run and base_run else f"{'-':>8}{'-':>10}"
    return (
        f"{case:<16}{rows:>12,}{kind:>10}{r['wall']:>9.2f}{rows / r['wall']:>12,.0f}"
        f"{base / r['wall']:>7.2f}x{run_text}{r['rss_mb']:>9.0f}"
    )


def bench_parquet(sizes: list[int], repeat: int) -> None:
    """CSV -> field_mapper -> filter -> Parquet: Flowport against one DuckDB query."""
    for rows in sizes:
        csv = generate_orders(rows)
        results = {}
        for kind in ("duckdb", "flowport"):
            runs = [measure(kind, csv) for _ in range(repeat)]
            results[kind] = min(runs, key=lambda r: r["wall"])
        if results["duckdb"]["rows_out"] != results["flowport"]["rows_out"]:
            raise SystemExit(f"row counts differ: {results}")
        base, base_run = results["duckdb"]["wall"], results["duckdb"]["run"]
        for kind in ("duckdb", "flowport"):
            print(_row("csv_to_parquet", rows, kind, results[kind], base, base_run))


def bench_postgres(sizes: list[int], repeat: int) -> None:
    """CSV -> field_mapper -> PostgreSQL (replace): Flowport against psql \\copy and dlt."""
    prepare_postgres()
    dlt = dlt_python()
    for rows in sizes:
        csv = generate_orders(rows)
        results: dict[str, dict] = {}

        def psql_copy(csv: Path = csv) -> dict:
            subprocess.run(_psql("-c", "DROP TABLE IF EXISTS psql_orders"), check=True)
            subprocess.run(_psql("-c", f"CREATE TABLE psql_orders {PG_TABLE_SQL}"), check=True)
            return measure_command(
                _psql("-c", f"\\copy psql_orders FROM '{csv}' WITH (FORMAT csv, HEADER true)"), "psql_orders"
            )

        def flowport(csv: Path = csv) -> dict:
            r = measure("flowport_pg", csv, "flowport_orders")
            r["rows_out"] = _pg_rows("flowport_orders")
            return r

        def dlt_load(csv: Path = csv) -> dict:
            assert dlt is not None
            env = {**os.environ, "DLT_DATA_DIR": str(OUT / "dlt"), "RUNTIME__LOG_LEVEL": "WARNING"}
            return measure_command(
                [str(dlt), str(HERE / "peers" / "dlt_load.py"), str(csv), PG_DATABASE, "dlt_orders"],
                "dlt_orders",
                env,
            )

        peers = {"psql": psql_copy, "flowport": flowport}
        if dlt is not None:
            peers["dlt"] = dlt_load
        for kind, fn in peers.items():
            results[kind] = min((fn() for _ in range(repeat)), key=lambda r: r["wall"])
            if results[kind]["rows_out"] != rows:
                raise SystemExit(f"{kind} loaded {results[kind]['rows_out']} rows, expected {rows}")
        base = results["psql"]["wall"]
        for kind, r in results.items():
            print(_row("csv_to_postgres", rows, kind, r, base, None))
        if "dlt" in results:
            speedup = results["dlt"]["wall"] / results["flowport"]["wall"]
            print(f"{'':<38}flowport vs dlt: {speedup:.2f}x")


def bench_auth() -> None:
    """50 concurrent clients, HTTP Basic against a bearer token (benchmarks/auth_concurrency.py)."""
    print()
    subprocess.run([sys.executable, str(HERE / "auth_concurrency.py")], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--case", choices=["parquet", "postgres", "auth", "orchestration", "all"], default="all"
    )
    parser.add_argument("--rows", type=int, action="append", help="Input sizes (default: 1M and 10M / 5M).")
    parser.add_argument("--repeat", type=int, default=1, help="Runs per case; the best is reported.")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, csv, out = args.child
        _child(kind, Path(csv), Path(out))
        return
    if args.case in ("parquet", "postgres", "all"):
        OUT.mkdir(parents=True, exist_ok=True)
        print(
            f"{'case':<16}{'rows':>12}{'engine':>10}{'wall s':>9}{'rows/s':>12}{'ratio':>8}"
            f"{'run s':>8}{'run ratio':>10}{'peak MB':>9}"
        )
        if args.case in ("parquet", "all"):
            bench_parquet(args.rows or [1_000_000, 10_000_000], args.repeat)
        if args.case in ("postgres", "all"):
            bench_postgres(args.rows or [1_000_000, 5_000_000], args.repeat)
        shutil.rmtree(OUT, ignore_errors=True)
    if args.case in ("auth", "all"):
        bench_auth()
    if args.case in ("orchestration", "all"):
        # A pipeline of 1,000 no-op tasks against Dagster and Prefect; the scheduler's tick.
        print()
        subprocess.run([sys.executable, str(HERE / "orchestration.py")], check=True)


if __name__ == "__main__":
    main()
