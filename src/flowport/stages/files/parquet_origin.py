"""Parquet File origin: Parquet files read batch by batch with pyarrow."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import field_validator

from flowport.errors import StageError
from flowport.plugins.contract import Origin, StageConfig, StageOutput, setting
from flowport.stages._files import expand_paths, limited

__all__ = ["ParquetFileOrigin", "ParquetFileOriginConfig"]


class ParquetFileOriginConfig(StageConfig):
    """Settings of the Parquet File origin."""

    path: str = setting(
        label="Path",
        description="Parquet file or glob (e.g. data/*.parquet); relative paths start at the flow's "
        "base directory.",
        min_length=1,
    )
    columns: list[str] | None = setting(
        None,
        label="Columns",
        description="Columns to read (default: all). Reading fewer columns reads less of the file.",
    )

    @field_validator("columns")
    @classmethod
    def _non_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or any(not name for name in value)):
            raise ValueError("columns must be a non-empty list of names (or left out to read all)")
        return value


class ParquetFileOrigin(Origin[ParquetFileOriginConfig]):
    """Reads Parquet files one row group window at a time (``ParquetFile.iter_batches``)."""

    name = "parquet_file_origin"
    label = "Parquet File"
    description = "Reads Parquet files, optionally only some columns."
    config_model = ParquetFileOriginConfig
    restrictions = frozenset({"read-filesystem"})
    path_settings = {"path": "read"}

    def open(self) -> None:
        """Find the files (fails early when nothing matches)."""
        self._files = expand_paths(self.context, self.config.path)

    def output_schema(self) -> pa.Schema | None:
        """The first file's schema (its footer only), narrowed to ``columns``."""
        try:
            schema = pq.read_schema(self._files[0])
        except (OSError, pa.ArrowException, IndexError, AttributeError):
            return None
        if self.config.columns is not None:
            if any(c not in schema.names for c in self.config.columns):
                return None
            schema = pa.schema([schema.field(c) for c in self.config.columns])
        return schema

    def batches(self) -> Iterator[pa.RecordBatch | StageOutput]:
        """Stream every file's rows in order."""
        if not hasattr(self, "_files"):
            self.open()
        yield from limited(self.context, self._all_batches())

    def _all_batches(self) -> Iterator[pa.RecordBatch]:
        columns = self.config.columns
        for path in self._files:
            if self.context.cancelled:
                return
            try:
                parquet = pq.ParquetFile(path)
            except (OSError, pa.ArrowException) as exc:
                raise StageError(
                    self.context.stage_name, f"cannot read '{path.name}' as Parquet: {exc}"
                ) from exc
            try:
                if columns is not None:
                    present = set(parquet.schema_arrow.names)
                    missing = [c for c in columns if c not in present]
                    if missing:
                        raise StageError(
                            self.context.stage_name,
                            f"'{path.name}' has no column {', '.join(repr(c) for c in missing)}; "
                            f"it has {', '.join(parquet.schema_arrow.names)}",
                        )
                try:
                    yield from parquet.iter_batches(batch_size=self.context.batch_size, columns=columns)
                except (OSError, pa.ArrowException) as exc:
                    raise StageError(self.context.stage_name, f"cannot read '{path.name}': {exc}") from exc
            finally:
                parquet.close()
