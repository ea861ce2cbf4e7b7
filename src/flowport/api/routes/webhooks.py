"""``/v4/webhooks``: signed POSTs of job and pipeline events, and their delivery log (admins only).

The secret is write-only: generated when not given and shown once, in the
answer that creates the webhook. See :mod:`flowport.services.webhooks` for
the events, the headers and the signature.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from flowport.api.deps import Admin, AuthenticatedRoute, Id, PageQuery
from flowport.api.errors import ERROR_RESPONSES
from flowport.api.presenters import answers, page
from flowport.services import webhooks
from flowport.services.schemas.webhooks import DeliveryRead, WebhookChanges, WebhookCreate, WebhookRead

__all__ = ["router"]

router = APIRouter(prefix="/v4", tags=["webhooks"], route_class=AuthenticatedRoute, responses=ERROR_RESPONSES)


@router.get("/webhooks", responses=answers(page(WebhookRead)))
def list_webhooks(user: Admin) -> dict[str, Any]:
    """Every webhook (never a secret)."""
    return webhooks.list_webhooks(user=user)


@router.post("/webhooks", status_code=201)
def create_webhook(user: Admin, body: WebhookCreate) -> dict[str, Any]:
    """Create a webhook; the answer holds its `secret`, this once only."""
    return webhooks.create_webhook(body, user=user)


@router.get("/webhooks/{webhook_id}", responses=answers(WebhookRead))
def get_webhook(user: Admin, webhook_id: Id) -> dict[str, Any]:
    """One webhook."""
    return webhooks.get_webhook(webhook_id, user=user)


@router.patch("/webhooks/{webhook_id}", responses=answers(WebhookRead))
def update_webhook(user: Admin, webhook_id: Id, body: WebhookChanges) -> dict[str, Any]:
    """Change a webhook (a new secret is stored, never shown)."""
    return webhooks.update_webhook(webhook_id, body, user=user)


@router.delete("/webhooks/{webhook_id}", status_code=204, response_class=Response)
def delete_webhook(user: Admin, webhook_id: Id) -> Response:
    """Delete a webhook and its delivery log."""
    webhooks.delete_webhook(webhook_id, user=user)
    return Response(status_code=204)


@router.post("/webhooks/{webhook_id}/test", status_code=201, responses=answers(DeliveryRead, 201))
def test_webhook(user: Admin, webhook_id: Id) -> dict[str, Any]:
    """Queue a `ping` delivery (sent within the dispatcher's next round)."""
    return webhooks.test_webhook(webhook_id, user=user)


@router.get("/webhooks/{webhook_id}/deliveries", responses=answers(page(DeliveryRead)))
def list_deliveries(user: Admin, webhook_id: Id, page: PageQuery) -> dict[str, Any]:
    """The delivery log, newest first: event, status, tries, last status code or error, payload."""
    return webhooks.deliveries(
        webhook_id, user=user, limit=page.limit, offset=page.offset, no_limit=page.no_limit
    )


@router.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", responses=answers(DeliveryRead))
def redeliver(user: Admin, webhook_id: Id, delivery_id: Id) -> dict[str, Any]:
    """Send a delivery again."""
    return webhooks.redeliver(webhook_id, delivery_id, user=user)
