"""Repository functions for stored connections.

Every function takes the caller's :class:`~sqlalchemy.orm.Session` and only
flushes: the service owns the transaction. Values are stored as given; the
service validates them (vendor, port, params) and encrypts the secrets first.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from flowport.errors import Conflict, NotFound, ValidationFailed
from flowport.store import _lookup
from flowport.store._paging import count_of
from flowport.store.tables import Connection, utcnow

__all__ = [
    "UPDATABLE_FIELDS",
    "count",
    "create",
    "delete",
    "find",
    "get_by_id",
    "get_by_name",
    "get_by_uuid",
    "list_",
    "update",
]

# What update() may change; id, uuid and created_at are fixed for life (the
# uuid is what packages and import rules refer to).
UPDATABLE_FIELDS = frozenset(
    {
        "name",
        "description",
        "vendor",
        "host",
        "port",
        "params",
        "ssl",
        "credential_type",
        "username",
        "secret",
        "is_global",
        "updater_id",
    }
)


def _as_uuid(value: str | _uuid.UUID) -> _uuid.UUID | None:
    if isinstance(value, _uuid.UUID):
        return value
    try:
        return _uuid.UUID(value.strip())
    except ValueError:
        return None


def _check_unique(
    session: Session, *, name: str | None, uuid: _uuid.UUID | None, exclude_id: int | None
) -> None:
    # Checked before the INSERT/UPDATE for a message that names the clash;
    # the unique constraints still catch a concurrent writer (see _flush).
    if name is not None:
        clash = _lookup.clash_id(session, Connection, Connection.name == name, exclude_id)
        if clash is not None:
            raise Conflict(f"A connection named '{name}' already exists (id {clash})")
    if uuid is not None:
        clash = _lookup.clash_id(session, Connection, Connection.uuid == uuid, exclude_id)
        if clash is not None:
            raise Conflict(f"A connection with uuid {uuid} already exists (id {clash})")


def _flush(session: Session, what: str) -> None:
    # The driver's message quotes the row's values (the encrypted secret
    # included): our own message only, raised outside the except block so
    # that the IntegrityError is not kept as __context__ either.
    _lookup.flush_or_conflict(session, f"{what} conflicts with an existing connection (same name or uuid)")


def create(
    session: Session,
    *,
    name: str,
    vendor: str,
    uuid: _uuid.UUID | str | None = None,
    description: str = "",
    host: str | None = None,
    port: int | None = None,
    params: Mapping[str, Any] | None = None,
    ssl: bool = False,
    credential_type: str = "basic",
    username: str | None = None,
    secret: bytes | None = None,
    is_global: bool = False,
    credentials_shared: bool = True,
    disable_type_inference: bool = False,
    creator_id: int | None = None,
) -> Connection:
    """Insert a connection; Conflict when its name or uuid is taken.

    Args:
        secret: the already encrypted secrets (a Fernet token), or None.
        uuid: keeps a given uuid (e.g. when recreating a connection); a new one otherwise.
    """
    parsed_uuid = _uuid.uuid4() if uuid is None else _as_uuid(uuid)
    if parsed_uuid is None:
        raise ValidationFailed(f"'{uuid}' is not a UUID")
    _check_unique(session, name=name, uuid=parsed_uuid, exclude_id=None)
    now = utcnow()
    row = Connection(
        uuid=parsed_uuid,
        name=name,
        description=description,
        vendor=vendor,
        host=host,
        port=port,
        params=dict(params or {}),
        ssl=ssl,
        credential_type=credential_type,
        username=username,
        secret=secret,
        is_global=is_global,
        credentials_shared=credentials_shared,
        disable_type_inference=disable_type_inference,
        **_lookup.stamps(now, creator_id),
    )
    session.add(row)
    _flush(session, f"Connection '{name}'")
    return row


def get_by_id(session: Session, connection_id: int) -> Connection:
    """The connection with this id; NotFound otherwise."""
    return _lookup.get_or_404(session, Connection, connection_id, "connection")


def get_by_uuid(session: Session, connection_uuid: _uuid.UUID | str) -> Connection:
    """The connection with this uuid; NotFound otherwise."""
    parsed = _as_uuid(connection_uuid)
    row = session.scalar(select(Connection).where(Connection.uuid == parsed)) if parsed else None
    if row is None:
        raise NotFound(f"No connection with uuid {connection_uuid}")
    return row


def get_by_name(session: Session, name: str) -> Connection:
    """The connection with this exact name; NotFound otherwise."""
    return _lookup.one_or_404(
        session, select(Connection).where(Connection.name == name), f"No connection named '{name}'"
    )


def find(session: Session, ref: str | int) -> Connection:
    """The connection ``ref`` designates: an id, a uuid or a name.

    A name that looks like an id or a uuid still works: when no connection
    has that id or uuid, the name is tried.
    """
    if isinstance(ref, int):
        return get_by_id(session, ref)
    text = ref.strip()
    row: Connection | None = None
    # ASCII digits within the id column's range only: "²" is a digit to
    # isdigit() but not to int(), and a huge number overflows the database's integer.
    if text.isascii() and text.isdigit() and int(text) < 2**31:
        row = session.get(Connection, int(text))
    elif (parsed := _as_uuid(text)) is not None:
        row = session.scalar(select(Connection).where(Connection.uuid == parsed))
    if row is None:
        row = session.scalar(select(Connection).where(Connection.name == ref))
    if row is None:
        raise NotFound(f"No connection with id, uuid or name '{ref}'")
    return row


def list_(session: Session, *, limit: int | None = None, offset: int = 0) -> Sequence[Connection]:
    """Connections in id order (creation order), ``limit`` of them from ``offset``."""
    return _lookup.listed(session, select(Connection).order_by(Connection.id), limit=limit, offset=offset)


def count(session: Session, *, creator_id: int | None = None) -> int:
    """How many connections are stored (created by ``creator_id`` when given)."""
    query = select(Connection.id)
    if creator_id is not None:
        query = query.where(Connection.creator_id == creator_id)
    return count_of(session, query)


def update(session: Session, row: Connection | int, changes: Mapping[str, Any]) -> Connection:
    """Apply ``changes`` (column name → value) to a connection (row or id); Conflict on a taken name.

    ``updated_at`` is set to now. Unknown or fixed fields (id, uuid,
    created_at) are a ValidationFailed.
    """
    _lookup.check_fields(changes, UPDATABLE_FIELDS, "connection")
    if isinstance(row, int):
        row = get_by_id(session, row)
    if "name" in changes and changes["name"] != row.name:
        _check_unique(session, name=changes["name"], uuid=None, exclude_id=row.id)
    _lookup.apply_changes(row, changes, copied="params")
    _flush(session, f"Connection '{row.name}'")
    return row


def delete(session: Session, row: Connection | int) -> None:
    """Delete a connection (row or id); NotFound when the id does not exist."""
    if isinstance(row, int):
        row = get_by_id(session, row)
    _lookup.delete_row(session, row)
