"""``/v4/connections``: the seed's connection bodies; credentials are write-only.

Answers show the user name of a connection's credentials and never a
secret. The connection services leave roles to their callers (the CLI is a
trusted local operator): here reading takes any role, writing and testing
take an editor.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from flowport.api.deps import AuthenticatedRoute, CurrentUser, Editor, Id, PageQuery
from flowport.api.errors import ERROR_RESPONSES
from flowport.api.presenters import ConnectionList, answers
from flowport.services import connections
from flowport.services.connections import connection_public_dict
from flowport.services.instance import page_bounds
from flowport.services.schemas.connections import ConnectionCreate, ConnectionRead, ConnectionUpdate

__all__ = ["router"]

router = APIRouter(
    prefix="/v4/connections", tags=["connections"], route_class=AuthenticatedRoute, responses=ERROR_RESPONSES
)


@router.get("", responses=answers(ConnectionList))
def list_connections(user: CurrentUser, page: PageQuery) -> dict[str, Any]:
    """Connections in creation order (no secrets); ``count`` is ``{owned, shared, count}`` as in the seed."""
    limit, offset = page_bounds(page.limit, page.offset, page.no_limit)
    rows = connections.list_connections(limit=limit, offset=offset)
    return {
        "data": [connection_public_dict(row) for row in rows],
        "count": connections.connection_counts(user.id),
    }


@router.post("", status_code=201, responses=answers(ConnectionRead, 201))
def create_connection(user: Editor, body: ConnectionCreate) -> dict[str, Any]:
    """Create a connection; its secrets are encrypted and never shown again."""
    return connection_public_dict(connections.add_connection(body, creator_id=user.id))


@router.get("/{connection_id}", responses=answers(ConnectionRead))
def get_connection(_user: CurrentUser, connection_id: Id) -> dict[str, Any]:
    """The connection (its user name, never a secret)."""
    return connection_public_dict(connections.get_connection(connection_id))


@router.patch("/{connection_id}", responses=answers(ConnectionRead))
def update_connection(user: Editor, connection_id: Id, body: ConnectionUpdate) -> dict[str, Any]:
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
