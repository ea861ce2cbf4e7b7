"""``flowport jobs``: runs on a Flowport server (flows, deployments, pipelines), through the SDK.

Exit status: 0 success, 1 refused, 2 usage error (no server, no such job).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flowport.cli.output import console, print_json
from flowport.cli.remote import JsonOpt, TokenOpt, UrlOpt, fail, failed, metrics_table, open_client
from flowport.errors import FlowportError, NotFound

__all__ = ["jobs_app"]

jobs_app = typer.Typer(help="Jobs on a Flowport server: list, show, logs, cancel.", no_args_is_help=True)

JobArg = Annotated[int, typer.Argument(help="The job group's id.", metavar="JOB")]
_STATUSES = ("Created", "Pending", "InProgress", "Complete", "Failed", "Canceled")


@jobs_app.command("list")
def jobs_list(
    status: Annotated[
        str | None, typer.Option("--status", help=f"Only this status: {', '.join(_STATUSES)}.")
    ] = None,
    flow: Annotated[int | None, typer.Option("--flow", help="Only this flow's jobs (id).")] = None,
    deployment: Annotated[
        int | None, typer.Option("--deployment", help="Only this deployment's (id).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="How many, newest first.")] = 25,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List jobs, newest first: flow runs, deployment runs and pipeline runs.

    Example: ``flowport jobs list --status Failed``
    """
    if status is not None and status not in _STATUSES:
        fail(f"Unknown status '{status}'; expected one of {', '.join(_STATUSES)}", as_json=as_json, code=2)
    try:
        with open_client(url, token, as_json) as client:
            body = client.get_json(
                "/v4/jobGroups", status=status, flowId=flow, deploymentId=deployment, limit=limit
            )
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json(body)
        return
    table = Table(title=f"Jobs ({len(body['data'])} of {body['count']})", title_justify="left")
    for column in ("Job", "Runs", "Status", "Trigger", "Logical date", "Started", "Finished"):
        table.add_column(column)
    for r in body["data"]:
        runs = next(
            (f"{kind} {r[kind]['id']}" for kind in ("pipeline", "deployment", "flow") if r.get(kind)), "-"
        )
        table.add_row(
            str(r["id"]),
            runs,
            r["status"],
            r["trigger"],
            r.get("logicalDate") or "-",
            r.get("startedAt") or "-",
            r.get("finishedAt") or "-",
        )
    console.print(table)


@jobs_app.command("show")
def jobs_show(job: JobArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Show a job: status, parameters, error and per-stage metrics.

    Example: ``flowport jobs show 42``
    """
    try:
        with open_client(url, token, as_json) as client:
            record = client.get_json(f"/v4/jobGroups/{job}", embed="jobs")
            metrics = client.get_json(f"/v4/jobGroups/{job}/metrics")["stages"]
    except NotFound as exc:
        fail(exc.message, as_json=as_json, code=2)
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json({**record, "metrics": metrics})
        return
    console.print(
        f"Job {record['id']}: [bold]{record['status']}[/bold] ({record['trigger']})"
        + (f"\n  error: {escape(str(record['error']))}" if record.get("error") else ""),
        highlight=False,
        soft_wrap=True,
    )
    if metrics:
        console.print(metrics_table(metrics, "Stages"))
    streaming = (record.get("result") or {}).get("streaming")
    if streaming:
        console.print(
            f"Streaming: {streaming['batches']} micro-batch(es), {streaming['records']} records, "
            f"{streaming['recordsPerSecond']} records/s, {streaming['failures']} failure(s)"
            + (f", lag {streaming['lag']}" if streaming.get("lag") is not None else "")
            + (f"; last error: {escape(str(streaming['lastError']))}" if streaming.get("lastError") else ""),
            highlight=False,
            soft_wrap=True,
        )


@jobs_app.command("logs")
def jobs_logs(job: JobArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Print a job's log (secrets scrubbed).

    Example: ``flowport jobs logs 42 | less``
    """
    try:
        with open_client(url, token, False) as client:
            text = client.request("GET", f"/v4/jobGroups/{job}/logs").text
    except NotFound as exc:
        fail(exc.message, as_json=False, code=2)
    except FlowportError as exc:
        failed(exc, as_json=False)
    console.print(escape(text), highlight=False, soft_wrap=True)


@jobs_app.command("cancel")
def jobs_cancel(job: JobArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Cancel a job: queued, at once; running, its worker stops it and targets stay as they were.

    Example: ``flowport jobs cancel 42``
    """
    try:
        with open_client(url, token, as_json) as client:
            record = client.request("POST", f"/v4/jobGroups/{job}/cancel").json()
    except NotFound as exc:
        fail(exc.message, as_json=as_json, code=2)
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json(record)
    else:
        console.print(f"Job {record['id']}: {record['status']}", highlight=False)


@jobs_app.command("stop")
def jobs_stop(job: JobArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Stop a streaming job: the micro-batch in flight commits and is acknowledged, then the job ends.

    Example: ``flowport jobs stop 42``
    """
    try:
        with open_client(url, token, as_json) as client:
            record = client.request("POST", f"/v4/jobGroups/{job}/stop").json()
    except NotFound as exc:
        fail(exc.message, as_json=as_json, code=2)
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json(record)
    else:
        console.print(
            f"Job {record['id']}: {record['status']} (stopping after its micro-batch)", highlight=False
        )
