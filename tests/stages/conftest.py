"""Helpers for the stage tests: build plugins as the engine does and run them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from flowport.plugins.contract import ErrorBatch, Origin, StageContext, StageOutput, StagePlugin

Make = Callable[..., Any]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Make]:
    """``make(Plugin, context={...}, **config)``: the plugin with a validated
    configuration and a context whose base directory is tmp_path.

    Every plugin made is closed after the test (close is called once whatever
    happened, as the engine does; calling it again must be harmless).
    """
    made: list[StagePlugin[Any]] = []

    def _make(
        plugin_cls: type[StagePlugin[Any]], *, context: dict[str, Any] | None = None, **config: Any
    ) -> Any:
        ctx = StageContext(stage_name="X", base_dir=tmp_path, run_id="r1", **(context or {}))
        plugin = plugin_cls(plugin_cls.config_model(**config), ctx)
        made.append(plugin)
        return plugin

    yield _make
    for plugin in made:
        plugin.close()


def run_origin(origin: Origin[Any]) -> tuple[list[pa.RecordBatch], list[ErrorBatch]]:
    """Open the origin, collect every batch and every error batch, close it."""
    batches: list[pa.RecordBatch] = []
    errors: list[ErrorBatch] = []
    origin.open()
    try:
        for item in origin.batches():
            if isinstance(item, StageOutput):
                assert item.records is None or item.records.num_rows == 0
                if item.errors is not None:
                    errors.append(item.errors)
            else:
                batches.append(item)
    finally:
        origin.close()
    return batches, errors


def table_of(batches: list[pa.RecordBatch]) -> pa.Table:
    """The batches as one table."""
    return pa.Table.from_batches(batches)


def error_rows(errors: list[ErrorBatch]) -> list[dict[str, Any]]:
    """Every error record as a dict with its code and message added."""
    rows: list[dict[str, Any]] = []
    for batch in errors:
        assert len(batch.codes) == batch.num_rows == len(batch.messages)
        for record, code, message in zip(
            batch.records.to_pylist(), batch.codes.to_pylist(), batch.messages.to_pylist(), strict=True
        ):
            rows.append({**record, "code": code, "message": message})
    return rows
