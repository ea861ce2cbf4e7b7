"""Starting runs: a flow, a deployment (its active release) or, later, a pipeline — for anyone.

:func:`start` is the one way a job begins, whoever asks: a user through the
API, the UI or the CLI, a schedule, a pipeline task or an API token. It
validates the target with its parameter sets and the overrides, records a
job group (trigger, schedule, logical date and data interval included) with
one job, moves it to Pending and hands it to the instance's launcher
(:mod:`flowport.services.launcher`); it returns at once unless the launcher
is ``inline``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowport.errors import Conflict, FlowportError
from flowport.model.parameters import known_parameters
from flowport.orchestrate import JobTask
from flowport.services import deployments as _deployments
from flowport.services.auth import User, require_role
from flowport.services.file_roots import instance_roots
from flowport.services.flow_records import check_overrides, data_dir, load_stored_flow
from flowport.services.flows import plugin_registry
from flowport.services.instance import store_url, transaction
from flowport.services.job_runner import fail_lost_job
from flowport.services.jobs import get_job_group
from flowport.services.launcher import configured_workers, launcher
from flowport.services.permissions import require_flow_permissions
from flowport.services.settings import settings
from flowport.services.streaming import is_streaming
from flowport.store import jobs as _repo
from flowport.store.tables import JobTrigger

__all__ = [
    "DeploymentTarget",
    "FlowTarget",
    "PipelineTarget",
    "RunTarget",
    "Schedule",
    "Trigger",
    "job_task",
    "launch",
    "run_flow",
    "start",
]

_log = logging.getLogger(__name__)

#: Who or what started a run (a job group's ``trigger``): manual, api, schedule, backfill, pipeline.
Trigger = JobTrigger


@dataclass(frozen=True)
class FlowTarget:
    """Run a stored flow."""

    flow_id: int


@dataclass(frozen=True)
class DeploymentTarget:
    """Run the primary flow of a deployment's active release (a new release keeps schedules working)."""

    deployment_id: int


@dataclass(frozen=True)
class PipelineTarget:
    """Run an orchestration pipeline (:func:`flowport.services.pipelines.start_pipeline`)."""

    pipeline_id: int


RunTarget = FlowTarget | DeploymentTarget


@dataclass(frozen=True)
class Schedule:
    """The schedule a run is for: its id, the logical date (interval start), data interval and attempt."""

    schedule_id: int
    logical_date: datetime
    data_interval_start: datetime
    data_interval_end: datetime
    attempt: int = 1

    def columns(self) -> dict[str, Any]:
        """The job group columns of a run for this schedule (``create_group``'s keyword arguments)."""
        return {
            "schedule_id": self.schedule_id,
            "logical_date": self.logical_date,
            "data_interval": (self.data_interval_start, self.data_interval_end),
            "attempt": self.attempt,
        }

    def context(self) -> dict[str, str]:
        """The run's built-in parameters, Airflow's names: ``ds``, ``ds_nodash``, ``ts``, ``logical_date``,
        ``data_interval_start``, ``data_interval_end`` (dates in UTC)."""
        logical = self.logical_date.astimezone(UTC)
        return {
            "ds": logical.strftime("%Y-%m-%d"),
            "ds_nodash": logical.strftime("%Y%m%d"),
            "ts": logical.isoformat(),
            "logical_date": logical.isoformat(),
            "data_interval_start": self.data_interval_start.astimezone(UTC).isoformat(),
            "data_interval_end": self.data_interval_end.astimezone(UTC).isoformat(),
        }


def start(
    target: RunTarget,
    trigger: Trigger = "manual",
    actor: User | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    schedule: Schedule | None = None,
    base_dir: Path | None = None,
    parent_id: int | None = None,
    launch_job: bool = True,
) -> dict[str, Any]:
    """Start a job running ``target`` and return its job group (with its jobs embedded).

    Args:
        trigger: manual, api, schedule, backfill or pipeline.
        actor: the user asking; None for the instance itself (a schedule,
            an in-process caller), which needs no role.
        overrides: parameter values for this run.
        schedule: the schedule and logical date the run is for (one run per
            schedule and logical date: a second is refused with Conflict).
        base_dir: where relative paths resolve (default: the data folder).
        parent_id: the pipeline run this job is a task of.
        launch_job: False leaves the job group Created for the caller to run
            (a pipeline runs its flow tasks in its own worker).

    Raises:
        NotFound: no such flow or deployment. FlowInvalid (ValidationFailed,
        ``details`` = the validation result): the flow is not valid; no job
        is created. ValidationFailed: malformed overrides, or a deployment
        whose flow uses connections this instance lacks. Conflict: a
        deployment without an active release; a second run for a schedule's
        logical date. Forbidden: a viewer, or a restricted stage the actor
        has no permission for. LaunchFailed: no worker could take the job
        (it is recorded Failed).
    """
    require_role(actor, "editor")
    deployment_id = None
    if isinstance(target, DeploymentTarget):
        deployment_id = target.deployment_id
        pipeline_id = _deployments.deployment_pipeline(deployment_id)
        if pipeline_id is not None:
            # A release that carries a pipeline runs it (its flows run as its tasks).
            from flowport.services.pipelines import start_pipeline

            return start_pipeline(
                pipeline_id,
                trigger,
                actor,
                overrides=overrides,
                schedule=schedule,
                deployment_id=deployment_id,
            )
        flow_id = _deployments.deployment_flow(deployment_id)
    else:
        flow_id = target.flow_id
    values = check_overrides(overrides)
    instance_roots()  # a bad file-root setting is refused before anything is recorded
    with transaction() as session:
        stored = load_stored_flow(session, flow_id)
        require_flow_permissions(actor, stored.flow, action="run")
        if schedule is not None:
            # The schedule's context reaches the parameters the flow declares or refers to
            # (${ds}, ${data_interval_start}, ...); explicit values win.
            known = known_parameters(stored.flow, stored.parameter_sets)
            values = {**{k: v for k, v in schedule.context().items() if k in known}, **values}
        stored.check(values)
        streaming = is_streaming(stored.flow, plugin_registry())
        if streaming and launch_job:
            _check_stream_slot(session)
        group = _repo.create_group(
            session,
            flow_id=flow_id,
            deployment_id=deployment_id,
            parameters=values,
            creator_id=actor.id if actor else None,
            trigger=trigger,
            parent_id=parent_id,
            **(schedule.columns() if schedule else {}),
        )
        _repo.create_job(session, job_group_id=group.id, flow_id=flow_id)
        group_id = group.id
    if launch_job:
        kind = "stream" if streaming else "flow"
        launch(job_task(group_id, base_dir, kind=kind), f"flow {flow_id} ({trigger})")
    return get_job_group(group_id, embed_jobs=True)


def _check_stream_slot(session: Any) -> None:
    """Refuse a streaming job that would leave batch jobs no worker (it holds its worker until stopped).

    The local pool keeps one of its ``FLOWPORT_WORKERS`` processes for batch
    jobs; Celery sends streaming jobs to their own ``streams`` queue, whose
    workers the operator sizes; an inline launcher cannot run one at all.
    """
    kind = launcher().kind
    if kind == "inline":
        raise Conflict(
            "A streaming job runs until it is stopped: it needs a background launcher "
            "(process, thread or celery), not inline"
        )
    if kind != "process":
        return
    workers = configured_workers()
    running = _repo.count_active_streams(session)
    if running >= workers - 1:
        raise Conflict(
            f"{running} streaming job(s) already hold {running} of the {workers} local worker processes, "
            "and one is kept for batch jobs: stop a streaming job, or raise FLOWPORT_WORKERS "
            "(or [jobs] workers)"
        )


def job_task(group_id: int, base_dir: Path | None = None, *, kind: str = "flow") -> JobTask:
    """What travels to the worker for a job group of this instance (its store, home, folder, file roots).

    ``kind``: ``flow``, ``pipeline`` or ``stream`` (a Celery launcher queues them apart).
    """
    roots = instance_roots()
    assert roots.roots is not None
    folder = (base_dir or data_dir()).resolve()
    return JobTask(
        group_id,
        store_url(),
        str(settings().home),
        str(folder),
        tuple(str(r) for r in roots.roots),
        kind=kind,
    )


def launch(task: JobTask, what: str) -> None:
    """Move a Created job group to Pending and hand it to the launcher; recorded Failed if none takes it.

    Raises:
        LaunchFailed (or the launcher's error): no worker could take it.
    """
    try:
        chosen = launcher()
        _log.info("Job group %s created for %s (%s launcher)", task.job_group_id, what, chosen.kind)
        with transaction(task.database_url) as session:
            _repo.transition(session, task.job_group_id, from_statuses={"Created"}, to_status="Pending")
        chosen.submit(task)
    except Exception as exc:
        reason = exc.message if isinstance(exc, FlowportError) else f"{type(exc).__name__}: {exc}"
        fail_lost_job(task, f"Could not hand the job to a worker: {reason}")
        raise


def run_flow(
    flow_id: int,
    *,
    overrides: Mapping[str, Any] | None = None,
    user: User | None = None,
    trigger: Trigger = "manual",
    base_dir: Path | None = None,
) -> dict[str, Any]:
    """Start a job running a stored flow: :func:`start` with a :class:`FlowTarget`."""
    return start(FlowTarget(flow_id), trigger, user, overrides=overrides, base_dir=base_dir)
