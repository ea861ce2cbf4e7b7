"""Repository functions for users.

Every function takes the caller's :class:`~sqlalchemy.orm.Session` and only
flushes: the service owns the transaction. ``password_hash`` is stored as
given; hashing belongs to :mod:`flowport.services.auth`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flowport.errors import Conflict, NotFound, ValidationFailed
from flowport.store._paging import count_of, page
from flowport.store.tables import User, utcnow

__all__ = ["UPDATABLE_FIELDS", "count", "create", "delete", "get_by_id", "get_by_name", "list_", "update"]

UPDATABLE_FIELDS = frozenset({"name", "password_hash", "role"})


def _check_unique(session: Session, name: str, exclude_id: int | None) -> None:
    # Checked first for a message naming the clash; the unique constraint
    # still catches a concurrent writer (see _flush).
    query = select(User.id).where(User.name == name)
    if exclude_id is not None:
        query = query.where(User.id != exclude_id)
    if session.scalar(query) is not None:
        raise Conflict(f"A user named '{name}' already exists")


def _flush(session: Session, name: str) -> None:
    try:
        session.flush()
        return
    except IntegrityError:
        pass
    # Our own message, raised outside the except block: the driver's quotes
    # the row's values (the password hash included).
    raise Conflict(f"A user named '{name}' already exists")


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
    row = session.get(User, user_id)
    if row is None:
        raise NotFound(f"No user with id {user_id}")
    return row


def get_by_name(session: Session, name: str) -> User:
    """The user with this exact name; NotFound otherwise."""
    row = session.scalar(select(User).where(User.name == name))
    if row is None:
        raise NotFound(f"No user named '{name}'")
    return row


def list_(session: Session, *, limit: int | None = None, offset: int = 0) -> Sequence[User]:
    """Users in id order, ``limit`` of them (all when None) from ``offset``."""
    return session.scalars(page(select(User).order_by(User.id), limit=limit, offset=offset)).all()


def count(session: Session) -> int:
    """How many users exist."""
    return count_of(session, select(User.id))


def update(session: Session, row: User | int, changes: Mapping[str, Any]) -> User:
    """Apply ``changes`` (name, password_hash, role); ``updated_at`` becomes now."""
    unknown = sorted(set(changes) - UPDATABLE_FIELDS)
    if unknown:
        raise ValidationFailed(f"Cannot update user field(s): {', '.join(unknown)}")
    if isinstance(row, int):
        row = get_by_id(session, row)
    if "name" in changes and changes["name"] != row.name:
        _check_unique(session, changes["name"], row.id)
    for key, value in changes.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    _flush(session, row.name)
    return row


def delete(session: Session, row: User | int) -> None:
    """Delete a user and (by cascade) their API tokens."""
    if isinstance(row, int):
        row = get_by_id(session, row)
    session.delete(row)
    session.flush()
