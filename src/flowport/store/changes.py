"""Store changes: the generation of a topic, which the database's own triggers move on every write.

See migration 0012: a trigger on each table of a topic adds one to its
generation in the writing transaction, whoever writes. Two reads that see
the same generation saw the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from flowport.store.database import reader_engine

__all__ = ["AUTH", "FLOWS", "generation", "generations"]

# The flows and projects tables.
FLOWS = "flows"
# The users and api_tokens tables.
AUTH = "auth"

# Text, not a select(): built once, it skips the statement cache's key (half of this read's cost).
_QUERY = text("SELECT generation FROM store_changes WHERE topic = :topic")
_ALL = text("SELECT topic, generation FROM store_changes")


def generation(url: str, topic: str) -> int:
    """The topic's generation now, read on a connection of its own; -1 when the store has no such row.

    A plain connection rather than a session: this one-row read is all a
    kept answer costs (a tenth of a millisecond on SQLite), and it must come
    before the rows it vouches for are read.
    """
    value = _read(url, lambda connection: connection.execute(_QUERY, {"topic": topic}).scalar())
    return -1 if value is None else int(value)


def generations(url: str) -> dict[str, int]:
    """Every topic's generation now, in one read (one round trip to a database server)."""
    return _read(
        url, lambda connection: {str(topic): int(value) for topic, value in connection.execute(_ALL)}
    )


T = TypeVar("T")


def _read(url: str, read: Callable[[Connection], T]) -> T:
    # A pooled connection the server dropped (a restart) fails once; the pool then starts afresh.
    engine = reader_engine(url)
    try:
        with engine.connect() as connection:
            return read(connection)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    with engine.connect() as connection:
        return read(connection)
