"""Every failure of the API as one JSON shape: ``{"exception": {"name", "message", "details"}}``.

Domain errors (:class:`~flowport.errors.FlowportError`) keep their class
name and ``status_code``, so the SDK maps a status and a name back to the
same exception. A request FastAPI cannot parse (malformed JSON or
multipart, wrong types, unknown fields, a missing field) is a
``ValidationFailed`` 422 whose message names the field. An unexpected
exception is a 500 in the same shape that says nothing of the internals;
it is logged with a reference the message repeats.

No handler ever echoes a value of the request: a rejected value may be a
password.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from flowport.errors import (
    Conflict,
    ConnectionFailed,
    FlowportError,
    Forbidden,
    LaunchFailed,
    NotFound,
    RequestTooLarge,
    SecretKeyError,
    StoreNotReady,
    Unauthorized,
    ValidationFailed,
)

__all__ = [
    "ERROR_RESPONSES",
    "WWW_AUTHENTICATE",
    "ErrorBody",
    "RequestTooLarge",
    "allowed_methods",
    "error_response",
    "install_error_handlers",
    "route_path",
    "status_of",
]

_log = logging.getLogger(__name__)

# Sent with every 401 so that browsers and curl know to offer Basic auth.
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Basic realm="flowport"'}


class ErrorDetail(BaseModel):
    """What went wrong."""

    name: str = Field(description="The error class, e.g. NotFound, Conflict, ValidationFailed.")
    message: str = Field(description="For people: what went wrong and how to fix it.")
    details: Any = Field(default=None, description="Structured details, when there are any.")


class ErrorBody(BaseModel):
    """The body of every error response."""

    exception: ErrorDetail


# Documented on every router so that the OpenAPI document shows the error shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No or bad credentials (Unauthorized)"},
    403: {"model": ErrorBody, "description": "The caller's role may not do this (Forbidden)"},
    404: {"model": ErrorBody, "description": "No such object (NotFound)"},
    409: {"model": ErrorBody, "description": "Conflicts with the current state (Conflict)"},
    422: {"model": ErrorBody, "description": "Invalid input (ValidationFailed)"},
}


def _body(name: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"exception": {"name": name, "message": message, "details": details}}


# The HTTP status of each domain error (the nearest class in its MRO decides); the core
# errors know nothing of HTTP.
_STATUS: dict[type[FlowportError], int] = {
    FlowportError: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    RequestTooLarge: 413,
    ValidationFailed: 422,
    SecretKeyError: 500,
    ConnectionFailed: 502,
    StoreNotReady: 503,
    LaunchFailed: 503,
}


def status_of(exc: FlowportError) -> int:
    """The HTTP status the API answers for ``exc``."""
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 500


def error_response(exc: FlowportError) -> JSONResponse:
    """The response for a domain error: its name, message, details and status code."""
    headers = WWW_AUTHENTICATE if isinstance(exc, Unauthorized) else None
    # Details come from the services (validation results, paths): encoded so
    # that a UUID or a date in them cannot turn the error into a 500.
    return JSONResponse({"exception": jsonable_encoder(exc.to_dict())}, status_of(exc), headers=headers)


def _where(loc: Sequence[Any]) -> str:
    parts = [str(part) for part in loc]
    if not parts:
        return "the request"
    source, path = parts[0], ".".join(parts[1:])
    if source == "body":
        return f"body field '{path}'" if path else "the body"
    if source in ("query", "path", "header", "cookie"):
        return f"{source} parameter '{path}'"
    return ".".join(parts)


def _validation_problems(errors: Sequence[Any]) -> list[dict[str, Any]]:
    problems = []
    for error in errors:
        loc = list(error.get("loc", ()))
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error") or "malformed JSON"
            position = loc[1] if len(loc) > 1 else None
            message = f"The body is not valid JSON: {reason}" + (
                f" (at character {position})" if isinstance(position, int) and position >= 0 else ""
            )
            problems.append({"loc": ["body"], "message": message})
            continue
        # The input is left out on purpose: it may be a secret.
        problems.append({"loc": loc, "message": f"{_where(loc)}: {error.get('msg', 'invalid')}"})
    return problems


def route_path(scope: Scope) -> str:
    """The request's path as the routes see it (without the ``root_path`` a proxy mounts the app at)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path != root:
        return path[len(root) :]
    return path


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves on the request's path, sorted.

    Starlette's 405 names the methods of the first route whose path matched;
    a path served by several routes (``GET`` and ``POST /v4/flows``) needs them all.
    """
    path = route_path(request.scope)
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods.update(route.methods or ())
    return sorted(methods)


async def _flowport_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FlowportError)
    return error_response(exc)


async def _request_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = _validation_problems(exc.errors())
    message = "Invalid request: " + "; ".join(p["message"] for p in problems)
    return JSONResponse(_body("ValidationFailed", message, problems), 422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    headers = dict(exc.headers or {})
    if status == 400:
        # FastAPI answers 400 when it cannot parse a body (multipart without a
        # boundary, undecodable form data): that is invalid input, 422 here.
        return JSONResponse(
            _body(
                "ValidationFailed",
                "The request body could not be parsed: send JSON (Content-Type: application/json) "
                "or, for packages, multipart/form-data with the ZIP in the field 'data'",
            ),
            422,
        )
    if status == 401:
        headers.update(WWW_AUTHENTICATE)
        return JSONResponse(_body("Unauthorized", "Authentication required"), 401, headers=headers)
    if status == 404:
        return JSONResponse(_body(NotFound.__name__, "No such endpoint: see /docs for the API"), 404)
    if status == 413:
        message = exc.detail if isinstance(exc.detail, str) else "The request body is too large"
        return JSONResponse(_body(RequestTooLarge.__name__, message), 413, headers=headers)
    if status == 405:
        declared = [method.strip() for method in headers.get("Allow", "").split(",") if method.strip()]
        allowed = allowed_methods(request) or declared
        headers["Allow"] = ", ".join(allowed)
        message = "Method Not Allowed" + (f": this path takes {', '.join(allowed)}" if allowed else "")
        return JSONResponse(_body("MethodNotAllowed", message, {"allowed": allowed}), 405, headers=headers)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    name = "".join(word.capitalize() for word in phrase.replace("-", " ").split()) or "HttpError"
    message = exc.detail if isinstance(exc.detail, str) else phrase
    return JSONResponse(_body(name, message), status, headers=headers)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    reference = uuid.uuid4().hex[:12]
    # The traceback goes to the server's log only; the client gets a reference to quote.
    _log.error("Unexpected error (reference %s)", reference, exc_info=exc)
    return JSONResponse(
        _body(
            "InternalError",
            f"An unexpected error occurred on the server (reference {reference}); "
            "the administrator can find it in the server's log",
        ),
        500,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error response the one shape."""
    app.add_exception_handler(FlowportError, _flowport_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
