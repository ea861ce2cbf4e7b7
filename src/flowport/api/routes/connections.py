"""``/v4/connections``: the seed's connection bodies; credentials are write-only.

Answers show the user name of a connection's credentials and never a
secret. The connection services leave roles to their callers (the CLI is a
trusted local operator): here reading takes any role, writing and testing
take an editor.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import field_validator

from flowport.api.deps import AuthenticatedRoute, CurrentUser, Editor, Id, PageQuery
from flowport.api.errors import ERROR_RESPONSES
from flowport.services import connections
from flowport.services.connections import ConnectionCreate, ConnectionUpdate, connection_public_dict
from flowport.services.instance import page_bounds

__all__ = ["ConnectionCreateBody", "ConnectionUpdateBody", "router"]

router = APIRouter(
    prefix="/v4/connections", tags=["connections"], route_class=AuthenticatedRoute, responses=ERROR_RESPONSES
)

# The stored user name is a 255-character column.
_MAX_USER = 255


def _user_names_fit(value: Any) -> Any:
    for index, item in enumerate(value or []):
        for key in ("user", "username"):
            text = item.get(key)
            if isinstance(text, str) and len(text) > _MAX_USER:
                raise ValueError(f"credentials[{index}].{key} is longer than {_MAX_USER} characters")
    return value


class ConnectionCreateBody(ConnectionCreate):
    """The body of ``POST /v4/connections`` (the seed's connection object)."""

    @field_validator("credentials", mode="after")
    @classmethod
    def _fits(cls, value: Any) -> Any:
        return _user_names_fit(value)


class ConnectionUpdateBody(ConnectionUpdate):
    """The body of ``PATCH /v4/connections/{id}``: only the fields given change."""

    @field_validator("credentials", mode="after")
    @classmethod
    def _fits(cls, value: Any) -> Any:
        return _user_names_fit(value)


@router.get("")
def list_connections(user: CurrentUser, page: PageQuery) -> dict[str, Any]:
    """Connections in creation order (no secrets); ``count`` is ``{owned, shared, count}`` as in the seed."""
    limit, offset = page_bounds(page.limit, page.offset, page.no_limit)
    rows = connections.list_connections(limit=limit, offset=offset)
    return {
        "data": [connection_public_dict(row) for row in rows],
        "count": connections.connection_counts(user.id),
    }


@router.post("", status_code=201)
def create_connection(user: Editor, body: ConnectionCreateBody) -> dict[str, Any]:
    """Create a connection; its secrets are encrypted and never shown again."""
    return connection_public_dict(connections.add_connection(body, creator_id=user.id))


@router.get("/{connection_id}")
def get_connection(_user: CurrentUser, connection_id: Id) -> dict[str, Any]:
    """The connection (its user name, never a secret)."""
    return connection_public_dict(connections.get_connection(connection_id))


@router.patch("/{connection_id}")
def update_connection(user: Editor, connection_id: Id, body: ConnectionUpdateBody) -> dict[str, Any]:
    """Change the given fields; ``credentials`` replace the stored ones as a whole."""
    return connection_public_dict(connections.update_connection(connection_id, body, updater_id=user.id))


@router.delete("/{connection_id}", status_code=204, response_class=Response)
def delete_connection(_user: Editor, connection_id: Id) -> Response:
    """Delete the connection."""
    connections.remove_connection(connection_id)
    return Response(status_code=204)


@router.post("/{connection_id}/test")
def test_connection(_user: Editor, connection_id: Id) -> dict[str, Any]:
    """Open a real connection with the stored credentials: ``{ok, message}``."""
    result = connections.test_connection(connection_id)
    return {"ok": result.ok, "message": result.message}
