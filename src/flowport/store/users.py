"""Repository functions for users.

Every function takes the caller's :class:`~sqlalchemy.orm.Session` and only
flushes: the service owns the transaction. ``password_hash`` is stored as
given; hashing belongs to :mod:`flowport.services.auth`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from flowport.errors import Conflict
from flowport.store import _lookup
from flowport.store._paging import count_of
from flowport.store.tables import User, utcnow

__all__ = ["UPDATABLE_FIELDS", "count", "create", "delete", "get_by_id", "get_by_name", "list_", "update"]

UPDATABLE_FIELDS = frozenset({"name", "password_hash", "role"})


def _check_unique(session: Session, name: str, exclude_id: int | None) -> None:
    # Checked first for a message naming the clash; the unique constraint
    # still catches a concurrent writer (see _flush).
    if _lookup.clash_id(session, User, User.name == name, exclude_id) is not None:
        raise Conflict(f"A user named '{name}' already exists")


def _flush(session: Session, name: str) -> None:
    # Our own message, raised outside the except block: the driver's quotes
    # the row's values (the password hash included).
    _lookup.flush_or_conflict(session, f"A user named '{name}' already exists")


def create(session: Session, *, name: str, password_hash: str, role: str) -> User:
    """Insert a user; Conflict when the name is taken."""
    _check_unique(session, name, None)
    now = utcnow()
    row = User(name=name, password_hash=password_hash, role=role, created_at=now, updated_at=now)
    session.add(row)
    _flush(session, name)
    return row


def get_by_id(session: Session, user_id: int) -> User:
    """The user with this id; NotFound otherwise."""
    return _lookup.get_or_404(session, User, user_id, "user")


def get_by_name(session: Session, name: str) -> User:
    """The user with this exact name; NotFound otherwise."""
    return _lookup.one_or_404(session, select(User).where(User.name == name), f"No user named '{name}'")


def list_(session: Session, *, limit: int | None = None, offset: int = 0) -> Sequence[User]:
    """Users in id order, ``limit`` of them (all when None) from ``offset``."""
    return _lookup.listed(session, select(User).order_by(User.id), limit=limit, offset=offset)


def count(session: Session) -> int:
    """How many users exist."""
    return count_of(session, select(User.id))


def update(session: Session, row: User | int, changes: Mapping[str, Any]) -> User:
    """Apply ``changes`` (name, password_hash, role); ``updated_at`` becomes now."""
    _lookup.check_fields(changes, UPDATABLE_FIELDS, "user")
    if isinstance(row, int):
        row = get_by_id(session, row)
    if "name" in changes and changes["name"] != row.name:
        _check_unique(session, changes["name"], row.id)
    _lookup.apply_changes(row, changes)
    _flush(session, row.name)
    return row


def delete(session: Session, row: User | int) -> None:
    """Delete a user and (by cascade) their API tokens."""
    if isinstance(row, int):
        row = get_by_id(session, row)
    _lookup.delete_row(session, row)
