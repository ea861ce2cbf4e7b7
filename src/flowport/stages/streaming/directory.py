"""Directory origin: files arriving in a folder, each read once (recorded or moved after the commit)."""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import field_validator

from flowport.errors import StageError
from flowport.plugins.contract import Origin, StageConfig, StageOutput, setting
from flowport.stages.streaming._messages import ID_FIELD, message_batches

__all__ = ["DirectoryOrigin", "DirectoryOriginConfig"]

FILE_FIELD = "_file"


class DirectoryOriginConfig(StageConfig):
    """Settings of the Directory origin."""

    directory: str = setting(
        label="Directory",
        description="The folder files arrive in (inside the file roots); relative paths start at the "
        "flow's base directory. Its subfolders are not read.",
        min_length=1,
    )
    pattern: str = setting(
        "*",
        label="File Name Pattern",
        description="Which files to read, as a glob on the name (e.g. *.csv). Names starting with a dot "
        "are never read: write a file under such a name and rename it when it is complete.",
        min_length=1,
    )
    data_format: Literal["JSON", "CSV"] = setting(
        "JSON",
        label="Data Format",
        description="JSON: JSON Lines, an object per line; CSV: a header line, then records. Every "
        "field is read as text.",
    )
    delimiter: str = setting(",", label="Delimiter", description="CSV field separator (one character).")
    done_directory: str | None = setting(
        None,
        label="Done Directory",
        description="Move each file here once its records are committed (created when missing). "
        "Default: files stay, and the names read are kept in the stage's state.",
    )
    settle_seconds: float = setting(
        1.0,
        label="Settle Time (seconds)",
        description="Leave a file for a later micro-batch while it was modified less than this long ago "
        "(it may still be being written).",
        ge=0,
        le=3600,
    )
    batch_wait: float = setting(
        1.0,
        label="Batch Wait (seconds)",
        description="When no file is ready, how long a micro-batch waits before looking again.",
        gt=0,
        le=3600,
    )

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if len(value) != 1:
            raise ValueError("the delimiter must be exactly one character")
        return value

    @field_validator("pattern")
    @classmethod
    def _a_name(cls, value: str) -> str:
        if "/" in value or os.sep in value:
            raise ValueError("the pattern matches file names in the directory: no folder in it")
        return value


class DirectoryOrigin(Origin[DirectoryOriginConfig]):
    """Reads the files that arrive in a folder, whole files per micro-batch, each file once.

    A micro-batch takes the oldest ready files (by modification time) until
    it holds ``batch_size`` records (at least one file, whatever its size).
    Records hold ``_file`` (the name), ``_message_id`` (``name:line``: an
    upsert key for effectively-once loads) and the fields as text; a JSON line
    that is not an object becomes an error record. Only after the commit
    (:meth:`acknowledge`) are the files recorded as read in the stage's state
    and, with a done directory, moved there; a failed or killed micro-batch
    reads them again. Preview reads the next files and records nothing.
    """

    name = "directory_origin"
    label = "Directory"
    description = (
        "Streaming origin: files arriving in a folder (JSON Lines or CSV), each once; "
        "recorded or moved after the commit."
    )
    config_model = DirectoryOriginConfig
    restrictions = frozenset({"read-filesystem", "write-filesystem"})
    path_settings = {"directory": "read", "done_directory": "write"}
    streaming = True

    def open(self) -> None:
        """Find the folders (inside the file roots) and what earlier micro-batches read."""
        self._folder = self.context.resolve_path(self.config.directory)
        if not self._folder.is_dir():
            raise StageError(self.context.stage_name, f"'{self.config.directory}' is not a directory")
        self._done_folder: Path | None = None
        if self.config.done_directory:
            self._done_folder = self.context.resolve_path(self.config.done_directory)
        state = self.context.load_state() or {}
        same = state.get("directory") == str(self._folder)
        self._done: list[str] = [str(n) for n in state.get("done", [])] if same else []
        self._taken: list[str] = []
        if self._done_folder is not None and not self.context.preview:
            self._move_done()  # finish what a killed run committed and did not move

    def _ready(self) -> list[tuple[str, Path]]:
        """The files to read, oldest first: (name in the folder, real path)."""
        done = set(self._done)
        now = time.time()
        found: list[tuple[float, str]] = []
        with os.scandir(self._folder) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or name in done or not fnmatch.fnmatchcase(name, self.config.pattern):
                    continue
                try:
                    if not entry.is_file():
                        continue
                    modified = entry.stat().st_mtime
                except OSError:
                    continue  # gone meanwhile
                if now - modified < self.config.settle_seconds:
                    continue
                found.append((modified, name))
        found.sort()
        # A symlink met here may lead out of the roots: checked like any configured path.
        return [(name, self.context.resolve_path(self._folder / name)) for _, name in found]

    def batches(self) -> Iterator[pa.RecordBatch | StageOutput]:
        """One micro-batch: the next ready files; when there is none, one more look after batch_wait."""
        ready = self._ready()
        if not ready and not self.context.preview:
            deadline = time.monotonic() + self.config.batch_wait
            while time.monotonic() < deadline and not self.context.cancelled:
                time.sleep(min(0.05, max(deadline - time.monotonic(), 0)))
            ready = [] if self.context.cancelled else self._ready()
        limit = self.context.batch_size
        if self.context.record_limit is not None:
            limit = min(limit, self.context.record_limit)
        ids: list[str | None] = []
        files: list[str | None] = []
        lines: list[bytes] = []
        taken: list[str] = []
        for name, path in ready:
            if lines and len(lines) >= limit:
                break
            try:
                found = self._lines(path)
            except FileNotFoundError:
                continue  # taken away meanwhile
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                raise StageError(self.context.stage_name, f"cannot read '{name}': {exc}") from None
            taken.append(name)
            for number, line in found:
                ids.append(f"{name}:{number}")
                files.append(name)
                lines.append(line)
        if not self.context.preview:
            self._taken = taken
        if self.context.record_limit is not None:
            del ids[limit:], files[limit:], lines[limit:]
        if lines:
            meta = {FILE_FIELD: files, ID_FIELD: ids}
            yield from message_batches(meta, lines, "JSON", self.context.batch_size)

    def _lines(self, path: Path) -> list[tuple[int, bytes]]:
        """(line number, record as a JSON object line) for each record of the file."""
        data = path.read_bytes()
        if self.config.data_format == "JSON":
            return [(n, line) for n, line in enumerate(data.splitlines(), start=1) if line.strip()]
        text = data.decode("utf-8-sig")
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=self.config.delimiter)
        records = []
        for row in reader:
            values = {str(k): v for k, v in row.items() if k is not None}
            records.append((reader.line_num, json.dumps(values, ensure_ascii=False).encode()))
        return records

    def acknowledge(self) -> None:
        """Record the micro-batch's files as read (its records are committed), then move them if asked."""
        if not self._taken:
            return
        self._done.extend(self._taken)
        self._taken = []
        self._save()
        if self._done_folder is not None:
            self._move_done()

    def _move_done(self) -> None:
        assert self._done_folder is not None
        self._done_folder.mkdir(parents=True, exist_ok=True)
        for name in self._done:
            source = self._folder / name
            if not source.exists():
                continue
            target = self._done_folder / name
            suffix = 0
            while target.exists():  # never overwrite an earlier file of the same name
                suffix += 1
                target = self._done_folder / f"{name}.{suffix}"
            os.replace(source, target)
        self._save()

    def _save(self) -> None:
        # Only names still in the folder: the state stays as small as the folder.
        present = [n for n in self._done if (self._folder / n).exists()]
        self._done = present
        self.context.save_state({"directory": str(self._folder), "done": present})

    def reset(self, position: str) -> None:
        """``earliest``: read every file still in the folder again; ``latest``: only files from now."""
        if position == "earliest":
            self._done = []
        elif position == "latest":
            with os.scandir(self._folder) as entries:
                self._done = [e.name for e in entries if e.is_file() and not e.name.startswith(".")]
        else:
            raise StageError(
                self.context.stage_name, f"{self.label} resets to earliest or latest, not {position!r}"
            )
        with contextlib.suppress(FileNotFoundError):
            self._save()
