"""CSV File destination: writes a delimited text file atomically."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.csv as pa_csv
from pydantic import field_validator

from flowport.plugins.contract import setting
from flowport.stages._duckdb import DuckSession, nested_columns, nested_to_json
from flowport.stages._files import FileDestination, FileDestinationConfig

__all__ = ["CsvFileDestination", "CsvFileDestinationConfig"]


class CsvFileDestinationConfig(FileDestinationConfig):
    """Settings of the CSV File destination."""

    delimiter: str = setting(",", label="Delimiter", description="Field separator (one character).")
    header: bool = setting(True, label="Header", description="Write the column names as the first line.")

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if len(value) != 1 or value in {'"', "\n", "\r"}:
            raise ValueError("the delimiter must be one character other than a quote or a line break")
        return value


class CsvFileDestination(FileDestination[CsvFileDestinationConfig]):
    """Writes records as CSV (RFC 4180 quoting, nulls as empty fields).

    Nested values (structs, lists) are written as their JSON text, since CSV
    has no nesting.
    """

    name = "csv_file_destination"
    label = "Write CSV File"
    description = "Writes records to a CSV file; the file appears only when the run succeeds."
    config_model = CsvFileDestinationConfig

    def open(self) -> None:
        """Choose the temporary file; no DuckDB connection until a nested column needs one."""
        super().open()
        self._session: DuckSession | None = None
        self._handle: IO[bytes] | None = None
        self._writer: pa_csv.CSVWriter | None = None

    def close(self) -> None:
        """Abort if not committed and close the DuckDB connection."""
        try:
            super().close()
        finally:
            if getattr(self, "_session", None) is not None:
                assert self._session is not None
                self._session.close()

    def _prepare(self, table: pa.Table) -> pa.Table:
        if not nested_columns(table.schema):
            return table
        if self._session is None:
            self._session = DuckSession()
        return nested_to_json(self._session, table)

    def _begin(self, path: Path, schema: pa.Schema) -> None:
        self._handle = open(path, "wb")  # noqa: SIM115 - closed in _end/_drop
        if len(schema) == 0:
            return  # no batch arrived: an empty file
        options = pa_csv.WriteOptions(include_header=self.config.header, delimiter=self.config.delimiter)
        self._writer = pa_csv.CSVWriter(self._handle, schema, write_options=options)

    def _append(self, table: pa.Table) -> None:
        assert self._writer is not None
        self._writer.write_table(table)

    def _end(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _drop(self) -> None:
        # The file is thrown away anyway: a failure to close it does not matter.
        with contextlib.suppress(OSError, pa.ArrowException):
            self._end()
