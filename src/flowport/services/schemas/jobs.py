"""What the job services answer: jobs and job groups (a flow, deployment or pipeline run)."""

from __future__ import annotations

from typing import Any

from flowport.services.schemas.common import ReadModel, Ref, Timestamp

__all__ = ["ErrorRecordRead", "ErrorRecordsRead", "JobGroupRead", "JobPage", "JobRead"]


class JobRead(ReadModel):
    """One job of a job group: per-stage metrics; its log is served apart."""

    id: int
    job_group: Ref | None
    flow: Ref | None
    status: str
    run_id: str | None
    metrics: dict[str, Any]
    error: str | None
    created_at: Timestamp
    updated_at: Timestamp
    started_at: Timestamp
    finished_at: Timestamp


class JobPage(ReadModel):
    """A job group's jobs, embedded."""

    data: list[JobRead]
    count: int


class JobGroupRead(ReadModel):
    """A job group: a run of a flow, a deployment or a pipeline, with its trigger and logical date."""

    id: int
    status: str
    session_id: str
    flow: Ref | None
    deployment: Ref | None
    pipeline: Ref | None
    parent: Ref | None
    parameters: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    cancel_requested: bool
    trigger: str | None
    schedule: Ref | None
    logical_date: Timestamp
    data_interval_start: Timestamp
    data_interval_end: Timestamp
    attempt: int
    heartbeat_at: Timestamp
    created_at: Timestamp
    updated_at: Timestamp
    started_at: Timestamp
    finished_at: Timestamp
    creator: Ref | None
    jobs: JobPage | None = None


class ErrorRecordRead(ReadModel):
    """One error record as the Write to File error stage stored it."""

    stage: str | None
    code: str | None
    message: str | None
    policy: str | None
    time: str | None
    record: Any


class ErrorRecordsRead(ReadModel):
    """The first error records of a job group, where its flow's error stage stored them.

    ``count`` is how many the error stage stored (all of them are in the
    download); ``errorRecords`` how many the run counted (an error stage
    that discards them stores none); ``message`` says why none are shown.
    """

    data: list[ErrorRecordRead]
    count: int
    error_records: int
    error_stage: str | None
    stored: bool
    message: str | None
