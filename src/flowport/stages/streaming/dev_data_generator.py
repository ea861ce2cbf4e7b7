"""Dev Data Generator: random records of declared fields, a batch every so often (development origin)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from flowport.plugins.contract import Origin, StageConfig, setting
from flowport.stages.streaming._dev import DevOrigin

__all__ = ["DevDataGenerator", "DevDataGeneratorConfig"]


class GeneratedField(BaseModel):
    """One field of the generated records."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(min_length=1, max_length=128)
    type: Literal["STRING", "INTEGER", "LONG", "DOUBLE", "BOOLEAN", "DATETIME", "UUID"] = "STRING"


class DevDataGeneratorConfig(StageConfig):
    """Settings of the Dev Data Generator."""

    fields: list[GeneratedField] = setting(
        [GeneratedField(field="id", type="LONG"), GeneratedField(field="name", type="STRING")],
        label="Fields to Generate",
        description="The fields of each record and their types.",
        min_length=1,
    )
    records_per_batch: int = setting(
        1000, label="Records per Batch", description="Records in each batch.", ge=1, le=1_000_000
    )
    batch_wait: float = setting(
        1.0,
        label="Delay Between Batches (seconds)",
        description="Seconds between two batches.",
        ge=0,
        le=3600,
    )
    max_batches: int | None = setting(
        None,
        label="Stop After Batches",
        description="End the flow after this many batches (none: run until stopped).",
        ge=1,
    )
    seed: int | None = setting(None, label="Seed", description="Random seed, for repeatable data.")


class DevDataGenerator(DevOrigin, Origin[DevDataGeneratorConfig]):
    """Random records of the declared fields; ``id``-like LONG fields count up across batches."""

    name = "dev_data_generator"
    label = "Dev Data Generator"
    description = "Development origin: random records of declared fields, a batch every so often."
    config_model = DevDataGeneratorConfig

    def open(self) -> None:
        """Pick up the count of records already generated (so LONG fields keep counting up)."""
        self._state = self.context.load_state() or {}
        self._rng = np.random.default_rng(self.config.seed)

    def output_schema(self) -> pa.Schema:
        """The declared fields."""
        types: dict[str, pa.DataType] = {
            "STRING": pa.string(),
            "INTEGER": pa.int32(),
            "LONG": pa.int64(),
            "DOUBLE": pa.float64(),
            "BOOLEAN": pa.bool_(),
            "DATETIME": pa.timestamp("us", "UTC"),
            "UUID": pa.string(),
        }
        return pa.schema([(f.field, types[f.type]) for f in self.config.fields])

    def batches(self) -> Iterator[pa.RecordBatch]:
        """One batch of ``records_per_batch`` records (after the delay, unless previewing)."""
        if self.exhausted:
            return
        self._pause()
        n = self.config.records_per_batch
        if self.context.record_limit is not None:
            n = min(n, self.context.record_limit)
        start = int(self._state.get("records", 0))
        rng, columns = self._rng, list[pa.Array[Any]]()
        for f in self.config.fields:
            if f.type == "LONG":
                columns.append(pa.array(np.arange(start, start + n, dtype=np.int64)))
            elif f.type == "INTEGER":
                columns.append(pa.array(rng.integers(-(2**31), 2**31 - 1, n, dtype=np.int32)))
            elif f.type == "DOUBLE":
                columns.append(pa.array(rng.random(n) * 1000))
            elif f.type == "BOOLEAN":
                columns.append(pa.array(rng.random(n) < 0.5))
            elif f.type == "DATETIME":
                now = int(time.time() * 1_000_000)
                columns.append(pa.array(now - rng.integers(0, 86_400_000_000, n), pa.timestamp("us", "UTC")))
            elif f.type == "UUID":
                columns.append(pa.array([str(uuid.UUID(int=int(x))) for x in rng.integers(0, 2**63, n)]))
            else:
                letters = rng.integers(97, 123, (n, 8), dtype=np.uint8)
                columns.append(pa.array(letters.view("S8").ravel().astype(str)))
        table = pa.Table.from_arrays(columns, schema=self.output_schema())
        self._generated = n
        yield from table.to_batches(max_chunksize=self.context.batch_size)

    def acknowledge(self) -> None:
        """Count what was committed (the next batch's LONG fields start after it)."""
        self._state = {
            "batches": int(self._state.get("batches", 0)) + 1,
            "records": int(self._state.get("records", 0)) + getattr(self, "_generated", 0),
        }
        self.context.save_state(self._state)

    @property
    def exhausted(self) -> bool:
        """Done after ``max_batches`` committed batches."""
        limit = self.config.max_batches
        return limit is not None and int(self._state.get("batches", 0)) >= limit
