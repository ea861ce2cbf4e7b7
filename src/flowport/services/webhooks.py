"""Webhooks: signed POSTs of job and pipeline events, fed from the ``job_events`` outbox, never lost.

A subscription has a URL, the events it wants and a secret (generated when
not given, shown once in the answer that creates it, encrypted at rest with
the instance's key, never returned again or logged). Event names:

=====================  ===========================
job status             event (``pipeline.*`` for a pipeline run)
=====================  ===========================
Pending                ``job.queued``
InProgress             ``job.started``
Complete               ``job.succeeded``
Failed                 ``job.failed``
Canceled               ``job.canceled``
=====================  ===========================

Patterns ``job.*``, ``pipeline.*`` and ``*`` match several. The
:class:`Dispatcher` reads the outbox after its cursor and, in one
transaction, queues one delivery per matching subscription and moves the
cursor (compare-and-set): a restart neither loses nor repeats an event, and
two dispatchers never queue one twice (deliveries are unique per
subscription and event). Events are handed out in id order without
skipping one that commits late (see :func:`_settled`). It then sends due
deliveries, each claimed by compare-and-set, as ``POST`` with the JSON payload and the headers
``Flowport-Event``, ``Flowport-Delivery``, ``Flowport-Timestamp`` (Unix
seconds) and ``Flowport-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``.
A 2xx answer delivers it; anything else is retried after 10 s, 20 s, 40 s ...
(at most 1 h) and after :data:`MAX_ATTEMPTS` tries it is ``failed``; every
try is in the delivery log. A disabled subscription gets no new events and
its pending deliveries wait until it is enabled again.

Only admins manage webhooks, read them included: a subscription sends job
metadata to any URL it names, and URLs often carry a token.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import logging
import secrets as _secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from flowport import __version__
from flowport.connections.secrets import decrypt_secrets, encrypt_secrets
from flowport.errors import Conflict, NotFound, SecretKeyError
from flowport.services.auth import User, require_role
from flowport.services.instance import page_bounds, ref, timestamp, transaction
from flowport.services.schemas.common import parse_body
from flowport.services.schemas.webhooks import (
    EVENTS,
    STATUS_EVENTS,
    DeliveryRead,
    WebhookChanges,
    WebhookCreate,
    WebhookRead,
)
from flowport.services.settings import settings
from flowport.store import webhooks as _repo
from flowport.store.tables import JobEvent, JobGroup, WebhookDelivery, WebhookRecord, utcnow

__all__ = [
    "DISPATCH_INTERVAL",
    "EVENTS",
    "MAX_ATTEMPTS",
    "Answer",
    "Deliver",
    "Dispatcher",
    "WebhookChanges",
    "WebhookCreate",
    "create_webhook",
    "delete_webhook",
    "deliveries",
    "event_name",
    "get_webhook",
    "list_webhooks",
    "redeliver",
    "retry_delay",
    "sign",
    "test_webhook",
    "update_webhook",
]

_log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
#: How often ``flowport server`` runs a dispatcher round.
DISPATCH_INTERVAL = 2.0
_FIRST_RETRY = 10.0
_MAX_RETRY = 3600.0
#: How long a claimed delivery is kept from other dispatchers while it is being sent.
_CLAIM = timedelta(seconds=60)
#: How long a gap in the outbox ids holds back later events (a transaction that took the id may commit).
_SETTLE = timedelta(seconds=60)
_CURSOR = "webhooks"
_TIMEOUT = 10.0

# -- shaping ---------------------------------------------------------------------------


def webhook_dict(row: WebhookRecord) -> dict[str, Any]:
    """A subscription as the API shows it: never its secret."""
    return WebhookRead.shape(
        {
            "id": row.id,
            "name": row.name,
            "description": row.description,
            "url": row.url,
            "events": list(row.events or []),
            "enabled": row.enabled,
            "createdAt": timestamp(row.created_at),
            "updatedAt": timestamp(row.updated_at),
            "creator": ref(row.creator_id),
            "updater": ref(row.updater_id),
        }
    )


def delivery_dict(row: WebhookDelivery) -> dict[str, Any]:
    """One delivery of the log: event, status, tries, the last answer."""
    return DeliveryRead.shape(
        {
            "id": row.id,
            "webhook": ref(row.webhook_id),
            "event": row.event_name,
            "eventId": row.event_id,
            "status": row.status,
            "attempts": row.attempts,
            "nextAttemptAt": timestamp(row.next_attempt_at) if row.status == "pending" else None,
            "lastStatusCode": row.last_status_code,
            "lastError": row.last_error,
            "attemptLog": list(row.attempt_log or []),
            "payload": dict(row.payload or {}),
            "createdAt": timestamp(row.created_at),
            "deliveredAt": timestamp(row.delivered_at),
        }
    )


def event_name(group: JobGroup, to_status: str) -> str | None:
    """The webhook event of a job group's move to ``to_status`` (None for a move to Created)."""
    name = STATUS_EVENTS.get(to_status)
    if name is None:
        return None
    return f"{'pipeline' if group.pipeline_id is not None else 'job'}.{name}"


def _matches(events: list[str], name: str) -> bool:
    return any(pattern == name or fnmatch.fnmatchcase(name, pattern) for pattern in events)


def _payload(event_id: int | None, name: str, at: datetime, group: JobGroup | None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": event_id, "event": name, "occurredAt": timestamp(at)}
    if group is not None:
        body["jobGroup"] = {
            "id": group.id,
            "status": group.status,
            "flowId": group.flow_id,
            "deploymentId": group.deployment_id,
            "pipelineId": group.pipeline_id,
            "scheduleId": group.schedule_id,
            "logicalDate": timestamp(group.logical_date),
            "triggeredBy": group.triggered_by,
            "error": group.error,
        }
    return body


def sign(secret: str, stamp: int, body: bytes) -> str:
    """The ``Flowport-Signature`` header's value: ``v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``."""
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


# -- subscriptions ------------------------------------------------------------------------


def _encrypted(secret: str) -> bytes:
    return encrypt_secrets({"secret": secret}, home=settings().home)


def create_webhook(body: WebhookCreate | Mapping[str, Any], *, user: User | None = None) -> dict[str, Any]:
    """Store a subscription; the answer holds its ``secret`` (this once only).

    Raises:
        ValidationFailed: a bad URL, unknown events, a short secret, unknown keys.
        Conflict: the name is taken. Forbidden: not an admin.
    """
    require_role(user, "admin")
    parsed: WebhookCreate = parse_body(WebhookCreate, body, "webhook")
    secret = parsed.secret or _secrets.token_urlsafe(32)
    with transaction() as session:
        row = _repo.create(
            session,
            {
                "name": parsed.name,
                "description": parsed.description,
                "url": parsed.url,
                "events": parsed.events,
                "secret": _encrypted(secret),
                "enabled": parsed.enabled,
            },
            user.id if user else None,
        )
        _log.info("Webhook '%s' (id %s) created for %s", row.name, row.id, ", ".join(parsed.events))
        return {**webhook_dict(row), "secret": secret}


def list_webhooks(*, user: User | None = None) -> dict[str, Any]:
    """Every subscription (admins only: URLs may carry tokens)."""
    require_role(user, "admin")
    with transaction() as session:
        rows = _repo.list_(session)
        return {"data": [webhook_dict(r) for r in rows], "count": len(rows)}


def get_webhook(webhook_id: int, *, user: User | None = None) -> dict[str, Any]:
    """One subscription; NotFound otherwise."""
    require_role(user, "admin")
    with transaction() as session:
        return webhook_dict(_repo.get_by_id(session, webhook_id))


def update_webhook(
    webhook_id: int, changes: WebhookChanges | Mapping[str, Any], *, user: User | None = None
) -> dict[str, Any]:
    """Change a subscription (a new ``secret`` is stored encrypted and not shown)."""
    require_role(user, "admin")
    parsed: WebhookChanges = parse_body(WebhookChanges, changes, "webhook change")
    values = {k: getattr(parsed, k) for k in parsed.model_fields_set if getattr(parsed, k) is not None}
    if "secret" in values:
        values["secret"] = _encrypted(values["secret"])
    with transaction() as session:
        row = _repo.update_webhook(
            session, _repo.get_by_id(session, webhook_id), values, user.id if user else None
        )
        return webhook_dict(row)


def delete_webhook(webhook_id: int, *, user: User | None = None) -> None:
    """Delete a subscription and its delivery log."""
    require_role(user, "admin")
    with transaction() as session:
        _repo.delete_webhook(session, _repo.get_by_id(session, webhook_id))


def _sending(row: WebhookRecord) -> WebhookRecord:
    # A disabled subscription's deliveries wait: queuing one there would look sent and never be.
    if not row.enabled:
        raise Conflict(f"Webhook '{row.name}' is disabled: enable it first (PATCH enabled: true)")
    return row


def test_webhook(webhook_id: int, *, user: User | None = None) -> dict[str, Any]:
    """Queue a ``ping`` delivery now (sent by the next dispatcher round); returns it.

    Raises:
        NotFound: no such webhook. Conflict: it is disabled.
    """
    require_role(user, "admin")
    now = utcnow()
    with transaction() as session:
        row = _sending(_repo.get_by_id(session, webhook_id))
        delivery = _repo.create_delivery(
            session,
            webhook_id=row.id,
            event_id=None,
            event_name="ping",
            payload=_payload(None, "ping", now, None),
            now=now,
        )
        return delivery_dict(delivery)


def deliveries(
    webhook_id: int,
    *,
    user: User | None = None,
    limit: int | None = None,
    offset: int | None = None,
    no_limit: bool = False,
) -> dict[str, Any]:
    """A subscription's delivery log, newest first."""
    require_role(user, "admin")
    row_limit, row_offset = page_bounds(limit, offset, no_limit)
    with transaction() as session:
        _repo.get_by_id(session, webhook_id)
        rows = _repo.deliveries_of(session, webhook_id, limit=row_limit, offset=row_offset)
        return {
            "data": [delivery_dict(r) for r in rows],
            "count": _repo.count_deliveries(session, webhook_id),
        }


def redeliver(webhook_id: int, delivery_id: int, *, user: User | None = None) -> dict[str, Any]:
    """Send a delivery again (pending, due now), whatever its status.

    A delivery that had failed gets one more try (its attempts go on counting).

    Raises:
        NotFound: no such webhook, or the delivery is not one of its. Conflict: it is disabled.
    """
    require_role(user, "admin")
    with transaction() as session:
        _sending(_repo.get_by_id(session, webhook_id))
        row = _repo.get_delivery(session, delivery_id)
        if row.webhook_id != webhook_id:
            raise NotFound(f"No delivery {delivery_id} of webhook {webhook_id}")
        row.status, row.next_attempt_at, row.updated_at = "pending", utcnow(), utcnow()
        session.flush()
        return delivery_dict(row)


# -- dispatching ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What a delivery attempt got: a status code, or the error that prevented one."""

    status_code: int | None
    error: str | None = None


#: Sends one request: ``deliver(url, body, headers)``. The default POSTs with httpx; tests pass their own.
Deliver = Callable[[str, bytes, Mapping[str, str]], Answer]


def _post(url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
    try:
        answer = httpx.post(
            url, content=body, headers=dict(headers), timeout=_TIMEOUT, follow_redirects=False
        )
    except httpx.HTTPError as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}"[:500])
    return Answer(answer.status_code)


def _settled(events: list[tuple[JobEvent, JobGroup]], seen: int, now: datetime, settle: timedelta) -> int:
    """How many of ``events`` (ids after ``seen``, in order) can be handed out without skipping one.

    Ids are taken when a transaction inserts the event but become visible when
    it commits, so on PostgreSQL and MariaDB a lower id may still appear after
    a higher one was read. A gap in the ids stops the batch until it fills, or
    until the event after it is ``settle`` old: then the gap is an id a
    rolled-back transaction (or a deleted job group) left unused for good.
    """
    expected = seen + 1
    for index, (event, _) in enumerate(events):
        if event.id != expected and now - event.at < settle:
            return index
        expected = event.id + 1
    return len(events)


class Dispatcher:
    """Turns outbox events into deliveries and sends the due ones (``run_once``; the server loops it).

    Delivery is at least once: a dispatcher that dies after sending, before
    recording the answer, leaves the delivery claimed for :data:`_CLAIM`; then
    it is sent again (receivers deduplicate on ``Flowport-Delivery``).

    Args:
        clock: the time source (tests pass a fake one).
        deliver: sends one request (tests may record or fail them); default: httpx POST.
        batch: events read per round, and deliveries sent per subscription per round, at most.
        settle: how long a gap in the outbox ids may hold back the events after it (see :func:`_settled`).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = utcnow,
        deliver: Deliver = _post,
        batch: int = 500,
        settle: timedelta = _SETTLE,
    ) -> None:
        self.clock = clock
        self.deliver = deliver
        self.batch = batch
        self.settle = settle

    def run_once(self, now: datetime | None = None) -> dict[str, int]:
        """One round: queue deliveries for new events, then send what is due. Returns counts.

        ``now`` fixes the round's time; otherwise the clock is read for each
        attempt, so a ``Flowport-Timestamp`` is never older than its request.
        """
        try:
            queued = self.queue(now or self.clock())
        except (_Raced, Conflict):
            queued = 0  # another dispatcher queued these events: nothing is lost, nothing doubled
        sent, delivered = self.send(now)
        return {"queued": queued, "sent": sent, "delivered": delivered}

    def queue(self, now: datetime) -> int:
        """Queue one delivery per new event and matching enabled subscription; move the cursor.

        Raises:
            _Raced, Conflict: another dispatcher moved the cursor or queued the events first
                (this transaction rolled back: nothing queued twice).
        """
        with transaction() as session:
            seen = _repo.cursor(session, _CURSOR)
            latest = _repo.latest_event_id(session)
            if latest <= seen:
                return 0
            hooks = _repo.enabled(session)
            if not hooks:
                # Nobody listens: skip the history, so a first subscription starts from now (and an
                # instance upgraded with a long job history does not walk through it).
                if not _repo.advance_cursor(session, _CURSOR, seen, latest):
                    raise _Raced()
                return 0
            events = _repo.events_after(session, seen, self.batch)
            events = events[: _settled(events, seen, now, self.settle)]
            if not events:
                return 0
            queued = 0
            for event, group in events:
                name = event_name(group, event.to_status)
                if name is None:
                    continue
                payload = _payload(event.id, name, event.at, group)
                payload["jobGroup"]["status"] = event.to_status
                for hook in hooks:
                    if _matches(list(hook.events or []), name):
                        _repo.create_delivery(
                            session,
                            webhook_id=hook.id,
                            event_id=event.id,
                            event_name=name,
                            payload=payload,
                            now=now,
                        )
                        queued += 1
            if not _repo.advance_cursor(session, _CURSOR, seen, events[-1][0].id):
                # Another dispatcher took these events: this transaction (its deliveries) rolls back.
                raise _Raced()
        return queued

    def send(self, now: datetime | None = None) -> tuple[int, int]:
        """Send every due delivery once; returns (sent, delivered).

        A subscription whose URL gave no answer (refused, timed out) gets no
        more tries this round: one dead receiver costs one timeout per round,
        not one per delivery, and the others' deliveries go on.
        """
        clock = self.clock if now is None else (lambda: now)
        with transaction() as session:
            due = [(d.id, d.webhook_id) for d in _repo.due(session, clock(), self.batch)]
        sent = delivered = 0
        unreachable: set[int] = set()
        for delivery_id, webhook_id in due:
            if webhook_id in unreachable:
                continue
            at = clock()
            request = self._claim(delivery_id, at)
            if request is None:
                continue
            if isinstance(request, Answer):
                answer = request  # nothing could be sent (the secret cannot be decrypted)
            else:
                answer = self.deliver(*request)
                sent += 1
            ok = answer.status_code is not None and 200 <= answer.status_code < 300
            delivered += ok
            if answer.status_code is None:
                unreachable.add(webhook_id)
            self._record(delivery_id, answer, ok, at)
        return sent, delivered

    def _claim(self, delivery_id: int, at: datetime) -> tuple[str, bytes, dict[str, str]] | Answer | None:
        """Take a due delivery for one attempt: the request to send, an Answer saying why none can be
        sent, or None when it is no longer due (another dispatcher has it, it was delivered, deleted)."""
        with transaction() as session:
            row = session.get(WebhookDelivery, delivery_id)
            if row is None or row.status != "pending" or row.next_attempt_at is None:
                return None
            if row.next_attempt_at > at or not _repo.claim(session, row, at + _CLAIM):
                return None
            hook = _repo.get_by_id(session, row.webhook_id)
            url, payload, event = hook.url, dict(row.payload or {}), row.event_name
            try:
                secret = decrypt_secrets(hook.secret, home=settings().home)["secret"].get_secret_value()
            except (SecretKeyError, KeyError):
                return Answer(
                    None,
                    "The webhook's secret cannot be decrypted (the instance's secret key changed): "
                    "set a new secret (PATCH /v4/webhooks/{id} with secret)",
                )
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        stamp = int(at.timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"Flowport-Webhooks/{__version__}",
            "Flowport-Event": event,
            "Flowport-Delivery": str(delivery_id),
            "Flowport-Timestamp": str(stamp),
            "Flowport-Signature": sign(secret, stamp, body),
        }
        return url, body, headers

    def _record(self, delivery_id: int, answer: Answer, ok: bool, now: datetime) -> None:
        with transaction() as session:
            row = session.get(WebhookDelivery, delivery_id)
            if row is None:
                return  # the webhook was deleted while its delivery was on the way
            row.attempts += 1
            row.attempt_log = [
                *(row.attempt_log or []),
                {"at": timestamp(now), "statusCode": answer.status_code, "error": answer.error},
            ]
            row.last_status_code, row.last_error, row.updated_at = answer.status_code, answer.error, now
            if ok:
                row.status, row.delivered_at, row.next_attempt_at = "delivered", now, None
            elif row.attempts >= MAX_ATTEMPTS:
                row.status, row.next_attempt_at = "failed", None
                _log.warning("Webhook delivery %s failed after %s attempts", delivery_id, row.attempts)
            else:
                row.next_attempt_at = now + timedelta(seconds=retry_delay(row.attempts))
            session.flush()


def retry_delay(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones: 10, 20, 40 ... at most an hour."""
    return float(min(_FIRST_RETRY * 2 ** (attempts - 1), _MAX_RETRY))


class _Raced(Exception):
    """Another dispatcher moved the outbox cursor first."""
