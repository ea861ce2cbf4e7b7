"""Repository of pipelines, their runs' task records and task locks, inside the caller's transaction.

A pipeline run is a job group with ``pipeline_id`` set (see
:mod:`flowport.store.jobs` for its status); this module adds the rows that
only pipelines have. Task locks are acquired all at once or not at all: one
row per lock name, so the database's primary key lets exactly one run hold
it, whatever processes race for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flowport.store import _lookup
from flowport.store.tables import JobGroup, PipelineRecord, TaskLock, TaskRun, utcnow

__all__ = [
    "acquire_locks",
    "count",
    "create",
    "create_task_runs",
    "delete_pipeline",
    "get_by_id",
    "get_by_name",
    "list_",
    "list_locks",
    "lock_holders",
    "release_locks",
    "runs_of",
    "task_runs_of",
    "update_pipeline",
    "update_task_run",
    "update_task_runs",
]

_PIPELINE_FIELDS = frozenset({"name", "description", "document", "project_id"})
_TASK_RUN_FIELDS = frozenset(
    {"status", "attempts", "child_group_id", "message", "log", "started_at", "finished_at"}
)


def create(
    session: Session,
    *,
    project_id: int,
    name: str,
    description: str,
    document: Mapping[str, Any],
    creator_id: int | None,
) -> PipelineRecord:
    """Insert a pipeline; Conflict when the project has one of that name."""
    row = PipelineRecord(
        project_id=project_id,
        name=name,
        description=description,
        document=dict(document),
        **_lookup.stamps(utcnow(), creator_id),
    )
    session.add(row)
    _lookup.flush_or_conflict(session, f"The project already has a pipeline named '{name}'")
    return row


def get_by_id(session: Session, pipeline_id: int) -> PipelineRecord:
    """The pipeline with this id; NotFound otherwise."""
    return _lookup.get_or_404(session, PipelineRecord, pipeline_id, "pipeline")


def get_by_name(session: Session, project_id: int, name: str) -> PipelineRecord:
    """The project's pipeline with this name; NotFound otherwise."""
    return _lookup.one_or_404(
        session,
        select(PipelineRecord).where(PipelineRecord.project_id == project_id, PipelineRecord.name == name),
        f"No pipeline named '{name}' in this project",
    )


def _filtered(query: Any, project_id: int | None, name: str | None) -> Any:
    if project_id is not None:
        query = query.where(PipelineRecord.project_id == project_id)
    if name:
        query = query.where(PipelineRecord.name.contains(name, autoescape=True))
    return query


def list_(
    session: Session,
    *,
    project_id: int | None = None,
    name: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Sequence[PipelineRecord]:
    """Pipelines by id, filtered by project and a name fragment."""
    query = _filtered(select(PipelineRecord), project_id, name).order_by(PipelineRecord.id)
    return _lookup.listed(session, query, limit=limit, offset=offset)


def count(session: Session, *, project_id: int | None = None, name: str | None = None) -> int:
    """How many pipelines :func:`list_` would give without paging."""
    query = _filtered(select(func.count()).select_from(PipelineRecord), project_id, name)
    return int(session.scalar(query) or 0)


def update_pipeline(
    session: Session, row: PipelineRecord, changes: Mapping[str, Any], updater_id: int | None
) -> PipelineRecord:
    """Apply ``changes`` (name, description, document, project_id); Conflict on a taken name."""
    _lookup.check_fields(changes, _PIPELINE_FIELDS, "pipeline")
    for key, value in changes.items():
        setattr(row, key, dict(value) if key == "document" else value)
    row.updated_at = utcnow()
    row.updater_id = updater_id
    _lookup.flush_or_conflict(session, f"The project already has a pipeline named '{row.name}'")
    return row


def delete_pipeline(session: Session, row: PipelineRecord) -> None:
    """Delete a pipeline (its runs stay, with ``pipeline_id`` NULL)."""
    _lookup.delete_row(session, row)


def runs_of(
    session: Session,
    *,
    pipeline_id: int | None = None,
    status: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[Sequence[JobGroup], int]:
    """Pipeline runs (job groups with a pipeline), newest first, and how many there are in all."""
    where: list[ColumnElement[bool]] = [JobGroup.pipeline_id.is_not(None)]
    if pipeline_id is not None:
        where = [JobGroup.pipeline_id == pipeline_id]
    if status is not None:
        where.append(JobGroup.status == status)
    query = select(JobGroup).where(*where).order_by(JobGroup.id.desc())
    total = int(session.scalar(select(func.count()).select_from(JobGroup).where(*where)) or 0)
    return _lookup.listed(session, query, limit=limit, offset=offset), total


def create_task_runs(session: Session, job_group_id: int, tasks: Sequence[tuple[str, str]]) -> None:
    """One Created task run per ``(task name, type)`` of a new pipeline run (one bulk insert)."""
    now = utcnow()
    rows = [
        {
            "job_group_id": job_group_id,
            "task": name,
            "kind": kind,
            "status": "Created",
            "attempts": 0,
            "log": "",
            "created_at": now,
            "updated_at": now,
        }
        for name, kind in tasks
    ]
    if rows:
        session.execute(insert(TaskRun), rows)


def task_runs_of(session: Session, job_group_id: int) -> list[TaskRun]:
    """The task runs of a pipeline run, in the order they were created (the document's)."""
    return list(
        session.scalars(select(TaskRun).where(TaskRun.job_group_id == job_group_id).order_by(TaskRun.id))
    )


def update_task_run(session: Session, job_group_id: int, task: str, changes: Mapping[str, Any]) -> TaskRun:
    """Apply ``changes`` to one task run of a pipeline run."""
    _lookup.check_fields(changes, _TASK_RUN_FIELDS, "task run")
    row = _lookup.one_or_404(
        session,
        select(TaskRun).where(TaskRun.job_group_id == job_group_id, TaskRun.task == task),
        f"Pipeline run {job_group_id} has no task '{task}'",
    )
    for key, value in changes.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    session.flush()
    return row


def update_task_runs(session: Session, job_group_id: int, changes: Mapping[str, Mapping[str, Any]]) -> None:
    """Apply many task runs' changes (task name -> changes) in a few bulk updates."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    now = utcnow()
    for task, values in changes.items():
        _lookup.check_fields(values, _TASK_RUN_FIELDS, "task run")
        keys = tuple(sorted(values))
        groups.setdefault(keys, []).append({"b_task": task, **{f"v_{k}": v for k, v in values.items()}})
    for keys, rows in groups.items():
        statement = (
            update(TaskRun)
            .where(TaskRun.job_group_id == job_group_id, TaskRun.task == bindparam("b_task"))
            .values(updated_at=now, **{key: bindparam(f"v_{key}") for key in keys})
        )
        session.connection().execute(statement, rows)


def acquire_locks(
    session: Session, job_group_id: int, pipeline_id: int | None, locks: Mapping[str, str]
) -> list[TaskLock]:
    """Take every lock of ``locks`` (lock name -> task) for a run, or none.

    Returns the locks already held by others (empty: all taken by this run).
    Runs in a savepoint so that a refusal leaves the caller's transaction usable.
    """
    if not locks:
        return []
    names = sorted(locks)
    for _ in range(3):
        held = lock_holders(session, names)
        if held:
            return held
        now = utcnow()
        try:
            with session.begin_nested():
                session.add_all(
                    TaskLock(
                        name=name,
                        job_group_id=job_group_id,
                        pipeline_id=pipeline_id,
                        task=locks[name],
                        acquired_at=now,
                    )
                    for name in names
                )
                session.flush()
            return []
        except IntegrityError:
            # Another run took one between the look and the insert: look again (and report it).
            continue
    return lock_holders(session, names)


def release_locks(session: Session, job_group_id: int) -> int:
    """Drop every lock a run holds; how many there were."""
    result = session.execute(delete(TaskLock).where(TaskLock.job_group_id == job_group_id))
    return int(getattr(result, "rowcount", 0) or 0)


def list_locks(session: Session) -> list[TaskLock]:
    """Every held lock, by name."""
    return list(session.scalars(select(TaskLock).order_by(TaskLock.name)))


def lock_holders(session: Session, names: Sequence[str]) -> list[TaskLock]:
    """The held locks among ``names``."""
    return list(session.scalars(select(TaskLock).where(TaskLock.name.in_(sorted(names)))))
