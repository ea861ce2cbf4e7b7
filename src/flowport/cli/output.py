"""Rendering for the CLI: rich tables for people, one JSON document for tools."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from flowport.model.json_values import jsonable

if TYPE_CHECKING:  # the engine and the models import pyarrow, DuckDB, pydantic: not at start-up
    from rich.console import Console
    from rich.table import Table

    from flowport.engine import PreviewStage, RunResult, StageMetrics
    from flowport.model.validation import ValidationResult

# Also ``console`` and ``err_console`` (see __getattr__).
__all__ = [
    "jsonable",
    "metrics_table",
    "preview_tables",
    "print_json",
    "validation_table",
]


def __getattr__(name: str) -> Console:
    """``console`` and ``err_console``, made on first use: a command that prints JSON only (``run
    --json``) never imports rich."""
    if name not in ("console", "err_console"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from rich.console import Console

    made = Console(stderr=name == "err_console")
    globals()[name] = made
    return made


def print_json(data: Any) -> None:
    """Print exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(jsonable(data), indent=2) + "\n")
    sys.stdout.flush()


def validation_table(result: ValidationResult) -> Table:
    """Issues as a table."""
    from rich.table import Table

    table = Table(title="Validation issues", title_justify="left")
    for column in ("Stage", "Type", "Code", "Message"):
        table.add_column(column, overflow="fold")
    for issue in result.issues:
        table.add_row(issue.instance_name or "(flow)", issue.type, issue.code, issue.message)
    return table


def metrics_table(metrics: dict[str, StageMetrics], *, title: str = "Stages") -> Table:
    """Per-stage metrics as a table."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("Stage")
    for column in ("Input", "Output", "Errors", "Seconds"):
        table.add_column(column, justify="right")
    for name, m in metrics.items():
        table.add_row(
            name,
            f"{m.input_records:,}",
            f"{m.output_records:,}",
            f"[red]{m.error_records:,}[/red]" if m.error_records else "0",
            f"{m.seconds:.2f}",
        )
    return table


def _records_table(title: str, records: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=False)
    columns: list[str] = []
    for record in records:
        for key in record:
            if key not in columns:
                columns.append(key)
    for column in columns or ["(no records)"]:
        table.add_column(column, overflow="fold")
    for record in records:
        table.add_row(*[str(jsonable(record.get(c))) for c in columns])
    return table


def preview_tables(stages: list[PreviewStage]) -> list[Table]:
    """One table per stage output (and one per stage's error records)."""
    tables = []
    for stage in stages:
        shown = stage.output if stage.output else stage.input
        what = "output" if stage.output or not stage.input else "input"
        tables.append(_records_table(f"{stage.instance_name} ({what}, {len(shown)} records)", shown))
        if stage.errors:
            rows = [{"code": e["code"], "message": e["message"]} for e in stage.errors]
            tables.append(_records_table(f"{stage.instance_name} error records", rows))
    return tables


def run_summary(result: RunResult) -> str:
    """One line saying how the run ended."""
    colour = {"Complete": "green", "Failed": "red", "Canceled": "yellow"}.get(result.status, "white")
    line = f"[{colour}]{result.status}[/{colour}] run {result.run_id} in {result.seconds:.2f}s"
    if result.error_records:
        line += f", {result.error_records:,} error records"
    if result.error:
        line += f"\n[red]{result.error}[/red]"
    return line
