"""What every route depends on: who is calling, with which role, and a request parsed strictly.

Every ``/v4`` route is an :class:`AuthenticatedRoute`: the caller is
authenticated (HTTP Basic or ``Authorization: Bearer`` token, through
:func:`flowport.services.auth.authenticate`) before the request's body is
read, so a caller without valid credentials gets a 401 whatever it sends,
and learns nothing about the body's validity. The app authenticates in an
outer middleware, before even the body size is looked at, and leaves the
user in the request's state (:func:`remember_user`); the route and
:func:`current_user` reuse it. The route then reads JSON
bodies strictly (:func:`parse_json_body`): what the metadata store could
not keep (NUL characters, unpaired surrogates, infinities) is a 422 here
rather than a database error later.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import Depends, Path, Query, Request, Response, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPBasic, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from flowport.errors import ValidationFailed
from flowport.services import auth
from flowport.services.auth import User
from flowport.services.schemas.common import MAX_ID

__all__ = [
    "MAX_ID",
    "Admin",
    "AuthenticatedRoute",
    "CurrentUser",
    "Editor",
    "Id",
    "OptionalId",
    "Page",
    "PageQuery",
    "authenticated_user",
    "current_user",
    "parse_json_body",
    "remember_user",
    "require",
]

# Ids are 32-bit integer columns; a larger number cannot name anything (and
# SQLite refuses integers past 64 bits outright).
# JSON nested deeper than this is no flow document; Python's parser would
# otherwise hit its recursion limit.
_MAX_DEPTH: Final = 200


# -- strict JSON ---------------------------------------------------------------------


def _refuse(message: str, text: str) -> json.JSONDecodeError:
    # Position -1: the problem is a value, not a place where parsing stopped.
    return json.JSONDecodeError(message, text, -1)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_values(value: Any, text: str) -> None:
    # Iterative: a deeply nested body must not exhaust the stack here either.
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > _MAX_DEPTH:
            raise _refuse(f"the JSON is nested more than {_MAX_DEPTH} levels deep", text)
        if isinstance(item, str):
            if "\x00" in item:
                raise _refuse("a string contains a NUL character (\\u0000)", text)
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise _refuse("a string contains an unpaired UTF-16 surrogate", text) from None
        elif isinstance(item, float) and not math.isfinite(item):
            raise _refuse("a number is too large", text)
        elif isinstance(item, dict):
            pending.extend((key, depth + 1) for key in item)
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)


def parse_json_body(raw: bytes) -> Any:
    """Parse a request body as JSON, refusing what JSON allows but the store cannot keep.

    Raises:
        json.JSONDecodeError: not UTF-8, not JSON, ``NaN``/``Infinity``,
            numbers too large, nesting deeper than 200, NUL characters or
            unpaired surrogates in a string. FastAPI turns it into a 422.
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _refuse(f"the body is not UTF-8 text (byte {exc.start})", "") from None
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise _refuse("the JSON is nested too deeply", text) from None
    except ValueError as exc:
        # Integers of more than 4300 digits, NaN, Infinity.
        raise _refuse(str(exc), text) from None
    _check_values(value, text)
    return value


class _StrictJSONRequest(Request):
    """A request whose ``json()`` is :func:`parse_json_body` (FastAPI parses bodies with it)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json_body(await self.body())
        return self._json


def _check_query(request: Request) -> None:
    for key, value in request.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            raise ValidationFailed(f"Query parameter '{key.replace(chr(0), '')}' contains a NUL character")


def authenticated_user(scope: Scope) -> User | None:
    """The user an earlier step of this request authenticated (kept in ``scope["state"]["user"]``)."""
    state = scope.get("state")
    user = state.get("user") if isinstance(state, dict) else None
    return user if isinstance(user, User) else None


def remember_user(scope: Scope, user: User) -> None:
    """Keep the authenticated caller for the rest of the request (``request.state.user``)."""
    scope.setdefault("state", {})["user"] = user


class AuthenticatedRoute(APIRoute):
    """A route that authenticates its caller before anything else, then parses the body strictly.

    The user is kept in ``request.state.user`` for :func:`current_user`;
    when the app's middleware (:func:`flowport.api.app.create_app`) has
    authenticated the caller already, that user is reused. Unauthorized
    (401) is raised before the body is read.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, behind authentication and with the strict JSON request."""
        handler = super().get_route_handler()

        async def authenticated(request: Request) -> Response:
            strict = _StrictJSONRequest(request.scope, request.receive)
            # The app's outer middleware normally authenticated the caller already.
            if authenticated_user(request.scope) is None:
                # argon2 and the store are blocking: off the event loop.
                user = await run_in_threadpool(auth.authenticate, request.headers.get("authorization"))
                remember_user(strict.scope, user)
            _check_query(strict)
            return await handler(strict)

        return authenticated


# -- who is calling ----------------------------------------------------------------------


class _BasicScheme(HTTPBasic):
    """Documents HTTP Basic in the OpenAPI document; the header itself is read by :func:`current_user`."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


class _BearerScheme(HTTPBearer):
    """Documents ``Authorization: Bearer <API token>`` in the OpenAPI document."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


_basic = _BasicScheme(
    scheme_name="basic", realm="flowport", description="User name and password", auto_error=False
)
_bearer = _BearerScheme(
    scheme_name="token", description="An API token (POST /v4/apiTokens), sent as a Bearer token"
)


async def current_user(
    request: Request,
    _basic_scheme: Annotated[None, Security(_basic)] = None,
    _bearer_scheme: Annotated[None, Security(_bearer)] = None,
) -> User:
    """The authenticated caller; Unauthorized (401, ``WWW-Authenticate: Basic``) without valid credentials."""
    known = authenticated_user(request.scope)
    if known is not None:
        return known
    # A route that is not an AuthenticatedRoute still authenticates here.
    user: User = await run_in_threadpool(auth.authenticate, request.headers.get("authorization"))
    remember_user(request.scope, user)
    return user


def require(role: str) -> Callable[[User], User]:
    """A dependency: the caller, when its role is ``role`` or stronger; Forbidden (403) otherwise."""

    def dependency(user: Annotated[User, Depends(current_user)]) -> User:
        auth.require_role(user, role)
        return user

    dependency.__name__ = f"require_{role}"
    return dependency


CurrentUser = Annotated[User, Depends(current_user)]
Editor = Annotated[User, Depends(require("editor"))]
Admin = Annotated[User, Depends(require("admin"))]


# -- common parameters ---------------------------------------------------------------------

Id = Annotated[int, Path(ge=1, le=MAX_ID, description="The object's id.")]
OptionalId = Annotated[int | None, Query(ge=1, le=MAX_ID)]


@dataclass(frozen=True)
class Page:
    """The paging of a list: ``limit`` (default 25), ``offset``, ``noLimit``."""

    limit: int | None
    offset: int
    no_limit: bool


def _page(
    limit: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Page size (default 25).")] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_ID, description="Objects to skip.")] = 0,
    no_limit: Annotated[bool, Query(alias="noLimit", description="Return every object.")] = False,
) -> Page:
    return Page(limit, offset, no_limit)


PageQuery = Annotated[Page, Depends(_page)]
