"""Parquet File destination: writes a Parquet file atomically."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import duckdb
import pyarrow as pa

from flowport.errors import StageError
from flowport.plugins.contract import StageOutput, setting, visible_columns
from flowport.stages._duckdb import CopyStream, duckdb_message, sandbox, sql_literal
from flowport.stages._files import FileDestination, FileDestinationConfig, remove_quietly

if TYPE_CHECKING:
    import pyarrow.parquet as pq

__all__ = ["ParquetFileDestination", "ParquetFileDestinationConfig"]


class ParquetFileDestinationConfig(FileDestinationConfig):
    """Settings of the Parquet File destination."""

    compression: Literal["snappy", "zstd", "gzip", "none"] = setting(
        "snappy", label="Compression", description="Column compression codec: snappy, zstd, gzip or none."
    )


class FusedCopy(Protocol):
    """The engine's side of a fused chain that writes this destination's file itself
    (``flowport.engine.fusion.FusedCopy``)."""

    copied: bool

    def is_placeholder(self, batch: pa.RecordBatch) -> bool: ...


class ParquetFileDestination(FileDestination[ParquetFileDestinationConfig]):
    """Writes records to one Parquet file through DuckDB's parallel Parquet writer.

    When the engine fuses the stages before it into one DuckDB query, that
    query may write the temporary file itself (:meth:`copy_target`); the
    file is still published only on commit and thrown away on abort.
    """

    name = "parquet_file_destination"
    label = "Write Parquet File"
    description = "Writes records to a Parquet file; the file appears only when the run succeeds."
    config_model = ParquetFileDestinationConfig

    def open(self) -> None:
        """Prepare the temporary file; the writer starts with the first batch."""
        super().open()
        self._writer: pq.ParquetWriter | None = None
        self._stream: CopyStream | None = None
        self._copy: FusedCopy | None = None
        # Records the fused COPY did not write (kept by a filter's re-check), added on commit.
        self._extra: CopyStream | None = None

    def _options(self) -> str:
        codec = "uncompressed" if self.config.compression == "none" else self.config.compression
        return f"FORMAT parquet, COMPRESSION {codec}"

    def copy_target(self) -> tuple[Path, str] | None:
        """Where a fused query may write this file itself, and the ``COPY`` options: the temporary file."""
        self._ensure_open()
        return self._temp, self._options()

    def take_copy(self, copy: FusedCopy) -> None:
        """The engine accepted :meth:`copy_target`: batches standing for copied rows carry no data."""
        self._ensure_open()
        self._copy = copy

    def write(self, batch: pa.RecordBatch) -> StageOutput | None:
        """Append one batch; with a fused COPY, only records it did not write itself."""
        copy = getattr(self, "_copy", None)
        if copy is None or not copy.copied:
            return super().write(batch)
        if copy.is_placeholder(batch):
            return None
        table = visible_columns(batch)
        if table.num_rows:
            try:
                if self._extra is None:
                    self._extra = CopyStream(table.schema, self._extra_path(), self._options())
                self._extra.put(table)
            except duckdb.Error as exc:
                raise StageError(self.context.stage_name, duckdb_message(exc)) from exc
        return None

    def commit(self) -> None:
        """Finish the file and rename it onto the target."""
        copy = getattr(self, "_copy", None)
        if copy is None or not copy.copied:
            super().commit()
            return
        self._finish_extra()
        self._atomic.publish()
        self._finished = True

    def abort(self) -> None:
        """Throw the temporary files away; the target keeps its previous content."""
        try:
            if getattr(self, "_extra", None) is not None:
                assert self._extra is not None
                extra, self._extra = self._extra, None
                extra.cancel()
            if hasattr(self, "_temp"):
                remove_quietly(self._extra_path())
        finally:
            super().abort()

    def _extra_path(self) -> Path:
        return self._temp.with_name(self._temp.name + ".extra")

    def _finish_extra(self) -> None:
        """Append the records the fused COPY did not write to the file (after the others)."""
        if self._extra is None:
            return
        extra, self._extra = self._extra, None
        merged = self._temp.with_name(self._temp.name + ".merged")
        try:
            extra.finish()
            con = duckdb.connect(":memory:")
            try:
                con.execute("SET memory_limit = '256MB'")
                sandbox(con, paths=[self._temp, self._extra_path(), merged])
                files = f"[{sql_literal(str(self._temp))}, {sql_literal(str(self._extra_path()))}]"
                con.execute(
                    f"COPY (SELECT * FROM read_parquet({files})) TO {sql_literal(str(merged))} "
                    f"({self._options()})"
                )
            finally:
                con.close()
            os.replace(merged, self._temp)
        except duckdb.Error as exc:
            raise StageError(self.context.stage_name, duckdb_message(exc)) from exc
        finally:
            remove_quietly(merged)
            remove_quietly(self._extra_path())

    def _begin(self, path: Path, schema: pa.Schema) -> None:
        if len(schema) == 0:
            # No batch at all: DuckDB cannot COPY zero columns, pyarrow writes a valid empty file.
            import pyarrow.parquet as pq  # only here (its import takes ~10 ms of every run's start)

            self._writer = pq.ParquetWriter(str(path), schema, compression=self.config.compression)
            return
        self._stream = CopyStream(schema, path, self._options())

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
