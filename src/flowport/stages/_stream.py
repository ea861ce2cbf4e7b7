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

__all__ = ["FedStream", "FedWriter"]


class _Cancelled(Exception):
    """Raised inside the writer's thread when the stream is cancelled."""


class FedWriter:
    """Runs ``consume(items)`` in a thread while :meth:`put` feeds ``items`` (any objects).

    When the stream is cancelled, ``items`` raises inside ``consume`` so that
    a writer with a transaction-like protocol (a COPY) fails rather than ends.
    """

    _END: Any = object()

    def __init__(self, consume: Callable[[Iterator[Any]], None], *, name: str) -> None:
        self._consume = consume
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _items(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if self._stop.is_set():
                raise _Cancelled
            if item is self._END:
                return
            yield item

    def _run(self) -> None:
        try:
            self._consume(self._items())
        except BaseException as exc:  # handed to the producing thread
            self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: Any) -> None:
        """Queue one item (blocks while the queue is full); raises the writer's error."""
        while True:
            self._check()
            if not self._thread.is_alive():
                raise RuntimeError(f"{self._thread.name} ended before all records were written")
            try:
                self._queue.put(item, timeout=0.1)
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


class FedStream(FedWriter):
    """Runs ``consume(reader)`` in a thread while :meth:`put` feeds the Arrow reader."""

    def __init__(
        self, schema: pa.Schema, consume: Callable[[pa.RecordBatchReader], None], *, name: str
    ) -> None:
        self.schema = schema

        def batches(items: Iterator[Any]) -> Iterator[pa.RecordBatch]:
            try:
                for item in items:
                    yield from item.to_batches()
            except _Cancelled:
                return  # the reader ends; the caller throws the output away

        super().__init__(
            lambda items: consume(pa.RecordBatchReader.from_batches(schema, batches(items))), name=name
        )

    def put(self, item: Any) -> None:
        """Queue one table (blocks while the queue is full); raises the writer's error."""
        if item.schema != self.schema:
            item = item.cast(self.schema)
        super().put(item)
