"""Pipelines: orchestration DAGs of tasks, their runs and the task locks they hold.

A pipeline is a ``flowport.pipeline/1`` document (:mod:`flowport.model.pipeline`)
stored in a project. Creating or replacing one validates the document, then
what it refers to: the flows and deployments its tasks run, the connections
its SQL, dbt and shell tasks use, and that the user holds every permission
its tasks need (``execute-code`` for shell and dbt, ``execute-sql``,
``network``) and may run every flow it names.

A run is a job group with ``pipeline_id`` (one state machine, one outbox, one
lease for flows and pipelines alike) and one ``task_runs`` row per task.
Starting a run takes every task lock of the pipeline at once, in the
transaction that records the run: a manual trigger that finds one held gets
Conflict naming the holder, its run and since when; the scheduler waits or
skips by the schedule's ``lock_policy``. A run reaching any final status
releases its locks in the same transaction (:func:`flowport.store.jobs.transition`),
and a run whose worker died is failed by lease, which releases them too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flowport.errors import Conflict, Forbidden, LocksHeld, NotFound, ValidationFailed
from flowport.model.pipeline import (
    DbtTask,
    DeploymentTask,
    FlowTask,
    Pipeline,
    ShellTask,
    SqlTask,
    pipeline_from_dict,
    pipeline_to_dict,
)
from flowport.services.auth import User, require_role
from flowport.services.file_roots import instance_roots
from flowport.services.flow_records import check_overrides, load_stored_flow
from flowport.services.instance import page_bounds, ref, timestamp, transaction
from flowport.services.jobs import cancel_job_group, job_group_dict
from flowport.services.permissions import EDITOR_PERMISSIONS_ENV, permissions_of, require_flow_permissions
from flowport.services.runs import Schedule, Trigger, job_task, launch
from flowport.services.schemas.pipelines import LockRead, PipelineRead, PipelineRunRead
from flowport.store import connections as _connections_repo
from flowport.store import deployments as _deployments_repo
from flowport.store import flows as _flows_repo
from flowport.store import jobs as _jobs_repo
from flowport.store import pipelines as _repo
from flowport.store import projects as _projects
from flowport.store.tables import JobGroup, PipelineRecord, TaskLock, TaskRun, utcnow

__all__ = [
    "LocksHeld",
    "cancel_run",
    "connections_of",
    "create_pipeline",
    "delete_pipeline",
    "export_pipeline",
    "get_pipeline",
    "get_run",
    "list_locks",
    "list_pipelines",
    "list_runs",
    "lock_dict",
    "pipeline_dict",
    "resolve_deployment",
    "resolve_flow",
    "run_dict",
    "start_pipeline",
    "store_document",
    "update_pipeline",
]

_log = logging.getLogger(__name__)

#: The dbt target a run uses unless its parameters say otherwise.
DEFAULT_TARGET = "dev"


# -- shaping ---------------------------------------------------------------------------


def pipeline_dict(row: PipelineRecord, *, include_document: bool = True) -> dict[str, Any]:
    """A pipeline as the API shows it."""
    document = dict(row.document or {})
    data: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "project": ref(row.project_id),
        "tasks": [
            {"name": t.get("name"), "type": t.get("type"), "after": list(t.get("after") or [])}
            for t in document.get("tasks", [])
        ],
        "createdAt": timestamp(row.created_at),
        "updatedAt": timestamp(row.updated_at),
        "creator": ref(row.creator_id),
        "updater": ref(row.updater_id),
    }
    if include_document:
        data["document"] = document
    return PipelineRead.shape(data)


def _task_run_dict(row: TaskRun) -> dict[str, Any]:
    return {
        "task": row.task,
        "type": row.kind,
        "status": row.status,
        "attempts": row.attempts,
        "job": ref(row.child_group_id),
        "message": row.message,
        "log": row.log,
        "startedAt": timestamp(row.started_at),
        "finishedAt": timestamp(row.finished_at),
    }


def run_dict(row: JobGroup, tasks: list[TaskRun] | None = None) -> dict[str, Any]:
    """A pipeline run as the API shows it: its job group (``pipeline: {id}``), with ``tasks`` when given."""
    data = job_group_dict(row)
    if tasks is not None:
        data["tasks"] = [_task_run_dict(t) for t in tasks]
    return PipelineRunRead.shape(data)


def lock_dict(row: TaskLock) -> dict[str, Any]:
    """A held task lock: its name, the task and pipeline holding it, the run and since when."""
    return LockRead.shape(
        {
            "name": row.name,
            "task": row.task,
            "pipeline": ref(row.pipeline_id),
            "run": ref(row.job_group_id),
            "since": timestamp(row.acquired_at),
        }
    )


# -- validation ------------------------------------------------------------------------


def _parse(body: Pipeline | Mapping[str, Any]) -> Pipeline:
    if isinstance(body, Pipeline):
        return body
    return pipeline_from_dict(body, source="pipeline")


def resolve_flow(session: Any, project_id: int, reference: str | int) -> int:
    """The id of the flow a task names (an id, or a name in the pipeline's project); NotFound otherwise."""
    if isinstance(reference, int) or str(reference).isdigit():
        row = _flows_repo.get_by_id(session, int(reference))
        return int(row.id)
    return int(_flows_repo.get_by_name(session, project_id, str(reference)).id)


def resolve_deployment(session: Any, reference: str | int) -> int:
    if isinstance(reference, int) or str(reference).isdigit():
        return int(_deployments_repo.get_by_id(session, int(reference)).id)
    return int(_deployments_repo.get_by_name(session, str(reference)).id)


def connections_of(task: Any) -> list[str]:
    """The connections a task uses (SQL, dbt targets, shell secrets), as the document names them."""
    if isinstance(task, SqlTask):
        return [task.connection]
    if isinstance(task, DbtTask):
        return [t.connection for t in task.targets.values()]
    if isinstance(task, ShellTask):
        return [s.connection for s in task.secrets.values()]
    return []


def _check_references(session: Any, pipeline: Pipeline, project_id: int, user: User | None) -> None:
    """NotFound-free report of every task whose flow, deployment or connection does not exist."""
    problems: list[str] = []
    for index, task in enumerate(pipeline.tasks):
        where = f"tasks[{index}] ('{task.name}')"
        try:
            if isinstance(task, FlowTask):
                flow_id = resolve_flow(session, project_id, task.flow)
                require_flow_permissions(user, load_stored_flow(session, flow_id).flow, action="run")
            elif isinstance(task, DeploymentTask):
                resolve_deployment(session, task.deployment)
        except NotFound as exc:
            problems.append(f"{where}: {exc.message}")
        for connection in connections_of(task):
            try:
                _connections_repo.find(session, connection)
            except NotFound:
                problems.append(
                    f"{where}: no connection '{connection}' on this instance; create it or fix the name"
                )
    if problems:
        raise ValidationFailed(
            "The pipeline refers to what does not exist: " + "; ".join(problems), details=problems
        )


def _require_permissions(user: User | None, pipeline: Pipeline, action: str) -> None:
    if user is None:
        return
    require_role(user, "editor")
    granted = permissions_of(user)
    refused = [
        {"task": t.name, "type": t.type, "missing": sorted(t.restrictions() - granted)}
        for t in pipeline.tasks
        if t.restrictions() - granted
    ]
    if refused:
        first = refused[0]
        raise Forbidden(
            f"User '{user.name}' (role {user.role}) may not {action} pipeline '{pipeline.name}': task "
            f"'{first['task']}' ({first['type']}) needs the permission "
            f"{', '.join(repr(m) for m in first['missing'])}. Ask an admin, or ask the operator to grant "
            f"editors that permission ({EDITOR_PERMISSIONS_ENV})",
            details={"permissionsMissing": refused},
        )


# -- create, read, change, delete --------------------------------------------------------


def store_document(
    session: Any,
    document: Pipeline | Mapping[str, Any],
    *,
    project_id: int,
    user: User | None,
    existing: PipelineRecord | None = None,
) -> PipelineRecord:
    """Validate a document (graph, what it refers to in the project, the user's permissions) and store it
    as a new pipeline, or as ``existing``'s new document; inside the caller's transaction."""
    pipeline = _parse(document)
    _require_permissions(user, pipeline, "change" if existing is not None else "create")
    _check_references(session, pipeline, project_id, user)
    values: dict[str, Any] = {
        "name": pipeline.name,
        "description": pipeline.description,
        "document": pipeline_to_dict(pipeline),
    }
    if existing is not None:
        return _repo.update_pipeline(session, existing, values, user.id if user else None)
    row = _repo.create(session, project_id=project_id, creator_id=user.id if user else None, **values)
    _log.info("Pipeline '%s' stored (id %s, %s tasks)", row.name, row.id, len(pipeline.tasks))
    return row


def create_pipeline(
    body: Pipeline | Mapping[str, Any], *, project: int | str | None = None, user: User | None = None
) -> dict[str, Any]:
    """Store a new pipeline in ``project`` (default project when None).

    Raises:
        ValidationFailed: an invalid document (every problem listed, with
        where), or tasks naming flows, deployments or connections that do not
        exist. Conflict: the name is taken in the project. Forbidden: a
        viewer, or an editor without a permission a task needs.
    """
    require_role(user, "editor")
    pipeline = _parse(body)
    _require_permissions(user, pipeline, "create")
    with transaction() as session:
        project_row = _projects.find(session, project)
        return pipeline_dict(store_document(session, pipeline, project_id=project_row.id, user=user))


def _find(session: Any, reference: int | str, project: int | str | None = None) -> PipelineRecord:
    if isinstance(reference, int) or str(reference).isdigit():
        return _repo.get_by_id(session, int(reference))
    return _repo.get_by_name(session, _projects.find(session, project).id, str(reference))


def get_pipeline(reference: int | str, *, project: int | str | None = None) -> dict[str, Any]:
    """The pipeline (by id, or name in ``project``); NotFound otherwise."""
    with transaction() as session:
        return pipeline_dict(_find(session, reference, project))


def list_pipelines(
    *,
    project: int | str | None = None,
    name: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    no_limit: bool = False,
) -> dict[str, Any]:
    """Pipelines (without their documents) as ``{"data": [...], "count": total}``."""
    limit, start = page_bounds(limit, offset, no_limit)
    with transaction() as session:
        project_id = _projects.find(session, project).id if project is not None else None
        rows = _repo.list_(session, project_id=project_id, name=name, limit=limit, offset=start)
        return {
            "data": [pipeline_dict(r, include_document=False) for r in rows],
            "count": _repo.count(session, project_id=project_id, name=name),
        }


def update_pipeline(
    reference: int | str, changes: Mapping[str, Any], *, user: User | None = None
) -> dict[str, Any]:
    """Change top-level keys of a pipeline's document (``tasks`` replaced whole) and validate the result
    as at creation; runs already started keep the document they started with."""
    require_role(user, "editor")
    with transaction() as session:
        row = _find(session, reference)
        merged = {**dict(row.document or {}), **dict(changes)}
        return pipeline_dict(
            store_document(session, merged, project_id=row.project_id, user=user, existing=row)
        )


def delete_pipeline(reference: int | str, *, user: User | None = None) -> None:
    """Delete a pipeline and its schedules; its runs stay in the history. Conflict while a run is active."""
    require_role(user, "editor")
    from flowport.store.tables import ScheduleRecord

    with transaction() as session:
        row = _find(session, reference)
        runs, _ = _repo.runs_of(session, pipeline_id=row.id)
        active = [r.id for r in runs if r.status in _jobs_repo.ACTIVE_STATUSES]
        if active:
            raise Conflict(
                f"Pipeline '{row.name}' has active run(s) {', '.join(map(str, active))}: cancel them first"
            )
        for schedule in session.query(ScheduleRecord).filter(ScheduleRecord.pipeline_id == row.id):
            session.delete(schedule)
        _repo.delete_pipeline(session, row)
        _log.info("Pipeline '%s' (id %s) deleted", row.name, row.id)


def export_pipeline(
    reference: int | str, *, user: User | None = None, plain_text_credentials: bool = False
) -> bytes:
    """The package ZIP of a pipeline with the flows its flow tasks run (and the connections they all name,
    by uuid, name and vendor). Importing it into a project stores the flows, then the pipeline."""
    from flowport.services.packages import export_flows

    with transaction() as session:
        row = _find(session, reference)
        pipeline = pipeline_from_dict(row.document, source=f"pipeline '{row.name}'")
        flow_ids = [
            resolve_flow(session, row.project_id, task.flow)
            for task in pipeline.tasks
            if isinstance(task, FlowTask)
        ]
        document = dict(row.document)
    return export_flows(
        flow_ids, user=user, plain_text_credentials=plain_text_credentials, pipelines=[document]
    )


# -- runs ------------------------------------------------------------------------------


def _run_values(
    pipeline: Pipeline, overrides: Mapping[str, Any] | None, schedule: Schedule | None
) -> dict[str, str]:
    values = check_overrides(overrides)
    allowed = set(pipeline.parameters) | {"target"}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValidationFailed(
            f"Unknown parameter(s) {', '.join(repr(u) for u in unknown)} for pipeline '{pipeline.name}'; "
            f"it has: {', '.join(sorted(allowed))}",
            details={"unknownParameters": unknown},
        )
    if schedule is None:
        # A manual run is for now, as in Airflow: its logical date and data interval are the present.
        now = utcnow()
        schedule = Schedule(0, now, now, now)
    context = schedule.context()
    return {**context, "target": DEFAULT_TARGET, **pipeline.parameters, **values}


def _held_message(pipeline: Pipeline, held: list[TaskLock]) -> tuple[str, list[dict[str, Any]]]:
    first = held[0]
    message = (
        f"Pipeline '{pipeline.name}' cannot start: task lock '{first.name}' is held by task "
        f"'{first.task}' of pipeline run {first.job_group_id} (pipeline {first.pipeline_id}) since "
        f"{timestamp(first.acquired_at)}"
    )
    if len(held) > 1:
        message += f" (and {len(held) - 1} more lock(s))"
    return message + "; wait for that run to end or cancel it", [lock_dict(h) for h in held]


def start_pipeline(
    reference: int | str,
    trigger: Trigger = "manual",
    actor: User | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    schedule: Schedule | None = None,
    deployment_id: int | None = None,
) -> dict[str, Any]:
    """Start a run of a pipeline: record it, take its task locks, hand it to the launcher.

    ``deployment_id``: the deployment whose active release the pipeline is (its runs show it).

    Raises:
        NotFound: no such pipeline. ValidationFailed: unknown or malformed
        parameters. LocksHeld (Conflict, 409): a task lock is held by another
        run (the message names it, its run and since when; ``details`` lists
        every lock held). Conflict: a second run for a schedule's logical
        date. Forbidden: a viewer, or a permission a task needs.
    """
    require_role(actor, "editor")
    instance_roots()
    with transaction() as session:
        row = _find(session, reference)
        pipeline = pipeline_from_dict(row.document, source=f"pipeline '{row.name}'")
        _require_permissions(actor, pipeline, "run")
        if actor is not None:
            # The flows its tasks run may have gained restricted stages since the pipeline was stored.
            for task in pipeline.tasks:
                if isinstance(task, FlowTask):
                    flow_id = resolve_flow(session, row.project_id, task.flow)
                    require_flow_permissions(actor, load_stored_flow(session, flow_id).flow, action="run")
        values = _run_values(pipeline, overrides, schedule)
        group = _jobs_repo.create_group(
            session,
            flow_id=None,
            parameters=values,
            creator_id=actor.id if actor else None,
            trigger=trigger,
            pipeline_id=row.id,
            deployment_id=deployment_id,
            **(schedule.columns() if schedule else {}),
        )
        # The document as it is now: a change while the run waits or runs does not change the run.
        group.result = {"document": dict(row.document)}
        _repo.create_task_runs(session, group.id, [(t.name, t.type) for t in pipeline.tasks])
        held = _repo.acquire_locks(session, group.id, row.id, pipeline.locks())
        if held:
            message, details = _held_message(pipeline, held)
            # Raising rolls the whole run back: nothing recorded, nothing held.
            raise LocksHeld(message, details={"locksHeld": details})
        group_id = group.id
    launch(job_task(group_id, kind="pipeline"), f"pipeline '{pipeline.name}' ({trigger})")
    return get_run(group_id)


def get_run(run_id: int) -> dict[str, Any]:
    """A pipeline run with its task runs; NotFound when there is none (or it is a flow's job)."""
    with transaction() as session:
        row = _jobs_repo.get_group(session, run_id)
        if row.pipeline_id is None and not _repo.task_runs_of(session, run_id):
            raise NotFound(f"No pipeline run with id {run_id} (job group {run_id} runs a flow)")
        return run_dict(row, _repo.task_runs_of(session, run_id))


def list_runs(
    *,
    pipeline: int | str | None = None,
    status: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    no_limit: bool = False,
) -> dict[str, Any]:
    """Pipeline runs, newest first, as ``{"data": [...], "count": total}``."""
    limit, start = page_bounds(limit, offset, no_limit)
    with transaction() as session:
        pipeline_id = _find(session, pipeline).id if pipeline is not None else None
        rows, total = _repo.runs_of(
            session, pipeline_id=pipeline_id, status=status, limit=limit, offset=start
        )
        return {"data": [run_dict(r) for r in rows], "count": total}


def cancel_run(run_id: int, *, user: User | None = None) -> dict[str, Any]:
    """Ask a pipeline run to stop: queued, it is Canceled at once; running, its tasks are stopped."""
    get_run(run_id)
    cancel_job_group(run_id, user=user)
    return get_run(run_id)


def list_locks() -> dict[str, Any]:
    """Every held task lock as ``{"data": [...], "count": n}``."""
    with transaction() as session:
        rows = _repo.list_locks(session)
        return {"data": [lock_dict(r) for r in rows], "count": len(rows)}
