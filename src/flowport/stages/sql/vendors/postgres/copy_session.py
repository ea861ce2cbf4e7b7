"""A PostgreSQL load session over psycopg that sends binary COPY encoded by Flowport.

ADBC's COPY writer encodes value by value (about 0.5 s of CPU per million
rows of five columns on a two-core machine: as much as the server needs to
ingest them). :mod:`.binary_copy` encodes whole columns with numpy and Arrow
kernels (about a quarter of that), and this session sends the bytes through
psycopg's ``COPY FROM STDIN``. Encoding runs in the stage's thread, sending
in the stream's own thread, so the server ingests one batch while the next
is being encoded.

The whole load (staging table, COPY, swap) runs on this one connection, in
one transaction, exactly like the ADBC path: see :class:`~.load.PostgresLoad`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa

from flowport.connections.drivers import connect_dbapi
from flowport.connections.spec import ConnectionSpec
from flowport.stages._stream import FedWriter
from flowport.stages.sql._connection import Row
from flowport.stages.sql._identifiers import TableName
from flowport.stages.sql.vendors.postgres.binary_copy import HEADER, TRAILER, encode_batch
from flowport.stages.sql.vendors.postgres.connection import IngestStream, PostgresConnection

__all__ = ["CopySession", "EncodedCopyStream", "ParallelCopy", "SessionAhead"]


class CopySession(PostgresConnection):
    """PostgreSQL over psycopg (native ``$n`` parameters), for loads that encode their own COPY.

    It speaks the same SQL and reads the same catalog as
    :class:`PostgresConnection`; only statements, transactions and COPY go
    through psycopg. Reading a result as Arrow is not offered (loads that
    need it stay on ADBC).
    """

    #: A load opens its own and closes it (it may hold a parallel COPY's advisory lock): never kept.
    reusable = False
    #: The key arrays are bound by ADBC (a replace compares keys within the load only).
    finds_present_keys = False

    @classmethod
    def open(cls, spec: ConnectionSpec) -> CopySession:
        """Connect with psycopg (not in autocommit) and use UTC, like the ADBC connection."""
        import psycopg

        raw = connect_dbapi(spec, autocommit=False)
        raw.cursor_factory = psycopg.RawCursor
        session = cls(spec, raw)
        try:
            session.execute("SET TIME ZONE 'UTC'")
            session.commit()
        except BaseException:
            session.close()
            raise
        return session

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement in the current transaction."""
        with self.raw.cursor() as cursor:
            cursor.execute(sql, list(params) if params else None)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of a small query."""
        with self.raw.cursor() as cursor:
            cursor.execute(sql, list(params) if params else None)
            return [tuple(r) for r in cursor.fetchall()]

    def commit(self) -> None:
        """Commit."""
        self.raw.commit()

    def rollback(self) -> None:
        """Roll back."""
        self.raw.rollback()

    def ingest(self, table: TableName, data: pa.Table, *, create: bool, temporary: bool = False) -> None:
        """Refused: this session only streams into an existing table (:meth:`copy_stream`)."""
        raise NotImplementedError("a CopySession loads through copy_stream")

    def ingest_stream(
        self, table: TableName, schema: pa.Schema, *, create: bool, temporary: bool = False
    ) -> IngestStream:
        """Refused: this session only streams into an existing table (:meth:`copy_stream`)."""
        raise NotImplementedError("a CopySession loads through copy_stream")

    def stream(
        self,
        query: str,
        parameters: Mapping[str, Any],
        batch_size: int,
        *,
        declared: Mapping[str, str] | None = None,
    ) -> Generator[pa.RecordBatch, None, None]:
        """Refused: reads go through the ADBC connection."""
        raise NotImplementedError("a CopySession does not read results as Arrow")

    def copy_stream(
        self,
        table: TableName,
        columns: Sequence[str],
        *,
        others: Sequence[CopySession] = (),
        growing: bool = False,
    ) -> EncodedCopyStream | ParallelCopy:
        """One binary ``COPY table (columns) FROM STDIN`` fed with Arrow batches; with ``others``
        (sessions that see ``table`` committed), one such COPY on each session at once; ``growing``:
        a :class:`ParallelCopy` even of one stream, which others may join (:meth:`ParallelCopy.add`)."""
        listed = ", ".join(self.quote(c) for c in columns)
        statement = f"COPY {self.table_sql(table)} ({listed}) FROM STDIN (FORMAT binary)"
        if others or growing:
            return ParallelCopy(self, others, statement)
        return EncodedCopyStream(self, statement)


class SessionAhead:
    """A :class:`CopySession` opened in a thread of its own, ahead of the load's first batch.

    Importing psycopg and connecting take about a tenth of a second, which
    the load would otherwise spend after its first batch arrived. What
    opening raised is raised by :meth:`take`; :meth:`discard` closes a
    session nobody took.
    """

    def __init__(self, spec: ConnectionSpec) -> None:
        self._session: CopySession | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._open, args=(spec,), name="flowport-pg-connect")
        self._thread.daemon = True
        self._thread.start()

    def _open(self, spec: ConnectionSpec) -> None:
        try:
            self._session = CopySession.open(spec)
        except BaseException as exc:  # handed to the thread that takes the session
            self._error = exc

    def take(self) -> CopySession:
        """The open session (waits for it); raises what opening it raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        session, self._session = self._session, None
        assert session is not None
        return session

    def discard(self) -> None:
        """Close the session if nobody took it (waits for the connect to end)."""
        self._thread.join()
        session, self._session = self._session, None
        if session is not None:
            session.close()


class EncodedCopyStream(FedWriter):
    """A binary COPY in its own thread; :meth:`put` encodes a batch in the caller's thread and queues it.

    The connection belongs to the stream's thread until :meth:`finish` or
    :meth:`cancel` returns. A cancelled stream fails its COPY (the server
    discards it) rather than ending it. :meth:`finish` checks that the
    server counted exactly the rows put: a COPY that reports fewer rows than
    it was sent raises rather than ends quietly.
    """

    def __init__(self, session: CopySession, statement: str, *, name: str = "flowport-pg-copy") -> None:
        self.sent = 0  # rows encoded and queued
        self.copied: int | None = None  # rows the server reported, once the COPY ended

        def consume(items: Iterator[Any]) -> None:
            with session.raw.cursor() as cursor:
                with cursor.copy(statement) as copy:
                    copy.write(HEADER)
                    for data in items:
                        copy.write(data)
                    copy.write(TRAILER)
                self.copied = cursor.rowcount

        super().__init__(consume, name=name)

    def put(self, item: Any) -> None:
        """Encode one table or batch and queue its bytes (blocks while the queue is full)."""
        if isinstance(item, (pa.Table, pa.RecordBatch)):
            if not item.num_rows:
                return
            rows = item.num_rows
            item = memoryview(encode_batch(item))
            super().put(item)
            self.sent += rows
            return
        super().put(item)

    @property
    def backlog(self) -> int:
        """Encoded batches waiting for the server."""
        return self._queue.qsize()

    def finish(self) -> None:
        """End the COPY and wait for it; raises its error, or when the server counted other rows."""
        super().finish()
        if self.copied is not None and self.copied >= 0 and self.copied != self.sent:
            raise RuntimeError(f"COPY stored {self.copied} rows of the {self.sent} sent")


class ParallelCopy:
    """Several binary COPY streams into one staging table, each on its own connection.

    The server parses and stores each stream in its own backend, so a
    load's ingest uses as many server cores as there are streams. Every
    batch is encoded in the caller's thread and queued on the stream with
    the shortest backlog. The first stream runs on the load's own session
    (its rows commit with the swap); :meth:`finish` ends every COPY, checks
    their row counts, then commits the other sessions, so the staging table
    holds every row before the swap. The staging table must therefore be
    committed (visible to the other sessions) before the streams start:
    see :meth:`~.load.PostgresLoad._move_to_copy_session`.
    """

    def __init__(self, main: CopySession, others: Sequence[CopySession], statement: str) -> None:
        self._statement = statement
        self._others: list[CopySession] = []
        self._streams: list[EncodedCopyStream] = []
        try:
            self._streams.append(EncodedCopyStream(main, statement, name="flowport-pg-copy-0"))
            for session in others:
                self.add(session)
        except BaseException:
            self.cancel()
            raise

    def add(self, session: CopySession) -> None:
        """One more stream, on ``session`` (it must see the staging table committed): the batches
        put from now on go to it too; its rows are committed by :meth:`finish`."""
        stream = EncodedCopyStream(session, self._statement, name=f"flowport-pg-copy-{len(self._streams)}")
        self._streams.append(stream)
        self._others.append(session)

    def put(self, item: Any) -> None:
        """Encode one table or batch and queue it on the least busy stream."""
        min(self._streams, key=lambda s: s.backlog).put(item)

    def finish(self) -> None:
        """End every COPY (raising the first error), then commit the other sessions' rows."""
        errors: list[BaseException] = []
        for stream in self._streams:
            try:
                stream.finish()
            except BaseException as exc:
                errors.append(exc)
        if errors:
            self._rollback_others()
            raise errors[0]
        for session in self._others:
            session.commit()

    def cancel(self) -> None:
        """Fail every COPY and roll the other sessions back."""
        for stream in self._streams:
            stream.cancel()
        self._rollback_others()

    def _rollback_others(self) -> None:
        for session in self._others:
            with contextlib.suppress(Exception):  # a broken connection has nothing left to roll back
                session.rollback()
