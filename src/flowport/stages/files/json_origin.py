"""JSON File origin: JSON Lines or JSON array files read by DuckDB."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import duckdb
import pyarrow as pa

from flowport.errors import StageError
from flowport.plugins.contract import Origin, StageConfig, StageOutput, setting
from flowport.stages._duckdb import DuckSession, duckdb_message, sql_literal
from flowport.stages._files import expand_paths, limited

__all__ = ["JsonFileOrigin", "JsonFileOriginConfig"]

_DUCKDB_FORMAT = {"auto": "auto", "jsonl": "newline_delimited", "array": "array"}


class JsonFileOriginConfig(StageConfig):
    """Settings of the JSON File origin."""

    path: str = setting(
        label="Path",
        description="JSON file or glob (e.g. data/*.jsonl); relative paths start at the flow's "
        "base directory.",
        min_length=1,
    )
    format: Literal["auto", "jsonl", "array"] = setting(
        "auto",
        label="Format",
        description="jsonl: one object per line; array: one top-level array of objects; auto: detect.",
    )


class JsonFileOrigin(Origin[JsonFileOriginConfig]):
    """Reads JSON objects with DuckDB's ``read_json``; nested objects become struct columns.

    Column types are detected by DuckDB from the data. Malformed JSON fails
    the stage with the file and DuckDB's reason (a JSON document has no
    reliable record boundary to skip to).
    """

    name = "json_file_origin"
    label = "JSON File"
    description = "Reads JSON Lines or JSON array files; nested objects become nested (struct) columns."
    config_model = JsonFileOriginConfig
    restrictions = frozenset({"read-filesystem"})
    path_settings = {"path": "read"}

    def open(self) -> None:
        """Find the files (fails early when nothing matches)."""
        self._files = expand_paths(self.context, self.config.path)
        self._session = DuckSession(files=self._files, release_memory=True)

    def close(self) -> None:
        """Close the DuckDB connection."""
        session = getattr(self, "_session", None)
        if session is not None:
            session.close()

    def batches(self) -> Iterator[pa.RecordBatch | StageOutput]:
        """Stream the objects as Arrow batches."""
        if not hasattr(self, "_session"):
            self.open()
        files = "[" + ", ".join(sql_literal(str(p)) for p in self._files) + "]"
        query = (
            f"SELECT * FROM read_json({files}, format = {sql_literal(_DUCKDB_FORMAT[self.config.format])})"
        )
        if self.context.record_limit is not None:
            # Preview: let DuckDB stop reading early too.
            query += f" LIMIT {max(0, self.context.record_limit)}"
        try:
            reader = self._session.reader(query, self.context.batch_size)
        except duckdb.Error as exc:
            raise StageError(self.context.stage_name, duckdb_message(exc)) from exc
        try:
            yield from limited(self.context, self._guarded(reader))
        finally:
            reader.close()

    def _guarded(self, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        # Malformed JSON further into a file surfaces while streaming, not when
        # the query starts; it must fail the stage the same way.
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (duckdb.Error, pa.ArrowException) as exc:
                raise StageError(self.context.stage_name, duckdb_message(exc)) from exc
            yield batch
