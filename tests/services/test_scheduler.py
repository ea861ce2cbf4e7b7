"""The scheduler with an injectable clock: one run per schedule and logical date, in order,
whatever restarts, second schedulers, bursts, pauses or daylight-saving changes happen."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest
from tests.launchers import completing_runner, holding_runner

from flowport.errors import ValidationFailed
from flowport.orchestrate import create_launcher
from flowport.services import flow_records, instance, jobs, schedules
from flowport.services import launcher as launchers
from flowport.services.job_runner import fail_lost_job
from flowport.services.scheduler import Scheduler
from flowport.store import jobs as jobs_repo
from flowport.store import schedules as schedules_repo
from flowport.store.database import DATABASE_URL_ENV


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def _use(runner: Any) -> None:
    launchers.use_launcher(create_launcher("inline", runner, on_lost=fail_lost_job))


@pytest.fixture(autouse=True)
def _instance(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.delenv("FLOWPORT_DATA_DIR", raising=False)
    instance.init_instance()
    _use(completing_runner)
    yield
    launchers.use_launcher(None)


@pytest.fixture
def flow() -> dict[str, Any]:
    folder = resources.files("flowport") / "examples" / "orders"
    data = flow_records.data_dir()
    data.mkdir(parents=True, exist_ok=True)
    (data / "orders.csv").write_bytes((folder / "orders.csv").read_bytes())
    document = json.loads((folder / "flow.json").read_text())
    # ${ds} in a destination path: the scheduler fills it with the run's logical date.
    return flow_records.create_flow(document)


def _day(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


def _dates(schedule_id: int) -> list[datetime]:
    with instance.transaction() as session:
        rows = schedules_repo.runs_of(session, schedule_id, limit=None)
        return [r.logical_date for r in sorted(rows, key=lambda r: r.id)]  # type: ignore[misc]


def _create(flow: dict[str, Any], clock: Clock, **fields: Any) -> dict[str, Any]:
    body = {"name": fields.pop("name", "nightly"), "flow": {"id": flow["id"]}, "cron": "@daily", **fields}
    return schedules.create_schedule(body, now=clock())


def test_catchup_over_a_month_creates_each_logical_date_once_and_in_order(flow: dict[str, Any]) -> None:
    clock = Clock(_day(11, 1))
    created = _create(flow, clock, startDate="2026-11-01T00:00:00Z", catchup=True, maxActiveRuns=5)
    assert created["nextLogicalDate"] == "2026-11-01T00:00:00.000Z"
    # The run for 1 November starts once 1 November is over: not "a day late".
    assert created["nextRunAt"] == "2026-11-02T00:00:00.000Z"
    scheduler = Scheduler(clock=clock)
    assert scheduler.run_once().created == []  # nothing due yet
    clock.now = _day(12, 1, 0, 0, 1)
    tick = scheduler.run_once()
    assert tick.leader
    expected = [_day(11, d) for d in range(1, 31)]
    assert _dates(created["id"]) == expected
    assert scheduler.run_once().created == []  # a second tick adds nothing
    shown = schedules.get_schedule(created["id"])
    assert shown["lastRun"]["logicalDate"] == "2026-11-30T00:00:00.000Z"
    assert shown["nextLogicalDate"] == "2026-12-01T00:00:00.000Z"
    assert shown["nextRunAt"] == "2026-12-02T00:00:00.000Z"
    group = jobs.get_job_group(shown["lastRun"]["id"])
    assert group["trigger"] == "schedule" and group["schedule"] == {"id": created["id"]}
    assert group["dataIntervalStart"] == "2026-11-30T00:00:00.000Z"
    assert group["dataIntervalEnd"] == "2026-12-01T00:00:00.000Z"


def test_without_catchup_only_the_latest_complete_interval_runs(flow: dict[str, Any]) -> None:
    clock = Clock(_day(12, 3, 10))
    created = _create(flow, clock, startDate="2026-11-01T00:00:00Z")
    # Airflow 3's default: no catch-up; the latest complete interval (2 December) is next.
    assert created["nextLogicalDate"] == "2026-12-02T00:00:00.000Z"
    scheduler = Scheduler(clock=clock)
    scheduler.run_once()
    assert _dates(created["id"]) == [_day(12, 2)]
    clock.now = _day(12, 6, 1)  # three days later, one tick
    scheduler.run_once()
    assert _dates(created["id"]) == [_day(12, 2), _day(12, 5)]


def test_a_restart_between_creating_a_run_and_moving_the_cursor_neither_duplicates_nor_misses(
    flow: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(_day(11, 1))
    created = _create(flow, clock, startDate="2026-11-01T00:00:00Z", catchup=True, maxActiveRuns=50)
    clock.now = _day(11, 16, 0, 0, 1)
    real_advance = schedules_repo.advance
    calls = {"n": 0}

    def dying_advance(*args: Any, **kwargs: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 8:  # the run for the 8th day exists; the process dies before the cursor moves
            raise SystemExit("killed")
        return real_advance(*args, **kwargs)

    monkeypatch.setattr(schedules_repo, "advance", dying_advance)
    with pytest.raises(SystemExit):
        Scheduler("first", clock=clock).run_once()
    monkeypatch.setattr(schedules_repo, "advance", real_advance)
    assert _dates(created["id"]) == [_day(11, d) for d in range(1, 9)]
    # The dead scheduler's lease must expire before another takes over.
    second = Scheduler("second", clock=clock)
    assert second.run_once().leader is False
    clock.advance(seconds=31)
    tick = second.run_once()
    assert tick.leader
    assert _dates(created["id"]) == [_day(11, d) for d in range(1, 16)]
    assert (created["id"], _day(11, 8), None) in tick.created  # found already created, not made again


def test_two_schedulers_produce_one_run_per_date(flow: dict[str, Any]) -> None:
    clock = Clock(_day(11, 1))
    created = _create(flow, clock, startDate="2026-11-01T00:00:00Z", catchup=True, maxActiveRuns=100)
    first, second = Scheduler("a", clock=clock), Scheduler("b", clock=clock)
    for _ in range(10):
        clock.advance(hours=12)
        ticks = [first.run_once(), second.run_once()]
        assert sum(t.leader for t in ticks) == 1
    assert _dates(created["id"]) == [_day(11, d) for d in range(1, 6)]
    # The leader stops; the other takes over within one lease period.
    clock.advance(seconds=29)
    assert second.run_once().leader is False
    clock.advance(seconds=2)
    assert second.run_once().leader is True
    first.release()


def test_max_active_runs_holds_under_a_burst(flow: dict[str, Any]) -> None:
    _use(holding_runner)  # runs stay Pending, as in a busy pool
    clock = Clock(_day(11, 1))
    created = _create(flow, clock, startDate="2026-11-01T00:00:00Z", catchup=True, maxActiveRuns=2)
    clock.now = _day(11, 11)
    scheduler = Scheduler(clock=clock)
    tick = scheduler.run_once()
    assert _dates(created["id"]) == [_day(11, 1), _day(11, 2)]
    assert tick.waiting == [created["id"]]
    for _ in range(3):
        scheduler.run_once()
    assert len(_dates(created["id"])) == 2  # extra runs wait, never run
    # One ends: the next logical date (in order) gets the slot.
    with instance.transaction() as session:
        first = schedules_repo.runs_for(session, created["id"], _day(11, 1))[0]
        jobs_repo.transition(session, first.id, from_statuses={"Pending"}, to_status="Canceled")
    scheduler.run_once()
    assert _dates(created["id"]) == [_day(11, 1), _day(11, 2), _day(11, 3)]


def test_pause_then_resume_does_not_catch_up(flow: dict[str, Any]) -> None:
    clock = Clock(_day(11, 1))
    created = _create(flow, clock, startDate="2026-11-01T00:00:00Z", catchup=True, maxActiveRuns=10)
    scheduler = Scheduler(clock=clock)
    clock.now = _day(11, 3, 0, 1)
    scheduler.run_once()
    assert _dates(created["id"]) == [_day(11, 1), _day(11, 2)]
    paused = schedules.pause_schedule(created["id"])
    assert paused["paused"] and paused["nextRunAt"] is None
    clock.now = _day(11, 13, 0, 1)
    scheduler.run_once()
    assert len(_dates(created["id"])) == 2  # paused: nothing
    resumed = schedules.resume_schedule(created["id"], now=clock())
    assert resumed["nextLogicalDate"] == "2026-11-12T00:00:00.000Z"
    scheduler.run_once()
    assert _dates(created["id"]) == [_day(11, 1), _day(11, 2), _day(11, 12)]


def test_resume_catches_up_only_when_asked(flow: dict[str, Any]) -> None:
    clock = Clock(_day(11, 1))
    created = _create(flow, clock, startDate="2026-11-01T00:00:00Z", catchup=True, maxActiveRuns=10)
    schedules.pause_schedule(created["id"])
    clock.now = _day(11, 4, 0, 1)
    schedules.resume_schedule(created["id"], catch_up=True, now=clock())
    Scheduler(clock=clock).run_once()
    assert _dates(created["id"]) == [_day(11, 1), _day(11, 2), _day(11, 3)]


def test_a_daylight_saving_change_in_london_runs_once(flow: dict[str, Any]) -> None:
    clock = Clock(_day(10, 23))
    created = _create(
        flow,
        clock,
        cron="30 1 * * *",
        timezone="Europe/London",
        startDate="2026-10-23T00:00:00Z",
        catchup=True,
        maxActiveRuns=10,
    )
    clock.now = _day(10, 28, 12)
    Scheduler(clock=clock).run_once()
    dates = _dates(created["id"])
    # 01:30 on 25 October happens twice in London (clocks go back at 02:00 BST): one run.
    assert [d.astimezone(UTC).strftime("%m-%d %H:%M") for d in dates] == [
        "10-23 00:30",
        "10-24 00:30",
        "10-25 00:30",
        "10-26 01:30",
        "10-27 01:30",
    ]


def test_changing_the_cron_does_not_catch_up(flow: dict[str, Any]) -> None:
    clock = Clock(_day(11, 1))
    created = _create(flow, clock, startDate="2026-11-01T00:00:00Z", catchup=True, maxActiveRuns=10)
    clock.now = _day(11, 20, 10)
    changed = schedules.update_schedule(created["id"], {"cron": "0 6 * * *"}, now=clock())
    assert changed["nextLogicalDate"] == "2026-11-20T06:00:00.000Z"  # the interval in progress
    assert changed["nextRunAt"] == "2026-11-21T06:00:00.000Z"
    Scheduler(clock=clock).run_once()
    assert _dates(created["id"]) == []


def test_schedule_context_reaches_the_parameters_the_flow_uses(flow: dict[str, Any]) -> None:
    clock = Clock(_day(11, 1))
    created = _create(
        flow, clock, startDate="2026-11-01T00:00:00Z", catchup=True, parameters={"min_total": 50}
    )
    clock.now = _day(11, 2, 0, 1)
    Scheduler(clock=clock).run_once()
    run = schedules.get_schedule(created["id"])["lastRun"]
    group = jobs.get_job_group(run["id"])
    # The example declares min_total but not ds: only what the flow knows is passed on.
    assert group["parameters"] == {"min_total": "50"}
    assert group["logicalDate"] == "2026-11-01T00:00:00.000Z"


def test_a_run_that_cannot_start_is_recorded_failed_not_skipped(flow: dict[str, Any]) -> None:
    clock = Clock(_day(11, 1))
    created = _create(flow, clock, startDate="2026-11-01T00:00:00Z", catchup=True, parameters={"nope": 1})
    clock.now = _day(11, 2, 0, 1)
    tick = Scheduler(clock=clock).run_once()
    assert tick.refused and "nope" in tick.refused[0][2]
    shown = schedules.get_schedule(created["id"])
    assert (
        shown["lastRun"]["status"] == "Failed"
        and shown["lastRun"]["logicalDate"] == "2026-11-01T00:00:00.000Z"
    )
    assert "could not start" in shown["lastError"] and "nope" in shown["lastError"]


def test_backfill_creates_missing_dates_in_order_and_reprocesses_failed_ones(flow: dict[str, Any]) -> None:
    clock = Clock(_day(11, 10, 12))
    created = _create(flow, clock, startDate="2026-11-01T00:00:00Z")  # no catchup: only 9 November ran
    scheduler = Scheduler(clock=clock)
    scheduler.run_once()
    assert _dates(created["id"]) == [_day(11, 9)]
    plan = schedules.create_backfill(
        created["id"], {"start": "2026-11-05T00:00:00Z", "end": "2026-11-09T00:00:00Z", "dryRun": True}
    )
    assert plan["backfill"] is None
    assert [p["action"] for p in plan["plan"]] == ["create"] * 4 + ["skip (Complete)"]
    assert _dates(created["id"]) == [_day(11, 9)]  # a dry run stores nothing
    made = schedules.create_backfill(
        created["id"],
        {
            "start": "2026-11-05T00:00:00Z",
            "end": "2026-11-09T00:00:00Z",
            "reprocess": "all",
            "maxActiveRuns": 2,
        },
    )
    assert made["backfill"]["status"] == "Running"
    scheduler.run_once()
    dates = _dates(created["id"])
    assert dates == [_day(11, 9), _day(11, 5), _day(11, 6), _day(11, 7), _day(11, 8), _day(11, 9)]
    with instance.transaction() as session:
        again = schedules_repo.runs_for(session, created["id"], _day(11, 9))
        assert [r.attempt for r in again] == [1, 2] and again[1].triggered_by == "backfill"
    assert schedules.list_backfills(created["id"])["data"][0]["status"] == "Complete"


def test_bad_schedules_are_refused_with_what_to_write(flow: dict[str, Any]) -> None:
    clock = Clock(_day(11, 1))
    cases = [
        ({"cron": "every day"}, "5-field cron"),
        ({"cron": "@fortnightly"}, "Unknown preset"),
        ({"timezone": "Mars/Olympus"}, "IANA"),
        ({"startDate": "2026-12-01T00:00:00Z", "endDate": "2026-11-01T00:00:00Z"}, "after end_date"),
        ({"cron": "@once"}, "start_date"),
    ]
    for fields, message in cases:
        with pytest.raises(ValidationFailed, match=message):
            _create(flow, clock, **fields)
    with pytest.raises(ValidationFailed, match="one target"):
        schedules.create_schedule({"name": "x", "cron": "@daily"})
    with pytest.raises(ValidationFailed, match="extra: unknown key"):
        schedules.create_schedule({"name": "x", "flow": {"id": flow["id"]}, "cron": "@daily", "extra": 1})
