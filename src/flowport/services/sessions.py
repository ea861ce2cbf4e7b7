"""Web sessions: the UI signs in with a cookie over the same users, roles and permissions as the API.

A session is an API token named ``web session`` that expires
(:data:`SESSION_TTL`) and is revoked on sign-out: it is kept in an
``HttpOnly``, ``SameSite=Strict`` cookie, never seen by a script. Requests
that change something must also carry the session's CSRF token
(``X-CSRF-Token``), derived from the session token with HMAC: a page of
another site can make the browser send the cookie, but cannot read it, so
cannot compute the header. The API keeps Basic and bearer tokens, which a
browser never sends on its own and which need no CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Final

from flowport.errors import Forbidden
from flowport.services import auth
from flowport.services.auth import User

__all__ = [
    "CSRF_HEADER",
    "SAFE_METHODS",
    "SESSION_COOKIE",
    "SESSION_TTL",
    "csrf_token",
    "sign_in",
    "sign_out",
    "user_of",
]

SESSION_COOKIE: Final = "flowport_session"
CSRF_HEADER: Final = "x-csrf-token"
SESSION_TTL: Final = timedelta(hours=12)
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_NAME: Final = "web session"


def sign_in(name: str, password: str) -> tuple[str, User]:
    """A new session for this user name and password: ``(session token, user)``; Unauthorized otherwise."""
    user = auth.authenticate_basic(name, password)
    token, _record = auth.create_token(user, _NAME)
    return token, user


def csrf_token(session: str) -> str:
    """The CSRF token of a session (what ``X-CSRF-Token`` must carry on a change)."""
    return hmac.new(session.encode(), b"flowport-csrf", hashlib.sha256).hexdigest()


def user_of(session: str, method: str, csrf: str | None) -> User:
    """The user of a session cookie on a request with ``method``.

    Raises:
        Unauthorized: the session is unknown, signed out or older than SESSION_TTL.
        Forbidden: a change (POST, PATCH, DELETE) without the session's CSRF token.
    """
    user = auth.authenticate_token(session, name=_NAME, max_age=SESSION_TTL)
    if method.upper() not in SAFE_METHODS and not hmac.compare_digest(csrf or "", csrf_token(session)):
        raise Forbidden(
            "This change needs the session's CSRF token in the X-CSRF-Token header "
            "(the web UI sends it; scripts should use an API token instead of the session cookie)"
        )
    return user


def sign_out(session: str | None) -> None:
    """End the session (revoke its token); nothing when there is none."""
    if session:
        auth.revoke_token_value(session)
