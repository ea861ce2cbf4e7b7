"""``flowport pipelines``: declarative dataset and view pipelines."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from flowport.cli.output import console, err_console, print_json
from flowport.errors import FlowportError
from flowport.model.document import flow_to_dict
from flowport.services import dataset_pipelines

__all__ = ["pipelines_app"]

pipelines_app = typer.Typer(
    help="Declarative dataset and view pipelines (Python classes compiled to flows).", no_args_is_help=True
)

ModuleArg = Annotated[str, typer.Argument(help="Pipelines module: a .py file or a dotted module name.")]
DsOpt = Annotated[
    str | None, typer.Option("--ds", help="Logical date YYYY-MM-DD (default: today, UTC) for view templates.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document.")]


def _ds(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not a date (YYYY-MM-DD)", param_hint="--ds") from None


@pipelines_app.command("compile")
def compile_(module: ModuleArg, ds: DsOpt = None, as_json: JsonOpt = False) -> None:
    """Print the flows a pipelines module compiles to."""
    logical = _ds(ds)
    try:
        flows = dataset_pipelines.compile_module(dataset_pipelines.load_module(module), logical)
    except FlowportError as exc:
        err_console.print(f"[red]Error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from None
    documents = [flow_to_dict(flow) for flow in flows.values()]
    if as_json:
        print_json(documents)
        return
    for flow in flows.values():
        stages = " -> ".join(f"{s.name} ({s.plugin.name})" for s in flow.stages)
        console.print(f"[bold]{flow.name}[/bold]: {stages}", highlight=False)


@pipelines_app.command("run")
def run(
    module: ModuleArg,
    name: Annotated[str, typer.Argument(help="Pipeline class name.")],
    ds: DsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run one pipeline of a module now."""
    from flowport.cli.main import run_and_report

    logical = _ds(ds)
    try:
        flows = dataset_pipelines.compile_module(dataset_pipelines.load_module(module), logical)
    except FlowportError as exc:
        err_console.print(f"[red]Error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from None
    if name not in flows:
        err_console.print(f"[red]Error:[/red] no pipeline '{name}' in {module}; it has: {', '.join(flows)}")
        raise typer.Exit(2)
    run_and_report(flows[name], {}, Path.cwd(), as_json)
