"""Flowport benchmarks: one command, ratios against alternatives measured in the same run.

    make bench                                   # every case, one table at the end
    make bench BENCH_ARGS="--case postgres --rows 1000000 --repeat 5"

Every case is measured side by side with its alternative in the same run
(interleaved, ``--repeat`` times, the median reported) and ends up as one
row of the summary table printed last: case, size, Flowport's figure, the
alternative's, their ratio (above 1 means Flowport is ahead) and peak RSS.

Case ``csv_to_postgres``: the orders CSV -> field_mapper -> PostgreSQL
(``replace``: staging table, one-transaction swap) as the whole
``flowport run flow.json`` command (interpreter start-up, imports, the
metadata store's connection look-up, the run, the swap): as the
destination's defaults load (one COPY stream, and a second one once the
load has sent 500,000 rows), with ``copy_streams: 1`` (one stream, the
whole load one transaction) and with ``copy_streams: 2`` (two COPY streams
into a committed staging table from the start, the server parsing on two
cores), against ``psql
\\copy`` of the same file into the same table shape, and against dlt
(installed in its own virtual environment ``benchmarks/.venv-dlt``; Arrow
tables from pyarrow's CSV reader with ``loader_file_format="csv"``, i.e.
COPY, its fastest documented path; measured once, at the smallest size: it is slow). The ratio is
throughput relative to ``psql \\copy``. The tables live in a database this
run creates and drops; the connection in a temporary ``FLOWPORT_HOME``.

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

Case ``api``: 50 concurrent clients on ``GET /v4/flows`` with 1,000 flows
stored and on ``POST /v4/flows/{id}/run``, SQLite and PostgreSQL metadata
stores (``benchmarks/api_concurrency.py``; the PostgreSQL store is a
database it creates and drops). The ratio is the goal (p99 <= 50 ms for the
list) over the measured p99.

Cases ``scale_out`` (8 files into PostgreSQL on the embedded default and on
one and two Celery workers, ``benchmarks/scale_out.py``) and ``streaming``
(Redis Streams -> PostgreSQL against a bare hand-written consumer, and the
latency from publish to commit, ``benchmarks/streaming.py``), each in its
own process.

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
import statistics
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


def postgres_flow(csv: Path, table: str, copy_streams: int | None = None) -> dict:
    """CSV -> field_mapper -> PostgreSQL (replace) as a flow document (``copy_streams`` None: the
    destination's default)."""
    load: dict = {"connection": "bench", "table": table, "mode": "replace"}
    if copy_streams is not None:
        load["copy_streams"] = copy_streams
    return {
        "format": "flowport.flow/1",
        "name": "bench csv to postgres",
        # The default batch size (65,536 rows): the first batch reaches the COPY sooner than one of
        # 262,144 (whose first read takes three times as long), and the server ingests while the
        # origin reads the rest.
        "configuration": {"error_record_policy": "STAGE_RECORD"},
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
                "configuration": load,
            },
        ],
        "edges": [{"from": "Orders", "to": "Types"}, {"from": "Types", "to": "Load"}],
    }


def _child(kind: str, csv: Path, out: Path) -> None:
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


_CHECKPOINT_REFUSED: list[str] = []


def settle_postgres() -> None:
    """Write the server's dirty pages out before a measured load (``CHECKPOINT``), so that a
    checkpoint the previous loads' WAL calls for does not land inside the next one's time, whoever's
    it is. Needs superuser or the pg_checkpoint role; without it, said once and skipped."""
    if _CHECKPOINT_REFUSED:
        return
    done = subprocess.run(_psql("-c", "CHECKPOINT"), capture_output=True, text=True)
    if done.returncode != 0:
        _CHECKPOINT_REFUSED.append(done.stderr.strip())
        print(f"(no CHECKPOINT between loads: {done.stderr.strip()})", file=sys.stderr)


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
    """Run a command; wall time, peak RSS and, for a table, its row count."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        out = (proc.stdout.read() if proc.stdout else "")[-2000:]
        raise SystemExit(f"{command[0]} failed: {proc.stderr.read() if proc.stderr else ''}{out}")
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


def median_of(runs: list[dict]) -> dict:
    """The median of each figure over the runs (rows_out must agree)."""
    keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float))]
    result = {k: statistics.median(r[k] for r in runs) for k in keys}
    result["runs"] = len(runs)
    return result


#: The summary table: one row per case and size, printed at the end.
SUMMARY: list[dict] = []


def summary_row(case: str, size: str, flowport: str, alternative: str, ratio: float | None, rss: str) -> None:
    SUMMARY.append(
        {
            "case": case,
            "size": size,
            "flowport": flowport,
            "alternative": alternative,
            "ratio": ratio,
            "rss": rss,
        }
    )


def print_summary() -> None:
    """Every case with its ratio, in one table (ratio > 1: Flowport ahead of the alternative or goal)."""
    if not SUMMARY:
        return
    widths = [
        ("case", 30),
        ("size", 12),
        ("flowport", 22),
        ("alternative", 30),
        ("ratio", 8),
        ("peak MB", 14),
    ]
    print("\nSummary (medians; ratio > 1.00x: Flowport ahead)")
    print("".join(f"{name:<{width}}" for name, width in widths))
    for row in SUMMARY:
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
        cells = [row["case"], row["size"], row["flowport"], row["alternative"], ratio, row["rss"]]
        print("".join(f"{c!s:<{w - 1}} " for c, (_, w) in zip(cells, widths, strict=True)).rstrip())


def _row(case: str, rows: int, kind: str, r: dict, base: float, base_run: float | None) -> str:
    run = r.get("run")
    run_text = f"{run:>8.2f}{base_run / run:>9.2f}x" if run and base_run else f"{'-':>8}{'-':>10}"
    return (
        f"{case:<16}{rows:>12,}{kind:>10}{r['wall']:>9.2f}{rows / r['wall']:>12,.0f}"
        f"{base / r['wall']:>7.2f}x{run_text}{r['rss_mb']:>9.0f}"
    )


def bench_parquet(sizes: list[int], repeat: int) -> None:
    """CSV -> field_mapper -> filter -> Parquet: Flowport against one DuckDB query, interleaved."""
    for rows in sizes:
        csv = generate_orders(rows)
        runs: dict[str, list[dict]] = {"duckdb": [], "flowport": []}
        for _ in range(repeat):
            for kind in runs:
                runs[kind].append(measure(kind, csv))
        if {r["rows_out"] for k in runs for r in runs[k]} != {runs["duckdb"][0]["rows_out"]}:
            raise SystemExit(f"row counts differ: {runs}")
        results = {kind: median_of(r) for kind, r in runs.items()}
        base, base_run = results["duckdb"]["wall"], results["duckdb"]["run"]
        for kind in ("duckdb", "flowport"):
            print(_row("csv_to_parquet", rows, kind, results[kind], base, base_run))
        f, d = results["flowport"], results["duckdb"]
        size = f"{rows:,}"
        rss = f"{f['rss_mb']:.0f} / {d['rss_mb']:.0f}"
        summary_row(
            "csv_to_parquet (work)",
            size,
            f"{f['run']:.2f} s",
            f"DuckDB query {d['run']:.2f} s",
            d["run"] / f["run"],
            rss,
        )
        summary_row(
            "csv_to_parquet (process)",
            size,
            f"{f['wall']:.2f} s",
            f"DuckDB query {d['wall']:.2f} s",
            d["wall"] / f["wall"],
            rss,
        )


def flowport_home() -> dict[str, str]:
    """A temporary instance whose ``bench`` connection is the benchmark database; its environment."""
    home = OUT / "home"
    shutil.rmtree(home, ignore_errors=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FLOWPORT_") or k == "FLOWPORT_BENCH_PG_DATABASE"
    }
    env["FLOWPORT_HOME"] = str(home)
    cli = str(Path(sys.executable).parent / "flowport")
    subprocess.run([cli, "init", "--json"], env=env, check=True, capture_output=True)
    url = f"postgresql://postgres@127.0.0.1:5432/{PG_DATABASE}"
    subprocess.run(
        [cli, "connections", "add", "bench", "--url", url, "--json"], env=env, check=True, capture_output=True
    )
    return env


def bench_postgres(sizes: list[int], repeat: int, *, with_dlt: bool = True) -> None:
    """CSV -> field_mapper -> PostgreSQL (replace) as ``flowport run``: against psql \\copy and dlt."""
    prepare_postgres()
    dlt = dlt_python() if with_dlt else None
    env = flowport_home()
    cli = str(Path(sys.executable).parent / "flowport")
    for rows in sizes:
        csv = generate_orders(rows)
        document = OUT / f"pg_flow_{rows}.json"
        document.write_text(json.dumps(postgres_flow(csv, "flowport_orders")))
        parallel = OUT / f"pg_flow_{rows}_streams.json"
        parallel.write_text(json.dumps(postgres_flow(csv, "flowport_orders", copy_streams=2)))
        single = OUT / f"pg_flow_{rows}_single.json"
        single.write_text(json.dumps(postgres_flow(csv, "flowport_orders", copy_streams=1)))

        def psql_copy(csv: Path = csv) -> dict:
            subprocess.run(_psql("-c", "DROP TABLE IF EXISTS psql_orders"), check=True)
            subprocess.run(_psql("-c", f"CREATE TABLE psql_orders {PG_TABLE_SQL}"), check=True)
            return measure_command(
                _psql("-c", f"\\copy psql_orders FROM '{csv}' WITH (FORMAT csv, HEADER true)"), "psql_orders"
            )

        def flowport(document: Path = document) -> dict:
            return measure_command([cli, "run", str(document), "--json"], "flowport_orders", env)

        def flowport_streams(document: Path = parallel) -> dict:
            return measure_command([cli, "run", str(document), "--json"], "flowport_orders", env)

        def flowport_single(document: Path = single) -> dict:
            return measure_command([cli, "run", str(document), "--json"], "flowport_orders", env)

        def dlt_load(csv: Path = csv) -> dict:
            assert dlt is not None
            dlt_env = {**os.environ, "DLT_DATA_DIR": str(OUT / "dlt"), "RUNTIME__LOG_LEVEL": "WARNING"}
            return measure_command(
                [str(dlt), str(HERE / "peers" / "dlt_load.py"), str(csv), PG_DATABASE, "dlt_orders"],
                "dlt_orders",
                dlt_env,
            )

        runs: dict[str, list[dict]] = {"psql": [], "flowport": [], "flowport-1": [], "flowport-2": []}
        for _ in range(repeat):
            for kind, load in (
                ("psql", psql_copy),
                ("flowport", flowport),
                ("flowport-1", flowport_single),
                ("flowport-2", flowport_streams),
            ):
                settle_postgres()
                runs[kind].append(load())
        if dlt is not None and rows == sizes[0]:
            # Once, at the smallest size: dlt takes ten times as long.
            settle_postgres()
            runs["dlt"] = [dlt_load()]
        for kind, measured in runs.items():
            for r in measured:
                if r["rows_out"] != rows:
                    raise SystemExit(f"{kind} loaded {r['rows_out']} rows, expected {rows}")
        results = {kind: median_of(r) for kind, r in runs.items()}
        base = results["psql"]["wall"]
        for kind, r in results.items():
            print(_row("csv_to_postgres", rows, kind, r, base, None))
        f, p = results["flowport"], results["psql"]
        size = f"{rows:,}"
        summary_row(
            "csv_to_postgres (flowport run)",
            size,
            f"{f['wall']:.2f} s",
            f"psql \\copy {p['wall']:.2f} s",
            p["wall"] / f["wall"],
            f"{f['rss_mb']:.0f} / {p['rss_mb']:.0f}",
        )
        f1 = results["flowport-1"]
        summary_row(
            "csv_to_postgres, copy_streams: 1",
            size,
            f"{f1['wall']:.2f} s",
            f"psql \\copy {p['wall']:.2f} s",
            p["wall"] / f1["wall"],
            f"{f1['rss_mb']:.0f} / {p['rss_mb']:.0f}",
        )
        f2 = results["flowport-2"]
        summary_row(
            "csv_to_postgres, copy_streams: 2",
            size,
            f"{f2['wall']:.2f} s",
            f"psql \\copy {p['wall']:.2f} s",
            p["wall"] / f2["wall"],
            f"{f2['rss_mb']:.0f} / {p['rss_mb']:.0f}",
        )
        if "dlt" in results:
            d = results["dlt"]
            summary_row(
                "csv_to_postgres vs dlt",
                size,
                f"{f['wall']:.2f} s",
                f"dlt {d['wall']:.2f} s (1 run)",
                d["wall"] / f["wall"],
                f"{f['rss_mb']:.0f} / {d['rss_mb']:.0f}",
            )


def _json_rows(command: list[str]) -> list[dict]:
    """Run a benchmark script that prints its figures (and, last, a JSON line of summary rows)."""
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    lines = done.stdout.strip().splitlines()
    print("\n".join(lines[:-1]))
    rows: list[dict] = json.loads(lines[-1])
    return rows


def bench_auth() -> None:
    """50 concurrent clients, HTTP Basic against a bearer token (benchmarks/auth_concurrency.py)."""
    print()
    SUMMARY.extend(_json_rows([sys.executable, str(HERE / "auth_concurrency.py"), "--summary"]))


def bench_api() -> None:
    """50 concurrent clients on the list and on runs, SQLite and PostgreSQL stores (api_concurrency.py)."""
    print()
    SUMMARY.extend(_json_rows([sys.executable, str(HERE / "api_concurrency.py"), "--summary"]))


def bench_orchestration() -> None:
    """1,000 no-op tasks against Dagster and Prefect; the scheduler's tick (orchestration.py)."""
    print()
    SUMMARY.extend(_json_rows([sys.executable, str(HERE / "orchestration.py"), "--summary"]))


def bench_scale_out() -> None:
    """8 files into PostgreSQL, embedded and on Celery workers (scale_out.py)."""
    print()
    SUMMARY.extend(_json_rows([sys.executable, str(HERE / "scale_out.py"), "--summary"]))


def bench_streaming() -> None:
    """Redis Streams -> PostgreSQL against a bare consumer, and its latency (streaming.py)."""
    print()
    SUMMARY.extend(_json_rows([sys.executable, str(HERE / "streaming.py"), "--summary"]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--case",
        choices=["parquet", "postgres", "auth", "api", "orchestration", "scale_out", "streaming", "all"],
        default="all",
    )
    parser.add_argument("--rows", type=int, action="append", help="Input sizes (default: 1M, 5M and 10M).")
    parser.add_argument(
        "--repeat", type=int, default=3, help="Runs per case, interleaved; the median is reported."
    )
    parser.add_argument("--no-dlt", action="store_true", help="Leave dlt out of the PostgreSQL case.")
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
            bench_parquet(args.rows or [1_000_000, 5_000_000, 10_000_000], args.repeat)
        if args.case in ("postgres", "all"):
            bench_postgres(
                args.rows or [1_000_000, 5_000_000, 10_000_000], args.repeat, with_dlt=not args.no_dlt
            )
        shutil.rmtree(OUT, ignore_errors=True)
    if args.case in ("auth", "all"):
        bench_auth()
    if args.case in ("api", "all"):
        bench_api()
    if args.case in ("orchestration", "all"):
        bench_orchestration()
    if args.case in ("scale_out", "all"):
        bench_scale_out()
    if args.case in ("streaming", "all"):
        bench_streaming()
    print_summary()


if __name__ == "__main__":
    main()
