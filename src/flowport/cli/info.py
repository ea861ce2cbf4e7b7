"""``flowport info``: which instance the commands here use, and where each of its places came from."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from flowport.cli.output import console, err_console, print_json

__all__ = ["info"]


def _shown(value: object) -> str:
    return "(invalid: see below)" if value is None else str(value)


def info(
    as_json: Annotated[bool, typer.Option("--json", help="Print exactly one JSON document.")] = False,
) -> None:
    """Show the instance: id, folder, store (no password), data folder, roots, settings file, job launcher.

    Example: ``flowport info`` from any folder of a checkout shows the same instance as ``make run``.
    """
    # Imported here: the store and the services cost start-up time `flowport --help` need not pay.
    from flowport.services.instance import describe_instance

    report = describe_instance()
    if as_json:
        print_json(report)
        raise typer.Exit(1 if report["problems"] else 0)
    identity = report["instance"]
    console.print(
        f"Instance   {identity['uuid'] or 'not initialized (run `flowport init` or `flowport server`)'}",
        highlight=False,
    )
    rows = [
        ("Folder", report["home"]["path"], report["home"]["from"]),
        ("Store", _shown(report["store"]["url"]), report["store"]["from"]),
        ("Data", _shown(report["dataDir"]["path"]), report["dataDir"]["from"]),
        ("Roots", ", ".join(report["fileRoots"]["paths"]) or _shown(None), report["fileRoots"]["from"]),
        ("Key", report["secretKey"]["from"], "present" if report["secretKey"]["exists"] else "missing"),
        (
            "Settings",
            report["settingsFile"]["path"],
            "present" if report["settingsFile"]["exists"] else "absent (optional)",
        ),
        ("Editors", ", ".join(report["editorPermissions"]) or "(no restricted stage)", "permissions"),
        ("Launcher", _shown(report["jobs"]["launcher"]), report["jobs"]["launcherFrom"]),
        ("Workers", _shown(report["jobs"]["workers"]), report["jobs"]["workersFrom"]),
    ]
    for label, value, source in rows:
        console.print(
            f"{label:<10} {escape(value)}  [dim]({escape(source)})[/dim]", highlight=False, soft_wrap=True
        )
    for problem in report["problems"]:
        err_console.print(f"[red]Invalid setting:[/red] {escape(problem)}", highlight=False, soft_wrap=True)
    if report["problems"]:
        raise typer.Exit(1)
