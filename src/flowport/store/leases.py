"""Named leases in the metadata store: one holder at a time until the lease expires.

The active scheduler holds the ``scheduler`` lease and renews it every tick;
another process takes it over only once it has expired. Taking and renewing
are one compare-and-set ``UPDATE`` (or the ``INSERT`` of the first holder),
so two processes can never both believe they hold it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flowport.store.tables import Lease

__all__ = ["acquire", "holder_of", "release"]


def acquire(session: Session, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease ``name`` for ``holder`` until ``now + ttl``; False when another holds it."""
    renewed = session.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
        .values(holder=holder, expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    if getattr(renewed, "rowcount", 0):
        return True
    if session.get(Lease, name) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(Lease(name=name, holder=holder, acquired_at=now, expires_at=now + ttl))
    except IntegrityError:
        return False  # another process inserted it first
    return True


def holder_of(session: Session, name: str) -> Lease | None:
    """The lease ``name`` (holder and expiry), or None when nobody ever took it."""
    return session.get(Lease, name)


def release(session: Session, name: str, holder: str) -> None:
    """Give the lease up (a clean shutdown), if ``holder`` holds it."""
    session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))
