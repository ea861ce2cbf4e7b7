"""Repository functions for API tokens.

Only the SHA-256 of a token is stored (``token_hash``); the clear token is
never given to this module. Functions only flush: the service owns the
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from flowport.store import _lookup
from flowport.store._paging import count_of
from flowport.store.tables import ApiToken, utcnow

__all__ = ["count", "create", "get_by_hash", "get_by_id", "list_", "revoke", "touch"]


def create(session: Session, *, user_id: int, name: str, token_hash: str, prefix: str) -> ApiToken:
    """Insert a token record; Conflict in the (astronomically unlikely) case of a hash clash."""
    row = ApiToken(user_id=user_id, name=name, token_hash=token_hash, prefix=prefix, created_at=utcnow())
    session.add(row)
    _lookup.flush_or_conflict(session, "Could not store the new token; create it again")
    return row


def get_by_id(session: Session, token_id: int) -> ApiToken:
    """The token record with this id; NotFound otherwise."""
    return _lookup.get_or_404(session, ApiToken, token_id, "API token")


def get_by_hash(session: Session, token_hash: str) -> ApiToken | None:
    """The token record whose hash is ``token_hash``, or None (revoked ones included)."""
    return session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))


def _query(user_id: int | None, include_revoked: bool) -> Select[Any]:
    query = select(ApiToken)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    return query


def list_(
    session: Session,
    *,
    user_id: int | None = None,
    include_revoked: bool = True,
    limit: int | None = None,
    offset: int = 0,
) -> Sequence[ApiToken]:
    """Token records in id order, of one user or of everyone."""
    query = _query(user_id, include_revoked).order_by(ApiToken.id)
    return _lookup.listed(session, query, limit=limit, offset=offset)


def count(session: Session, *, user_id: int | None = None, include_revoked: bool = True) -> int:
    """How many token records :func:`list_` would return without paging."""
    return count_of(session, _query(user_id, include_revoked))


def revoke(session: Session, row: ApiToken, when: datetime | None = None) -> ApiToken:
    """Mark a token revoked (once: a second revocation keeps the first time)."""
    if row.revoked_at is None:
        row.revoked_at = when or utcnow()
        session.flush()
    return row


def touch(session: Session, row: ApiToken, when: datetime) -> None:
    """Record that the token was just used."""
    row.last_used_at = when
    session.flush()
