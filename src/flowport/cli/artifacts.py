"""``flowport artifacts ...``: plugin artifacts installed into this instance, side by side.

``install`` puts a wheel or a project directory into
``$FLOWPORT_HOME/artifacts/<name>/<version>`` (offline, with the Python that
runs Flowport); ``list`` shows every installed artifact version once (the
SYSTEM artifact, those of Flowport's environment and those of the
instance); ``remove`` deletes an instance's version. These commands act on
the local instance as a trusted operator. A running ``flowport server``
sees an install or removal the next time it resolves a plugin. Exit status:
0 success, 1 failure, 2 usage error (a path or value the service rejects).
With ``--json`` each command prints exactly one JSON document on stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flowport.cli.output import console, err_console, print_json
from flowport.errors import FlowportError, ValidationFailed

__all__ = ["artifacts_app"]

artifacts_app = typer.Typer(
    help="Plugin artifacts: install versions side by side into this instance, list, remove.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document.")]


def _fail(exc: FlowportError, *, as_json: bool) -> typer.Exit:
    if as_json:
        print_json({"error": exc.message})
    else:
        err_console.print(f"[red]Error:[/red] {escape(exc.message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2 if isinstance(exc, ValidationFailed) else 1)


@artifacts_app.command("install")
def install(
    source: Annotated[Path, typer.Argument(help="A wheel or a project directory.", show_default=False)],
    force: Annotated[
        bool, typer.Option("--force", help="Replace the installed copy of the same name and version.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Install an artifact into this instance, beside its other versions (offline, no dependencies).

    Example: ``flowport artifacts install dist/acme_stages-1.2.0-py3-none-any.whl``
    """
    from flowport.services import artifacts

    try:
        installed = artifacts.install_artifact(source, force=force)
    except FlowportError as exc:
        raise _fail(exc, as_json=as_json) from None
    if as_json:
        print_json(installed)
        return
    console.print(
        f"Installed {escape(installed['name'])} {escape(installed['version'])} "
        f"into {escape(installed['path'])} (stages: {escape(', '.join(installed['entryPoints']))})",
        highlight=False,
        soft_wrap=True,
    )
    for warning in installed["warnings"]:
        err_console.print(f"[yellow]Warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)


@artifacts_app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """List installed artifacts, each version once, with where each is installed.

    Example: ``flowport artifacts list --json``
    """
    from flowport.services import artifacts

    try:
        rows: list[dict[str, Any]] = artifacts.list_artifacts()
    except FlowportError as exc:
        raise _fail(exc, as_json=as_json) from None
    if as_json:
        print_json({"data": rows, "count": len(rows)})
        return
    table = Table(title="Artifacts", title_justify="left")
    for column in ("Name", "Version", "Scope", "Source", "Stages", "Path"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            escape(row["name"]),
            escape(row["version"]),
            row["scope"],
            row["source"],
            escape(", ".join(p["name"] for p in row["plugins"]) or "-"),
            escape(row["path"]),
        )
    console.print(table)
    for row in rows:
        for shadowed in row["shadows"]:
            label = f"{row['name']} {row['version']}"
            err_console.print(
                f"[yellow]Note:[/yellow] {escape(label)} in {escape(shadowed)} "
                f"is not used: the copy in {escape(row['path'])} is",
                highlight=False,
                soft_wrap=True,
            )
        for problem in row["errors"]:
            err_console.print(f"[yellow]Warning:[/yellow] {escape(problem)}", highlight=False, soft_wrap=True)


@artifacts_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="The artifact's name.", show_default=False)],
    version: Annotated[str, typer.Argument(help="The version to remove.", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """Remove an artifact version installed in this instance.

    Example: ``flowport artifacts remove acme-stages 1.2.0``
    """
    from flowport.services import artifacts

    try:
        removed = artifacts.remove_artifact(name, version)
    except FlowportError as exc:
        raise _fail(exc, as_json=as_json) from None
    if as_json:
        print_json(removed)
        return
    console.print(f"Removed {escape(removed['name'])} {escape(removed['version'])}", highlight=False)
