"""What each type of pipeline task does: one module per type, one :class:`TaskContext` for all.

A task type is a function ``run(task, context) -> str`` that does the work
once (one try) and returns a one-line summary, or raises :class:`TaskFailed`
with a message that says what went wrong. The pipeline runner
(:mod:`flowport.services.pipeline_runner`) handles order, retries with
backoff, timeouts (``context.deadline``), cancellation (``context.stopping``)
and records; a type only has to stop promptly when asked.
"""

from __future__ import annotations

from flowport.services.tasks.context import TaskContext, TaskFailed, TaskRunner

__all__ = ["TaskContext", "TaskFailed", "TaskRunner", "runner_for"]


def _nothing(task: object, context: TaskContext) -> str:
    del task, context
    return "nothing to do"


def runner_for(kind: str) -> TaskRunner:
    """The function that runs tasks of type ``kind``."""
    if kind in ("flow", "deployment"):
        from flowport.services.tasks.jobs import run_job_task

        return run_job_task
    if kind == "shell":
        from flowport.services.tasks.shell import run_shell_task

        return run_shell_task
    if kind == "dbt":
        from flowport.services.tasks.dbt import run_dbt_task

        return run_dbt_task
    if kind == "sql":
        from flowport.services.tasks.sql import run_sql_task

        return run_sql_task
    if kind == "empty":
        return _nothing
    if kind == "http":
        from flowport.services.tasks.http import run_http_task

        return run_http_task
    raise ValueError(f"Unknown task type '{kind}'")
