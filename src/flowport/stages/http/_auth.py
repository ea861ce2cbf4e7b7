"""Authentication of HTTP API requests from an ``http`` connection (private).

A connection's ``credential_type`` picks the scheme:

* ``none`` — no credentials;
* ``basic`` — ``username`` and the secret ``password``;
* ``bearer`` — the secret ``token`` sent as ``Authorization: Bearer``;
* ``api_key`` — the secret ``api_key`` sent in the header named by
  ``params.apiKeyHeader`` (default ``X-API-Key``);
* ``hawk`` — Hawk request signing (``username`` or the secret ``hawk_id`` as
  the id, the secret ``hawk_key``, ``params.hawkAlgorithm`` default
  ``sha256``); the server's ``Server-Authorization`` header is verified when
  present unless ``params.hawkVerifyResponse`` is false.

Every scheme is an ``httpx.Auth`` so that it is applied per request (and per
retry: Hawk needs a fresh nonce and timestamp each time) and only to the
requests the fetcher decides may carry credentials.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field

import httpx
import mohawk
import mohawk.exc

from flowport.connections.spec import ConnectionSpec

__all__ = [
    "CREDENTIAL_TYPES",
    "ApiKeyAuth",
    "BearerAuth",
    "CredentialError",
    "HawkAuth",
    "HawkResponseRejected",
    "RequestAuth",
    "auth_for",
]

CREDENTIAL_TYPES = ("none", "basic", "bearer", "api_key", "hawk")
_ALIASES = {"apikey": "api_key", "api-key": "api_key", "token": "bearer", "": "none"}


class CredentialError(ValueError):
    """The connection's credentials do not fit its credential type (the message names no secret)."""


class HawkResponseRejected(Exception):
    """The server's ``Server-Authorization`` header did not verify."""


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add the header and send."""
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


class ApiKeyAuth(httpx.Auth):
    """An API key in a request header (``X-API-Key`` by default)."""

    def __init__(self, header: str, key: str) -> None:
        self._header = header
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add the header and send."""
        request.headers[self._header] = self._key
        yield request


class HawkAuth(httpx.Auth):
    """Hawk request signing with mohawk, optionally verifying the server's response signature."""

    requires_response_body = True

    def __init__(self, hawk_id: str, key: str, algorithm: str = "sha256", *, verify_response: bool = True):
        self._credentials = {"id": hawk_id, "key": key, "algorithm": algorithm}
        self._verify_response = verify_response

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign the request (method, full URL, body) and check the ``Server-Authorization`` reply."""
        body = request.content
        content_type = request.headers.get("Content-Type", "")
        sender = mohawk.Sender(
            self._credentials,
            str(request.url),
            request.method,
            # A GET has no body: Hawk then hashes the empty payload with an empty type.
            content=body if body else "",
            content_type=content_type if body else "",
        )
        request.headers["Authorization"] = sender.request_header
        response = yield request
        server_auth = response.headers.get("Server-Authorization")
        if self._verify_response and server_auth and response.status_code < 400:
            try:
                sender.accept_response(
                    server_auth,
                    content=response.content,
                    content_type=response.headers.get("Content-Type", ""),
                )
            except mohawk.exc.HawkFail as exc:
                # The class name is enough: mohawk's messages may quote MACs.
                raise HawkResponseRejected(type(exc).__name__) from None


@dataclass
class RequestAuth:
    """The scheme for one run: the ``httpx.Auth`` (or None) and the values to scrub from messages."""

    kind: str
    auth: httpx.Auth | None
    secrets: list[str] = field(default_factory=list)

    def scrub(self, text: str) -> str:
        """``text`` with every credential value replaced by ``***``."""
        for value in sorted(self.secrets, key=len, reverse=True):
            if value:
                text = text.replace(value, "***")
        return text


def _flag(value: object, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off")
    return bool(value)


def auth_for(spec: ConnectionSpec | None) -> RequestAuth:
    """The authentication a connection asks for; :class:`CredentialError` when it is incomplete."""
    if spec is None:
        return RequestAuth("none", None)
    kind = spec.credential_type.strip().lower().replace("-", "_")
    kind = _ALIASES.get(kind, kind)
    secrets = spec.secret_values()
    name = spec.name

    def need(key: str) -> str:
        value = spec.secret(key)
        if not value:
            raise CredentialError(f"connection '{name}' ({kind}) has no secret '{key}'")
        return value

    if kind == "none":
        return RequestAuth(kind, None, secrets)
    if kind == "basic":
        if not spec.username and not spec.password:
            # The connection default is 'basic'; an HTTP connection without any
            # credentials simply means an open API.
            return RequestAuth("none", None, secrets)
        return RequestAuth(kind, httpx.BasicAuth(spec.username or "", spec.password or ""), secrets)
    if kind == "bearer":
        return RequestAuth(kind, BearerAuth(need("token")), secrets)
    if kind == "api_key":
        header = str(spec.params.get("apiKeyHeader") or "X-API-Key")
        return RequestAuth(kind, ApiKeyAuth(header, need("api_key")), secrets)
    if kind == "hawk":
        hawk_id = spec.username or spec.secret("hawk_id")
        if not hawk_id:
            raise CredentialError(f"connection '{name}' (hawk) has neither a username nor a secret 'hawk_id'")
        algorithm = str(spec.params.get("hawkAlgorithm") or "sha256")
        verify = _flag(spec.params.get("hawkVerifyResponse"), True)
        return RequestAuth(
            kind, HawkAuth(hawk_id, need("hawk_key"), algorithm, verify_response=verify), secrets
        )
    raise CredentialError(
        f"connection '{name}' has credential type '{spec.credential_type}'; "
        f"an HTTP API origin accepts {', '.join(CREDENTIAL_TYPES)}"
    )
