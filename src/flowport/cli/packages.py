"""``flowport packages``: work on package files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flowport.cli.output import console, err_console, print_json
from flowport.errors import FlowportError

__all__ = ["packages_app"]

packages_app = typer.Typer(help="Package files (ZIP exports of flows).", no_args_is_help=True)


@packages_app.command("upgrade")
def upgrade(
    package: Annotated[Path, typer.Argument(help="Package ZIP to rewrite.", exists=True, dir_okay=False)],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: rewrite PACKAGE in place).")
    ] = None,
    version_range: Annotated[
        str | None,
        typer.Option(
            "--range", help="Range for every pin, e.g. '[0.0.1,10.0.0]' (default: each pin's major)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print exactly one JSON document.")] = False,
) -> None:
    """Rewrite exact artifact versions into ranges so another instance can resolve them.

    Example: ``flowport packages upgrade flows.zip --range '[1.0.0,2.0.0)' -o flows-ranged.zip``
    """
    from flowport.services.package_tools import upgrade_package

    try:
        data, changes = upgrade_package(package.read_bytes(), version_range)
    except FlowportError as exc:
        err_console.print(f"[red]Error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from None
    target = output or package
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    if as_json:
        print_json({"output": str(target), "changes": [c.to_dict() for c in changes]})
        return
    table = Table(title=f"Artifact pins widened in {target}", title_justify="left")
    for column in ("Flow", "Stage", "Artifact", "From", "To"):
        table.add_column(column)
    for c in changes:
        table.add_row(c.flow, c.stage, c.artifact, c.before, c.after)
    console.print(table if changes else "No exact pins: nothing to change.")
