"""``flowport info``: which instance the commands here use, and where each of its places came from."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from flowport.cli.output import console, print_json

__all__ = ["info"]


def info(
    as_json: Annotated[bool, typer.Option("--json", help="Print exactly one JSON document.")] = False,
) -> None:
    """Show the instance: its id, folder, store (no password), data folder, file roots and settings file.

    Example: ``flowport info`` from any folder of a checkout shows the same instance as ``make run``.
    """
    # Imported here: the store and the services cost start-up time `flowport --help` need not pay.
    from flowport.services.instance import describe_instance

    report = describe_instance()
    if as_json:
        print_json(report)
        return
    identity = report["instance"]
    console.print(
        f"Instance   {identity['uuid'] or 'not initialized (run `flowport init` or `flowport server`)'}",
        highlight=False,
    )
    rows = [
        ("Folder", report["home"]["path"], report["home"]["from"]),
        ("Store", report["store"]["url"], report["store"]["from"]),
        ("Data", report["dataDir"]["path"], report["dataDir"]["from"]),
        ("Roots", ", ".join(report["fileRoots"]["paths"]), report["fileRoots"]["from"]),
        ("Key", report["secretKey"]["from"], "present" if report["secretKey"]["exists"] else "missing"),
        (
            "Settings",
            report["settingsFile"]["path"],
            "present" if report["settingsFile"]["exists"] else "absent (optional)",
        ),
        ("Editors", ", ".join(report["editorPermissions"]) or "(no restricted stage)", "permissions"),
    ]
    for label, value, source in rows:
        console.print(
            f"{label:<10} {escape(value)}  [dim]({escape(source)})[/dim]", highlight=False, soft_wrap=True
        )
