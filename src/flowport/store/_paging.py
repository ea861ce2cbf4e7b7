"""Limit/offset paging shared by the repositories' ``list_`` functions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from flowport.errors import ValidationFailed

__all__ = ["count_of", "page"]


def page(query: Select[Any], *, limit: int | None, offset: int) -> Select[Any]:
    """``query`` limited to ``limit`` rows (all when None) from ``offset``; ValidationFailed if negative."""
    if limit is not None and limit < 1:
        raise ValidationFailed(f"limit must be at least 1, got {limit}")
    if offset < 0:
        raise ValidationFailed(f"offset must not be negative, got {offset}")
    query = query.offset(offset)
    return query.limit(limit) if limit is not None else query


def count_of(session: Session, query: Select[Any]) -> int:
    """How many rows ``query`` (without its ordering) returns."""
    subquery = query.order_by(None).subquery()
    return int(session.scalar(select(func.count()).select_from(subquery)) or 0)
