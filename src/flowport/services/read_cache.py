"""Answers kept per store generation: a read that finds the generation it was answered at answers again.

The metadata store's triggers move a topic's generation on every write to
its tables (:mod:`flowport.store.changes`), in any process. A reader first
reads the generation, then the rows: an answer kept under a generation is
never older than that generation, and a write moves it past every kept
answer. The cost of a hit is the generation's one-row read. Bounded (least
recently used first out) and thread-safe; per process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from flowport.services.instance import ready, store_url
from flowport.store import changes as _changes

__all__ = ["AUTH", "FLOWS", "GenerationCache", "generation", "generations"]

# The topic of the flows (and their projects).
FLOWS = _changes.FLOWS
# The topic of the users and their API tokens.
AUTH = _changes.AUTH


def generation(topic: str, url: str | None = None) -> int:
    """The topic's generation now in the store at ``url`` (the instance's by default); -1 when unknown."""
    url = url or store_url()
    ready(url)
    return _changes.generation(url, topic)


def generations(url: str) -> dict[str, int]:
    """Every topic's generation now in the store at ``url``, in one read (no write, no lock)."""
    ready(url)
    return _changes.generations(url)


T = TypeVar("T")


class GenerationCache(Generic[T]):
    """At most ``size`` answers, each kept with the generation it was read at."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._entries: OrderedDict[Hashable, tuple[int, T]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, generation: int, read: Callable[[], T]) -> T:
        """The answer kept for ``key`` at ``generation``, or ``read()`` (then kept)."""
        found = self.peek(key, generation)
        if found is not None:
            return found[0]
        value = read()
        self.put(key, generation, value)
        return value

    def peek(self, key: Hashable, generation: int) -> tuple[T] | None:
        """``(answer,)`` when one is kept for ``key`` at ``generation``, else None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == generation:
                self._entries.move_to_end(key)
                self.hits += 1
                return (entry[1],)
            self.misses += 1
            return None

    def put(self, key: Hashable, generation: int, value: T) -> None:
        """Keep ``value`` for ``key`` as read at ``generation`` (read it before what it vouches for)."""
        if generation < 0:  # a store without the row: nothing vouches for the answer
            return
        with self._lock:
            kept = self._entries.get(key)
            # Never replace an answer of a newer generation another thread kept meanwhile.
            if kept is None or kept[0] <= generation:
                self._entries[key] = (generation, value)
                self._entries.move_to_end(key)
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every answer."""
        with self._lock:
            self._entries.clear()
