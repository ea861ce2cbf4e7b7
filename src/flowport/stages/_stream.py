"""A writer fed batch by batch from another thread.

Bulk writers (a PostgreSQL binary COPY, a DuckDB ``COPY ... TO``) are
fastest when they consume one long Arrow stream: their per-call set-up is
paid once and they run in their own thread, overlapping with the stages
that produce the batches. :class:`FedStream` runs such a writer on a
``RecordBatchReader`` that pulls from a small bounded queue, so memory stays
bounded and a writer's error reaches the producing thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

__all__ = ["FedStream"]


class FedStream:
    """Runs ``consume(reader)`` in a thread while :meth:`put` feeds the reader."""

    _END: Any = object()

    def __init__(
        self, schema: pa.Schema, consume: Callable[[pa.RecordBatchReader], None], *, name: str
    ) -> None:
        self.schema = schema
        self._consume = consume
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _batches(self) -> Iterator[pa.RecordBatch]:
        while True:
            item = self._queue.get()
            if item is self._END or self._stop.is_set():
                return
            yield from item.to_batches()

    def _run(self) -> None:
        try:
            self._consume(pa.RecordBatchReader.from_batches(self.schema, self._batches()))
        except BaseException as exc:  # handed to the producing thread
            self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, table: pa.Table) -> None:
        """Queue one table (blocks while the queue is full); raises the writer's error."""
        if table.schema != self.schema:
            table = table.cast(self.schema)
        while True:
            self._check()
            if not self._thread.is_alive():
                raise RuntimeError(f"{self._thread.name} ended before all records were written")
            try:
                self._queue.put(table, timeout=0.1)
                return
            except queue.Full:
                continue

    def _end(self) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(self._END, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """End the stream and wait for the writer; raises its error, if any."""
        self._end()
        self._thread.join()
        self._check()

    def cancel(self) -> None:
        """Stop feeding the writer and wait for its thread (the caller throws the output away)."""
        self._stop.set()
        self._end()
        self._thread.join(timeout=30)
