"""JSON File destination: writes JSON Lines or a JSON array atomically."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO, Literal

import duckdb
import pyarrow as pa

from flowport.errors import StageError
from flowport.plugins.contract import setting
from flowport.stages._duckdb import DuckSession, duckdb_message, render_json, write_string_array
from flowport.stages._files import FileDestination, FileDestinationConfig

__all__ = ["JsonFileDestination", "JsonFileDestinationConfig"]


class JsonFileDestinationConfig(FileDestinationConfig):
    """Settings of the JSON File destination."""

    format: Literal["jsonl", "array"] = setting(
        "jsonl",
        label="Format",
        description="jsonl: one object per line (JSON Lines); array: one JSON array of objects.",
    )


class JsonFileDestination(FileDestination[JsonFileDestinationConfig]):
    """Writes one JSON object per record; nested structs become nested objects.

    Serialisation is DuckDB's ``to_json`` over the Arrow batch, and the
    resulting strings are written straight from Arrow's buffer.
    """

    name = "json_file_destination"
    label = "Write JSON File"
    description = (
        "Writes records to a JSON Lines or JSON array file; the file appears only when the run succeeds."
    )
    config_model = JsonFileDestinationConfig

    def open(self) -> None:
        """Choose the temporary file and open a DuckDB connection for serialisation."""
        super().open()
        self._session = DuckSession()
        self._handle: IO[bytes] | None = None
        self._first = True

    def close(self) -> None:
        """Abort if not committed and close the DuckDB connection."""
        try:
            super().close()
        finally:
            session = getattr(self, "_session", None)
            if session is not None:
                session.close()

    def _begin(self, path: Path, schema: pa.Schema) -> None:
        self._handle = open(path, "wb")  # noqa: SIM115 - closed in _end/_drop
        if self.config.format == "array":
            self._handle.write(b"[")

    def _append(self, table: pa.Table) -> None:
        assert self._handle is not None
        array = self.config.format == "array"
        try:
            # In an array every element is preceded by ",\n"; the very first
            # one skips the comma, which keeps this one vectorised expression.
            lines = render_json(
                self._session, table, prefix=",\n" if array else "", suffix="" if array else "\n"
            )
        except duckdb.Error as exc:
            raise StageError(self.context.stage_name, f"cannot write JSON: {duckdb_message(exc)}") from exc
        write_string_array(self._handle, lines, skip=1 if array and self._first else 0)
        self._first = False

    def _end(self) -> None:
        if self._handle is None:
            return
        if self.config.format == "array":
            self._handle.write(b"\n]\n")
        self._handle.close()
        self._handle = None

    def _drop(self) -> None:
        if self._handle is not None:
            # The file is thrown away anyway: a failure to close it does not matter.
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None
