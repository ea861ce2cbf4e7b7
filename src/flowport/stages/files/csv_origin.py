"""CSV File origin: delimited text files read by DuckDB's parallel CSV reader."""

from __future__ import annotations

import csv
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import field_validator, model_validator

from flowport.errors import StageError
from flowport.plugins.contract import ErrorBatch, Origin, StageConfig, StageOutput, setting
from flowport.stages._duckdb import DuckSession, duckdb_message, sql_literal
from flowport.stages._files import expand_paths, limited

__all__ = ["CsvFileOrigin", "CsvFileOriginConfig"]

MALFORMED_ROW = "CSV_MALFORMED_ROW"

# Rows DuckDB's type sniffer looks at when infer_types is on (its own default).
_SAMPLE_ROWS = 20480
#: The bytes DuckDB reads from a file at a time (see CsvFileOrigin._read_sql).
_BUFFER_BYTES = 8 << 20
#: The longest line read (DuckDB's default); a longer one is an error record.
_MAX_LINE_BYTES = 2 << 20
# DuckDB writes its reject tables only when a scan finishes. In preview the
# origin stops at the record limit; it reads on for at most this many rows so
# that a small file's malformed rows still show up in the preview.
_PREVIEW_DRAIN_ROWS = 100_000


class CsvFileOriginConfig(StageConfig):
    """Settings of the CSV File origin."""

    path: str = setting(
        label="Path",
        description="CSV file or glob (e.g. data/*.csv); relative paths start at the flow's base directory.",
        min_length=1,
    )
    delimiter: str = setting(",", label="Delimiter", description="Field separator (one character).")
    quote: str = setting(
        '"',
        label="Quote",
        description="Quote character (one character, or empty for none). A quote inside a quoted "
        "field is written twice.",
    )
    header: bool = setting(
        True, label="Header", description="The first line of each file holds the column names."
    )
    columns: list[str] | None = setting(
        None,
        label="Columns",
        description="Column names for files without a header line (default: column0, column1, ...).",
    )
    infer_types: bool = setting(
        False,
        label="Infer types",
        description="Detect numbers, dates, timestamps and booleans with DuckDB's type sniffer. "
        "Off: every column is a string.",
    )
    normalize_line_endings: bool | None = setting(
        None,
        label="Normalize line endings",
        description="Read files whose lines end in a mix of CRLF, LF and CR through a copy with LF "
        "endings (costs one extra pass over the file). Default: when the file's first MiB mixes them.",
    )

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if len(value) != 1:
            raise ValueError("the delimiter must be exactly one character")
        return value

    @field_validator("quote")
    @classmethod
    def _at_most_one_character(cls, value: str) -> str:
        if len(value) > 1:
            raise ValueError("the quote must be one character, or empty for none")
        return value

    @field_validator("columns")
    @classmethod
    def _distinct_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if not value or any(not name.strip() for name in value):
            raise ValueError("columns must be a non-empty list of non-empty names")
        lowered = [name.lower() for name in value]
        if len(set(lowered)) != len(lowered):
            raise ValueError("column names must be unique (DuckDB compares them ignoring case)")
        return value

    @model_validator(mode="after")
    def _columns_only_without_header(self) -> CsvFileOriginConfig:
        if self.columns is not None and self.header:
            raise ValueError(
                "'columns' names the columns of files without a header line; set header to false"
            )
        if self.delimiter == self.quote:
            raise ValueError("the delimiter and the quote must differ")
        return self


def _first_record(path: Path, delimiter: str, quote: str) -> list[str] | None:
    """The first record of a CSV file (header or first data row), None for an empty file."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.reader(
            handle,
            delimiter=delimiter,
            quotechar=quote or None,
            quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE,
            doublequote=True,
            strict=False,
        )
        for record in reader:
            return record
    return None


_SNIFF_BYTES = 1 << 20
_COPY_BYTES = 1 << 22
_PARSER_STATE = "state machine reached an invalid state"
# DuckDB's memory while a fused COPY writes the destination's file. Left to its default (most of
# the machine), DuckDB's ordered Parquet writer holds ever more finished row groups as the input
# grows; capped, it writes them as it goes and the process's peak stays flat (issue 16).
_COPY_MEMORY = "256MB"


def _mixed_line_endings(path: Path) -> bool:
    """Whether the first MiB of ``path`` ends lines in more than one way (CRLF, LF, lone CR)."""
    with open(path, "rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if head.endswith(b"\r"):
        head = head[:-1]
    crlf = head.count(b"\r\n")
    lf = head.count(b"\n") - crlf
    cr = head.count(b"\r") - crlf
    return sum(1 for n in (crlf, lf, cr) if n) > 1


def _normalized_copy(source: Path, target: Path) -> None:
    """``source`` with every CRLF and lone CR turned into LF (so line numbers stay the same)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    carry = b""
    with open(source, "rb") as reader, open(target, "wb") as writer:
        while True:
            chunk = reader.read(_COPY_BYTES)
            if not chunk:
                break
            chunk = carry + chunk
            # A CR at the end of a chunk may be the first half of a CRLF.
            carry = b"\r" if chunk.endswith(b"\r") else b""
            if carry:
                chunk = chunk[:-1]
            writer.write(chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
        if carry:
            writer.write(b"\n")


def _first_line_ending_change(path: Path) -> int | None:
    """The number of the first line whose ending differs from the first line's (error path only)."""
    first: bytes | None = None
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            ending = b"\r\n" if line.endswith(b"\r\n") else b"\n" if line.endswith(b"\n") else b""
            if not ending:
                continue
            if first is None:
                first = ending
            elif ending != first:
                return number
    return None


class FusedCopy(Protocol):
    """What the engine hands an origin whose fused query writes its destination's file (see
    ``flowport.engine.fusion.FusedCopy``)."""

    path: Path
    destination: str
    copied: bool

    def accepts(self, types: dict[str, str]) -> bool: ...
    def prepare(self) -> list[str]: ...
    def copy_statement(self, select: str) -> str: ...
    def counts_query(self) -> str: ...
    def special_select(self, select: str) -> str: ...
    def placeholder(self, written: int, dropped: list[int]) -> pa.RecordBatch | None: ...


def _column_names(raw: list[str]) -> list[str]:
    """Usable, distinct column names from a header line (blank ones become ``columnN``)."""
    names: list[str] = []
    seen: set[str] = set()
    for index, text in enumerate(raw):
        base = text.strip() or f"column{index}"
        name, suffix = base, 1
        # DuckDB identifiers are case-insensitive, so "Id" and "id" collide.
        while name.lower() in seen:
            name = f"{base}_{suffix}"
            suffix += 1
        seen.add(name.lower())
        names.append(name)
    return names


class CsvFileOrigin(Origin[CsvFileOriginConfig]):
    """Reads delimited text files with DuckDB, streaming Arrow batches.

    Columns are strings unless ``infer_types`` is on. Malformed rows (wrong
    number of columns, bad quoting, values that do not fit an inferred type)
    do not stop the read: they come out, after the good rows, as error records
    with the file, the line number and the raw line.
    """

    name = "csv_file_origin"
    label = "CSV File"
    description = (
        "Reads CSV (delimited text) files; malformed rows become error records with their line number."
    )
    config_model = CsvFileOriginConfig
    restrictions = frozenset({"read-filesystem"})
    path_settings = {"path": "read"}

    def open(self) -> None:
        """Find the files and their columns (fails early when nothing matches)."""
        self._files, self._columns = self._plan()
        wanted = self.config.normalize_line_endings
        mixed = [p for p in self._files if wanted or (wanted is None and _mixed_line_endings(p))]
        # Made on first use (see _duck) unless a scratch folder is needed now.
        self._session: DuckSession | None = None
        self._session_writes = False
        if self.config.infer_types or mixed:
            self._session = DuckSession(files=self._files, scratch=True, release_memory=True)
        if mixed:
            assert self._session is not None
            # Copies keep the file's name, so error records still name the file the user gave.
            directory = self._session.directory
            assert directory is not None
            copies = {}
            for index, path in enumerate(mixed):
                copy = directory / f"lf{index}" / path.name
                _normalized_copy(path, copy)
                copies[path] = copy
            self._files = [copies.get(p, p) for p in self._files]
            self._originals = {str(copy): str(path) for path, copy in copies.items()}

    def _duck(self) -> DuckSession:
        """The origin's DuckDB connection, made on first use.

        When the engine fused a COPY into the destination's file (a run, not a
        preview), this connection may also write that file, so the COPY needs
        no connection of its own.
        """
        if self._session is None:
            copy: FusedCopy | None = getattr(self, "_copy", None)
            writes = [copy.path] if copy is not None and self.context.record_limit is None else []
            self._session = DuckSession(
                files=[*self._files, *writes],
                memory_limit=_COPY_MEMORY if writes else None,
                release_memory=not writes,  # a streamed read
            )
            self._session_writes = bool(writes)
        return self._session

    def close(self) -> None:
        """Close the DuckDB connections."""
        for name in ("_copy_session", "_session"):
            session = getattr(self, name, None)
            if session is not None:
                session.close()

    def _plan(self) -> tuple[list[Path], list[str]]:
        cfg = self.config
        files = expand_paths(self.context, cfg.path)
        firsts: list[tuple[Path, list[str]]] = []
        for path in files:
            try:
                record = _first_record(path, cfg.delimiter, cfg.quote)
            except (OSError, csv.Error) as exc:
                raise StageError(
                    self.context.stage_name, f"cannot read the first line of '{path}': {exc}"
                ) from exc
            if record:  # empty files contribute nothing
                firsts.append((path, record))
        if not firsts:
            return [], []
        if cfg.header:
            first_path, first_header = firsts[0]
            for path, header in firsts[1:]:
                if header != first_header:
                    raise StageError(
                        self.context.stage_name,
                        f"'{path.name}' has columns {header} but '{first_path.name}' has {first_header}; "
                        "files read together must have the same header",
                    )
            return [p for p, _ in firsts], _column_names(first_header)
        if cfg.columns is not None:
            return [p for p, _ in firsts], list(cfg.columns)
        return [p for p, _ in firsts], [f"column{i}" for i in range(len(firsts[0][1]))]

    def output_schema(self) -> pa.Schema | None:
        """Text columns named by the header (or ``columns``); unknown with type inference."""
        if self.config.infer_types or not getattr(self, "_columns", None):
            return None
        return pa.schema([pa.field(name, pa.string()) for name in self._columns])

    def fusable_columns(self) -> list[str] | None:
        """The (all-text) columns DuckDB reads; type inference reads in two passes, so it does not fuse."""
        if self.config.infer_types or not getattr(self, "_files", None):
            return None
        return list(self._columns)

    def fuse(self, wrap: Callable[[str], str]) -> None:
        """Read through ``wrap(select)``: the engine fuses the stages after this one into the query."""
        self._wrap = wrap

    def fuse_copy(self, copy: FusedCopy) -> None:
        """Write the fused query's result into the destination's file with one COPY (after :meth:`fuse`)."""
        self._copy = copy

    def _read_sql(self, types: list[str], *, rejects: bool) -> str:
        cfg = self.config
        files = "[" + ", ".join(sql_literal(str(p)) for p in self._files) + "]"
        columns = ", ".join(
            f"{sql_literal(n)}: {sql_literal(t)}" for n, t in zip(self._columns, types, strict=True)
        )
        options = [
            # No sniffing: DuckDB's dialect sniffer gives up on files with
            # malformed rows, and the dialect is configured anyway.
            "auto_detect = false",
            f"header = {'true' if cfg.header else 'false'}",
            f"delim = {sql_literal(cfg.delimiter)}",
            f"quote = {sql_literal(cfg.quote)}",
            f"escape = {sql_literal(cfg.quote)}",
            f"columns = {{{columns}}}",
            "store_rejects = true" if rejects else "ignore_errors = true",
            # DuckDB reads 32 MB at a time by default: 8 MB holds 15-40 MB less at the peak of a
            # read of 1M-5M rows, at the same throughput (measured into PostgreSQL and Parquet).
            # A buffer set raises the longest line read to its size: kept at DuckDB's 2 MB (a
            # longer line is an error record, as before).
            f"buffer_size = {_BUFFER_BYTES}",
            f"max_line_size = {_MAX_LINE_BYTES}",
        ]
        return f"SELECT * FROM read_csv({files}, {', '.join(options)})"

    def _infer_types(self) -> list[str]:
        """Column types from DuckDB's sniffer, run on a sample of well-formed rows.

        The sniffer cannot be pointed at the files themselves (it fails on the
        first malformed row), so the first rows that parse are copied to a
        clean temporary CSV and sniffed there.
        """
        varchar = ["VARCHAR"] * len(self._columns)
        # The session's own scratch folder: the only place besides the input files its sandbox allows.
        session = self._duck()
        directory = session.directory
        assert directory is not None
        sample = str(directory / "sample.csv")
        try:
            session.execute(
                f"COPY ({self._read_sql(varchar, rejects=False)} LIMIT {_SAMPLE_ROWS}) "
                f"TO {sql_literal(sample)} (FORMAT csv, HEADER true, DELIMITER ',', QUOTE '\"')"
            )
            relation = session.relation(
                f"SELECT * FROM read_csv({sql_literal(sample)}, header = true, delim = ',', "
                "quote = '\"', escape = '\"', sample_size = -1)"
            )
            return [str(t) for t in relation.types]
        finally:
            Path(sample).unlink(missing_ok=True)

    def batches(self) -> Iterator[pa.RecordBatch | StageOutput]:
        """Stream the rows, then report the malformed ones as error records."""
        if not hasattr(self, "_session"):
            self.open()
        if not self._files:
            return
        try:
            types = self._infer_types() if self.config.infer_types else ["VARCHAR"] * len(self._columns)
            query = self._read_sql(types, rejects=True)
            wrap = getattr(self, "_wrap", None)
            if wrap is not None:
                query = wrap(query)
            copied = self._copy_to_file(query)
            if copied is None:
                reader = self._duck().reader(query, self.context.batch_size)
        except duckdb.Error as exc:
            raise self._read_error(exc) from None
        if copied is not None:
            yield from self._copied(*copied, query, types)
            return
        try:
            yield from limited(self.context, self._guarded(reader))
            if self.context.cancelled or not self._drained(reader):
                return
        finally:
            reader.close()
        yield from self._rejects(self._duck())

    def _copy_to_file(self, query: str) -> tuple[FusedCopy, DuckSession] | None:
        """The engine's offer to write the destination's file with the fused query, if it holds.

        Only in a run (not a preview), and only when every filter verdict of
        the fused query is a BOOLEAN (otherwise the streamed run fails as usual).
        The COPY runs on the only connection that may write the destination's
        temporary file: the origin's own, or one of its own when the origin
        needed a scratch folder before the engine fused the COPY.
        """
        copy: FusedCopy | None = getattr(self, "_copy", None)
        if copy is None or getattr(self, "_wrap", None) is None or self.context.record_limit is not None:
            return None
        session = self._duck()
        if not self._session_writes:
            session = self._copy_session = DuckSession(
                files=[*self._files, copy.path], memory_limit=_COPY_MEMORY
            )
        relation = session.relation(query)
        types = {name: str(kind) for name, kind in zip(relation.columns, relation.types, strict=True)}
        if not copy.accepts(types):
            return None
        return copy, session

    def _copied(
        self, copy: FusedCopy, session: DuckSession, query: str, types: list[str]
    ) -> Iterator[pa.RecordBatch | StageOutput]:
        """Write the destination's file with one COPY, then hand the engine what it still needs:

        the batch standing for the rows written or dropped, the rows the COPY
        left out (read again, as fused batches), and the malformed rows.
        """
        try:
            for statement in copy.prepare():
                session.con.execute(statement).fetchall()
            written = self._interruptible(session, copy.copy_statement(query))
            counts = session.con.execute(copy.counts_query()).fetchall()[0]
        except duckdb.Error as exc:
            if self.context.cancelled:
                return
            if str(copy.path) in str(exc):
                raise StageError(copy.destination, f"cannot write the file: {duckdb_message(exc)}") from None
            raise self._read_error(exc) from None
        copy.copied = True
        special, dropped = int(counts[0]), [int(n) for n in counts[1:]]
        placeholder = copy.placeholder(written, dropped)
        if placeholder is not None:
            yield placeholder
        if special:
            wrap = self._wrap
            # The same rows again, without recording the malformed ones a second time.
            again = copy.special_select(wrap(self._read_sql(types, rejects=False)))
            try:
                reader = session.reader(again, self.context.batch_size)
            except duckdb.Error as exc:
                raise self._read_error(exc) from None
            seen = 0
            try:
                for batch in limited(self.context, self._guarded(reader)):
                    seen += batch.num_rows
                    yield batch
            finally:
                reader.close()
            if self.context.cancelled:
                return
            if seen != special:
                raise StageError(
                    self.context.stage_name,
                    f"the input changed while it was read: {special} records needed a second look, "
                    f"{seen} came back",
                )
        yield from self._rejects(session)

    def _interruptible(self, session: DuckSession, statement: str) -> int:
        """Run a COPY (its row count), interrupted when the run is cancelled or fails elsewhere."""
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.05):
                if self.context.cancelled:
                    session.con.interrupt()
                    return

        watcher = threading.Thread(target=watch, name="flowport-copy-watch", daemon=True)
        watcher.start()
        try:
            rows = session.con.execute(statement).fetchall()
        finally:
            done.set()
            watcher.join()
        return int(rows[0][0]) if rows else 0

    def _guarded(self, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        """The reader's batches, with read failures (I/O, encoding) turned into a StageError."""
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (duckdb.Error, pa.ArrowException, OSError) as exc:
                # DuckDB's errors reach here through Arrow's stream as OSError.
                raise self._read_error(exc) from None
            yield batch

    def _read_error(self, exc: BaseException) -> StageError:
        """A read failure in Flowport's words (DuckDB's parser options are no setting of ours)."""
        text = duckdb_message(exc)
        if _PARSER_STATE not in text:
            return StageError(self.context.stage_name, text)
        for path in self._files:
            line = _first_line_ending_change(path)
            if line is not None:
                return StageError(
                    self.context.stage_name,
                    f"'{path.name}' ends its lines in more than one way (CRLF and LF) from line {line} on; "
                    "set normalize_line_endings: true on this stage to read it through a normalized copy",
                    code="CSV_LINE_ENDINGS",
                )
        return StageError(
            self.context.stage_name,
            "a file could not be parsed as CSV with the configured delimiter and quote (check them, and "
            "that quoted values are closed): " + text.split("\n", 1)[0],
        )

    def _drained(self, reader: pa.RecordBatchReader) -> bool:
        """True when the scan finished (the reject tables exist)."""
        budget = _PREVIEW_DRAIN_ROWS if self.context.record_limit is not None else None
        for batch in self._guarded(reader):
            if budget is not None:
                budget -= batch.num_rows
                if budget < 0:
                    return False
        return True

    def _rejects(self, session: DuckSession) -> Iterator[StageOutput]:
        """Malformed rows from DuckDB's reject tables, one error record per line."""
        where = "e.scan_id = s.scan_id AND e.file_id = s.file_id"
        prefix = "parse_filename(s.file_path) || ' line ' || e.line || ': '"
        query = f"""
            SELECT s.file_path AS file,
                   CAST(e.line AS BIGINT) AS line,
                   trim(e.csv_line, chr(13) || chr(10)) AS raw,
                   {prefix} || CASE
                     WHEN e.error_type IN ('MISSING COLUMNS', 'TOO MANY COLUMNS') THEN
                       'expected ' || regexp_extract(e.error_message, 'Expected Number of Columns: (\\d+)', 1)
                       || ' columns, found ' || regexp_extract(e.error_message, 'Found: (\\d+)', 1)
                     WHEN e.error_type = 'UNQUOTED VALUE' THEN 'unterminated or badly quoted value'
                     WHEN e.error_type = 'CAST' THEN
                       'column ' || {sql_literal("'")} || e.column_name || {sql_literal("'")} || ': '
                       || regexp_replace(e.error_message, '^Error when converting column "[^"]*"\\. ', '')
                     ELSE e.error_message
                   END AS message
            FROM reject_errors e JOIN reject_scans s ON {where}
            -- A short row is reported once per missing column; the first report is the row's.
            QUALIFY row_number() OVER (PARTITION BY e.scan_id, e.file_id, e.line ORDER BY e.column_idx) = 1
            ORDER BY e.file_id, e.line
        """
        limit = self.context.record_limit
        try:
            reader = session.reader(query, self.context.batch_size)
        except duckdb.CatalogException:
            return  # the scan did not finish, so DuckDB wrote no reject tables
        except duckdb.Error as exc:
            raise StageError(self.context.stage_name, duckdb_message(exc)) from exc
        try:
            for batch in reader:
                if self.context.cancelled:
                    return
                if limit is not None:
                    if limit <= 0:
                        return
                    batch = batch.slice(0, limit)
                    limit -= batch.num_rows
                records = pa.Table.from_batches([batch.select(["file", "line", "raw"])])
                for copy, original in getattr(self, "_originals", {}).items():
                    files = records.column("file")
                    records = records.set_column(
                        0, "file", pc.if_else(pc.equal(files, copy), pa.scalar(original), files)
                    )
                codes = pa.repeat(pa.scalar(MALFORMED_ROW, pa.string()), batch.num_rows)
                messages = batch.column(batch.schema.get_field_index("message"))
                yield StageOutput(errors=ErrorBatch(records, codes, messages))
        finally:
            reader.close()
