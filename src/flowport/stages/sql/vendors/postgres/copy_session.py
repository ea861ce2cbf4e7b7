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

__all__ = ["CopySession", "EncodedCopyStream"]


class CopySession(PostgresConnection):
    """PostgreSQL over psycopg (native ``$n`` parameters), for loads that encode their own COPY.

    It speaks the same SQL and reads the same catalog as
    :class:`PostgresConnection`; only statements, transactions and COPY go
    through psycopg. Reading a result as Arrow is not offered (loads that
    need it stay on ADBC).
    """

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

    def copy_stream(self, table: TableName, columns: Sequence[str]) -> EncodedCopyStream:
        """One binary ``COPY table (columns) FROM STDIN`` fed with Arrow batches."""
        listed = ", ".join(self.quote(c) for c in columns)
        return EncodedCopyStream(self, f"COPY {self.table_sql(table)} ({listed}) FROM STDIN (FORMAT binary)")


class EncodedCopyStream(FedWriter):
    """A binary COPY in its own thread; :meth:`put` encodes a batch in the caller's thread and queues it.

    The connection belongs to the stream's thread until :meth:`finish` or
    :meth:`cancel` returns. A cancelled stream fails its COPY (the server
    discards it) rather than ending it.
    """

    def __init__(self, session: CopySession, statement: str) -> None:
        def consume(items: Iterator[Any]) -> None:
            with session.raw.cursor() as cursor, cursor.copy(statement) as copy:
                copy.write(HEADER)
                for data in items:
                    copy.write(data)
                copy.write(TRAILER)

        super().__init__(consume, name="flowport-pg-copy")

    def put(self, item: Any) -> None:
        """Encode one table or batch and queue its bytes (blocks while the queue is full)."""
        if isinstance(item, (pa.Table, pa.RecordBatch)):
            if not item.num_rows:
                return
            item = memoryview(encode_batch(item))
        super().put(item)
