"""``/`` and ``/ui``: the sign-in page, sign-out, and the single-page app's files."""

from __future__ import annotations

import hmac
import html
import secrets
from importlib import resources
from typing import Annotated

from fastapi import FastAPI, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from flowport.errors import FlowportError, Unauthorized
from flowport.services import sessions

__all__ = ["attach"]

_STATIC = resources.files("flowport.ui") / "static"
_LOGIN_CSRF = "flowport_login_csrf"
#: Readable by the app's script, which sends it back as X-CSRF-Token.
CSRF_COOKIE = "flowport_csrf"


def attach(app: FastAPI) -> None:
    """Serve the UI from ``app``: ``/`` → ``/ui/``, the sign-in page, sign-out and the static files."""
    app.mount("/ui/static", StaticFiles(directory=str(_STATIC)), name="ui-static")
    app.add_api_route("/", _root, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui", _root, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui/", _app, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui/login", _login_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui/login", _login, methods=["POST"], include_in_schema=False)
    app.add_api_route("/ui/logout", _logout, methods=["POST"], include_in_schema=False)


def _root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=303)


async def _app(request: Request) -> Response:
    session = request.cookies.get(sessions.SESSION_COOKIE)
    if not session:
        return RedirectResponse("/ui/login", status_code=303)
    try:
        await run_in_threadpool(sessions.user_of, session, "GET", None)
    except FlowportError:
        return RedirectResponse("/ui/login", status_code=303)
    return FileResponse(str(_STATIC / "index.html"), media_type="text/html", headers=_NO_STORE)


def _login_page(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
    # Login CSRF: the form carries a random token that must match a cookie only this site can set.
    token = secrets.token_urlsafe(24)
    body = (_STATIC / "login.html").read_text(encoding="utf-8")
    body = body.replace("{{csrf}}", token).replace("{{message}}", html.escape(message))
    response = HTMLResponse(body, status_code=status, headers=_NO_STORE)
    _cookie(response, request, _LOGIN_CSRF, token, http_only=True, max_age=3600)
    return response


async def _login(
    request: Request,
    name: Annotated[str, Form(max_length=255)],
    password: Annotated[str, Form(max_length=1024)],
    csrf: Annotated[str, Form(max_length=100)],
) -> Response:
    expected = request.cookies.get(_LOGIN_CSRF) or ""
    if not expected or not hmac.compare_digest(expected, csrf):
        return _login_page(request, "The sign-in form expired: try again.", status=403)
    try:
        session, _user = await run_in_threadpool(sessions.sign_in, name, password)
    except Unauthorized:
        return _login_page(request, "Wrong user name or password.", status=401)
    response = RedirectResponse("/ui/", status_code=303)
    max_age = int(sessions.SESSION_TTL.total_seconds())
    _cookie(response, request, sessions.SESSION_COOKIE, session, http_only=True, max_age=max_age)
    _cookie(response, request, CSRF_COOKIE, sessions.csrf_token(session), http_only=False, max_age=max_age)
    response.delete_cookie(_LOGIN_CSRF, path="/")
    return response


async def _logout(request: Request) -> Response:
    session = request.cookies.get(sessions.SESSION_COOKIE)
    sent = request.headers.get(sessions.CSRF_HEADER) or ""
    if session and not hmac.compare_digest(sent, sessions.csrf_token(session)):
        return Response(status_code=403)
    await run_in_threadpool(sessions.sign_out, session)
    response = RedirectResponse("/ui/login", status_code=303)
    for name in (sessions.SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/")
    return response


def _cookie(
    response: Response, request: Request, name: str, value: str, *, http_only: bool, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=http_only,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


# The pages load only this instance's own files, run no inline script and may not be framed
# (clickjacking); they are not cached (they follow the session).
_NO_STORE = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
