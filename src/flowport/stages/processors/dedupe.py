"""Record Deduplicator processor: keeps the first record of each key."""

from __future__ import annotations

import duckdb
import pyarrow as pa
from pydantic import field_validator

from flowport.errors import StageError
from flowport.plugins.contract import Processor, StageConfig, StageOutput, setting
from flowport.stages._duckdb import DuckSession, arange, duckdb_message

__all__ = ["Dedupe", "DedupeConfig"]


class DedupeConfig(StageConfig):
    """Settings of the Record Deduplicator."""

    keys: list[str] = setting(
        label="Keys",
        description="Columns that identify a record; the first record of each key combination is kept. "
        "NULL counts as a value (two NULL keys are equal).",
        min_length=1,
    )

    @field_validator("keys")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if any(not key for key in value):
            raise ValueError("key names must not be empty")
        if len(set(value)) != len(value):
            raise ValueError("a key column is listed twice")
        return value


class Dedupe(Processor[DedupeConfig]):
    """Drops every record whose key was already seen in this run, keeping order.

    The keys seen so far live in a table of a private on-disk DuckDB database
    rather than in Python memory, so a run with many distinct keys spills to
    disk instead of growing the process. Per batch, one query picks each new
    key's first row (an anti-join against the seen keys) and the batch is cut
    with Arrow ``take``, so records keep their original Arrow data.
    """

    name = "dedupe"
    label = "Record Deduplicator"
    description = "Keeps the first record of each key across the whole run and drops later duplicates."
    config_model = DedupeConfig

    def open(self) -> None:
        """Open the on-disk DuckDB database holding the seen keys."""
        self._session = DuckSession(on_disk=True)
        self._created = False
        key_columns = [f"k{i}" for i in range(len(self.config.keys))]
        matches = " AND ".join(f"s.{k} IS NOT DISTINCT FROM f.{k}" for k in key_columns)
        keys = ", ".join(key_columns)
        self._fresh_sql = (
            "CREATE OR REPLACE TEMP TABLE fresh AS "
            f"WITH firsts AS (SELECT {keys}, min(pos) AS pos FROM __fp_keys GROUP BY {keys}) "
            f"SELECT f.* FROM firsts f WHERE NOT EXISTS (SELECT 1 FROM seen s WHERE {matches})"
        )
        self._remember_sql = f"INSERT INTO seen SELECT {keys} FROM fresh"

    def close(self) -> None:
        """Close and delete the DuckDB database."""
        session = getattr(self, "_session", None)
        if session is not None:
            session.close()

    def process(self, batch: pa.RecordBatch) -> StageOutput:
        """Keep the records of ``batch`` whose key is new."""
        if not hasattr(self, "_session"):
            self.open()
        if batch.num_rows == 0:
            return StageOutput(records=batch)
        missing = [k for k in self.config.keys if k not in batch.schema.names]
        if missing:
            raise StageError(
                self.context.stage_name,
                f"key column {', '.join(repr(k) for k in missing)} is not in the input "
                f"(columns: {', '.join(batch.schema.names)})",
            )
        # Only the key columns and the row position go to DuckDB, under
        # positional names, so any column name works and nothing else is scanned.
        arrays = [batch.column(k) for k in self.config.keys] + [arange(batch.num_rows)]
        names = [f"k{i}" for i in range(len(self.config.keys))] + ["pos"]
        keys = pa.Table.from_arrays(arrays, names=names)
        try:
            with self._session.registered("__fp_keys", keys):
                if not self._created:
                    self._session.execute(
                        f"CREATE TABLE seen AS SELECT {', '.join(names[:-1])} FROM __fp_keys LIMIT 0"
                    )
                    self._created = True
                self._session.execute(self._fresh_sql)
            self._session.execute(self._remember_sql)
            positions = self._session.table("SELECT pos FROM fresh ORDER BY pos").column(0)
        except duckdb.Error as exc:
            raise StageError(self.context.stage_name, f"deduplication failed: {duckdb_message(exc)}") from exc
        if len(positions) == batch.num_rows:
            return StageOutput(records=batch)
        return StageOutput(records=batch.take(positions.combine_chunks()))
