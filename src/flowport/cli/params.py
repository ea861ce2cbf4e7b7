"""``--param NAME=VALUE`` options, parsed (a module of its own: the commands that run flows locally
import it without the rich tables and client helpers of :mod:`flowport.cli.remote`)."""

from __future__ import annotations

import typer

__all__ = ["parse_params"]


def parse_params(items: list[str] | None, *, form: str = "NAME=VALUE") -> dict[str, str]:
    """``NAME=VALUE`` items as a dict (a later item wins); a usage error names an item without ``=``."""
    values: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"'{item}' is not {form}", param_hint="--param")
        values[name.strip()] = value
    return values
