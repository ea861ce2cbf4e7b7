"""When a schedule runs: Airflow's interval semantics over a cron in a timezone, as pure functions.

A cron (5 fields) or a preset (``@once``, ``@hourly``, ``@daily``,
``@weekly``, ``@monthly``, ``@yearly``) gives *fire times*; consecutive fire
times bound *data intervals*. A run is for one interval: its **logical
date** is the interval's start, and it may start once the interval has
ended (``run_after`` = the interval's end). So a ``@daily`` run for
2026-12-02 starts just after midnight on 2026-12-03 — not "a day late",
but after the day it processes is complete.

Cron fields are wall-clock times in the schedule's IANA timezone (UTC by
default). Across daylight-saving changes each wall-clock fire time runs
once: a time that occurs twice (autumn) runs at its first occurrence; a
time that does not exist (spring) runs as Python's ``zoneinfo`` places it,
shifted forward by the gap. ``@once`` has one interval, of zero length, at
its start date.

Every datetime in and out is timezone-aware; results are in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from flowport.errors import ValidationFailed

__all__ = ["PRESETS", "Interval", "Timetable"]

#: Presets and the cron each stands for (``@once`` has none).
PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
ONCE = "@once"
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class Interval:
    """One data interval: the run for it has ``logical_date == start`` and may start at ``end``."""

    start: datetime
    end: datetime

    @property
    def logical_date(self) -> datetime:
        """The interval's start."""
        return self.start

    @property
    def run_after(self) -> datetime:
        """The earliest time the run for this interval may start (the interval's end)."""
        return self.end


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ValidationFailed(f"{what} must have a timezone (e.g. 2026-01-01T00:00:00Z)")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Timetable:
    """A validated schedule: ``cron`` (or a preset), ``timezone``, optional ``start`` and ``end``."""

    cron: str
    timezone: str = "UTC"
    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def parse(
        cls,
        cron: str,
        timezone: str = "UTC",
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> Timetable:
        """A timetable, or ValidationFailed saying what is wrong and how to write it.

        Raises:
            ValidationFailed: not a 5-field cron or a preset, an unknown
            timezone, a naive date, ``@once`` without a start, or a start after the end.
        """
        text = " ".join(str(cron or "").split())
        if not text:
            raise ValidationFailed(
                "A schedule needs a cron expression or a preset, e.g. '0 6 * * 1' or '@daily'"
            )
        if text.startswith("@"):
            if text != ONCE and text not in PRESETS:
                presets = ", ".join([ONCE, *PRESETS])
                raise ValidationFailed(f"Unknown preset '{text}': use one of {presets}")
        elif len(text.split(" ")) != 5 or not croniter.is_valid(text):
            raise ValidationFailed(
                f"'{text}' is not a 5-field cron expression (minute hour day-of-month month day-of-week), "
                "e.g. '0 6 * * 1' for Mondays at 06:00, or a preset such as '@daily'"
            )
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationFailed(
                f"Unknown timezone '{timezone}': use an IANA name such as 'UTC' or 'Europe/London'"
            ) from None
        start = _aware(start, "start_date") if start is not None else None
        end = _aware(end, "end_date") if end is not None else None
        if start is not None and end is not None and start > end:
            raise ValidationFailed(
                f"start_date {start.isoformat()} is after end_date {end.isoformat()}: "
                "swap them or drop end_date"
            )
        if text == ONCE and start is None:
            raise ValidationFailed("'@once' runs at its start_date: give a start_date")
        return cls(text, timezone, start, end)

    @property
    def once(self) -> bool:
        """Whether this is ``@once``."""
        return self.cron == ONCE

    @property
    def _expression(self) -> str:
        return PRESETS.get(self.cron, self.cron)

    @property
    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _wall(self, when: datetime) -> datetime:
        return when.astimezone(self._zone).replace(tzinfo=None)

    def _instant(self, wall: datetime) -> datetime:
        # fold=0: an ambiguous wall time is its first occurrence; a missing one is shifted by the gap.
        return wall.replace(tzinfo=self._zone, fold=0).astimezone(UTC)

    def fire_after(self, when: datetime) -> datetime:
        """The first fire time strictly after ``when``."""
        when = _aware(when, "A time")
        wall = self._wall(when)
        while True:
            wall = croniter(self._expression, wall).get_next(datetime)
            instant = self._instant(wall)
            if instant > when:
                return instant

    def fire_at_or_before(self, when: datetime) -> datetime:
        """The last fire time at or before ``when``."""
        when = _aware(when, "A time")
        wall = self._wall(when) + _TICK
        while True:
            wall = croniter(self._expression, wall).get_prev(datetime)
            instant = self._instant(wall)
            if instant <= when:
                return instant

    def _in_range(self, logical_date: datetime) -> bool:
        return (self.start is None or logical_date >= self.start) and (
            self.end is None or logical_date <= self.end
        )

    def first(self, not_before: datetime) -> datetime | None:
        """The first logical date at or after ``not_before`` and the start date; None past the end."""
        floor = max(_aware(not_before, "A time"), self.start) if self.start else _aware(not_before, "A time")
        if self.once:
            assert self.start is not None
            return self.start if self.start >= _aware(not_before, "A time") else None
        candidate = self.fire_after(floor - _TICK)
        return candidate if self._in_range(candidate) else None

    def interval(self, logical_date: datetime) -> Interval:
        """The data interval that starts at ``logical_date``."""
        logical_date = _aware(logical_date, "A logical date")
        if self.once:
            return Interval(logical_date, logical_date)
        return Interval(logical_date, self.fire_after(logical_date))

    def following(self, logical_date: datetime) -> datetime | None:
        """The logical date after ``logical_date``; None past the end (or after ``@once``)."""
        if self.once:
            return None
        after = self.fire_after(_aware(logical_date, "A logical date"))
        return after if self._in_range(after) else None

    def latest_complete(self, now: datetime) -> datetime | None:
        """The logical date of the latest interval that has ended by ``now`` (inside start and end)."""
        now = _aware(now, "A time")
        if self.once:
            assert self.start is not None
            return self.start if self.start <= now else None
        current = self.fire_at_or_before(now)  # the start of the interval in progress
        latest = self.fire_at_or_before(current - _TICK)
        if self.end is not None and latest > self.end:
            latest = self.fire_at_or_before(self.end)
        if self.start is not None and latest < self.start:
            return None
        return latest

    def logical_dates(self, start: datetime, end: datetime) -> list[datetime]:
        """Every logical date in ``[start, end]`` (and in the timetable's own range), in order."""
        start, end = _aware(start, "start"), _aware(end, "end")
        dates: list[datetime] = []
        current = self.first(start)
        while current is not None and current <= end:
            dates.append(current)
            current = self.following(current)
        return dates
