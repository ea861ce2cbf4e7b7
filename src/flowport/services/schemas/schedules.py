"""The bodies of ``/v4/schedules`` and their backfills."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flowport.services.schemas.common import Name, ReadModel, Ref, Timestamp

__all__ = [
    "BackfillRead",
    "BackfillRequest",
    "RunSummary",
    "ScheduleChanges",
    "ScheduleCreate",
    "ScheduleRead",
]


class _Ref(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int = Field(ge=1)


class _Write(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ScheduleCreate(_Write):
    """The body of ``POST /v4/schedules``: a target (``flow`` or ``deployment``), timing and parameters."""

    name: Name
    description: str = Field(default="", max_length=10_000)
    flow: _Ref | None = None
    deployment: _Ref | None = None
    pipeline: _Ref | None = None
    lock_policy: Literal["wait", "skip"] = Field(
        default="wait",
        alias="lockPolicy",
        description="A pipeline run whose task locks are held: wait for them, or skip the date",
    )
    cron: str = Field(min_length=1, max_length=120, description="5-field cron or @once/@hourly/@daily/...")
    timezone: str = Field(default="UTC", min_length=1, max_length=64)
    start_date: datetime | None = Field(default=None, alias="startDate")
    end_date: datetime | None = Field(default=None, alias="endDate")
    catchup: bool = False
    max_active_runs: int = Field(default=1, ge=1, le=1000, alias="maxActiveRuns")
    paused: bool = False
    parameters: dict[str, str | int | float | bool] = Field(default_factory=dict)


class ScheduleChanges(_Write):
    """The body of ``PATCH /v4/schedules/{id}``: only the fields given change."""

    name: Name | None = None
    description: str | None = Field(default=None, max_length=10_000)
    cron: str | None = Field(default=None, min_length=1, max_length=120)
    timezone: str | None = Field(default=None, min_length=1, max_length=64)
    start_date: datetime | None = Field(default=None, alias="startDate")
    end_date: datetime | None = Field(default=None, alias="endDate")
    catchup: bool | None = None
    max_active_runs: int | None = Field(default=None, ge=1, le=1000, alias="maxActiveRuns")
    lock_policy: Literal["wait", "skip"] | None = Field(default=None, alias="lockPolicy")
    parameters: dict[str, str | int | float | bool] | None = None


class BackfillRequest(_Write):
    """The body of ``POST /v4/schedules/{id}/backfills``: a range of logical dates."""

    start: datetime
    end: datetime
    reprocess: str = Field(
        default="none",
        description="none, failed or all",
        json_schema_extra={"enum": ["none", "failed", "all"]},
    )
    max_active_runs: int = Field(default=1, ge=1, le=1000, alias="maxActiveRuns")
    dry_run: bool = Field(default=False, alias="dryRun")


# -- what the services answer --------------------------------------------------------------


class RunSummary(ReadModel):
    """A schedule's last run."""

    id: int
    status: str
    trigger: str | None
    logical_date: Timestamp
    started_at: Timestamp
    finished_at: Timestamp


class ScheduleRead(ReadModel):
    """A schedule with its last run, the next logical date and when that run starts."""

    id: int
    name: str
    description: str
    flow: Ref | None
    deployment: Ref | None
    pipeline: Ref | None
    cron: str
    timezone: str
    start_date: Timestamp
    end_date: Timestamp
    catchup: bool
    max_active_runs: int
    lock_policy: str
    paused: bool
    parameters: dict[str, Any]
    last_run: RunSummary | None
    next_logical_date: Timestamp
    next_run_at: Timestamp
    last_error: str | None
    created_at: Timestamp
    updated_at: Timestamp
    creator: Ref | None


class BackfillRead(ReadModel):
    """A backfill: a range of logical dates run (or rerun) for a schedule."""

    id: int
    schedule: Ref | None
    start: Timestamp
    end: Timestamp
    reprocess: str
    max_active_runs: int
    next_logical_date: Timestamp
    status: str
    created_at: Timestamp
    updated_at: Timestamp
    creator: Ref | None
