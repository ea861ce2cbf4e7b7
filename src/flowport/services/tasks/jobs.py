"""Flow and deployment tasks: a job of the pipeline run (its parent), run to its end in the run's worker.

The job is an ordinary job group (``trigger`` pipeline, ``parent`` the run):
it shows in the job list with its metrics and log, and the task's record
links to it. A timeout or a stop sets the job's cancel flag, which stops the
flow the way a user's cancel does (destinations aborted, targets unchanged).
"""

from __future__ import annotations

import threading

from flowport.model.pipeline import DeploymentTask, FlowTask
from flowport.services.instance import transaction
from flowport.services.job_runner import execute_job
from flowport.services.runs import DeploymentTarget, FlowTarget, job_task, start
from flowport.services.tasks.context import TaskContext
from flowport.store import jobs as _jobs_repo

__all__ = ["run_job_task"]


def _target(task: FlowTask | DeploymentTask, context: TaskContext) -> FlowTarget | DeploymentTarget:
    from flowport.services.pipelines import resolve_deployment, resolve_flow

    with transaction(context.database_url) as session:
        if isinstance(task, FlowTask):
            return FlowTarget(resolve_flow(session, context.project_id, task.flow))
        return DeploymentTarget(resolve_deployment(session, task.deployment))


def run_job_task(task: FlowTask | DeploymentTask, context: TaskContext) -> str:
    """Start the flow's (or the deployment's active release's) job and wait for its end."""
    group = start(
        _target(task, context),
        "pipeline",
        None,
        overrides=task.parameters,
        base_dir=context.base_dir,
        parent_id=context.run_id,
        launch_job=False,
    )
    child = int(group["id"])
    context.child_group_id = child
    if context.on_child is not None:
        context.on_child(child)
    with transaction(context.database_url) as session:
        _jobs_repo.transition(session, child, from_statuses={"Created"}, to_status="Pending")
    outcome: dict[str, str] = {}
    worker = threading.Thread(
        target=lambda: outcome.setdefault("status", execute_job(job_task(child, context.base_dir))),
        name=f"flowport-task-job-{child}",
        daemon=True,
    )
    worker.start()
    asked = None
    while worker.is_alive():
        worker.join(0.1)
        if worker.is_alive() and asked is None and (context.stopping.is_set() or context.timed_out()):
            asked = "stopped" if context.stopping.is_set() else "timed out"
            with transaction(context.database_url) as session:
                _jobs_repo.request_cancel(session, _jobs_repo.get_group(session, child))
    with transaction(context.database_url) as session:
        row = _jobs_repo.get_group(session, child)
        status, error = row.status, row.error
    if asked:
        raise context.fail(f"Job {child} {asked}: {status}")
    if status != "Complete":
        raise context.fail(f"Job {child} ended {status}" + (f": {error}" if error else ""))
    return f"job {child} Complete"
