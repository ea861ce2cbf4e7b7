"""Repository of webhook subscriptions, their deliveries and the outbox cursor (caller's transaction)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from flowport.store import _lookup
from flowport.store.tables import JobEvent, JobGroup, OutboxCursor, WebhookDelivery, WebhookRecord, utcnow

__all__ = [
    "advance_cursor",
    "claim",
    "count_deliveries",
    "create",
    "create_delivery",
    "cursor",
    "delete_webhook",
    "deliveries_of",
    "due",
    "enabled",
    "events_after",
    "get_by_id",
    "get_delivery",
    "latest_event_id",
    "list_",
    "update_webhook",
]

_FIELDS = frozenset({"name", "description", "url", "events", "secret", "enabled"})


def create(session: Session, values: Mapping[str, Any], creator_id: int | None) -> WebhookRecord:
    """Insert a subscription; Conflict when its name is taken."""
    row = WebhookRecord(**dict(values), **_lookup.stamps(utcnow(), creator_id))
    session.add(row)
    _lookup.flush_or_conflict(session, f"A webhook named '{values.get('name')}' already exists")
    return row


def get_by_id(session: Session, webhook_id: int) -> WebhookRecord:
    """The subscription with this id; NotFound otherwise."""
    return _lookup.get_or_404(session, WebhookRecord, webhook_id, "webhook")


def list_(session: Session) -> Sequence[WebhookRecord]:
    """Every subscription, by id."""
    return session.scalars(select(WebhookRecord).order_by(WebhookRecord.id)).all()


def enabled(session: Session) -> Sequence[WebhookRecord]:
    """The enabled subscriptions, by id."""
    return session.scalars(
        select(WebhookRecord).where(WebhookRecord.enabled.is_(True)).order_by(WebhookRecord.id)
    ).all()


def update_webhook(
    session: Session, row: WebhookRecord, changes: Mapping[str, Any], updater_id: int | None
) -> WebhookRecord:
    """Apply ``changes``; Conflict on a taken name."""
    _lookup.check_fields(changes, _FIELDS, "webhook")
    for key, value in changes.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    row.updater_id = updater_id
    _lookup.flush_or_conflict(session, f"A webhook named '{row.name}' already exists")
    return row


def delete_webhook(session: Session, row: WebhookRecord) -> None:
    """Delete a subscription and its delivery log."""
    _lookup.delete_row(session, row)


def cursor(session: Session, name: str) -> int:
    """The last outbox event id reader ``name`` processed (0 before the first)."""
    row = session.get(OutboxCursor, name)
    if row is None:
        session.add(OutboxCursor(name=name, last_event_id=0, updated_at=utcnow()))
        _lookup.flush_or_conflict(session, f"Outbox cursor '{name}' was created concurrently")
        return 0
    return int(row.last_event_id)


def advance_cursor(session: Session, name: str, seen: int, to: int) -> bool:
    """Move reader ``name``'s cursor from ``seen`` to ``to``; False when someone else moved it first."""
    moved = session.execute(
        update(OutboxCursor)
        .where(OutboxCursor.name == name, OutboxCursor.last_event_id == seen)
        .values(last_event_id=to, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return getattr(moved, "rowcount", 0) == 1


def latest_event_id(session: Session) -> int:
    """The newest outbox event's id (0 when there is none)."""
    return int(session.scalar(select(func.max(JobEvent.id))) or 0)


def events_after(session: Session, after: int, limit: int) -> list[tuple[JobEvent, JobGroup]]:
    """Outbox events after id ``after``, oldest first, each with its job group."""
    query = (
        select(JobEvent, JobGroup)
        .join(JobGroup, JobGroup.id == JobEvent.job_group_id)
        .where(JobEvent.id > after)
        .order_by(JobEvent.id)
        .limit(limit)
    )
    return [(event, group) for event, group in session.execute(query).all()]


def create_delivery(
    session: Session,
    *,
    webhook_id: int,
    event_id: int | None,
    event_name: str,
    payload: Mapping[str, Any],
    now: datetime,
) -> WebhookDelivery:
    """Queue one delivery (pending, due now)."""
    row = WebhookDelivery(
        webhook_id=webhook_id,
        event_id=event_id,
        event_name=event_name,
        payload=dict(payload),
        status="pending",
        attempts=0,
        next_attempt_at=now,
        attempt_log=[],
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    _lookup.flush_or_conflict(session, f"Event {event_id} is already queued for webhook {webhook_id}")
    return row


def due(session: Session, now: datetime, per_webhook: int) -> list[WebhookDelivery]:
    """Pending deliveries of enabled subscriptions whose next attempt is due, oldest first.

    At most ``per_webhook`` of each subscription, so a backlog at one URL
    never keeps the others' deliveries out of a round. A disabled
    subscription's deliveries wait until it is enabled again.
    """
    rows: list[WebhookDelivery] = []
    for hook in enabled(session):
        query = (
            select(WebhookDelivery)
            .where(
                WebhookDelivery.webhook_id == hook.id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at <= now,
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(per_webhook)
        )
        rows.extend(session.scalars(query))
    return rows


def claim(session: Session, delivery: WebhookDelivery, until: datetime) -> bool:
    """Take a due delivery for one attempt (compare-and-set on its next attempt time); False if taken."""
    moved = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery.id,
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at == delivery.next_attempt_at,
        )
        .values(next_attempt_at=until)
        .execution_options(synchronize_session=False)
    )
    return getattr(moved, "rowcount", 0) == 1


def get_delivery(session: Session, delivery_id: int) -> WebhookDelivery:
    """The delivery with this id; NotFound otherwise."""
    return _lookup.get_or_404(session, WebhookDelivery, delivery_id, "webhook delivery")


def deliveries_of(
    session: Session, webhook_id: int, *, limit: int | None, offset: int
) -> Sequence[WebhookDelivery]:
    """A subscription's deliveries, newest first."""
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.id.desc())
    )
    return _lookup.listed(session, query, limit=limit, offset=offset)


def count_deliveries(session: Session, webhook_id: int) -> int:
    """How many deliveries a subscription has."""
    query = select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    return int(session.scalar(query) or 0)
