"""``/v4/users`` and ``/v4/apiTokens``: who may call the instance.

Passwords and tokens are write-only: a token is shown once, in the answer
that creates it. Any signed-in user manages their own API tokens (a
read-only viewer may want one for a script); managing users takes an admin.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from flowport.api.deps import Admin, AuthenticatedRoute, CurrentUser, Id, PageQuery
from flowport.api.errors import ERROR_RESPONSES
from flowport.api.presenters import answers, page
from flowport.services import auth
from flowport.services.schemas.users import TokenCreate, TokenRead, UserCreate, UserRead

__all__ = ["router"]

router = APIRouter(prefix="/v4", tags=["users"], route_class=AuthenticatedRoute, responses=ERROR_RESPONSES)


@router.get("/users", responses=answers(page(UserRead)))
def list_users(user: Admin, page: PageQuery) -> dict[str, Any]:
    """Users in creation order (admins only); never a password."""
    return auth.list_users(limit=page.limit, offset=page.offset, no_limit=page.no_limit, actor=user)


@router.post("/users", status_code=201, responses=answers(UserRead, 201))
def create_user(user: Admin, body: UserCreate) -> dict[str, Any]:
    """Create a user (admins only); the answer never holds the password."""
    return auth.create_user(body.name, body.password, body.role, actor=user).to_dict()


@router.get("/users/current", responses=answers(UserRead))
def current(user: CurrentUser) -> dict[str, Any]:
    """The caller."""
    return user.to_dict()


@router.get("/apiTokens", responses=answers(page(TokenRead)))
def list_tokens(user: CurrentUser, page: PageQuery) -> dict[str, Any]:
    """The caller's API tokens (an admin's: everyone's), by prefix only."""
    return auth.list_tokens(limit=page.limit, offset=page.offset, no_limit=page.no_limit, actor=user)


@router.post("/apiTokens", status_code=201)
def create_token(user: CurrentUser, body: TokenCreate) -> dict[str, Any]:
    """Create an API token for the caller; ``token`` is in this answer only."""
    token, record = auth.create_token(user, body.name, actor=user)
    return {**record, "token": token}


@router.delete("/apiTokens/{token_id}", status_code=204, response_class=Response)
def revoke_token(user: CurrentUser, token_id: Id) -> Response:
    """Revoke an API token (the caller's own; an admin's: anyone's)."""
    auth.revoke_token(token_id, actor=user)
    return Response(status_code=204)
