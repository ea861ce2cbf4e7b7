"""The bodies of ``/v4/webhooks`` and the events a webhook may subscribe to."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowport.services.schemas.common import Name, ReadModel, Ref, Timestamp

__all__ = [
    "EVENTS",
    "PATTERNS",
    "STATUS_EVENTS",
    "DeliveryRead",
    "WebhookChanges",
    "WebhookCreate",
    "WebhookRead",
]

STATUS_EVENTS = {
    "Pending": "queued",
    "InProgress": "started",
    "Complete": "succeeded",
    "Failed": "failed",
    "Canceled": "canceled",
}
EVENTS = tuple(f"{kind}.{name}" for kind in ("job", "pipeline") for name in STATUS_EVENTS.values())
PATTERNS = frozenset({"*", "job.*", "pipeline.*"})

# What _Write's validators accept, as the document states it: urlsplit's scheme and host.
_URL_SCHEMA: dict[str, Any] = {"pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\s\[\]\x00]+([/?#][^\x00]*)?$"}
_EVENTS_SCHEMA: dict[str, Any] = {"items": {"type": "string", "enum": [*EVENTS, *sorted(PATTERNS)]}}


class _Write(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("url", check_fields=False)
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    @field_validator("events", check_fields=False)
    @classmethod
    def _known_events(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        unknown = [e for e in value if e not in EVENTS and e not in PATTERNS]
        if unknown:
            raise ValueError(
                f"unknown event(s) {', '.join(unknown)}; expected {', '.join(EVENTS)} or job.*, pipeline.*, *"
            )
        return list(dict.fromkeys(value))


class WebhookCreate(_Write):
    """The body of ``POST /v4/webhooks``."""

    name: Name
    description: str = Field(default="", max_length=10_000)
    url: str = Field(max_length=2048, json_schema_extra=_URL_SCHEMA)
    events: list[str] = Field(min_length=1, json_schema_extra=_EVENTS_SCHEMA)
    secret: str | None = Field(default=None, min_length=16, max_length=512, description="Generated if absent")
    enabled: bool = True


class WebhookChanges(_Write):
    """The body of ``PATCH /v4/webhooks/{id}``: only the fields given change."""

    name: Name | None = None
    description: str | None = Field(default=None, max_length=10_000)
    url: str | None = Field(default=None, max_length=2048, json_schema_extra=_URL_SCHEMA)
    events: list[str] | None = Field(default=None, min_length=1, json_schema_extra=_EVENTS_SCHEMA)
    secret: str | None = Field(default=None, min_length=16, max_length=512)
    enabled: bool | None = None


# -- what the services answer --------------------------------------------------------------


class WebhookRead(ReadModel):
    """A subscription: never its secret."""

    id: int
    name: str
    description: str
    url: str
    events: list[str]
    enabled: bool
    created_at: Timestamp
    updated_at: Timestamp
    creator: Ref | None
    updater: Ref | None


class DeliveryRead(ReadModel):
    """One delivery of a webhook's log."""

    id: int
    webhook: Ref | None
    event: str
    event_id: int | None
    status: str
    attempts: int
    next_attempt_at: Timestamp
    last_status_code: int | None
    last_error: str | None
    attempt_log: list[dict[str, Any]]
    payload: dict[str, Any]
    created_at: Timestamp
    delivered_at: Timestamp
