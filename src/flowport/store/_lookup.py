"""Lookups and writes shared by the repositories (get by id or query, flush, update checks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flowport.errors import Conflict, NotFound, ValidationFailed
from flowport.store._paging import page
from flowport.store.tables import utcnow

__all__ = [
    "apply_changes",
    "check_fields",
    "clash_id",
    "delete_row",
    "flush_or_conflict",
    "get_or_404",
    "listed",
    "one_or_404",
    "stamps",
]

T = TypeVar("T")


def get_or_404(session: Session, model: type[T], row_id: int, what: str) -> T:
    """The ``model`` row with this id; NotFound ``No {what} with id {row_id}`` otherwise."""
    row = session.get(model, row_id)
    if row is None:
        raise NotFound(f"No {what} with id {row_id}")
    return row


def one_or_404(session: Session, query: Select[T], message: str) -> T:
    """The first row ``query`` selects; NotFound(``message``) when there is none."""
    row = session.scalar(query)
    if row is None:
        raise NotFound(message)
    return row


def clash_id(session: Session, model: Any, condition: Any, exclude_id: int | None) -> Any:
    """The id of a ``model`` row meeting ``condition`` other than ``exclude_id``, or None."""
    query = select(model.id).where(condition)
    if exclude_id is not None:
        query = query.where(model.id != exclude_id)
    return session.scalar(query)


def listed(session: Session, query: Select[Any], *, limit: int | None, offset: int) -> Sequence[Any]:
    """The rows of ``query``, ``limit`` of them (all when None) from ``offset``."""
    return session.scalars(page(query, limit=limit, offset=offset)).all()


def flush_or_conflict(session: Session, message: str) -> None:
    """Flush; Conflict(``message``) on an integrity error.

    Raised outside the except block, so the driver's error (which quotes the
    row's values, secrets included) is not kept as ``__context__``.
    """
    try:
        session.flush()
        return
    except IntegrityError:
        pass
    raise Conflict(message)


def apply_changes(row: Any, changes: Mapping[str, Any], *, copied: str | None = None) -> None:
    """Set ``changes`` on ``row`` (``copied`` as a copy of its mapping); ``updated_at`` becomes now."""
    for key, value in changes.items():
        setattr(row, key, dict(value) if key == copied else value)
    row.updated_at = utcnow()


def check_fields(changes: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    """ValidationFailed naming the fields of ``changes`` not in ``allowed``."""
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise ValidationFailed(f"Cannot update {what} field(s): {', '.join(unknown)}")


def stamps(now: datetime, creator_id: int | None) -> dict[str, Any]:
    """The creation columns of a new row: both times ``now``, created and updated by ``creator_id``."""
    return {"created_at": now, "updated_at": now, "creator_id": creator_id, "updater_id": creator_id}


def delete_row(session: Session, row: Any) -> None:
    """Delete ``row`` and flush."""
    session.delete(row)
    session.flush()
