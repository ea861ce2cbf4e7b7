"""The example flows shipped with Flowport."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from flowport.errors import NotFound
from flowport.services.settings import settings

__all__ = ["example_names", "install_example"]


def example_names() -> list[str]:
    """Names of the shipped examples."""
    root = resources.files("flowport") / "examples"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))


def install_example(name: str = "orders", home: Path | None = None) -> Path:
    """Copy an example (flow and sample data) into ``FLOWPORT_HOME/examples/NAME`` and return that folder.

    Outputs of earlier runs are removed so the run starts clean.
    """
    if name not in example_names():
        raise NotFound(f"No example called '{name}'. Examples: {', '.join(example_names())}")
    target = (home or settings().examples_dir) / name
    for leftover in ("out", "errors"):
        shutil.rmtree(target / leftover, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    source = resources.files("flowport") / "examples" / name
    for item in source.iterdir():
        if item.is_file():
            (target / item.name).write_bytes(item.read_bytes())
    return target
