"""The instance row: which Flowport this metadata database belongs to."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from flowport.errors import NotFound
from flowport.store.tables import Instance

__all__ = ["ensure", "get"]


def get(session: Session) -> Instance:
    """The instance row; NotFound when ``flowport init`` has not written it yet."""
    row = session.scalar(select(Instance).where(Instance.id == 1))
    if row is None:
        raise NotFound("This Flowport instance has no identity yet: run `flowport init`")
    return row


def ensure(session: Session) -> Instance:
    """The instance row, created with a new uuid the first time."""
    row = session.scalar(select(Instance).where(Instance.id == 1))
    if row is None:
        row = Instance(id=1)
        session.add(row)
        session.flush()
    return row
