"""Orchestration benchmarks: a pipeline of 1,000 no-op tasks against Dagster and Prefect, and the
scheduler's tick with 10,000 active schedules.

1. **1,000 no-op tasks** in one DAG — a start task, a fan-out of 498 tasks, a join, a chain of 500
   — run to the end on the embedded default (SQLite store, the run in this process). Flowport's
   tasks are ``empty`` tasks (Airflow's EmptyOperator: resolved by the runner, no worker thread),
   each recorded in the store (status, times) and the run's lock, outbox and lease as for any run.
   Dagster runs the same graph of no-op ops with ``execute_in_process`` (in-process executor,
   ephemeral instance); Prefect 3 the same graph of no-op tasks on its default thread-pool task
   runner with an ephemeral server (SQLite), started by a warm-up flow before the clock starts.
   Each peer lives in its own virtual environment (``benchmarks/.venv-dagster``,
   ``benchmarks/.venv-prefect``), installed on first use; a peer that cannot be installed is left
   out, and said so. The clock covers running the DAG, not importing or defining it.
2. **Scheduler tick** with 10,000 active schedules (crons and presets in several timezones, on
   one flow): an idle tick (nothing due: the due-query reads the ``next_run_at`` index) and a
   tick where 100 schedules are due (100 runs created with their cursors moved; the runs are
   recorded by a launcher that completes them at once, so the figure is the scheduler's own).

    python benchmarks/orchestration.py [--tasks 1000] [--schedules 10000] [--repeat 3]

Goals (issue 12): tasks/s >= 10x the faster peer; an idle tick <= 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEERS = {
    "dagster": ("dagster_noop.py", ["dagster==1.13.29"]),
    "prefect": ("prefect_noop.py", ["prefect==3.8.8", "fastapi==0.150.0"]),
}


def peer_python(name: str) -> Path | None:
    """The peer's own virtual environment (installed on first use); None when it cannot be installed."""
    venv = HERE / f".venv-{name}"
    python = venv / "bin" / "python"
    if python.exists():
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *PEERS[name][1]], check=True, timeout=900
        )
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"{name} could not be installed ({exc}); it is left out", file=sys.stderr)
        shutil.rmtree(venv, ignore_errors=True)
        return None
    return python


def shape(tasks: int) -> tuple[int, int]:
    """(fan-out width, chain length) for ``tasks`` tasks: start + fan + join + chain."""
    fan = (tasks - 2) // 2
    return fan, tasks - 2 - fan


def _flowport_document(fan: int, chain: int) -> dict[str, Any]:
    tasks: list[dict[str, Any]] = [{"name": "start", "type": "empty"}]
    tasks += [{"name": f"f{i}", "type": "empty", "after": ["start"]} for i in range(fan)]
    tasks.append({"name": "join", "type": "empty", "after": [f"f{i}" for i in range(fan)]})
    previous = "join"
    for i in range(chain):
        tasks.append({"name": f"c{i}", "type": "empty", "after": [previous]})
        previous = f"c{i}"
    return {"name": "noops", "tasks": tasks}


def flowport_noops(fan: int, chain: int) -> dict[str, float]:
    """Run the DAG once on a fresh embedded instance; seconds from the trigger to the recorded end."""
    from flowport.services import instance, pipelines
    from flowport.services.launcher import use_launcher

    home = Path(tempfile.mkdtemp(prefix="flowport-bench-"))
    os.environ["FLOWPORT_HOME"] = str(home)
    os.environ.pop("FLOWPORT_DATABASE_URL", None)
    try:
        instance.init_instance()
        use_launcher("inline")  # the run's worker is this process (the embedded default's pool does the same)
        pipeline = pipelines.create_pipeline(_flowport_document(fan, chain))
        began = time.perf_counter()
        run = pipelines.start_pipeline(pipeline["id"])
        seconds = time.perf_counter() - began
        done = [t for t in run["tasks"] if t["status"] == "Complete"]
        assert run["status"] == "Complete" and len(done) == fan + chain + 2, run["status"]
        return {"tasks": float(len(done)), "seconds": seconds}
    finally:
        use_launcher(None)
        shutil.rmtree(home, ignore_errors=True)


def peer_noops(name: str, fan: int, chain: int) -> dict[str, float] | None:
    python = peer_python(name)
    if python is None:
        return None
    env = {**os.environ, "PREFECT_HOME": tempfile.mkdtemp(prefix="prefect-bench-")}
    script = HERE / "peers" / PEERS[name][0]
    done = subprocess.run(
        [str(python), str(script), str(fan), str(chain)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    shutil.rmtree(env["PREFECT_HOME"], ignore_errors=True)
    if done.returncode != 0:
        print(f"{name} failed: {done.stderr[-2000:]}", file=sys.stderr)
        return None
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


#: Summary rows for benchmarks/run.py's table (printed as JSON with --summary).
SUMMARY: list[dict[str, Any]] = []


def bench_tasks(tasks: int, repeat: int) -> None:
    fan, chain = shape(tasks)
    print(f"\nPipeline of {tasks} no-op tasks (start, fan-out {fan}, join, chain {chain}); best of {repeat}")
    results: dict[str, dict[str, float]] = {}
    for name in ("flowport", "dagster", "prefect"):
        runs = []
        for _ in range(repeat):
            r = flowport_noops(fan, chain) if name == "flowport" else peer_noops(name, fan, chain)
            if r is None:
                break
            runs.append(r)
        if runs:
            results[name] = min(runs, key=lambda r: r["seconds"])
    peers = [results[p]["seconds"] for p in ("dagster", "prefect") if p in results]
    fastest_peer = min(peers) if peers else None
    print(f"{'engine':<10}{'tasks':>7}{'seconds':>10}{'tasks/s':>10}{'vs faster peer':>16}")
    for name, r in results.items():
        ratio = f"{fastest_peer / r['seconds']:.1f}x" if fastest_peer else "-"
        rate = r["tasks"] / r["seconds"]
        print(f"{name:<10}{int(r['tasks']):>7}{r['seconds']:>10.3f}{rate:>10.0f}{ratio:>16}")
    if "flowport" in results:
        f = results["flowport"]
        peer = min(
            (p for p in ("dagster", "prefect") if p in results),
            key=lambda p: results[p]["seconds"],
            default=None,
        )
        SUMMARY.append(
            {
                "case": "orchestration no-op tasks",
                "size": f"{tasks} tasks",
                "flowport": f"{f['tasks'] / f['seconds']:.0f} tasks/s",
                "alternative": f"{peer} {results[peer]['tasks'] / results[peer]['seconds']:.0f} tasks/s"
                if peer
                else "no peer installed",
                "ratio": results[peer]["seconds"] / f["seconds"] if peer else None,
                "rss": "-",
            }
        )


def bench_tick(count: int, repeat: int) -> None:
    from flowport.model.timetable import Timetable
    from flowport.orchestrate import create_launcher
    from flowport.services import flow_records, instance, schedules
    from flowport.services.job_runner import fail_lost_job
    from flowport.services.launcher import use_launcher
    from flowport.services.scheduler import Scheduler
    from flowport.store import schedules as schedules_repo

    home = Path(tempfile.mkdtemp(prefix="flowport-tick-"))
    os.environ["FLOWPORT_HOME"] = str(home)
    os.environ.pop("FLOWPORT_DATABASE_URL", None)
    try:
        instance.init_instance()
        use_launcher(create_launcher("inline", _complete_at_once, on_lost=fail_lost_job))
        example = resources.files("flowport") / "examples" / "orders"
        flow = flow_records.create_flow(json.loads((example / "flow.json").read_text()))
        now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
        crons = ["@hourly", "*/5 * * * *", "@daily", "0 6 * * 1", "30 2 * * *", "@monthly"]
        zones = ["UTC", "Europe/London", "America/New_York", "Asia/Tokyo"]
        began = time.perf_counter()
        with instance.transaction() as session:
            for i in range(count):
                timetable = Timetable.parse(crons[i % len(crons)], zones[i % len(zones)], None, None)
                cursor = schedules.initial_cursor(timetable, False, now)
                schedules_repo.create(
                    session,
                    {
                        "name": f"schedule {i}",
                        "description": "",
                        "flow_id": flow["id"],
                        "cron": timetable.cron,
                        "timezone": timetable.timezone,
                        "catchup": False,
                        "max_active_runs": 1,
                        "paused": False,
                        "parameters": {},
                        **schedules.cursor_values(timetable, cursor),
                    },
                )
        created = time.perf_counter() - began
        with instance.transaction() as session:
            first_due = min(r.next_run_at for r in schedules_repo.list_(session, limit=None))
        scheduler = Scheduler()
        idle_at = first_due - timedelta(seconds=1)
        scheduler.run_once(idle_at)  # takes the lease
        idle = []
        for _ in range(max(repeat, 5) * 4):
            t = time.perf_counter()
            tick = scheduler.run_once(idle_at)
            idle.append(time.perf_counter() - t)
            assert tick.leader and not tick.created
        # Make exactly 100 schedules due (their latest complete interval not run yet); one tick runs them.
        due_timetable = Timetable.parse("*/5 * * * *", "UTC", None, None)
        latest = due_timetable.latest_complete(idle_at)
        with instance.transaction() as session:
            for row in schedules_repo.list_(session, limit=100):
                row.cron, row.timezone = due_timetable.cron, due_timetable.timezone
                for key, value in schedules.cursor_values(due_timetable, latest).items():
                    setattr(row, key, value)
        t = time.perf_counter()
        tick = scheduler.run_once(idle_at)
        busy = time.perf_counter() - t
        made = len([c for c in tick.created if c[2] is not None])
        assert made == 100 and not tick.refused, tick.refused[:3]
        print(f"\nScheduler with {count} active schedules ({created:.1f}s to store them)")
        print(
            f"  idle tick (nothing due):  median {statistics.median(idle) * 1000:.1f} ms, "
            f"max {max(idle) * 1000:.1f} ms over {len(idle)} ticks (goal <= 100 ms)"
        )
        print(
            f"  tick with 100 due:        {busy * 1000:.0f} ms for {made} runs created "
            f"({busy * 1000 / max(made, 1):.1f} ms per run, cursor moved, run recorded)"
        )
        idle_ms = statistics.median(idle) * 1000
        SUMMARY.append(
            {
                "case": "scheduler idle tick",
                "size": f"{count:,} schedules",
                "flowport": f"{idle_ms:.1f} ms",
                "alternative": "goal <= 100 ms",
                "ratio": 100 / idle_ms,
                "rss": "-",
            }
        )
    finally:
        use_launcher(None)
        shutil.rmtree(home, ignore_errors=True)


def _complete_at_once(task: Any) -> str:
    """A launcher's runner that records the run Complete without running a flow (tick cost only)."""
    from flowport.store import jobs as jobs_repo
    from flowport.store.database import transaction

    with transaction(task.database_url) as session:
        jobs_repo.transition(session, task.job_group_id, from_statuses={"Pending"}, to_status="InProgress")
        jobs_repo.transition(session, task.job_group_id, from_statuses={"InProgress"}, to_status="Complete")
    return "Complete"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", choices=["tasks", "tick", "all"], default="all")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--summary", action="store_true", help="End with a JSON line of summary rows.")
    args = parser.parse_args()
    if args.case in ("tasks", "all"):
        bench_tasks(args.tasks, args.repeat)
    if args.case in ("tick", "all"):
        bench_tick(args.schedules, args.repeat)
    if args.summary:
        print(json.dumps(SUMMARY))


if __name__ == "__main__":
    main()
