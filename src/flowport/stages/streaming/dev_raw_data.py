"""Dev Raw Data Source: records written inline in a data format (the seed's development origin)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv

from flowport.errors import StageError
from flowport.plugins.contract import Origin, StageConfig, setting
from flowport.stages.streaming._dev import DevOrigin

__all__ = ["DevRawDataSource", "DevRawDataSourceConfig"]


class DevRawDataSourceConfig(StageConfig):
    """Settings of the Dev Raw Data Source."""

    data_format: Literal["JSON", "DELIMITED", "TEXT"] = setting(
        "JSON",
        label="Data Format",
        description="JSON: one object per line, or one array of objects; DELIMITED: CSV with a header "
        "line; TEXT: each line is a record with a 'text' field.",
    )
    raw_data: str = setting(
        '{"f1": "abc", "f2": "xyz"}',
        label="Raw Data",
        description="The records, written in the data format.",
    )
    stop_after_first_batch: bool = setting(
        False,
        label="Stop After First Batch",
        description="Send the data once and end the flow; otherwise the data is sent again every "
        "batch_wait seconds until the flow is stopped.",
    )
    number_of_threads: int = setting(
        1,
        label="Number of Threads",
        description="How many copies of the data each batch holds (one per producing thread).",
        ge=1,
        le=64,
    )
    batch_wait: float = setting(
        1.0,
        label="Batch Wait (seconds)",
        description="Seconds between two batches of a streaming flow.",
        ge=0,
        le=3600,
    )


def parse_raw(data_format: str, raw: str, stage: str) -> pa.Table:
    """The records ``raw`` holds in ``data_format`` as an Arrow table; StageError says where it is bad."""
    if data_format == "TEXT":
        return pa.table({"text": pa.array([line for line in raw.splitlines() if line], pa.string())})
    if data_format == "DELIMITED":
        try:
            return pacsv.read_csv(io.BytesIO(raw.encode("utf-8")))
        except pa.ArrowInvalid as exc:
            raise StageError(stage, f"the raw data is not valid CSV: {exc}") from None
    text = raw.strip()
    try:
        if text.startswith("["):
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise StageError(
            stage, f"the raw data is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from None
    if not all(isinstance(r, dict) for r in records):
        raise StageError(stage, "JSON raw data must hold objects (one per line, or an array of objects)")
    try:
        return pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise StageError(stage, f"the JSON records do not share field types: {exc}") from None


class DevRawDataSource(DevOrigin, Origin[DevRawDataSourceConfig]):
    """Sends the records written in its settings: once (stop after first batch), or again every batch."""

    name = "dev_raw_data_source"
    label = "Dev Raw Data Source"
    description = "Development origin: records written inline in a data format (JSON, delimited, text)."
    config_model = DevRawDataSourceConfig

    def open(self) -> None:
        """Parse the raw data once (a mistake fails validation-time opening with where it is)."""
        one = parse_raw(self.config.data_format, self.config.raw_data, self.context.stage_name)
        self._table = pa.concat_tables([one] * self.config.number_of_threads) if one.num_rows else one
        self._state = self.context.load_state() or {}

    def output_schema(self) -> pa.Schema | None:
        """The schema of the raw data."""
        return self._table.schema

    def batches(self) -> Iterator[pa.RecordBatch]:
        """One micro-batch: the data (after waiting batch_wait since the last one, unless previewing)."""
        if self.exhausted:
            return
        self._pause()
        table = self._table
        if self.context.record_limit is not None:
            table = table.slice(0, self.context.record_limit)
        yield from table.to_batches(max_chunksize=self.context.batch_size)

    def acknowledge(self) -> None:
        """Count the batch as sent (the state says whether a stop-after-first-batch flow is done)."""
        self._state = {"batches": int(self._state.get("batches", 0)) + 1}
        self.context.save_state(self._state)

    @property
    def exhausted(self) -> bool:
        """Done once the first batch was committed, when asked to stop after it."""
        return bool(self.config.stop_after_first_batch and self._state.get("batches"))
