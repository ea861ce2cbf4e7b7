"""Parquet File destination: writes a Parquet file atomically."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from flowport.errors import StageError
from flowport.plugins.contract import setting
from flowport.stages._duckdb import CopyStream, duckdb_message
from flowport.stages._files import FileDestination, FileDestinationConfig

__all__ = ["ParquetFileDestination", "ParquetFileDestinationConfig"]


class ParquetFileDestinationConfig(FileDestinationConfig):
    """Settings of the Parquet File destination."""

    compression: Literal["snappy", "zstd", "gzip", "none"] = setting(
        "snappy", label="Compression", description="Column compression codec: snappy, zstd, gzip or none."
    )


class ParquetFileDestination(FileDestination[ParquetFileDestinationConfig]):
    """Writes records to one Parquet file through DuckDB's parallel Parquet writer."""

    name = "parquet_file_destination"
    label = "Write Parquet File"
    description = "Writes records to a Parquet file; the file appears only when the run succeeds."
    config_model = ParquetFileDestinationConfig

    def open(self) -> None:
        """Prepare the temporary file; the writer starts with the first batch."""
        super().open()
        self._writer: pq.ParquetWriter | None = None
        self._stream: CopyStream | None = None

    def _begin(self, path: Path, schema: pa.Schema) -> None:
        if len(schema) == 0:
            # No batch at all: DuckDB cannot COPY zero columns, pyarrow writes a valid empty file.
            self._writer = pq.ParquetWriter(str(path), schema, compression=self.config.compression)
            return
        codec = "uncompressed" if self.config.compression == "none" else self.config.compression
        self._stream = CopyStream(schema, path, f"FORMAT parquet, COMPRESSION {codec}")

    def _append(self, table: pa.Table) -> None:
        if self._stream is not None:
            try:
                self._stream.put(table)
            except duckdb.Error as exc:
                raise StageError(self.context.stage_name, duckdb_message(exc)) from exc
            return
        assert self._writer is not None
        self._writer.write_table(table)

    def _end(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            try:
                stream.finish()
            except duckdb.Error as exc:
                raise StageError(self.context.stage_name, duckdb_message(exc)) from exc
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _drop(self) -> None:
        # The file is thrown away anyway: a failure to finish it does not matter.
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.cancel()
        with contextlib.suppress(OSError, pa.ArrowException):
            if self._writer is not None:
                self._writer.close()
                self._writer = None
