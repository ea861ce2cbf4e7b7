"""Parquet File destination: writes a Parquet file atomically."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from flowport.plugins.contract import setting
from flowport.stages._files import FileDestination, FileDestinationConfig

__all__ = ["ParquetFileDestination", "ParquetFileDestinationConfig"]


class ParquetFileDestinationConfig(FileDestinationConfig):
    """Settings of the Parquet File destination."""

    compression: Literal["snappy", "zstd", "gzip", "none"] = setting(
        "snappy", label="Compression", description="Column compression codec: snappy, zstd, gzip or none."
    )


class ParquetFileDestination(FileDestination[ParquetFileDestinationConfig]):
    """Writes records to one Parquet file, each batch becoming a row group."""

    name = "parquet_file_destination"
    label = "Write Parquet File"
    description = "Writes records to a Parquet file; the file appears only when the run succeeds."
    config_model = ParquetFileDestinationConfig

    def open(self) -> None:
        """Choose the temporary file."""
        super().open()
        self._writer: pq.ParquetWriter | None = None

    def _begin(self, path: Path, schema: pa.Schema) -> None:
        self._writer = pq.ParquetWriter(str(path), schema, compression=self.config.compression)

    def _append(self, table: pa.Table) -> None:
        assert self._writer is not None
        self._writer.write_table(table)

    def _end(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _drop(self) -> None:
        # The file is thrown away anyway: a failure to close it does not matter.
        with contextlib.suppress(OSError, pa.ArrowException):
            self._end()
