"""``flowport schedules|backfill|scheduler``: when flows and deployments run on their own.

``schedules`` and ``backfill`` talk to a Flowport server through the SDK (as
``flowport deployments``: ``--url``/``--token`` or what ``flowport login``
stored). ``scheduler`` runs the scheduler of the local instance (the one
``flowport info`` shows) as its own process: one is active per instance,
another waits and takes over when it stops. ``flowport server`` runs one
in-process unless ``--no-scheduler``. Exit status: 0 success, 1 refused,
2 usage error.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flowport.cli.output import console, err_console, print_json
from flowport.cli.remote import JsonOpt, TokenOpt, UrlOpt, fail, failed, open_client, parse_params
from flowport.errors import FlowportError, NotFound

if TYPE_CHECKING:  # the SDK imports httpx: open_client() imports it when a command talks to a server
    from flowport.sdk import Client, Schedule

__all__ = ["backfill", "scheduler", "schedules_app"]

schedules_app = typer.Typer(
    help="Schedules on a Flowport server: cron or preset, timezone, catchup, max active runs, pause.",
    no_args_is_help=True,
)

ScheduleArg = Annotated[
    str, typer.Argument(help="The schedule's id or name.", metavar="SCHEDULE", show_default=False)
]


def _schedule(client: Client, wanted: str, as_json: bool) -> Schedule:
    try:
        if wanted.strip().isdigit():
            try:
                return client.schedules.get(int(wanted))
            except NotFound:
                pass
        return client.schedules.get(name=wanted)
    except NotFound:
        fail(f"No schedule with id or name '{wanted}' on {client.url}", as_json=as_json, code=2)


def _target(record: dict[str, Any]) -> str:
    if record.get("pipeline"):
        return f"pipeline {record['pipeline']['id']}"
    if record.get("deployment"):
        return f"deployment {record['deployment']['id']}"
    if record.get("flow"):
        return f"flow {record['flow']['id']}"
    return "-"


def _show(record: dict[str, Any]) -> None:
    last = record.get("lastRun") or {}
    lines = [
        f"Schedule {record['id']} '{escape(record['name'])}' runs {_target(record)}",
        f"  {escape(record['cron'])} in {record['timezone']}"
        + (" (paused)" if record["paused"] else "")
        + f", catchup {'on' if record['catchup'] else 'off'}, at most {record['maxActiveRuns']} active",
        f"  last run:  {last.get('id', '-')} {last.get('status', '')} for {last.get('logicalDate') or '-'}",
        f"  next run:  for {record.get('nextLogicalDate') or '-'}, "
        f"starts at {record.get('nextRunAt') or '-'}",
    ]
    if record.get("lastError"):
        lines.append(f"  [red]last error:[/red] {escape(record['lastError'])}")
    console.print("\n".join(lines), highlight=False, soft_wrap=True)


@schedules_app.command("list")
def schedules_list(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List schedules with their last run, next logical date and when that run starts.

    Example: ``flowport schedules list --json``
    """
    try:
        with open_client(url, token, as_json) as client:
            records = [s.record for s in client.schedules.list()]
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json({"data": records, "count": len(records)})
        return
    table = Table(title=f"Schedules ({len(records)})", title_justify="left")
    for column in ("Id", "Name", "Target", "Cron", "TZ", "Last run", "Next logical date", "Starts at"):
        table.add_column(column)
    for r in records:
        last = r.get("lastRun") or {}
        table.add_row(
            str(r["id"]),
            escape(r["name"]),
            _target(r),
            escape(r["cron"]),
            r["timezone"],
            f"{last.get('status', '-')} {last.get('logicalDate') or ''}".strip(),
            r.get("nextLogicalDate") or "-",
            "paused" if r["paused"] else (r.get("nextRunAt") or "-"),
        )
    console.print(table)


@schedules_app.command("show")
def schedules_show(
    schedule: ScheduleArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Show a schedule: timing, last run, next logical date and the time it starts.

    Example: ``flowport schedules show weekly-orders``
    """
    try:
        with open_client(url, token, as_json) as client:
            record = _schedule(client, schedule, as_json).record
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    print_json(record) if as_json else _show(record)


@schedules_app.command("add")
def schedules_add(
    name: Annotated[str, typer.Argument(help="A name for the schedule.", show_default=False)],
    cron: Annotated[str, typer.Option("--cron", help="5-field cron or @once/@hourly/@daily/@weekly/...")],
    flow: Annotated[int | None, typer.Option("--flow", help="Run this flow (id).")] = None,
    deployment: Annotated[
        int | None, typer.Option("--deployment", help="Run this deployment's active release (id).")
    ] = None,
    pipeline: Annotated[int | None, typer.Option("--pipeline", help="Run this pipeline (id).")] = None,
    lock_policy: Annotated[
        str, typer.Option("--lock-policy", help="A pipeline's task locks are held: wait or skip.")
    ] = "wait",
    timezone: Annotated[str, typer.Option("--timezone", help="IANA timezone of the cron.")] = "UTC",
    start: Annotated[str | None, typer.Option("--start", help="Start date (ISO 8601 with zone).")] = None,
    end: Annotated[str | None, typer.Option("--end", help="End date (ISO 8601 with zone).")] = None,
    catchup: Annotated[bool, typer.Option("--catchup", help="Run every interval since the start.")] = False,
    max_active_runs: Annotated[int, typer.Option("--max-active-runs", min=1, help="Runs at once.")] = 1,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    params: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Parameter NAME=VALUE (repeatable).")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Schedule a flow, a deployment (its active release: a new release keeps the schedule) or a pipeline.

    Example: ``flowport schedules add weekly --deployment 1 --cron '0 6 * * 1' --timezone Europe/London``
    """
    parameters = parse_params(params)
    try:
        with open_client(url, token, as_json) as client:
            created = client.schedules.create(
                name,
                cron=cron,
                flow=flow,
                deployment=deployment,
                pipeline=pipeline,
                lock_policy=lock_policy,
                timezone=timezone,
                start_date=start,
                end_date=end,
                catchup=catchup,
                max_active_runs=max_active_runs,
                paused=paused,
                parameters=parameters,
            )
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    print_json(created.record) if as_json else _show(created.record)


def _act(schedule: str, url: str | None, token: str | None, as_json: bool, action: str, **kw: Any) -> None:
    try:
        with open_client(url, token, as_json) as client:
            found = _schedule(client, schedule, as_json)
            if action == "remove":
                found.delete()
                record = None
            else:
                record = getattr(found, action)(**kw).record
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json(record if record is not None else {"deleted": {"id": found.schedule_id}})
    elif record is None:
        console.print(f"Schedule {found.schedule_id} deleted (its runs stay in the history)")
    else:
        _show(record)


@schedules_app.command("pause")
def schedules_pause(
    schedule: ScheduleArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Pause a schedule: no new runs until resumed.

    Example: ``flowport schedules pause weekly-orders``
    """
    _act(schedule, url, token, as_json, "pause")


@schedules_app.command("resume")
def schedules_resume(
    schedule: ScheduleArg,
    catch_up: Annotated[
        bool, typer.Option("--catch-up", help="Run the intervals missed while paused (needs catchup).")
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Resume a schedule; the intervals missed while paused are skipped unless --catch-up.

    Example: ``flowport schedules resume weekly-orders``
    """
    _act(schedule, url, token, as_json, "resume", catch_up=catch_up)


@schedules_app.command("remove")
def schedules_remove(
    schedule: ScheduleArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Delete a schedule (its runs stay in the history).

    Example: ``flowport schedules remove weekly-orders``
    """
    _act(schedule, url, token, as_json, "remove")


@schedules_app.command("runs")
def schedules_runs(
    schedule: ScheduleArg,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 25,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The schedule's runs, newest first, with their logical dates.

    Example: ``flowport schedules runs weekly-orders --limit 10``
    """
    try:
        with open_client(url, token, as_json) as client:
            rows = _schedule(client, schedule, as_json).runs(limit)
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json({"data": rows, "count": len(rows)})
        return
    table = Table(title=f"Runs ({len(rows)})", title_justify="left")
    for column in ("Job group", "Status", "Trigger", "Attempt", "Logical date", "Interval end"):
        table.add_column(column)
    for g in rows:
        table.add_row(
            str(g["id"]),
            g["status"],
            g["trigger"],
            str(g["attempt"]),
            g["logicalDate"] or "-",
            g["dataIntervalEnd"] or "-",
        )
    console.print(table)


def backfill(
    schedule: ScheduleArg,
    start: Annotated[str, typer.Option("--start", help="First logical date (ISO 8601 with zone).")],
    end: Annotated[str, typer.Option("--end", help="Last logical date (ISO 8601 with zone).")],
    reprocess: Annotated[
        str, typer.Option("--reprocess", help="Dates that already ran: none, failed or all.")
    ] = "none",
    max_active_runs: Annotated[int, typer.Option("--max-active-runs", min=1, help="Runs at once.")] = 1,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would run; change nothing.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a schedule's missing runs between two logical dates, in order.

    Example: ``flowport backfill nightly --start 2026-11-01T00:00:00Z --end 2026-11-30T00:00:00Z --dry-run``
    """
    if reprocess not in ("none", "failed", "all"):
        raise typer.BadParameter("use none, failed or all", param_hint="--reprocess")
    try:
        with open_client(url, token, as_json) as client:
            result = _schedule(client, schedule, as_json).backfill(
                start, end, reprocess=reprocess, max_active_runs=max_active_runs, dry_run=dry_run
            )
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json(result)
        return
    table = Table(title="Backfill plan" + (" (dry run)" if dry_run else ""), title_justify="left")
    for column in ("Logical date", "Action", "Attempt"):
        table.add_column(column)
    for step in result["plan"]:
        table.add_row(step["logicalDate"], step["action"], str(step["attempt"]))
    console.print(table)
    if result.get("backfill"):
        console.print(f"Backfill {result['backfill']['id']} created: the scheduler creates the runs in order")


def scheduler(
    interval: Annotated[float, typer.Option("--interval", min=0.5, help="Seconds between ticks.")] = 5.0,
    once: Annotated[bool, typer.Option("--once", help="Tick once and exit (cron-driven setups).")] = False,
    lease_seconds: Annotated[
        float,
        typer.Option(
            "--lease-seconds",
            min=2.0,
            help="How long the active scheduler's lease lasts unrenewed: a standby takes over after it.",
        ),
    ] = 30.0,
) -> None:
    """Run the scheduler of the local instance; one is active per instance, another waits to take over.

    Example: ``FLOWPORT_DATABASE_URL=postgresql://flowport@db/flowport flowport scheduler``
    """
    import signal
    import threading
    from datetime import timedelta

    from flowport.services import instance
    from flowport.services.scheduler import Scheduler

    try:
        instance.init_instance()
        active = Scheduler(lease_ttl=timedelta(seconds=max(lease_seconds, interval * 2)))
    except FlowportError as exc:
        err_console.print(f"[red]Error:[/red] {escape(exc.message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    console.print(f"Scheduler {escape(active.holder)} started (a tick every {interval:g}s)", highlight=False)
    leading = None
    try:
        while True:
            try:
                tick = active.run_once()
            except FlowportError as exc:
                err_console.print(f"[yellow]Tick failed:[/yellow] {escape(exc.message)}", highlight=False)
            else:
                if tick.leader != leading:
                    leading = tick.leader
                    console.print(
                        "Active: this process runs the schedules"
                        if leading
                        else "Standby: another scheduler is active"
                    )
                for schedule_id, logical_date, group in tick.created:
                    if group is not None:
                        console.print(f"Schedule {schedule_id}: run {group} for {logical_date.isoformat()}")
            if once or stop.wait(interval):
                break
    finally:
        with contextlib.suppress(FlowportError):
            active.release()
