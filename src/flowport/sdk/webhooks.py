"""Webhooks on the server (admins): signed POSTs of job and pipeline events, and their delivery log.

>>> hook = client.webhooks.create("ops", url="https://ops.example.com/flowport", events=["job.failed"])
>>> hook.secret            # shown this once: keep it to verify Flowport-Signature
>>> hook.test(); hook.deliveries()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowport.sdk.client import Client

__all__ = ["Webhook", "Webhooks"]


class Webhook:
    """One webhook subscription (``secret`` only on the object ``create`` returned)."""

    def __init__(self, client: Client, record: dict[str, Any]) -> None:
        self._client = client
        self.record = dict(record)
        #: The signing secret, only right after creation (the server never shows it again).
        self.secret: str | None = self.record.pop("secret", None)

    def __repr__(self) -> str:
        return f"Webhook(id={self.webhook_id!r}, name={self.record.get('name')!r})"

    @property
    def webhook_id(self) -> int:
        """The webhook's id."""
        return int(self.record["id"])

    def update(self, **changes: Any) -> Webhook:
        """Change ``url``, ``events``, ``enabled``, ``secret`` (stored, never shown), ``name`` ..."""
        self.record = self._client.request("PATCH", f"/v4/webhooks/{self.webhook_id}", json=changes).json()
        return self

    def test(self) -> dict[str, Any]:
        """Queue a ``ping`` delivery; returns it."""
        result: dict[str, Any] = self._client.request("POST", f"/v4/webhooks/{self.webhook_id}/test").json()
        return result

    def deliveries(self) -> list[dict[str, Any]]:
        """The delivery log, newest first."""
        return self._client.list_all(f"/v4/webhooks/{self.webhook_id}/deliveries")

    def redeliver(self, delivery_id: int) -> dict[str, Any]:
        """Send a delivery again."""
        path = f"/v4/webhooks/{self.webhook_id}/deliveries/{delivery_id}/redeliver"
        result: dict[str, Any] = self._client.request("POST", path).json()
        return result

    def delete(self) -> None:
        """Delete the webhook and its delivery log."""
        self._client.request("DELETE", f"/v4/webhooks/{self.webhook_id}")


class Webhooks:
    """The server's webhooks (``client.webhooks``)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        name: str,
        *,
        url: str,
        events: list[str],
        secret: str | None = None,
        description: str = "",
        enabled: bool = True,
    ) -> Webhook:
        """Subscribe ``url`` to ``events`` (``job.failed``, ``pipeline.*``, ``*`` ...)."""
        body: dict[str, Any] = {
            "name": name,
            "url": url,
            "events": list(events),
            "description": description,
            "enabled": enabled,
        }
        if secret is not None:
            body["secret"] = secret
        return Webhook(self._client, self._client.request("POST", "/v4/webhooks", json=body).json())

    def get(self, webhook_id: int | None = None, *, name: str | None = None) -> Webhook:
        """The webhook with this id or name (NotFound otherwise)."""
        from flowport.errors import NotFound

        if webhook_id is not None:
            return Webhook(self._client, self._client.get_json(f"/v4/webhooks/{webhook_id}"))
        for record in self._client.list_all("/v4/webhooks"):
            if record["name"] == name:
                return Webhook(self._client, record)
        raise NotFound(f"No webhook named '{name}'")

    def list(self) -> list[Webhook]:
        """Every webhook."""
        return [Webhook(self._client, r) for r in self._client.list_all("/v4/webhooks")]
