"""The FastAPI application of a Flowport instance: REST API v4, its OpenAPI document and docs.

The routes are thin (parse, call one service function, answer); the
services own the transactions and the rules. See ``docs/api-v4.md``.
"""

from __future__ import annotations

import json
import weakref
from http.cookies import CookieError, SimpleCookie
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowport import __version__
from flowport.api import kept_answers
from flowport.api.deps import AuthenticatedRoute, remember_user
from flowport.api.docs import install_docs
from flowport.api.errors import error_response, install_error_handlers, route_path
from flowport.api.routes import (
    connections,
    deployments,
    flows,
    jobs,
    packages,
    parameter_sets,
    pipelines,
    projects,
    schedules,
    stages,
    users,
    webhooks,
)
from flowport.errors import FlowportError, StoreNotReady
from flowport.services import auth, sessions
from flowport.services.schemas import NO_NUL

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]

# The API's paths: everything under them needs credentials unless a route that
# is not an AuthenticatedRoute serves the request.
_API_PREFIX: Final = "/v4"
# Packages are the largest bodies; the archive reader allows 256 MiB once
# decompressed, a compressed upload of 64 MiB is plenty.
DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024 * 1024

# What SQLite says when its lock stayed taken past the busy timeout (other processes writing).
_STORE_BUSY: Final = ("database is locked", "database table is locked", "database is busy")
# Seconds a client is asked to wait before sending the request again.
_RETRY_AFTER: Final = "2"


def _busy_store(exc: BaseException) -> StoreNotReady | None:
    """A 503 for a store too busy to take this request now; None for any other error."""
    if isinstance(exc, OperationalError) and any(text in str(exc.orig) for text in _STORE_BUSY):
        return StoreNotReady("The metadata store is busy with other writers: send the request again shortly")
    return None


def _busy_response(error: StoreNotReady) -> JSONResponse:
    response = error_response(error)
    response.headers["retry-after"] = _RETRY_AFTER
    return response


async def _operational_error(_request: Request, exc: Exception) -> JSONResponse:
    """Load is never a 500: a locked store answers 503 with Retry-After; other database errors stay 500s."""
    busy = _busy_store(exc)
    if busy is None:
        raise exc  # the app's handler of unexpected errors (500, traceback to the log only)
    return _busy_response(busy)


_DESCRIPTION = """\
The REST API of a Flowport instance: flows, packages, connections, parameter
sets, projects, jobs, users and API tokens.

Every `/v4` endpoint requires authentication: HTTP Basic (user name and
password) or `Authorization: Bearer <API token>`. Lists answer
`{"data": [...], "count": N}` and take `limit` (default 25), `offset` and
`noLimit=true`. Errors answer `{"exception": {"name", "message", "details"}}`.
"""


def _too_large_body(limit: int) -> bytes:
    return json.dumps(
        {
            "exception": {
                "name": "RequestTooLarge",
                "message": f"The request body is larger than {limit} bytes, the most this instance accepts",
                "details": {"maxBytes": limit},
            }
        }
    ).encode()


class _BodySizeLimit:
    """Refuses request bodies larger than ``limit`` bytes with a 413 in the API's error shape.

    A declared ``Content-Length`` over the limit is refused before anything
    else runs; a streamed (chunked) body is counted as it is read, and the
    read fails once it passes the limit.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _refuse(self, send: Send) -> None:
        body = _too_large_body(self.limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.limit:
                    await self._refuse(send)
                    return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(send)


class _BodyTooLarge(StarletteHTTPException):
    """A streamed request body passed the limit while it was read.

    An HTTPException, so that FastAPI's body parsing lets it through to the
    error handlers (it turns other exceptions into a generic 400).
    """

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"The request body is larger than {limit} bytes, the most this instance accepts"
        )


class _AuthenticateFirst:
    """Authenticates the caller of an API path before anything else, the body size check included.

    A request to ``/v4`` or below that no public route (one that is not an
    :class:`~flowport.api.deps.AuthenticatedRoute`) would serve is
    authenticated from its ``Authorization`` header alone (in a worker
    thread: argon2 and the store block). Without valid credentials it is
    answered 401 (``WWW-Authenticate: Basic``) at once, whatever its
    ``Content-Length``, without a byte of its body read; the connection is
    then closed if a body was announced, so the server does not have to
    take it in. Otherwise the user is left in ``scope["state"]["user"]``,
    where the route and :func:`~flowport.api.deps.current_user` find it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _needs_credentials(scope):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        authorization = headers.get("authorization")
        session = _session_cookie(headers) if not authorization else None
        topic = kept_answers.kept_topic(scope, authorization)
        kept: kept_answers.Kept | None = None
        try:
            if session:
                # The web UI: its session cookie, with the CSRF token on a change.
                user = await run_in_threadpool(
                    sessions.user_of, session, scope["method"], headers.get(sessions.CSRF_HEADER)
                )
            elif topic is not None:
                # The generations first (the answer is kept under them), then the credentials: a token
                # checked at the current generation is known already, anything else is checked in full.
                known, url, generation = await kept_answers.run_probe(authorization, topic)
                if known is not None:
                    user = known
                else:
                    user = await run_in_threadpool(auth.authenticate, authorization)
                kept = kept_answers.Kept(scope, user, url, generation)
            else:
                user = await run_in_threadpool(auth.authenticate, authorization)
        except (FlowportError, OperationalError) as exc:
            busy = _busy_store(exc)
            if busy is not None:
                response = _busy_response(busy)
            elif isinstance(exc, FlowportError):
                response = error_response(exc)
            else:
                raise
            if headers.get("transfer-encoding") or headers.get("content-length", "0").strip() != "0":
                response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        remember_user(scope, user)
        if kept is not None:
            if await kept.replay(send):
                return
            send = kept.keeping(send)
        await self.app(scope, receive, send)


def _session_cookie(headers: Headers) -> str | None:
    cookies = SimpleCookie()
    try:
        cookies.load(headers.get("cookie", ""))
    except CookieError:
        return None
    morsel = cookies.get(sessions.SESSION_COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


# The routes of each app that are not AuthenticatedRoutes, as (path regex, methods), with the
# number of top-level routes they were listed from: listed again when a route is added.
_public_routes: weakref.WeakKeyDictionary[Any, tuple[int, list[tuple[Any, Any]]]] = (
    weakref.WeakKeyDictionary()
)


def _public(app: Any) -> list[tuple[Any, Any]]:
    known = _public_routes.get(app)
    if known is not None and known[0] == len(app.routes):
        return known[1]
    public: list[tuple[Any, Any]] = []
    for included in app.routes:
        # An included router whose routes all authenticate adds nothing here: skipping it leaves
        # FastAPI's per-route state (built on first use, about 0.15 s for all of /v4) unbuilt.
        router = getattr(included, "original_router", None)
        if router is not None and all(isinstance(r, AuthenticatedRoute) for r in router.routes):
            continue
        public.extend(
            (regex, route.methods)
            for route in iter_route_contexts([included])
            if not isinstance(route.original_route, AuthenticatedRoute)
            and (regex := getattr(route, "path_regex", None)) is not None
        )
    _public_routes[app] = (len(app.routes), public)
    return public


def _needs_credentials(scope: Scope) -> bool:
    path = route_path(scope)
    if path != _API_PREFIX and not path.startswith(_API_PREFIX + "/"):
        return False
    app = scope.get("app")
    if app is None:
        return True
    method = scope["method"]
    return not any(
        regex.match(path) and (not methods or method in methods) for regex, methods in _public(app)
    )


def _state_text_rules(app: FastAPI) -> None:
    """Make the document state what the API holds every text to: no NUL character anywhere.

    The body parser and the query check refuse a NUL in any string (PostgreSQL
    cannot store one); each string the document describes says so with a
    pattern, so that a client generated from it never sends one.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _no_nul(document)
            document.setdefault("components", {}).setdefault("schemas", {})["JsonValue"] = _JSON_VALUE
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


_JSON_VALUE_REF = "#/components/schemas/JsonValue"
_JSON_VALUE: dict[str, Any] = {
    "description": "Any JSON value without a NUL character in a string or an object key.",
    "anyOf": [
        {"type": "string", "pattern": NO_NUL},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": {"$ref": _JSON_VALUE_REF}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": _JSON_VALUE_REF},
        },
    ],
}


def _no_nul(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _no_nul(item)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    text = kind == "string" or (isinstance(kind, list) and "string" in kind)
    if text and not {"enum", "const", "format"} & node.keys():
        pattern = node.get("pattern")
        if pattern is None:
            node["pattern"] = NO_NUL
        elif not (pattern.startswith("^") and pattern.endswith("$")):
            # An anchored pattern states every character (none of Flowport's admits a NUL).
            node.setdefault("allOf", []).append({"pattern": NO_NUL})
    if node.get("additionalProperties", False) is not False and "propertyNames" not in node:
        node["propertyNames"] = {"pattern": NO_NUL}
    if node.get("additionalProperties") in (True, {}):
        # Any JSON value: any, but without a NUL in a string or a key, however deep.
        node["additionalProperties"] = {"$ref": _JSON_VALUE_REF}
    for value in node.values():
        _no_nul(value)


def create_app(*, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastAPI:
    """The API of the instance that ``FLOWPORT_HOME`` / ``FLOWPORT_DATABASE_URL`` designate.

    Args:
        max_body_bytes: the largest request body accepted (413 beyond); an
            unauthenticated request to the API is answered 401 before its size is looked at.

    The instance must be initialized (``flowport init`` or
    :func:`flowport.services.instance.init_instance`); ``flowport server``
    does that before serving.
    """
    app = FastAPI(
        title="Flowport",
        version=__version__,
        description=_DESCRIPTION,
        openapi_url="/openapi.json",
        # Served by install_docs from local assets (FastAPI's own pages load them from a CDN).
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_exception_handler(OperationalError, _operational_error)
    install_docs(app, "/openapi.json")
    for module in (
        projects,
        flows,
        packages,
        stages,
        connections,
        parameter_sets,
        jobs,
        users,
        deployments,
        schedules,
        pipelines,
        webhooks,
    ):
        app.include_router(module.router)
    _state_text_rules(app)
    app.add_middleware(_BodySizeLimit, limit=max_body_bytes)
    # Added last, so outermost: credentials are checked before the body size.
    app.add_middleware(_AuthenticateFirst)
    return app
