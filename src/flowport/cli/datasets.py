"""``flowport datasets``: declarative datasets (the seed's dataset and view pipeline classes).

A module may hold classes that do not compile; each is reported on stderr
as one line naming the class, and the others still compile and run:

- ``compile MODULE`` prints every flow that compiles and exits 1 when any
  class is broken (the whole module was asked for);
- ``compile MODULE NAME`` and ``run MODULE NAME`` exit 1 only when ``NAME``
  itself is broken (the other broken classes are warnings), and 2 when the
  module has no pipeline ``NAME``;
- ``deploy MODULE`` registers the module on a server (through the SDK):
  flows, a pipeline per dataset and schedules from the classes' attributes.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.markup import escape

from flowport.cli.output import console, err_console, print_json
from flowport.cli.remote import TokenOpt, UrlOpt, failed, open_client
from flowport.errors import FlowportError

if TYPE_CHECKING:  # the services import the engine (pyarrow, DuckDB): imported by the commands
    from flowport.sdk import Client
    from flowport.services import datasets

__all__ = ["datasets_app"]

_log = logging.getLogger(__name__)

datasets_app = typer.Typer(
    help="Declarative datasets: dataset and view pipeline classes compiled to flows.", no_args_is_help=True
)

ModuleArg = Annotated[str, typer.Argument(help="Datasets module: a .py file or a dotted module name.")]
DsOpt = Annotated[
    str | None,
    typer.Option(
        "--ds",
        help="Logical date YYYY-MM-DD for view templates (default: the start of the last complete "
        "interval of the pipeline's schedule, UTC, as Airflow).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document.")]


def _ds(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not a date (YYYY-MM-DD)", param_hint="--ds") from None


def _error(message: str) -> None:
    err_console.print(f"[red]Error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


def _warn(message: str) -> None:
    err_console.print(f"[yellow]Warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)


def _compile(module: str, ds: date | None, on_error: Callable[[str], None]) -> datasets.CompiledDatasets:
    """Load and compile a module; a module that cannot be loaded at all is one line and exit 1."""
    from flowport.pipelines import DEPRECATION
    from flowport.services import datasets

    # A spec file still importing flowport.pipelines gets one Warning line naming its own line:
    # Python hides DeprecationWarning outside __main__, and the user would never learn of the move.
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.filterwarnings("always", message=re.escape(DEPRECATION), category=DeprecationWarning)
            try:
                return datasets.compile_module(datasets.load_module(module), ds)
            except FlowportError as exc:
                failure = exc.message
            except Exception as exc:  # a Flowport bug: still one line, the traceback to the debug log
                _log.debug("Compiling %s failed", module, exc_info=True)
                failure = f"compiling '{module}' failed unexpectedly: {type(exc).__name__}: {exc}"
    finally:
        _show_warnings(caught, DEPRECATION)
    on_error(failure)
    raise typer.Exit(1)


def _show_warnings(caught: list[warnings.WarningMessage], deprecation: str) -> None:
    """The flowport.pipelines deprecation as a Warning line; any other warning as Python shows it."""
    for item in caught:
        if item.category is DeprecationWarning and str(item.message).startswith(deprecation):
            _warn(f"{item.filename}:{item.lineno}: {item.message}")
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


def _unknown(name: str, module: str, compiled: datasets.CompiledDatasets) -> str:
    return f"no pipeline '{name}' in {module}; it has: {', '.join(compiled.names) or 'none'}"


@datasets_app.command("compile")
def compile_(
    module: ModuleArg,
    name: Annotated[
        str | None,
        typer.Argument(help="Only this pipeline class (default: every class).", show_default=False),
    ] = None,
    ds: DsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the flows a datasets module compiles to; report each class that does not compile.

    Example: ``flowport datasets compile datasets.py --json``
    """
    compiled = _compile(module, _ds(ds), _error)
    if name is not None and name not in compiled.names:
        _error(_unknown(name, module, compiled))
        raise typer.Exit(2)
    flows = [f for n, f in compiled.flows.items() if name is None or n == name]
    for broken, message in compiled.errors.items():
        (_error if name is None or broken == name else _warn)(message)
    if as_json:
        from flowport.model.document import flow_to_dict

        print_json([flow_to_dict(flow) for flow in flows])
    else:
        for flow in flows:
            stages = " -> ".join(f"{s.name} ({s.plugin.name})" for s in flow.stages)
            when = f" (ds {flow.parameters['ds']})" if "ds" in flow.parameters else ""
            title = f"[bold]{escape(flow.name)}[/bold]{escape(when)}"
            console.print(f"{title}: {escape(stages)}", highlight=False, soft_wrap=True)
    failed = name in compiled.errors if name is not None else bool(compiled.errors)
    raise typer.Exit(1 if failed else 0)


@datasets_app.command("run")
def run(
    module: ModuleArg,
    name: Annotated[str, typer.Argument(help="Pipeline class name.")],
    ds: DsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run one pipeline of a module now (other classes of the module may be broken).

    Example: ``flowport datasets run datasets.py OMISDatasetPipeline --ds 2018-01-31``
    """
    from flowport.cli.main import run_and_report

    def fail(message: str, code: int = 1) -> NoReturn:
        if as_json:
            print_json({"status": "Failed", "stages": {}, "error": {"stage": None, "message": message}})
        else:
            _error(message)
        raise typer.Exit(code)

    compiled = _compile(module, _ds(ds), fail)
    if name not in compiled.names:
        fail(_unknown(name, module, compiled), 2)
    if name in compiled.errors:
        fail(compiled.errors[name])
    for broken, message in compiled.errors.items():
        if broken != name:
            _warn(message)
    run_and_report(compiled.flows[name], {}, Path.cwd(), as_json)


@datasets_app.command("deploy")
def deploy(
    module: ModuleArg,
    project: Annotated[
        str, typer.Option("--project", help="Project (name or id) the flows and pipelines go to.")
    ] = "default",
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a datasets module on a server: its flows, a pipeline per dataset (load, then its views for the
    same logical date) and a schedule from each class's schedule_interval, start_date, end_date and catchup.

    Deploying again updates what it stored (by name). The module is compiled here; the server never runs
    its code. Exit 1 when a class does not compile (the others are deployed).

    Example: ``flowport datasets deploy omis_datasets.py --url http://prod:8080``
    """
    from flowport.services import datasets

    def fail(message: str, code: int = 1) -> NoReturn:
        if as_json:
            print_json({"error": message})
        else:
            _error(message)
        raise typer.Exit(code)

    try:
        plan = datasets.deployment_plan(datasets.load_module(module))
    except FlowportError as exc:
        fail(exc.message)
    for message in plan.errors.values():
        _error(message)
    for message in plan.warnings:
        _warn(message)
    try:
        with open_client(url, token, as_json) as client:
            stored = _upload(client, plan, project)
    except FlowportError as exc:
        failed(exc, as_json=as_json)
    if as_json:
        print_json({**stored, "errors": list(plan.errors.values()), "warnings": plan.warnings})
    else:
        for kind in ("flows", "pipelines", "schedules"):
            for item in stored[kind]:
                console.print(
                    f"{kind[:-1].capitalize()} {item['id']} '{escape(str(item['name']))}' {item['action']}"
                    + (
                        f": next run for {item['nextLogicalDate']} at {item['nextRunAt']}"
                        if "nextRunAt" in item
                        else ""
                    ),
                    highlight=False,
                    soft_wrap=True,
                )
    raise typer.Exit(1 if plan.errors else 0)


def _find(client: Client, path: str, wanted: str, **params: object) -> dict[str, object] | None:
    for record in client.list_all(path, **params):
        if record.get("name") == wanted:
            return record
    return None


def _upsert(
    client: Client, path: str, name: str, document: dict[str, Any], project_id: object
) -> tuple[dict[str, Any], str]:
    """Store ``document`` at ``path`` in the project: update the one of that name, else create it."""
    existing = _find(client, path, name, projectId=project_id, name=name)
    if existing is None:
        return client.request("POST", path, params={"projectId": project_id}, json=document).json(), "created"
    return client.request("PATCH", f"{path}/{existing['id']}", json=document).json(), "updated"


def _upload(
    client: Client, plan: datasets.DatasetDeployment, project: str
) -> dict[str, list[dict[str, object]]]:
    from flowport.model.document import flow_to_dict

    projects = client.list_all("/v4/projects")
    chosen = next((p for p in projects if str(p["id"]) == project or p["name"] == project), None)
    if chosen is None:
        raise FlowportError(f"No project '{project}' on {client.url}")
    project_id = chosen["id"]
    stored: dict[str, list[dict[str, object]]] = {"flows": [], "pipelines": [], "schedules": []}
    for name, flow in plan.flows.items():
        record, action = _upsert(client, "/v4/flows", name, flow_to_dict(flow), project_id)
        stored["flows"].append({"id": record["id"], "name": name, "action": action})
    pipeline_ids: dict[str, int] = {}
    for document in plan.pipelines:
        name = str(document["name"])
        record, action = _upsert(client, "/v4/pipelines", name, document, project_id)
        pipeline_ids[name] = int(record["id"])
        stored["pipelines"].append({"id": record["id"], "name": name, "action": action})
    for body in plan.schedules:
        name = str(body["name"])
        target = {"id": pipeline_ids[str(body["pipeline"])]}
        existing = _find(client, "/v4/schedules", name)
        if existing is None:
            record = client.request("POST", "/v4/schedules", json={**body, "pipeline": target}).json()
            action = "created"
        else:
            changes = {k: v for k, v in body.items() if k not in ("name", "pipeline")}
            record = client.request("PATCH", f"/v4/schedules/{existing['id']}", json=changes).json()
            action = "updated"
        stored["schedules"].append(
            {
                "id": record["id"],
                "name": name,
                "action": action,
                "nextLogicalDate": record.get("nextLogicalDate"),
                "nextRunAt": record.get("nextRunAt"),
            }
        )
    return stored
