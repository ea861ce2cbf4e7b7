"""The scheduler: one active per instance, creating each schedule's runs exactly once per logical date.

:meth:`Scheduler.run_once` is one tick, with an injectable clock:

1. Take or renew the ``scheduler`` lease in the metadata store (compare-and-set).
   Only its holder ticks; a second ``flowport scheduler`` waits and takes over
   within one lease period once the first stops renewing it.
2. Read the schedules whose next interval has ended (``next_run_at <= now``,
   an indexed query: a tick costs what is due, not what exists). For each,
   in order: skip to the latest complete interval unless ``catchup``; wait
   (create nothing) while ``max_active_runs`` runs are active; else start the
   run for the logical date through :func:`flowport.services.runs.start`
   (trigger ``schedule``, the data interval passed on) and move the cursor by
   compare-and-set. The store's unique constraint (schedule, logical date,
   attempt) makes a second creation for the same date — another process, a
   restart between creating a run and moving the cursor — a no-op, so no
   date is run twice and none is skipped.
3. Drive running backfills the same way, under their own ``max_active_runs``.

A due run that cannot start (an invalid flow, a deployment without an
active release) is recorded as a Failed run for its logical date, with the
reason, and the schedule's ``lastError`` says it: never skipped silently.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flowport.errors import Conflict, FlowportError
from flowport.model.timetable import Interval, Timetable
from flowport.services import runs as _runs
from flowport.services.instance import transaction
from flowport.services.pipelines import LocksHeld
from flowport.services.schedules import timetable_of
from flowport.store import jobs as _jobs_repo
from flowport.store import leases as _leases
from flowport.store import schedules as _repo
from flowport.store.tables import Backfill, ScheduleRecord, utcnow

__all__ = ["LEASE_NAME", "LEASE_TTL", "TICK_INTERVAL", "Scheduler", "Tick"]

_log = logging.getLogger(__name__)

LEASE_NAME = "scheduler"
#: How long the active scheduler's lease lasts without renewal (another process takes over after it).
LEASE_TTL = timedelta(seconds=30)
#: Seconds between ticks of ``flowport scheduler`` and of the scheduler inside ``flowport server``.
TICK_INTERVAL = 5.0
#: What :meth:`Scheduler._start` answers when a pipeline's task locks are held and its schedule waits.
WAIT = "waiting for task locks"


@dataclass
class Tick:
    """What one tick did."""

    leader: bool
    #: ``(schedule id, logical date, job group id or None when another process had created it)``.
    created: list[tuple[int, datetime, int | None]] = field(default_factory=list)
    #: Schedules with a due run held back by ``max_active_runs``.
    waiting: list[int] = field(default_factory=list)
    #: ``(schedule id, logical date, reason)`` of due runs that could not start (recorded Failed).
    refused: list[tuple[int, datetime, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Due:
    schedule_id: int
    expected: datetime
    logical_date: datetime
    interval: Interval
    following: datetime | None
    timetable: Timetable
    target: _runs.RunTarget | _runs.PipelineTarget
    parameters: dict[str, Any]
    #: For a pipeline whose task locks are held: wait (the date stays due) or skip it.
    lock_policy: str = "wait"


class Scheduler:
    """The scheduler of this instance, as one holder of the scheduler lease.

    Args:
        holder: who holds the lease (default: host, process id and a random suffix).
        clock: the time source (tests pass a fake one).
        lease_ttl: how long the lease lasts without renewal.
    """

    def __init__(
        self,
        holder: str | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        lease_ttl: timedelta = LEASE_TTL,
    ) -> None:
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.lease_ttl = lease_ttl

    # -- the lease ----------------------------------------------------------------------

    def lead(self, now: datetime | None = None) -> bool:
        """Take or renew the scheduler lease; whether this scheduler is the active one."""
        with transaction() as session:
            return _leases.acquire(session, LEASE_NAME, self.holder, now or self.clock(), self.lease_ttl)

    def release(self) -> None:
        """Give the lease up (a clean shutdown), so another scheduler takes over at once."""
        with transaction() as session:
            _leases.release(session, LEASE_NAME, self.holder)

    # -- one tick -------------------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> Tick:
        """One tick at ``now`` (default: the clock): due schedules and backfills, if this is the leader."""
        now = now or self.clock()
        if not self.lead(now):
            return Tick(leader=False)
        tick = Tick(leader=True)
        with transaction() as session:
            due = [row.id for row in _repo.due(session, now)]
        for schedule_id in due:
            try:
                self._schedule(schedule_id, now, tick)
            except Exception:
                _log.exception("Schedule %s: the tick failed; it is tried again next tick", schedule_id)
        with transaction() as session:
            backfills = [row.id for row in _repo.running_backfills(session)]
        for backfill_id in backfills:
            try:
                self._backfill(backfill_id, now, tick)
            except Exception:
                _log.exception("Backfill %s: the tick failed; it is tried again next tick", backfill_id)
        return tick

    def _schedule(self, schedule_id: int, now: datetime, tick: Tick) -> None:
        while True:
            # A long catch-up renews the lease as it goes, and stops if another scheduler took it.
            if not self.lead():
                return
            with transaction() as session:
                row = _repo.get_by_id(session, schedule_id)
                due = _next_due(row, now)
                if due is None:
                    return
                if _repo.active_runs(session, schedule_id, "schedule") >= row.max_active_runs:
                    tick.waiting.append(schedule_id)
                    return
                if due.logical_date != due.expected:  # catchup off: the skipped intervals are not run
                    _log.info(
                        "Schedule '%s': skipping to %s (catchup is off)",
                        row.name,
                        due.logical_date.isoformat(),
                    )
            error = self._start(due, "schedule", 1, tick)
            if error is WAIT:
                return  # the date stays due: tried again next tick
            after = due.following
            with transaction() as session:
                if not _repo.advance(
                    session,
                    schedule_id,
                    due.expected,
                    after,
                    due.timetable.interval(after).run_after if after is not None else None,
                    last_error=error,
                ):
                    return  # another scheduler moved it: it owns the rest of this schedule's tick

    def _start(self, due: _Due, trigger: str, attempt: int, tick: Tick) -> str | None:
        """Start the run for ``due``; the reason when it could not start (recorded as a Failed run)."""
        context = _runs.Schedule(
            due.schedule_id, due.logical_date, due.interval.start, due.interval.end, attempt=attempt
        )
        try:
            if isinstance(due.target, _runs.PipelineTarget):
                from flowport.services.pipelines import start_pipeline

                group = start_pipeline(
                    due.target.pipeline_id,
                    trigger,  # type: ignore[arg-type]
                    None,
                    overrides=due.parameters,
                    schedule=context,
                )
            else:
                group = _runs.start(due.target, trigger, None, overrides=due.parameters, schedule=context)  # type: ignore[arg-type]
        except LocksHeld as exc:
            if due.lock_policy == "wait":
                _log.info("Schedule %s: %s; waiting", due.schedule_id, exc.message)
                tick.waiting.append(due.schedule_id)
                return WAIT
            return self._refuse(due, trigger, attempt, exc.message, tick, status="Canceled")
        except Conflict as exc:
            if "already has a run" not in exc.message:
                return self._refuse(due, trigger, attempt, exc.message, tick)
            tick.created.append((due.schedule_id, due.logical_date, None))
            return None
        except FlowportError as exc:
            return self._refuse(due, trigger, attempt, exc.message, tick)
        tick.created.append((due.schedule_id, due.logical_date, int(group["id"])))
        _log.info(
            "Schedule %s: run %s for %s (%s)",
            due.schedule_id,
            group["id"],
            due.logical_date.isoformat(),
            trigger,
        )
        return None

    def _refuse(
        self, due: _Due, trigger: str, attempt: int, message: str, tick: Tick, status: str = "Failed"
    ) -> str:
        verb = "was skipped" if status == "Canceled" else "could not start"
        reason = f"The run for {due.logical_date.isoformat()} {verb}: {message}"
        _log.warning("Schedule %s: %s", due.schedule_id, reason)
        tick.refused.append((due.schedule_id, due.logical_date, message))
        flow_id = due.target.flow_id if isinstance(due.target, _runs.FlowTarget) else None
        deployment_id = due.target.deployment_id if isinstance(due.target, _runs.DeploymentTarget) else None
        pipeline_id = due.target.pipeline_id if isinstance(due.target, _runs.PipelineTarget) else None
        try:
            with transaction() as session:
                group = _jobs_repo.create_group(
                    session,
                    flow_id=flow_id,
                    deployment_id=deployment_id,
                    parameters={k: str(v) for k, v in due.parameters.items()},
                    trigger=trigger,
                    schedule_id=due.schedule_id,
                    logical_date=due.logical_date,
                    data_interval=(due.interval.start, due.interval.end),
                    attempt=attempt,
                    pipeline_id=pipeline_id,
                )
                now = utcnow()
                _jobs_repo.transition(
                    session,
                    group.id,
                    from_statuses={"Created"},
                    to_status=status,
                    group_values={"error": reason, "finished_at": now},
                )
        except Conflict:
            pass  # another process recorded this date already
        return reason

    def _backfill(self, backfill_id: int, now: datetime, tick: Tick) -> None:
        while True:
            with transaction() as session:
                backfill = _repo.get_backfill(session, backfill_id)
                if backfill.status != "Running":
                    return
                row = _repo.get_by_id(session, backfill.schedule_id)
                timetable = timetable_of(row)
                cursor = backfill.next_logical_date
                if cursor is None or cursor > backfill.end_date:
                    _finish(backfill)
                    return
                interval = timetable.interval(cursor)
                if interval.run_after > now:
                    return  # not complete yet: a later tick
                if _repo.active_runs(session, row.id, "backfill") >= backfill.max_active_runs:
                    return
                attempt = _attempt(session, row.id, cursor, backfill.reprocess)
                following = timetable.following(cursor)
                due = _Due(
                    row.id,
                    cursor,
                    cursor,
                    interval,
                    following,
                    timetable,
                    _target(row),
                    dict(row.parameters or {}),
                    row.lock_policy,
                )
            if attempt is not None and self._start(due, "backfill", attempt, tick) is WAIT:
                return  # the date stays next: tried again next tick
            with transaction() as session:
                backfill = _repo.get_backfill(session, backfill_id)
                if backfill.next_logical_date != cursor:
                    return
                backfill.next_logical_date = following
                backfill.updated_at = utcnow()
                if following is None or following > backfill.end_date:
                    _finish(backfill)
                    return


def _finish(backfill: Backfill) -> None:
    backfill.status = "Complete"
    backfill.next_logical_date = None
    backfill.updated_at = utcnow()


def _attempt(session: Any, schedule_id: int, logical_date: datetime, reprocess: str) -> int | None:
    """The attempt a backfill creates for ``logical_date``, or None to leave the date as it is."""
    existing = _repo.runs_for(session, schedule_id, logical_date)
    if not existing:
        return 1
    latest = existing[-1]
    if latest.status in _repo.ACTIVE_STATUSES:
        return None
    if reprocess == "all" or (reprocess == "failed" and latest.status in ("Failed", "Canceled")):
        return latest.attempt + 1
    return None


def _target(row: ScheduleRecord) -> _runs.RunTarget | _runs.PipelineTarget:
    if row.flow_id is not None:
        return _runs.FlowTarget(row.flow_id)
    if row.deployment_id is not None:
        return _runs.DeploymentTarget(row.deployment_id)
    if row.pipeline_id is not None:
        return _runs.PipelineTarget(row.pipeline_id)
    raise FlowportError(f"Schedule '{row.name}' has no target")


def _next_due(row: ScheduleRecord, now: datetime) -> _Due | None:
    """The run a schedule owes at ``now``, or None (paused, done, or its interval not over yet)."""
    if row.paused or row.next_logical_date is None:
        return None
    timetable = timetable_of(row)
    expected = row.next_logical_date
    logical_date = expected
    if timetable.interval(logical_date).run_after > now:
        return None
    if not row.catchup:
        latest = timetable.latest_complete(now)
        if latest is not None and latest > logical_date:
            logical_date = latest
    return _Due(
        row.id,
        expected,
        logical_date,
        timetable.interval(logical_date),
        timetable.following(logical_date),
        timetable,
        _target(row),
        dict(row.parameters or {}),
        row.lock_policy,
    )
