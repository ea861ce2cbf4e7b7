"""The ``flowport`` command line.

Exit status: 0 success, 1 invalid flow or failed run, 2 usage error.
With ``--json`` the validate, preview and run commands print exactly one
JSON document on stdout.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flowport.cli.lazy import LazyCommand, LazyGroup
from flowport.errors import FlowDocumentError, FlowInvalid, FlowportError, NotFound, UnknownParameters

if TYPE_CHECKING:
    # The services, the engine (pyarrow, DuckDB) and the models (pydantic) are imported by the commands
    # that need them, so that `flowport --help` starts without them (issue 16; see
    # tests/cli/test_startup_imports.py). Command signatures only use builtins, Path and Annotated.
    from flowport.engine import FlowRun, RunResult
    from flowport.model.flow import Flow

__all__ = ["app", "main", "script"]


class FlowportGroup(LazyGroup):
    """The top-level group: the other modules' commands and groups are imported when one is used.

    `flowport --help` shows the help below (a test checks it is each command's own); the
    commands before the ones of this module, the groups after.
    """

    lazy_commands = (
        LazyCommand(
            "locks",
            "flowport.cli.pipelines:locks",
            "List held task locks: which task of which run holds each, since when.",
        ),
        LazyCommand(
            "login",
            "flowport.cli.flows:login",
            "Sign in to a server: create an API token and store it for the `flows` commands.",
        ),
        LazyCommand(
            "logout",
            "flowport.cli.flows:logout",
            "Revoke the stored API token (when the server can be reached) and forget it.",
        ),
        LazyCommand(
            "init",
            "flowport.cli.connections:init",
            "Create or upgrade this instance's metadata store and secret key (safe to run again).",
        ),
        LazyCommand(
            "info",
            "flowport.cli.info:info",
            "Show the instance: id, folder, store (no password), data folder, roots, settings file, "
            "job launcher.",
        ),
        LazyCommand(
            "server",
            "flowport.cli.server:server",
            "Serve the REST API v4 (and its docs) and run jobs in a local worker pool.",
        ),
        LazyCommand(
            "scheduler",
            "flowport.cli.schedules:scheduler",
            "Run the scheduler of the local instance; one is active per instance, "
            "another waits to take over.",
        ),
        LazyCommand(
            "backfill",
            "flowport.cli.schedules:backfill",
            "Create a schedule's missing runs between two logical dates, in order.",
        ),
        LazyCommand(
            "worker",
            "flowport.cli.workers:worker",
            "Run jobs from the broker (FLOWPORT_BROKER_URL) on this machine until stopped.",
        ),
        LazyCommand(
            "workers",
            "flowport.cli.workers:workers",
            "List the instance's workers: queues, concurrency, state, last heartbeat and the jobs they run.",
        ),
        LazyCommand(
            "connections",
            "flowport.cli.connections:connections_app",
            "Connections to databases, APIs and folders (credentials are encrypted at rest).",
            group=True,
        ),
        LazyCommand(
            "datasets",
            "flowport.cli.datasets:datasets_app",
            "Declarative datasets: dataset and view pipeline classes compiled to flows.",
            group=True,
        ),
        LazyCommand(
            "pipelines",
            "flowport.cli.pipelines:pipelines_app",
            "Pipelines on a Flowport server: DAGs of flow, deployment, shell, dbt, SQL and HTTP tasks.",
            group=True,
        ),
        LazyCommand(
            "jobs",
            "flowport.cli.jobs:jobs_app",
            "Jobs on a Flowport server: list, show, logs, cancel.",
            group=True,
        ),
        LazyCommand(
            "webhooks",
            "flowport.cli.webhooks:webhooks_app",
            "Webhooks: signed POSTs of job and pipeline events.",
            group=True,
        ),
        LazyCommand(
            "packages",
            "flowport.cli.packages:packages_app",
            "Package files (ZIP exports of flows).",
            group=True,
        ),
        LazyCommand(
            "users",
            "flowport.cli.users:users_app",
            "Users of this instance's API and their roles.",
            group=True,
        ),
        LazyCommand(
            "tokens",
            "flowport.cli.users:tokens_app",
            "API tokens (Authorization: Bearer ...).",
            group=True,
        ),
        LazyCommand(
            "flows",
            "flowport.cli.flows:flows_app",
            "Flows on a Flowport server (list, export, import, run); without a server, "
            "flow files and packages.",
            group=True,
        ),
        LazyCommand(
            "deployments",
            "flowport.cli.deployments:deployments_app",
            "Deployments on a Flowport server: import rules, releases (imported packages), runs.",
            group=True,
        ),
        LazyCommand(
            "artifacts",
            "flowport.cli.artifacts:artifacts_app",
            "Plugin artifacts: install versions side by side into this instance, list, remove.",
            group=True,
        ),
        LazyCommand(
            "schedules",
            "flowport.cli.schedules:schedules_app",
            "Schedules on a Flowport server: cron or preset, timezone, catchup, max active runs, pause.",
            group=True,
        ),
    )


app = typer.Typer(
    name="flowport",
    cls=FlowportGroup,
    help="Flowport: design, validate, preview and run data flows.",
    no_args_is_help=True,
    # `flowport --install-completion` installs shell completion for bash, zsh, fish or PowerShell.
    add_completion=True,
    pretty_exceptions_enable=False,
)
stages_app = typer.Typer(help="Stage plugins installed on this machine.", no_args_is_help=True)
schema_app = typer.Typer(help="JSON Schemas of Flowport's documents.", no_args_is_help=True)
example_app = typer.Typer(help="The example flows shipped with Flowport.", no_args_is_help=True)
app.add_typer(stages_app, name="stages")
app.add_typer(schema_app, name="schema")
app.add_typer(example_app, name="example")

FlowArg = Annotated[Path, typer.Argument(help="Flow document (JSON or YAML).", show_default=False)]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Parameter override NAME=VALUE (repeatable); NAME may be set__param."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document.")]


def _fail(message: str, *, as_json: bool, code: int = 1, payload: Any = None) -> typer.Exit:
    from flowport.cli.output import err_console, print_json

    if as_json:
        print_json(payload if payload is not None else {"error": message})
    else:
        err_console.print(f"[red]Error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def _load(path: Path, as_json: bool, *, json_shape: str) -> Flow:
    from flowport.services import flows

    try:
        return flows.load_flow(path)
    except NotFound as exc:
        raise _fail(exc.message, as_json=as_json, code=2) from None
    except FlowDocumentError as exc:
        from flowport.model.validation import ValidationIssue, ValidationResult

        issue = ValidationIssue("flowIssues", None, "FLOW_DOCUMENT_INVALID", exc.message)
        payload: Any = ValidationResult(False, [issue]).to_dict() if json_shape == "validate" else None
        if json_shape == "run":
            payload = {"status": "Failed", "stages": {}, "error": {"stage": None, "message": exc.message}}
        raise _fail(exc.message, as_json=as_json, payload=payload) from None


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        # Looked up here: reading the package's metadata is for --version only.
        from flowport import __version__
        from flowport.cli.output import console

        console.print(f"flowport {__version__}")
        raise typer.Exit(0)


@app.command()
def validate(flow_file: FlowArg, param: ParamOpt = None, as_json: JsonOpt = False) -> None:
    """Check a flow: graph, plugins and versions, configuration, parameters.

    Example: ``flowport validate orders.json --param min_total=100``
    """
    from flowport.cli.output import print_json
    from flowport.cli.params import parse_params
    from flowport.services import flows

    overrides = parse_params(param)
    flows.databases_ahead(spares=False)  # the check of a processor's SQL uses the shared database
    flow = _load(flow_file, as_json, json_shape="validate")
    try:
        result = flows.validate(flow, overrides=overrides)
    except UnknownParameters as exc:
        raise _fail(exc.message, as_json=as_json, code=2) from None
    if as_json:
        print_json(result.to_dict())
        raise typer.Exit(0 if result.success else 1)
    from flowport.cli.output import console, validation_table

    if result.success:
        console.print(f"[green]Valid[/green]: {flow.name} ({len(flow.stages)} stages)")
    else:
        console.print(validation_table(result))
        console.print(f"[red]Invalid[/red]: {len(result.issues)} issue(s)")
    raise typer.Exit(0 if result.success else 1)


@app.command()
def preview(
    flow_file: FlowArg,
    rows: Annotated[int, typer.Option("--rows", "-n", min=1, max=100_000, help="Records to preview.")] = 10,
    param: ParamOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the first records through every stage; writes nothing.

    Example: ``flowport preview orders.json --rows 20``
    """
    from flowport.cli.output import console, preview_tables, print_json
    from flowport.cli.params import parse_params
    from flowport.services import flows

    overrides = parse_params(param)
    flows.databases_ahead()
    flow = _load(flow_file, as_json, json_shape="preview")
    try:
        stages = flows.preview(flow, rows=rows, overrides=overrides, base_dir=Path.cwd())
    except UnknownParameters as exc:
        raise _fail(exc.message, as_json=as_json, code=2) from None
    except FlowInvalid as exc:
        raise _fail(exc.message, as_json=as_json, payload=exc.result.to_dict()) from None
    except FlowportError as exc:
        raise _fail(exc.message, as_json=as_json) from None
    if as_json:
        print_json([s.to_dict() for s in stages])
        return
    for table in preview_tables(stages):
        console.print(table)


def _watch(run: FlowRun, show: bool) -> RunResult:
    if not show:
        return run.wait()
    from rich.live import Live

    from flowport.cli.output import err_console, metrics_table

    done = threading.Event()
    result: list[RunResult] = []

    def waiter() -> None:
        result.append(run.wait())
        done.set()

    threading.Thread(target=waiter, daemon=True).start()
    with Live(
        metrics_table(run.metrics, title="Running"), console=err_console, refresh_per_second=4, transient=True
    ) as live:
        try:
            while not done.wait(0.25):
                live.update(metrics_table(run.metrics, title=f"Running {run.flow.name}"))
        except KeyboardInterrupt:
            run.cancel()
            done.wait()
    return result[0]


def run_and_report(flow: Flow, overrides: dict[str, str], base_dir: Path, as_json: bool) -> None:
    from flowport.cli.output import print_json
    from flowport.services import flows

    try:
        run = flows.start_run(flow, overrides=overrides, base_dir=base_dir)
    except UnknownParameters as exc:
        payload = {"status": "Failed", "stages": {}, "error": {"stage": None, "message": exc.message}}
        raise _fail(exc.message, as_json=as_json, code=2, payload=payload) from None
    except FlowInvalid as exc:
        payload = {
            "status": "Failed",
            "stages": {},
            "error": {"stage": None, "message": exc.message},
            "issues": exc.result.to_dict()["issues"],
        }
        raise _fail(exc.message, as_json=as_json, payload=payload) from None
    result = _watch(run, show=not as_json and sys.stderr.isatty())
    if as_json:
        print_json(result.to_dict())
    else:
        from flowport.cli.output import console, metrics_table, run_summary

        console.print(metrics_table(result.stages, title=f"{flow.name}"))
        console.print(run_summary(result), highlight=False)
    raise typer.Exit(0 if result.status == "Complete" else 1)


@app.command()
def run(flow_file: FlowArg, param: ParamOpt = None, as_json: JsonOpt = False) -> None:
    """Run a flow to the end, showing live per-stage progress.

    Example: ``flowport run orders.json --param min_total=100 --json``
    """
    from flowport.cli.params import parse_params
    from flowport.services import flows

    overrides = parse_params(param)
    # Made on the other core while the flow is read, its stage plugins imported and checked.
    flows.databases_ahead()
    flow = _load(flow_file, as_json, json_shape="run")
    run_and_report(flow, overrides, Path.cwd(), as_json)


@stages_app.command("list")
def stages_list(as_json: JsonOpt = False) -> None:
    """List installed stage plugins with their artifacts and restrictions.

    Example: ``flowport stages list --json`` (names are never cut: long ones wrap).
    """
    from flowport.cli.output import console, err_console, print_json
    from flowport.services import flows

    registry = flows.plugin_registry()
    rows: list[dict[str, Any]] = [
        {
            "name": p.info.name,
            "label": p.info.label,
            "kind": p.info.kind.value,
            "artifact": p.info.artifact.name,
            "version": str(p.info.artifact.version),
            "scope": p.info.artifact.scope,
            "restrictions": sorted(p.info.restrictions),
        }
        for p in registry.latest()
    ]
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(title="Stage plugins", title_justify="left")
    # The name is never cut or wrapped (it is what you type back); the other columns wrap.
    widest = max((len(r["name"]) for r in rows), default=4)
    table.add_column("Name", no_wrap=True, min_width=widest)
    for column in ("Label", "Kind", "Artifact", "Version", "Scope", "Restrictions"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            r["name"],
            r["label"],
            r["kind"],
            r["artifact"],
            r["version"],
            r["scope"],
            ", ".join(r["restrictions"]),
        )
    console.print(table)
    for problem in registry.load_errors:
        err_console.print(f"[yellow]Warning:[/yellow] {problem}")


@stages_app.command("describe")
def stages_describe(
    name: Annotated[str, typer.Argument(help="Plugin name or label, e.g. csv_file_origin or 'CSV File'.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a stage plugin: its settings with types and defaults, its restrictions, and an example stage.

    Example: ``flowport stages describe filter``
    """
    import json

    from flowport.cli.output import console, print_json
    from flowport.model.flow import PluginRef
    from flowport.services import flows

    registry = flows.plugin_registry()
    try:
        plugin_name = registry.name_for(name)
        cls = registry.plugin_class(PluginRef(name=plugin_name))
    except FlowportError as exc:
        raise _fail(exc.message, as_json=as_json, code=2) from None
    info = registry.resolve(PluginRef(name=plugin_name)).plugin
    assert info is not None
    schema = cls.config_model.model_json_schema()
    required = set(schema.get("required", []))
    settings = []
    for key, spec in (schema.get("properties") or {}).items():
        kind = spec.get("type") or " | ".join(
            str(option.get("type", option.get("$ref", "?")).split("/")[-1])
            for option in spec.get("anyOf", [])
        )
        settings.append(
            {
                "name": key,
                "type": kind or "object",
                "required": key in required,
                "default": spec.get("default"),
                "description": spec.get("description", ""),
            }
        )
    example_config = {s["name"]: f"<{s['type']}>" for s in settings if s["required"]}
    described: dict[str, Any] = {
        "name": info.name,
        "label": info.label,
        "kind": info.kind.value,
        "artifact": info.artifact.as_ref(),
        "description": getattr(cls, "description", "") or "",
        "restrictions": sorted(info.restrictions),
        "settings": settings,
        "example": {
            "name": f"{info.name.title().replace('_', '')}_01",
            "plugin": {"name": info.name},
            "configuration": example_config,
        },
    }
    if as_json:
        print_json(described)
        return
    from rich.table import Table

    headline = f"[bold]{info.label}[/bold] ({info.name}, {info.kind.value})"
    console.print(f"{headline} — {escape_text(described['description'])}")
    console.print(
        f"Artifact {info.artifact.name} {info.artifact.version} ({info.artifact.scope}); "
        f"restrictions: {', '.join(described['restrictions']) or 'none'}",
        highlight=False,
    )
    table = Table(title="Settings", title_justify="left")
    for column in ("Setting", "Type", "Required", "Default", "Description"):
        table.add_column(column, overflow="fold")
    for s in settings:
        default = "" if s["required"] else json.dumps(s["default"])
        table.add_row(s["name"], s["type"], "yes" if s["required"] else "", default, s["description"])
    console.print(table)
    console.print("Example stage:", highlight=False)
    console.print_json(json.dumps(described["example"]))


def escape_text(text: str) -> str:
    """``text`` safe for rich markup."""
    from rich.markup import escape

    return escape(text)


@schema_app.command("pipeline")
def schema_pipeline() -> None:
    """Print the JSON Schema of the pipeline document (flowport.pipeline/1).

    Example: ``flowport schema pipeline > pipeline.schema.json``
    """
    import json

    from flowport.model.pipeline import pipeline_json_schema

    sys.stdout.write(json.dumps(pipeline_json_schema(), indent=2) + "\n")


@schema_app.command("flow")
def schema_flow() -> None:
    """Print the JSON Schema of the flow document.

    Example: ``flowport schema flow > flow.schema.json``
    """
    import json

    from flowport.model.document import flow_json_schema

    sys.stdout.write(json.dumps(flow_json_schema(), indent=2) + "\n")


@example_app.command("run")
def example_run(
    name: Annotated[str, typer.Argument(help="Example name.")] = "orders",
    as_json: JsonOpt = False,
) -> None:
    """Unpack an example into FLOWPORT_HOME and run it end to end.

    Example: ``flowport example run orders``
    """
    from flowport.cli.output import console
    from flowport.services import examples, flows

    try:
        folder = examples.install_example(name)
    except NotFound as exc:
        raise _fail(exc.message, as_json=as_json, code=2) from None
    flow = flows.load_flow(folder / "flow.json")
    if not as_json:
        console.print(f"Running example [bold]{flow.name}[/bold] in {folder}")
    started = time.perf_counter()
    try:
        run_and_report(flow, {}, folder, as_json)
    finally:
        if not as_json:
            outputs = sorted(
                p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and p.parent != folder
            )
            if outputs:
                console.print("Files written: " + ", ".join(str(p) for p in outputs))
            console.print(f"Total {time.perf_counter() - started:.2f}s")


def _log_crash(exc: BaseException) -> str:
    """Append the traceback of an unexpected exception to the instance's log; where it went."""
    import logging
    import traceback

    from flowport.services.settings import settings

    text = "".join(traceback.format_exception(exc))
    try:
        log_file = settings().home / "logs" / "flowport.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("a", encoding="utf-8") as handle:
            handle.write(
                f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} flowport {' '.join(sys.argv[1:])}\n{text}\n"
            )
        return str(log_file)
    except OSError:
        logging.getLogger("flowport").error("unexpected error\n%s", text)
        return "the log"


def main() -> None:
    """Entry point of the ``flowport`` script.

    No Python traceback reaches the user: an unexpected exception is one line
    here and its traceback goes to ``$FLOWPORT_HOME/logs/flowport.log``.
    """
    try:
        app()
    except FlowportError as exc:  # anything not handled above is still a clean message
        from flowport.cli.output import err_console

        err_console.print(f"[red]Error:[/red] {exc.message}", highlight=False)
        sys.exit(1)
    except Exception as exc:
        from flowport.cli.output import err_console

        where = _log_crash(exc)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        err_console.print(
            f"[red]Error:[/red] unexpected {type(exc).__name__}: {first} (the details are in {where})",
            highlight=False,
        )
        sys.exit(1)


def script() -> None:
    """The ``flowport`` command: :func:`main`, then an exit without the interpreter's teardown.

    Tearing down what a run loaded (SQLAlchemy, pydantic, DuckDB, pyarrow:
    every module cleared, every object freed) takes 0.1-0.2 s after the
    command's work is done and its output written. The ``atexit`` handlers
    still run (logging flushes its files, temporary folders are removed) and
    the standard streams are flushed; while another thread that is not a
    daemon is still alive, the process ends the normal way, waiting for it.
    """
    try:
        main()
        code: str | int = 0
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if not isinstance(code, int) or others or run_exit_handlers is None:
        sys.exit(code)
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be written
            stream.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    script()
