"""Flowport benchmarks: one command, ratios against alternatives measured in the same run.

    make bench                      # 1M and 10M rows
    make bench BENCH_ARGS="--rows 1000000"

Case ``csv_to_parquet``: an orders CSV -> field_mapper (casts) -> filter ->
Parquet, run by Flowport's engine, against the same work written by hand
as one DuckDB query. Each measurement runs in a fresh child process:
``wall`` includes interpreter start-up and imports, ``run`` is the work
alone (timed inside the child), peak RSS is that process's own
(``wait4``'s ``ru_maxrss``). Ratios are throughput relative to DuckDB.
"""

from __future__ import annotations

import argparse
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


def measure(kind: str, csv: Path) -> dict:
    """Run one case in a child process; wall time, rows out and peak RSS."""
    out = OUT / f"{kind}_{csv.stem}.parquet"
    if out.exists():
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, action="append", help="Input sizes (default 1M and 10M).")
    parser.add_argument("--repeat", type=int, default=1, help="Runs per case; the best is reported.")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, csv, out = args.child
        _child(kind, Path(csv), Path(out))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    sizes = args.rows or [1_000_000, 10_000_000]
    print(
        f"{'case':<16}{'rows':>12}{'engine':>10}{'wall s':>9}{'rows/s':>12}{'ratio':>8}"
        f"{'run s':>8}{'run ratio':>10}{'peak MB':>9}"
    )
    for rows in sizes:
        csv = generate_orders(rows)
        results = {}
        for kind in ("duckdb", "flowport"):
            runs = [measure(kind, csv) for _ in range(args.repeat)]
            results[kind] = min(runs, key=lambda r: r["wall"])
        if results["duckdb"]["rows_out"] != results["flowport"]["rows_out"]:
            raise SystemExit(f"row counts differ: {results}")
        base, base_run = results["duckdb"]["wall"], results["duckdb"]["run"]
        for kind in ("duckdb", "flowport"):
            r = results[kind]
            print(
                f"{'csv_to_parquet':<16}{rows:>12,}{kind:>10}{r['wall']:>9.2f}{rows / r['wall']:>12,.0f}"
                f"{base / r['wall']:>7.2f}x{r['run']:>8.2f}{base_run / r['run']:>9.2f}x{r['rss_mb']:>9.0f}"
            )
    shutil.rmtree(OUT, ignore_errors=True)


if __name__ == "__main__":
    main()
