"""What the pipeline services answer: pipelines, their runs' tasks and held task locks."""

from __future__ import annotations

from typing import Any

from flowport.services.schemas.common import ReadModel, Ref, Timestamp
from flowport.services.schemas.jobs import JobGroupRead

__all__ = ["LockRead", "PipelineRead", "PipelineRunRead", "TaskOutline", "TaskRunRead"]


class TaskOutline(ReadModel):
    """A task of a pipeline as a list shows it."""

    name: str | None
    type: str | None
    after: list[str]


class PipelineRead(ReadModel):
    """A stored pipeline; ``document`` unless a list left it out."""

    id: int
    name: str
    description: str
    project: Ref | None
    tasks: list[TaskOutline]
    created_at: Timestamp
    updated_at: Timestamp
    creator: Ref | None
    updater: Ref | None
    document: dict[str, Any] | None = None


class TaskRunRead(ReadModel):
    """One task of a pipeline run."""

    task: str
    type: str
    status: str
    attempts: int
    job: Ref | None
    message: str | None
    log: str | None
    started_at: Timestamp
    finished_at: Timestamp


class PipelineRunRead(JobGroupRead):
    """A pipeline run: its job group, with its tasks when shown alone."""

    tasks: list[TaskRunRead] | None = None


class LockRead(ReadModel):
    """A held task lock: the task and pipeline holding it, the run, and since when."""

    name: str
    task: str
    pipeline: Ref | None
    run: Ref | None
    since: Timestamp
