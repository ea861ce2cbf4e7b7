"""Write to File error stage: error records as JSON Lines, one file per run."""

from __future__ import annotations

from typing import IO

import duckdb
import pyarrow as pa

from flowport.errors import StageError
from flowport.plugins.contract import ErrorSink, StageConfig, setting
from flowport.stages._duckdb import DuckSession, duckdb_message, quote_ident, write_string_array
from flowport.stages._files import AtomicFile

__all__ = ["WriteToFile", "WriteToFileConfig"]

_FIELDS = ("stage", "code", "message", "policy", "time", "record")


class WriteToFileConfig(StageConfig):
    """Settings of the Write to File error stage."""

    directory: str = setting(
        label="Directory",
        description="Directory for error files (created if missing); relative paths start at the flow's "
        "base directory.",
        min_length=1,
    )
    file_prefix: str = setting(
        "errors",
        label="File prefix",
        description="Files are named <prefix>-<run id>.jsonl.",
        min_length=1,
        pattern=r"^[^/\\]+$",
    )


class WriteToFile(ErrorSink[WriteToFileConfig]):
    """Writes each error record as one JSON object per line:
    ``{"stage", "code", "message", "policy", "time", "record": {...}}``.

    The file ``<directory>/<file_prefix>-<run_id>.jsonl`` appears in
    ``commit()`` (called whether the run failed or not) by renaming a
    temporary file; a run without error records writes no file.
    """

    name = "write_to_file"
    label = "Write to File"
    description = "Writes error records to a JSON Lines file per run."
    config_model = WriteToFileConfig
    restrictions = frozenset({"write-filesystem"})
    path_settings = {"directory": "write"}

    def open(self) -> None:
        """Choose the target and temporary file; nothing is created before the first error."""
        directory = self.context.resolve_path(self.config.directory)
        target = directory / f"{self.config.file_prefix}-{self.context.run_id}.jsonl"
        self._atomic = AtomicFile(target, self.context.run_id)
        self._handle: IO[bytes] | None = None
        self._session: DuckSession | None = None
        self._done = False

    def write(self, errors: pa.Table) -> None:
        """Append the error records to the temporary file."""
        if not hasattr(self, "_atomic"):
            self.open()
        if errors.num_rows == 0:
            return
        if self._session is None:
            self._session = DuckSession()
        if self._handle is None:
            self._handle = open(self._atomic.prepare(), "wb")  # noqa: SIM115 - closed in commit/close
        items = []
        for name in _FIELDS:
            if name not in errors.column_names:
                continue  # tolerate a missing column rather than lose every error record
            value = quote_ident(name)
            if name == "time":
                # ISO 8601 in UTC: unambiguous for tools that read the file.
                value = f"strftime({value}, '%Y-%m-%dT%H:%M:%S.%fZ')"
            items.append(f"'{name}': {value}")
        query = f"SELECT to_json({{{', '.join(items)}}})::VARCHAR || chr(10) AS line FROM __fp_errors"
        try:
            with self._session.registered("__fp_errors", errors):
                lines = self._session.table(query).column(0)
        except duckdb.Error as exc:
            raise StageError(
                self.context.stage_name, f"cannot write error records: {duckdb_message(exc)}"
            ) from exc
        write_string_array(self._handle, lines)

    def commit(self) -> None:
        """Rename the temporary file onto ``<prefix>-<run_id>.jsonl``."""
        if not hasattr(self, "_atomic") or self._done:
            return
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self._atomic.publish()
        self._done = True

    def close(self) -> None:
        """Delete an uncommitted temporary file and close the DuckDB connection."""
        if hasattr(self, "_atomic") and not self._done:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
            self._atomic.discard()
            self._done = True
        if getattr(self, "_session", None) is not None:
            assert self._session is not None
            self._session.close()
            self._session = None
