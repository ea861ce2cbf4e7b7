"""``flowport worker`` (serve jobs from the Celery broker here) and ``flowport workers`` (list them)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flowport.cli.output import console, err_console, print_json
from flowport.errors import FlowportError, ValidationFailed

__all__ = ["worker", "workers"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document.")]


def _fail(exc: FlowportError, *, as_json: bool) -> typer.Exit:
    if as_json:
        print_json({"error": exc.message})
    else:
        err_console.print(f"[red]Error:[/red] {escape(exc.message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2 if isinstance(exc, ValidationFailed) else 1)


def worker(
    queues: Annotated[
        str,
        typer.Option(
            "--queues",
            "-Q",
            help="Comma-separated queues to serve: jobs (flow runs), pipelines (pipeline runs), partitions, "
            "streams (streaming jobs, each holding a process until stopped).",
        ),
    ] = "jobs,pipelines,partitions",
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Jobs run at once (one process each).")
    ] = 2,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="The worker's name (default worker-<pid>@<host>).")
    ] = None,
) -> None:
    """Run jobs from the broker (FLOWPORT_BROKER_URL) on this machine until stopped.

    Every machine running workers shares the instance's store
    (FLOWPORT_DATABASE_URL) and secret key (FLOWPORT_SECRET_KEY). SIGTERM or
    Ctrl-C stops taking jobs and lets the running ones finish; a second one
    stops at once (the jobs are then retried or failed by their flow's
    worker_lost_retries).

    Example: ``FLOWPORT_BROKER_URL=redis://queue:6379/0 flowport worker --queues jobs --concurrency 4``
    """
    from flowport.services.workers import run_worker

    try:
        run_worker(
            name=name, queues=[q.strip() for q in queues.split(",") if q.strip()], concurrency=concurrency
        )
    except FlowportError as exc:
        raise _fail(exc, as_json=False) from None


def workers(
    include_stopped: Annotated[bool, typer.Option("--all", help="Also list workers that stopped.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List the instance's workers: queues, concurrency, state, last heartbeat and the jobs they run.

    Example: ``flowport workers --json``
    """
    from flowport.services.workers import list_workers

    try:
        listed: dict[str, Any] = list_workers(include_stopped=include_stopped)
    except FlowportError as exc:
        raise _fail(exc, as_json=as_json) from None
    if as_json:
        print_json(listed)
        return
    table = Table(title=f"Workers ({listed['count']})", title_justify="left")
    for column in ("Name", "Queues", "Processes", "State", "Heartbeat", "Jobs"):
        table.add_column(column)
    for row in listed["data"]:
        table.add_row(
            escape(row["name"]),
            escape(", ".join(row["queues"])),
            str(row["concurrency"]),
            row["state"],
            row["heartbeatAt"] or "-",
            ", ".join(str(j) for j in row["jobs"]) or "-",
        )
    console.print(table)
