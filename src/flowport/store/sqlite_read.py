"""One connection read from a SQLite metadata store with the standard library's ``sqlite3``.

A local run (``flowport run``, the SDK's local runs) looks its connections
up in the instance's store. Through SQLAlchemy and the store's models that
costs about 0.3 s of imports, on the run's critical path: the destination
waits for its connection before it loads a row. A SQLite store answers the
same question with one read-only query. Only the plain case is answered
here (a store at the expected revision, a row found); for anything else
:func:`read_connection` returns None and the caller asks the store's own
functions (:func:`flowport.store.connections.find`), which word the error.
"""

from __future__ import annotations

import json
import sqlite3
import uuid as _uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowport.store.location import SQLITE_BUSY_MS

__all__ = ["StoredConnection", "read_connection"]

_COLUMNS = (
    "id, uuid, name, vendor, host, port, params, ssl, credential_type, username, secret, is_global, "
    "created_at, updated_at"
)


@dataclass(frozen=True)
class StoredConnection:
    """A row of the ``connections`` table, typed as :class:`flowport.store.tables.Connection` reads it."""

    id: int
    uuid: _uuid.UUID
    name: str
    vendor: str
    host: str | None
    port: int | None
    params: dict[str, Any]
    ssl: bool
    credential_type: str
    username: str | None
    secret: bytes | None
    is_global: bool
    created_at: datetime
    updated_at: datetime

    def __repr__(self) -> str:
        # Never the secret blob: a repr ends up in logs and tracebacks.
        return f"StoredConnection(id={self.id!r}, name={self.name!r}, vendor={self.vendor!r})"


def _timestamp(value: str) -> datetime:
    # Stored as naive UTC (see UTCDateTime); read back aware, as the model does.
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _row(row: sqlite3.Row) -> StoredConnection:
    return StoredConnection(
        id=int(row["id"]),
        uuid=_uuid.UUID(hex=row["uuid"]),
        name=row["name"],
        vendor=row["vendor"],
        host=row["host"],
        port=row["port"],
        params=json.loads(row["params"]) if row["params"] is not None else {},
        ssl=bool(row["ssl"]),
        credential_type=row["credential_type"],
        username=row["username"],
        secret=bytes(row["secret"]) if row["secret"] is not None else None,
        is_global=bool(row["is_global"]),
        created_at=_timestamp(row["created_at"]),
        updated_at=_timestamp(row["updated_at"]),
    )


def _one(con: sqlite3.Connection, where: str, value: object) -> StoredConnection | None:
    found = con.execute(f"SELECT {_COLUMNS} FROM connections WHERE {where} = ?", (value,)).fetchone()
    return _row(found) if found is not None else None


def read_connection(path: Path, ref: str, revision: str) -> StoredConnection | None:
    """The connection ``ref`` names (id, uuid or name, as ``store.connections.find`` reads it).

    None when the file is not a store at ``revision``, when no connection
    matches, or when anything about the read is unexpected: the caller then
    asks the store the normal way.
    """
    if not path.is_file():
        return None
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=SQLITE_BUSY_MS / 1000)
    except sqlite3.Error:
        return None
    con.row_factory = sqlite3.Row
    try:
        versions = [v for (v,) in con.execute("SELECT version_num FROM alembic_version").fetchall()]
        if versions != [revision]:
            return None
        text = ref.strip()
        row: StoredConnection | None = None
        # The same order as find(): an id, else a uuid, else the name (which may look like either).
        if text.isascii() and text.isdigit() and int(text) < 2**31:
            row = _one(con, "id", int(text))
        else:
            try:
                row = _one(con, "uuid", _uuid.UUID(text).hex)
            except ValueError:
                row = None
        return row if row is not None else _one(con, "name", ref)
    except (sqlite3.Error, ValueError, TypeError):
        return None
    finally:
        con.close()
