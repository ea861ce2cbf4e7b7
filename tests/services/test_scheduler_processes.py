"""Real `flowport scheduler` processes: two at once run each logical date once; SIGKILL the active one
mid catch-up and the standby takes over within a lease, with no duplicate and no missed date."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from flowport.services import flow_records, instance, schedules
from flowport.store import schedules as schedules_repo
from flowport.store.database import DATABASE_URL_ENV

DAYS = 40
TIMEOUT = 120.0


def _start(home: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = home / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if k not in (DATABASE_URL_ENV, "FLOWPORT_DATA_DIR")}
    # Runs execute inside the scheduler process (inline): a 40-day catch-up lasts long enough to kill.
    env.update({"FLOWPORT_HOME": str(home), "FLOWPORT_LAUNCHER": "inline"})
    command = [
        sys.executable,
        "-m",
        "flowport.cli.main",
        "scheduler",
        "--interval",
        "0.5",
        "--lease-seconds",
        "2",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return process, log


def _runs(schedule_id: int) -> list[tuple[datetime, int]]:
    with instance.transaction() as session:
        rows = schedules_repo.runs_of(session, schedule_id, limit=None)
        return [(r.logical_date, r.attempt) for r in rows]  # type: ignore[misc]


def _wait(condition: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_two_scheduler_processes_and_a_sigkill_leave_each_date_run_exactly_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.delenv("FLOWPORT_DATA_DIR", raising=False)
    instance.init_instance()
    folder = resources.files("flowport") / "examples" / "orders"
    data = flow_records.data_dir()
    data.mkdir(parents=True, exist_ok=True)
    (data / "orders.csv").write_bytes((folder / "orders.csv").read_bytes())
    flow = flow_records.create_flow(json.loads((folder / "flow.json").read_text()))
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=DAYS)
    schedule = schedules.create_schedule(
        {
            "name": "catch up",
            "flow": {"id": flow["id"]},
            "cron": "@daily",
            "startDate": start.isoformat(),
            "catchup": True,
            "maxActiveRuns": 1000,
        }
    )
    home = Path(os.environ["FLOWPORT_HOME"])
    first, first_log = _start(home, "a")
    second, second_log = _start(home, "b")
    processes = [first, second]
    try:
        _wait(lambda: len(_runs(schedule["id"])) >= 5, "the active scheduler creates runs")
        active = first if "Active" in first_log.read_text() else second
        standby = second if active is first else first
        assert "Active" not in (second_log if active is first else first_log).read_text()
        before = len(_runs(schedule["id"]))
        os.killpg(active.pid, signal.SIGKILL)
        active.wait(10)
        assert before < DAYS, "the kill must land in the middle of the catch-up"
        # The standby takes the lease once it expires and finishes the catch-up.
        _wait(lambda: len({d for d, _ in _runs(schedule["id"])}) == DAYS, "the standby finishes the catch-up")
        time.sleep(1.5)  # a few more ticks: nothing more may appear
        runs = _runs(schedule["id"])
        counts = Counter(d for d, _ in runs)
        assert len(runs) == DAYS and max(counts.values()) == 1, counts.most_common(3)
        assert sorted(counts) == [start + timedelta(days=i) for i in range(DAYS)]
        assert {attempt for _, attempt in runs} == {1}
        assert standby.poll() is None
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
