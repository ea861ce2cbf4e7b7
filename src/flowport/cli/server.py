"""``flowport server``: run the instance's API (uvicorn) with its local job pool.

At start-up the instance is made ready to use with nothing else to do:
the store is created or upgraded and the secret key ensured, jobs a
previous server left unfinished are marked Failed, an ``admin`` user is
created when there is no user yet, and — only when asked (``--example``,
``--run-example``; ``make run`` asks) — the shipped example flow with its
sample data is loaded into the default project. Then the URL, the docs URL
and how to sign in are printed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from flowport.cli.output import console, err_console, metrics_table
from flowport.errors import Conflict, FlowportError, NotFound, ValidationFailed

if TYPE_CHECKING:
    from flowport.services.settings import Settings


def settings() -> Settings:
    """The instance's settings (imported on use: pydantic-settings costs start-up time)."""
    from flowport.services.settings import settings as _settings

    return _settings()


__all__ = [
    "ADMIN_PASSWORD_ENV",
    "EXAMPLE_FLOW",
    "PASSWORD_FILE",
    "ensure_admin",
    "load_example",
    "server",
]

ADMIN_PASSWORD_ENV = "FLOWPORT_ADMIN_PASSWORD"
PASSWORD_FILE = "initial-admin-password"
EXAMPLE_FLOW = "orders"
_ADMIN = "admin"


def _write_private(path: Path, text: str) -> None:
    # Created 0600 from the start: the password is never readable by others, not even briefly.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text + "\n")
    os.chmod(path, 0o600)


def ensure_admin() -> tuple[str, str | None, str]:
    """Create the user ``admin`` when the instance has no user.

    The password is ``FLOWPORT_ADMIN_PASSWORD`` or a generated one, written
    to ``$FLOWPORT_HOME/initial-admin-password`` (mode 0600).

    Returns:
        ``(user name, generated password or None, where the password is)``;
        the generated password is returned only when it was just created,
        so that it is printed once.
    """
    from flowport.services import auth

    password_file = settings().home / PASSWORD_FILE
    if auth.list_users(limit=1)["count"]:
        if password_file.is_file():
            return _ADMIN, None, f"in {password_file}"
        return _ADMIN, None, "as set when the user was created (flowport users ...)"
    given = os.environ.get(ADMIN_PASSWORD_ENV)
    if given:
        auth.create_user(_ADMIN, given, "admin")
        return _ADMIN, None, f"from {ADMIN_PASSWORD_ENV}"
    password = secrets.token_urlsafe(18)
    auth.create_user(_ADMIN, password, "admin")
    _write_private(password_file, password)
    return _ADMIN, password, f"in {password_file}"


def load_example(name: str = EXAMPLE_FLOW) -> tuple[dict[str, Any] | None, bool]:
    """Store the shipped example flow in the default project, its data in the instance's data folder.

    A flow of the example's name (or uuid) already there is kept as it is:
    the user's edits win.

    Returns:
        ``(the example flow as stored, whether it was stored just now)``;
        ``(None, False)`` when it was stored once and then renamed and its
        uuid is elsewhere.
    """
    from flowport.services import flow_records

    folder = resources.files("flowport") / "examples" / name
    document = json.loads((folder / "flow.json").read_text(encoding="utf-8"))
    data = flow_records.data_dir()
    data.mkdir(parents=True, exist_ok=True)
    for item in folder.iterdir():
        target = data / item.name
        # Sample data is copied once: a user's changes to it are kept too.
        if item.is_file() and item.name != "flow.json" and not target.exists():
            with resources.as_file(item) as source:
                shutil.copyfile(source, target)
    try:
        return flow_records.get_flow_by_name(document["name"]), False
    except NotFound:
        pass
    try:
        return flow_records.create_flow(document), True
    except Conflict:
        pass
    try:
        return flow_records.get_flow_by_uuid(document["uuid"]), False
    except NotFound:
        return None, False


def _report_when_done(job_group_id: int) -> None:
    from flowport.engine import StageMetrics
    from flowport.services import jobs

    try:
        group = jobs.wait_for_job_group(job_group_id, timeout=3600, poll=0.2)
    except Exception as exc:  # a report thread must never take the server down
        err_console.print(
            f"[red]Example job {job_group_id}:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        return
    stages = group["result"]["stages"] if group.get("result") else {}
    table = metrics_table(
        {
            name: StageMetrics(
                input_records=m.get("inputRecords", 0),
                output_records=m.get("outputRecords", 0),
                error_records=m.get("errorRecords", 0),
                input_batches=m.get("inputBatches", 0),
                output_batches=m.get("outputBatches", 0),
                seconds=m.get("seconds", 0.0),
            )
            for name, m in stages.items()
        },
        title=f"Example job group {job_group_id}",
    )
    console.print(table)
    colour = {"Complete": "green", "Failed": "red"}.get(group["status"], "yellow")
    line = f"Example job group {job_group_id}: [{colour}]{group['status']}[/{colour}]"
    if group.get("error"):
        line += f" ({escape(group['error'])})"
    console.print(line, highlight=False, soft_wrap=True)


def server(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    launcher: Annotated[
        str | None,
        typer.Option(
            "--launcher",
            "--workers-executor",
            help="Where jobs run: process (a local pool, the default) or thread; "
            "default FLOWPORT_LAUNCHER or [jobs] launcher.",
        ),
    ] = None,
    with_example: Annotated[
        bool,
        typer.Option(
            "--example", help="Load the shipped example flow (and its data) into the default project."
        ),
    ] = False,
    run_example: Annotated[
        bool,
        typer.Option("--run-example", help="Load the example flow and run it once as a job at start-up."),
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
    with_scheduler: Annotated[
        bool,
        typer.Option(
            "--scheduler/--no-scheduler",
            help="Run the scheduler in this process (one is active per instance; "
            "use --no-scheduler when `flowport scheduler` runs apart).",
        ),
    ] = True,
) -> None:
    """Serve the REST API v4 (and its docs) and run jobs in a local worker pool.

    Example: ``flowport server --host 0.0.0.0 --port 8080 --example``
    """
    # Imported here: the API and uvicorn cost start-up time other commands need not pay.
    import uvicorn

    from flowport.api.app import create_app
    from flowport.orchestrate.loop import Loop
    from flowport.services import instance, jobs, runs
    from flowport.services import launcher as launchers
    from flowport.services.file_roots import instance_roots
    from flowport.services.scheduler import TICK_INTERVAL, Scheduler
    from flowport.services.webhooks import DISPATCH_INTERVAL, Dispatcher

    if launcher is not None and launcher not in ("process", "thread"):
        raise typer.BadParameter("use process or thread", param_hint="--launcher")
    try:
        info = instance.init_instance()
        # A request must not wait for a job: an inline launcher would run it inside the request.
        kind = launcher or launchers.configured_kind()
        if kind not in ("process", "thread"):
            raise ValidationFailed(f"flowport server runs jobs in a process pool or threads, not '{kind}'")
        launchers.use_launcher(kind)
        # A root holding the store or the key would hand them to every flow: refuse to serve.
        roots = instance_roots()
        # On the embedded store this server's pool is the only worker: what it held when it stopped
        # is lost. A shared store may have other workers: only jobs whose lease expired are failed.
        interrupted = (
            jobs.fail_interrupted_job_groups()
            if instance.store_url().startswith("sqlite")
            else jobs.fail_stale_job_groups()
        )
        user_name, generated, where = ensure_admin()
        # Only when asked: a Prod instance gets no flow it did not import.
        example, loaded = load_example() if with_example or run_example else (None, False)
    except FlowportError as exc:
        err_console.print(f"[red]Error:[/red] {escape(exc.message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None

    url = f"http://{host}:{port}"
    if ":" in host:
        url = f"http://[{host}]:{port}"
    console.print(
        f"Flowport instance [bold]{info.uuid}[/bold] ({escape(info.database)})",
        highlight=False,
        soft_wrap=True,
    )
    for warning in info.warnings:
        err_console.print(f"[yellow]Warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    if interrupted:
        console.print(f"{interrupted} job(s) interrupted by the last shutdown were marked Failed")
    if example is not None and loaded:
        console.print(
            f"Example flow '{escape(example['name'])}' loaded (id {example['id']})",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"Files: flows read and write inside {escape(roots.describe())}", highlight=False, soft_wrap=True
    )
    console.print(f"UI:    {url}/", highlight=False, soft_wrap=True)
    console.print(f"API:   {url}/v4", highlight=False, soft_wrap=True)
    console.print(f"Docs:  {url}/docs", highlight=False, soft_wrap=True)
    if generated is not None:
        # Shown this once; afterwards it is only in the file.
        console.print(
            f"Login: {user_name} / {generated}  (also {escape(where)})", highlight=False, soft_wrap=True
        )
    else:
        console.print(f"Login: {user_name}, password {escape(where)}", highlight=False, soft_wrap=True)

    if run_example and example is None:
        err_console.print("[red]Example not started:[/red] the example flow is not in the default project")
    elif run_example and example is not None:
        try:
            group = runs.run_flow(example["id"])
        except FlowportError as exc:
            err_console.print(
                f"[red]Example not started:[/red] {escape(exc.message)}", highlight=False, soft_wrap=True
            )
        else:
            console.print(f"Example job group {group['id']} started", highlight=False, soft_wrap=True)
            threading.Thread(
                target=_report_when_done, args=(group["id"],), name="flowport-example", daemon=True
            ).start()

    from flowport import ui

    app = create_app()
    ui.attach(app)  # the web UI at /, over the same API
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, workers=1)
    # Jobs whose worker stopped renewing its lease (killed, host gone) are failed while the server runs.
    sweep = Loop("lease", jobs.HEARTBEAT_LEASE / 3, lambda: jobs.fail_stale_job_groups(only_running=True))
    sweep.start()
    # The embedded default schedules on its own; a second server waits on the scheduler lease.
    scheduler = Scheduler() if with_scheduler else None
    ticking = Loop("scheduler", TICK_INTERVAL, scheduler.run_once).start() if scheduler else None
    # Webhook deliveries from the job_events outbox (safe beside another server's dispatcher).
    dispatching = Loop("webhooks", DISPATCH_INTERVAL, Dispatcher().run_once).start()
    try:
        _graceful_server(config).run()
    finally:
        dispatching.stop()
        sweep.stop()
        if ticking is not None and scheduler is not None:
            ticking.stop()
            scheduler.release()
        launchers.shutdown_launcher()


def _graceful_server(config: Any) -> Any:
    """A uvicorn server for ``config`` that a stop signal ends normally.

    uvicorn re-raises SIGINT/SIGTERM once it has shut down, which would end
    the process before the job pool is shut down (and exit 130 or by the
    signal); here the signal only asks for the shutdown, then the command
    stops its workers and exits 0.
    """
    import uvicorn
    from uvicorn.server import HANDLED_SIGNALS

    class GracefulServer(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return GracefulServer(config)
