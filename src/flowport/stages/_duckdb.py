"""DuckDB helpers shared by the built-in stages (private to ``flowport.stages``).

Every stage that evaluates SQL owns one DuckDB connection: connections are
not shared between stages because stages run on different threads. Stages
that keep state across batches (whole-input SQL, deduplication) use a private
on-disk database in a temporary directory, so DuckDB can spill to disk and
memory stays bounded whatever the input size.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar, cast

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from flowport.connections import duckdb_spares
from flowport.stages._stream import FedStream

log = logging.getLogger(__name__)

__all__ = [
    "DuckSession",
    "Isolated",
    "arange",
    "duckdb_message",
    "is_statement_error",
    "isolate_failures",
    "nested_columns",
    "nested_to_json",
    "quote_ident",
    "render_json",
    "sandbox",
    "shared_database_ahead",
    "sql_literal",
    "write_string_array",
]

T = TypeVar("T")

# Errors that say the SQL itself is wrong (syntax, unknown column or
# function): no subset of the rows would evaluate, so they are configuration
# errors, never record errors.
_STATEMENT_ERRORS: tuple[type[Exception], ...] = (
    duckdb.ParserException,
    duckdb.BinderException,
    duckdb.CatalogException,
    duckdb.SyntaxException,
    duckdb.NotImplementedException,
    # File access outside what the stage may touch (a sandboxed connection).
    duckdb.PermissionException,
)
# Errors about the engine rather than a value: retrying on fewer rows would
# only hide them.
_ENGINE_ERRORS: tuple[type[Exception], ...] = (
    duckdb.InterruptException,
    duckdb.OutOfMemoryException,
    duckdb.IOException,
    duckdb.FatalException,
    duckdb.InternalException,
)


def quote_ident(name: str) -> str:
    """``name`` as a DuckDB quoted identifier (any characters allowed)."""
    return '"' + name.replace('"', '""') + '"'


def sql_literal(text: str) -> str:
    """``text`` as a DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"


def duckdb_message(exc: BaseException) -> str:
    """DuckDB's error message without the echoed query and caret lines.

    The query is Flowport's own wrapping of the user's expression, so showing
    it would confuse more than it helps.
    """
    text = str(exc).strip()
    cut = text.find("\n\nLINE ")
    if cut >= 0:
        text = text[:cut]
    text = text.strip()
    if _sandbox_refusal(exc):
        text += (
            " (SQL in a flow runs in a sandbox: it sees its input records only and may not read or "
            "write files, attach databases, load extensions or change settings; read files with an "
            "origin stage)"
        )
    return text


def _sandbox_refusal(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.PermissionException) or (
        isinstance(exc, duckdb.InvalidInputException) and "configuration has been locked" in str(exc)
    )


def is_statement_error(exc: BaseException) -> bool:
    """True when ``exc`` is about the SQL text (or the engine, or the sandbox), not about a value."""
    return isinstance(exc, _STATEMENT_ERRORS + _ENGINE_ERRORS) or _sandbox_refusal(exc)


def sandbox(
    con: duckdb.DuckDBPyConnection, *, paths: Sequence[Path] = (), directories: Sequence[Path] = ()
) -> None:
    """Confine a DuckDB connection: files only in ``paths`` and ``directories``, no extensions, locked.

    User SQL (filters, expressions, SQL stages, fused queries) runs on such
    connections: ``read_text``, ``read_csv``, ``COPY ... TO``, ``ATTACH``,
    ``INSTALL``, ``LOAD`` and ``SET`` fail there unless they stay inside what
    the stage itself needs. DuckDB resolves symlinks before it compares, so a
    link inside an allowed folder cannot lead outside it. The order matters:
    the allowed paths are set before external access is turned off, and the
    configuration is locked last.
    """
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    if paths:
        con.execute(f"SET allowed_paths = [{', '.join(sql_literal(str(p)) for p in paths)}]")
    if directories:
        con.execute(f"SET allowed_directories = [{', '.join(sql_literal(str(d)) for d in directories)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


_SHARED_PREFIX = "flowport-duckdb-shared-"


def _sweep_shared_folders() -> None:
    """Remove the spill folders of shared databases whose process is gone (killed, or ended
    without its exit handlers): each folder's name carries its process id."""
    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"{_SHARED_PREFIX}*-*"):
        pid_text = folder.name[len(_SHARED_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        try:
            if folder.stat().st_uid != os.getuid() or _process_alive(int(pid_text)):
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        pass
    return True


class _SharedDatabase:
    """One sandboxed in-memory DuckDB database per process, for :class:`DuckSession` ``shared=True``.

    Opening a DuckDB database costs about 10 ms (its catalog and built-in
    extensions are set up); a connection to an open one (a cursor) costs
    microseconds. A streaming job opens its stages for every micro-batch, so
    the sessions that run only SQL Flowport writes itself (type conversions,
    key checks, JSON rendering) take a connection of this database instead.
    Each connection sees only its own registered views and TEMP tables; the
    database spills to a private folder, may touch no other file, and its
    configuration is locked. A forked child makes its own.
    """

    _lock = threading.Lock()
    _pid: int | None = None
    #: The process opening the database ahead (see :meth:`ahead`), if one is.
    _opening: int | None = None
    _database: duckdb.DuckDBPyConnection | None = None
    #: Databases a forked child inherited: kept referenced, never used or closed.
    _inherited: list[duckdb.DuckDBPyConnection] = []
    _directory: Path | None = None

    @classmethod
    def connection(cls) -> duckdb.DuckDBPyConnection:
        with cls._lock:
            database = cls._open()
            return database.cursor()

    @classmethod
    def ahead(cls) -> None:
        """Open the database in a background thread, unless it is open or being opened: a caller of
        :meth:`connection` meanwhile waits for it rather than opening it on its own thread."""
        with cls._lock:
            if (cls._database is not None and cls._pid == os.getpid()) or cls._opening == os.getpid():
                return
            cls._opening = os.getpid()
        threading.Thread(target=cls._open_ahead, name="flowport-duckdb-shared", daemon=True).start()

    @classmethod
    def _open_ahead(cls) -> None:
        try:
            with cls._lock:
                cls._open()
        except Exception as exc:  # connection() opens it then, and raises what it raises
            log.debug("could not open the shared DuckDB database ahead: %s", exc)
        finally:
            cls._opening = None

    @classmethod
    def _open(cls) -> duckdb.DuckDBPyConnection:
        """The process's database, opened now if it is not (``_lock`` held)."""
        if cls._database is not None and cls._pid == os.getpid():
            return cls._database
        _sweep_shared_folders()
        directory = Path(tempfile.mkdtemp(prefix=f"{_SHARED_PREFIX}{os.getpid()}-"))
        # The time zone is set for the database (sandbox() sets it for its own connection):
        # each cursor is a connection of its own, which starts from the database's setting.
        database = duckdb.connect(":memory:")
        database.execute("SET GLOBAL TimeZone = 'UTC'")
        database.execute(f"SET temp_directory = {sql_literal(str(directory / 'spill'))}")
        sandbox(database, directories=[directory])
        if cls._pid is None:  # inherited by a forked child, which removes its own folder
            atexit.register(cls._remove)
        cls._database, cls._directory, cls._pid = database, directory, os.getpid()
        return database

    @classmethod
    def _after_fork(cls) -> None:
        """In a forked child: a lock of its own (one held by another thread at the fork, opening the
        database ahead, would be waited for forever), and the parent's database kept referenced,
        never closed (closing it waits for the parent's DuckDB threads, which the child does not
        have): the child opens its own on first use."""
        cls._lock = threading.Lock()
        cls._opening = None
        if cls._database is not None:
            cls._inherited.append(cls._database)
            cls._database = None

    @classmethod
    def _remove(cls) -> None:
        if cls._directory is not None and cls._pid == os.getpid():
            shutil.rmtree(cls._directory, ignore_errors=True)


os.register_at_fork(after_in_child=_SharedDatabase._after_fork)


def shared_database_ahead() -> None:
    """Start opening the process's shared DuckDB database (:class:`DuckSession` ``shared=True``) in
    a background thread, if it is not open: DuckDB releases the GIL while it sets a database up."""
    _SharedDatabase.ahead()


class DuckSession:
    """One sandboxed DuckDB connection owned by one stage instance.

    ``on_disk=True`` puts the database in a fresh temporary directory (with
    DuckDB's spill directory beside it) that :meth:`close` removes;
    ``scratch=True`` makes that directory without a database in it (for a
    stage's own temporary files). The connection may touch only ``files``
    (the files the stage itself reads) and its own temporary directory: see
    :func:`sandbox`. ``memory_limit`` caps DuckDB's own memory (its default is
    most of the machine's). ``release_memory`` makes DuckDB's allocator hand
    freed memory back early: for the sessions that stream a long read into
    Arrow batches (an origin's) and the on-disk ones that hold a whole input.
    ``shared=True``: a connection of the process's shared database
    (:class:`_SharedDatabase`), made in microseconds, for SQL Flowport writes
    itself only; it keeps TEMP tables (they spill to disk) and registered
    views, which no other session sees. User SQL never runs on one: a table
    it created would be seen by every other shared session.
    """

    def __init__(
        self,
        *,
        on_disk: bool = False,
        files: Sequence[Path] = (),
        scratch: bool = False,
        memory_limit: str | None = None,
        release_memory: bool | None = None,
        shared: bool = False,
    ) -> None:
        if shared and (on_disk or files or scratch or memory_limit or release_memory):
            raise ValueError("a shared DuckDB session has no files, folder or settings of its own")
        self._shared = shared
        self._directory: Path | None = None
        self._release_memory = on_disk if release_memory is None else release_memory
        if on_disk or scratch:
            self._directory = Path(tempfile.mkdtemp(prefix="flowport-duckdb-"))
        self._on_disk = on_disk
        self._files = list(files)
        self._memory_limit = memory_limit
        self._con: duckdb.DuckDBPyConnection | None = None
        self._closed = False
        if on_disk:
            self._connect()

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The sandboxed connection, made on first use.

        Opening a DuckDB database costs tens of milliseconds, and a stage
        fused into another's query never uses its own.
        """
        if self._con is None:
            if self._closed:
                raise duckdb.ConnectionException("the stage's DuckDB connection is closed")
            self._connect()
        assert self._con is not None
        return self._con

    def _connect(self) -> None:
        if self._shared:
            self._con = _SharedDatabase.connection()
            return
        if self._on_disk:
            assert self._directory is not None
            con = duckdb.connect(str(self._directory / "stage.duckdb"))
            con.execute(f"SET temp_directory = {sql_literal(str(self._directory / 'spill'))}")
        else:
            con = duckdb_spares.take()
        try:
            if self._release_memory:
                # DuckDB's allocator keeps freed memory around for reuse: with these, it hands
                # memory back once 8 MB are free (background threads do the work), so a long
                # streamed read holds 70-100 MB less at its peak (5M-10M rows into PostgreSQL:
                # about 515 MB against 585-615 MB) for about 2% more time. They are process-wide,
                # and cost a query that stays inside DuckDB more (a fused COPY of 5M rows into
                # Parquet: 6%, with its memory_limit as its bound): set only where they pay.
                con.execute("SET allocator_background_threads = true")
                con.execute("SET allocator_flush_threshold = '8MB'")
                con.execute("SET allocator_bulk_deallocation_flush_threshold = '8MB'")
            if self._memory_limit is not None:
                con.execute(f"SET memory_limit = {sql_literal(self._memory_limit)}")
            # Timestamps with time zone are rendered (JSON, text) in UTC so output
            # does not depend on the machine that ran the flow (set by sandbox()).
            sandbox(
                con,
                paths=self._files,
                directories=[self._directory] if self._directory is not None else [],
            )
        except BaseException:
            con.close()
            raise
        self._con = con

    @property
    def directory(self) -> Path | None:
        """The private temporary directory of an on-disk or scratch session."""
        return self._directory

    def relation(self, query: str) -> Any:
        """The lazy relation of a SELECT; binding errors surface here."""
        relation = self.con.sql(query)
        if relation is None:  # not a query: DuckDB ran it and returned nothing
            raise duckdb.InvalidInputException(f"not a query that returns rows: {query}")
        return relation

    def table(self, query: str) -> pa.Table:
        """Run a SELECT and return its whole result as an Arrow table."""
        result: pa.Table = self.relation(query).to_arrow_table()
        return result

    def reader(self, query: str, batch_size: int) -> pa.RecordBatchReader:
        """Run a SELECT and stream its result in batches of about ``batch_size`` rows."""
        result: pa.RecordBatchReader = self.relation(query).to_arrow_reader(batch_size)
        return result

    def execute(self, statement: str) -> None:
        """Run a statement that returns nothing of interest (DDL, INSERT)."""
        self.con.execute(statement)

    @contextmanager
    def registered(self, name: str, data: pa.RecordBatch | pa.Table) -> Iterator[None]:
        """Make ``data`` queryable as the view ``name`` for the duration of the block."""
        self.con.register(name, data)
        try:
            yield
        finally:
            self.con.unregister(name)

    def close(self) -> None:
        """Close the connection and delete an on-disk session's directory."""
        if self._closed:
            return
        self._closed = True
        con, self._con = self._con, None
        try:
            if con is not None and not self._shared and self._directory is None:
                # Nothing waits on it (no folder to remove after it): its memory is handed back
                # in the background, not on the run's time.
                duckdb_spares.close_later(con)
            elif con is not None:
                con.close()
        finally:
            if self._directory is not None:
                shutil.rmtree(self._directory, ignore_errors=True)


@dataclass
class Isolated(Generic[T]):
    """What :func:`isolate_failures` found in one batch.

    ``results`` are the evaluations of the row ranges that worked, in row
    order; ``good`` masks the rows they cover; ``failed`` holds the indices of
    the rows that failed on their own and ``messages`` DuckDB's reason for each.
    """

    results: list[T] = field(default_factory=list)
    good: pa.BooleanArray | None = None
    failed: list[int] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def isolate_failures(batch: pa.RecordBatch, evaluate: Callable[[pa.RecordBatch], T]) -> Isolated[T]:
    """Evaluate ``batch`` by halves until every failing row stands alone.

    Only called after evaluating the whole batch raised: the happy path stays
    one query per batch, and a batch with ``k`` bad rows costs about
    ``2·k·log2(n)`` small queries instead of ``n``. Errors about the statement
    itself are re-raised, since no row could ever succeed.
    """
    found: Isolated[T] = Isolated()
    # An explicit stack (ranges pushed right half first) keeps row order.
    stack: list[tuple[int, int]] = [(0, batch.num_rows)]
    while stack:
        offset, length = stack.pop()
        if length == 0:
            continue
        try:
            found.results.append(evaluate(batch.slice(offset, length)))
            continue
        except duckdb.Error as exc:
            if is_statement_error(exc):
                raise
            if length == 1:
                found.failed.append(offset)
                found.messages.append(duckdb_message(exc))
                continue
        half = length // 2
        stack.append((offset + half, length - half))
        stack.append((offset, half))
    good = [True] * batch.num_rows  # error path only: a Python list is fine here
    for index in found.failed:
        good[index] = False
    found.good = pa.array(good, pa.bool_())
    return found


def render_json(
    session: DuckSession, table: pa.Table, *, prefix: str = "", suffix: str = "\n"
) -> pa.ChunkedArray[Any]:
    """One JSON object per row of ``table`` (nested structs become nested objects).

    Each value is ``prefix + json + suffix`` so that the string column's data
    buffer is already the bytes to write (see :func:`write_string_array`).
    """
    keys = ", ".join(f"{sql_literal(name)}: {quote_ident(name)}" for name in table.column_names)
    parts = []
    if prefix:
        parts.append(sql_literal(prefix))
    parts.append(f"to_json({{{keys}}})::VARCHAR" if keys else "'{}'")
    if suffix:
        parts.append(sql_literal(suffix))
    with session.registered("__fp_rows", table):
        result = session.table(f"SELECT {' || '.join(parts)} AS line FROM __fp_rows")
    return result.column(0)


def write_string_array(
    out: IO[bytes], strings: pa.ChunkedArray[Any] | pa.Array[Any], *, skip: int = 0
) -> int:
    """Write the concatenation of every (non-null) string in ``strings`` to ``out``.

    Zero-copy: the values of an Arrow string array are stored back to back, so
    one slice of the data buffer per chunk is the whole text. ``skip`` drops
    that many bytes from the very beginning. Returns the number of bytes written.
    """
    chunks = strings.chunks if isinstance(strings, pa.ChunkedArray) else [strings]
    written = 0
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        if chunk.null_count:
            chunk = pc.drop_null(chunk)
        if pa.types.is_large_string(chunk.type):
            offset_type: pa.DataType = pa.int64()
        elif pa.types.is_string(chunk.type):
            offset_type = pa.int32()
        else:
            chunk = chunk.cast(pa.string())
            offset_type = pa.int32()
        buffers = chunk.buffers()
        offsets = pa.Array.from_buffers(offset_type, len(chunk) + 1, [None, buffers[1]], offset=chunk.offset)
        start, end = offsets[0].as_py(), offsets[len(chunk)].as_py()
        start += skip
        skip = 0
        data = buffers[2]
        if end > start and data is not None:
            # pyarrow's stubs do not declare the buffer protocol Buffer implements.
            out.write(memoryview(cast(Any, data))[start:end])
            written += end - start
    return written


def nested_columns(schema: pa.Schema) -> list[str]:
    """Names of the struct, list and map columns of ``schema``."""
    return [f.name for f in schema if pa.types.is_nested(f.type)]


def nested_to_json(session: DuckSession, table: pa.Table) -> pa.Table:
    """``table`` with every nested column replaced by its JSON text (for flat formats like CSV)."""
    names = nested_columns(table.schema)
    if not names:
        return table
    slim = table.select(names)
    select = ", ".join(f"to_json({quote_ident(n)})::VARCHAR AS {quote_ident(n)}" for n in names)
    with session.registered("__fp_nested", slim):
        converted = session.table(f"SELECT {select} FROM __fp_nested")
    for name in names:
        table = table.set_column(table.column_names.index(name), name, converted.column(name))
    return table


def arange(n: int) -> pa.Array[Any]:
    """0, 1, ..., n-1 as an int64 Arrow array, built without a Python loop."""
    if n == 0:
        return pa.array([], pa.int64())
    return pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), n)), 1)


class CopyStream(FedStream):
    """One DuckDB ``COPY ... TO`` fed batch by batch from another thread.

    DuckDB's Parquet writer encodes row groups on several threads; fed from
    an Arrow stream it writes a file about twice as fast as pyarrow's
    single-threaded writer.
    """

    def __init__(self, schema: pa.Schema, path: Path, options: str) -> None:
        def consume(reader: pa.RecordBatchReader) -> None:
            con = duckdb.connect(":memory:")
            try:
                # The writer only needs room for the row groups it is encoding.
                con.execute("SET memory_limit = '256MB'")
                sandbox(con, paths=[path])
                con.register("__fp_stream", reader)
                con.execute(f"COPY (SELECT * FROM __fp_stream) TO {sql_literal(str(path))} ({options})")
            finally:
                con.close()

        super().__init__(schema, consume, name="flowport-duckdb-copy")
