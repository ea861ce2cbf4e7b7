"""File helpers shared by the built-in file stages (private to ``flowport.stages``).

* :func:`expand_paths` turns a configured path or glob into the files to read.
* :func:`limited` applies the batch size, the preview record limit and
  cancellation to any stream of batches an origin produces.
* :class:`AtomicFile` and :class:`FileDestination` implement the atomic
  destination rule of DESIGN.md: everything is written to a temporary file
  beside the target and renamed onto it in ``commit()``; ``abort()`` deletes
  the temporary file, so a failed run never leaves a partial file and never
  touches the previous target.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
from abc import abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

from flowport.errors import StageError
from flowport.plugins.contract import (
    Destination,
    StageConfig,
    StageContext,
    StageOutput,
    setting,
    visible_columns,
)

__all__ = [
    "AtomicFile",
    "FileDestination",
    "FileDestinationConfig",
    "conform_to",
    "expand_paths",
    "limited",
    "remove_quietly",
]

_GLOB_CHARS = re.compile(r"[*?\[]")


def expand_paths(context: StageContext, pattern: str) -> list[Path]:
    """The files ``pattern`` names, sorted; relative paths start at the run's base directory.

    ``pattern`` is a file path or a glob (``**`` recurses). The files are
    real paths inside the run's file roots (see
    :meth:`~flowport.plugins.contract.StageContext.resolve_path`). Raises
    :class:`StageError` when nothing matches, so a typo fails the run instead
    of silently reading nothing, and when a path leads outside the roots.
    """
    resolved = context.resolve_path(pattern)
    if _GLOB_CHARS.search(str(resolved)):
        # Each match is checked again: a symlink met by the glob may lead out of the roots.
        files = sorted(
            {context.resolve_path(p) for p in glob.glob(str(resolved), recursive=True) if os.path.isfile(p)}
        )
    elif resolved.is_dir():
        raise StageError(
            context.stage_name, f"'{pattern}' is a directory; use a glob such as '{pattern.rstrip('/')}/*'"
        )
    else:
        files = [resolved] if resolved.is_file() else []
    if not files:
        where = f" (looked for {resolved})" if str(resolved) != pattern else ""
        raise StageError(
            context.stage_name,
            f"no file matches '{pattern}'{where}: check the path, or give an absolute one",
        )
    return files


def limited(context: StageContext, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``batches`` cut to at most ``context.batch_size`` rows each, stopping at the
    preview ``record_limit`` and as soon as the run is cancelled. Empty batches are dropped."""
    remaining = context.record_limit
    size = max(1, context.batch_size)
    if remaining is not None and remaining <= 0:
        return
    for batch in batches:
        if context.cancelled:
            return
        if remaining is not None and batch.num_rows > remaining:
            batch = batch.slice(0, remaining)
        for offset in range(0, batch.num_rows, size):
            if context.cancelled:
                return
            yield batch.slice(offset, size)
        if remaining is not None:
            remaining -= batch.num_rows
            if remaining <= 0:
                return


def remove_quietly(path: Path) -> None:
    """Delete ``path`` if it exists; errors are ignored (cleanup paths only)."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def _fsync(path: Path) -> None:
    # Durability before the rename: otherwise a crash right after commit can
    # leave a renamed but empty file on some file systems.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicFile:
    """A target file written through a temporary file beside it.

    The temporary file is ``.<name>.<run_id>.tmp`` in the target's directory:
    same directory, so the final ``os.replace`` is an atomic rename on the same
    file system; hidden and run-specific, so concurrent runs do not collide.
    """

    def __init__(self, target: Path, run_id: str) -> None:
        self.target = target
        safe_run = re.sub(r"[^A-Za-z0-9._-]", "_", run_id) or "run"
        self.temp = target.parent / f".{target.name}.{safe_run}.tmp"

    def prepare(self) -> Path:
        """Create the parent directories and return the temporary path (a stale one is removed)."""
        self.target.parent.mkdir(parents=True, exist_ok=True)
        remove_quietly(self.temp)
        return self.temp

    def publish(self) -> None:
        """Rename the temporary file onto the target in one step."""
        _fsync(self.temp)
        os.replace(self.temp, self.target)

    def discard(self) -> None:
        """Delete the temporary file; the target is left as it was."""
        remove_quietly(self.temp)


def conform_to(table: pa.Table, schema: pa.Schema, stage: str) -> pa.Table:
    """``table`` cast to ``schema`` (the first batch's) when that is safe.

    Columns may come in another order; a missing column becomes nulls; a
    column of another type is cast with Arrow's safe cast (no overflow, no
    truncation). A column the first batch did not have, or a value that
    cannot be converted, is a :class:`StageError` naming the column.
    """
    if table.schema.equals(schema):
        return table
    known = set(schema.names)
    for name in table.column_names:
        if name not in known:
            raise StageError(
                stage,
                f"column '{name}' appeared after the first batch, which had columns "
                f"{', '.join(schema.names)}; a file has one set of columns",
            )
    columns: list[pa.ChunkedArray[Any] | pa.Array[Any]] = []
    for target_field in schema:
        if target_field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, target_field.type))
            continue
        column = table.column(target_field.name)
        if column.type != target_field.type:
            try:
                column = column.cast(target_field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise StageError(
                    stage,
                    f"column '{target_field.name}' is {column.type} in a later batch but {target_field.type} "
                    f"in the first one and cannot be converted: {exc}",
                ) from exc
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


class FileDestinationConfig(StageConfig):
    """Settings every file destination has."""

    path: str = setting(
        label="Path",
        description="File to write; relative paths start at the flow's base directory. "
        "Parent directories are created; the file appears only when the run commits.",
        min_length=1,
    )


CF = TypeVar("CF", bound=FileDestinationConfig)


class FileDestination(Destination[CF]):
    """Base of the file destinations: atomic temporary file, one schema per file.

    Subclasses implement :meth:`_begin`, :meth:`_append`, :meth:`_end` and
    :meth:`_drop` for their format and may convert tables in :meth:`_prepare`.
    """

    restrictions = frozenset({"write-filesystem"})
    path_settings = {"path": "write"}

    def open(self) -> None:
        """Create the target's directory and choose the temporary file."""
        self._atomic = AtomicFile(self.context.resolve_path(self.config.path), self.context.run_id)
        self._temp = self._atomic.prepare()
        self._schema: pa.Schema | None = None
        self._finished = False

    def _ensure_open(self) -> None:
        if not hasattr(self, "_atomic"):
            self.open()

    def write(self, batch: pa.RecordBatch) -> StageOutput | None:
        """Append one batch (without hidden columns) to the temporary file."""
        self._ensure_open()
        table = self._prepare(visible_columns(batch))
        if self._schema is None:
            self._schema = table.schema
            self._begin(self._temp, table.schema)
        else:
            table = conform_to(table, self._schema, self.context.stage_name)
        if table.num_rows:
            self._append(table)
        return None

    def commit(self) -> None:
        """Finish the file and rename it onto the target."""
        self._ensure_open()
        if self._schema is None:
            # No batch at all: still publish a (valid, empty) file, since the
            # target must reflect this run and not a previous one.
            self._schema = pa.schema([])
            self._begin(self._temp, self._schema)
        self._end()
        self._atomic.publish()
        self._finished = True

    def abort(self) -> None:
        """Throw the temporary file away; the target keeps its previous content."""
        if not hasattr(self, "_atomic"):
            return
        try:
            if self._schema is not None and not self._finished:
                self._drop()
        finally:
            self._atomic.discard()
            self._finished = True

    def close(self) -> None:
        """Release the writer; anything not committed is thrown away."""
        if hasattr(self, "_atomic") and not self._finished:
            self.abort()

    def _prepare(self, table: pa.Table) -> pa.Table:
        """Convert a table before it is checked against the file's schema (default: unchanged)."""
        return table

    @abstractmethod
    def _begin(self, path: Path, schema: pa.Schema) -> None:
        """Open the format's writer on ``path`` for ``schema``."""

    @abstractmethod
    def _append(self, table: pa.Table) -> None:
        """Write a table that has the file's schema."""

    @abstractmethod
    def _end(self) -> None:
        """Flush and close the writer (the file is complete)."""

    @abstractmethod
    def _drop(self) -> None:
        """Close the writer without caring about the content (abort path)."""
