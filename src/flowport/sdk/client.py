"""The connection to a Flowport server: one ``httpx.Client``, auth, and typed errors.

Every request goes through :meth:`Client.request`, which turns an error
answer into the same domain exception the server raised: the body's
``exception.name`` picks the class when it is one of :mod:`flowport.errors`,
otherwise the HTTP status does (404 :class:`NotFound`, 409 :class:`Conflict`,
422 :class:`ValidationFailed`, 401 :class:`Unauthorized`, 403
:class:`Forbidden`, anything else :class:`FlowportError`). The exception
keeps the server's ``message`` and ``details``, its ``status`` and the
``response``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import httpx

from flowport import errors as _errors
from flowport.errors import (
    Conflict,
    FlowportError,
    Forbidden,
    NotFound,
    PluginNotFound,
    Unauthorized,
    ValidationFailed,
)
from flowport.sdk.deployments import Deployments
from flowport.sdk.pipelines import Pipelines
from flowport.sdk.projects import Projects
from flowport.sdk.schedules import Schedules
from flowport.sdk.webhooks import Webhooks

__all__ = ["DEFAULT_TIMEOUT", "Client", "error_from_response"]

DEFAULT_TIMEOUT = 30.0

_BY_STATUS: dict[int, type[FlowportError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: ValidationFailed,
    422: ValidationFailed,
}


def _error_class(name: Any, status: int) -> type[FlowportError]:
    by_status = _BY_STATUS.get(status, FlowportError)
    if isinstance(name, str):
        named = next((cls for cls in _errors.error_classes() if cls.__name__ == name), None)
        # Trust the name only where it agrees with the status (a subclass of what the status means),
        # so that `except NotFound` keeps working whatever the server calls its error.
        if named is not None and issubclass(named, by_status):
            return named
    return by_status


def _rebuild(cls: type[FlowportError], message: str, details: Any) -> FlowportError:
    """An instance of ``cls`` with the server's message and details, whatever its constructor takes."""
    error = cls.__new__(cls)
    FlowportError.__init__(error, message, details=details)
    return error


def error_from_response(response: httpx.Response) -> FlowportError:
    """The domain exception an error answer stands for (see the module docstring)."""
    status = response.status_code
    name: Any = None
    message = ""
    details: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        exception = body.get("exception")
        if isinstance(exception, Mapping):
            name = exception.get("name")
            message = str(exception.get("message") or "")
            details = exception.get("details")
        elif "detail" in body:  # a framework answer (unknown route, ...)
            message = str(body["detail"])
    if not message:
        text = response.text.strip()
        reason = response.reason_phrase or "error"
        message = f"{status} {reason}" + (f": {text[:500]}" if text and body is None else "")
    if status >= 500:
        request = response.request
        message = f"The Flowport server failed ({status}) on {request.method} {request.url.path}: {message}"
    error = _rebuild(_error_class(name, status), message, details)
    error.status = status  # type: ignore[attr-defined]
    error.response = response  # type: ignore[attr-defined]
    error.server_name = name  # type: ignore[attr-defined]
    return error


class Client:
    """A session with one Flowport server.

    Authenticate with a user name and password (HTTP Basic) or with an API
    token (``Authorization: Bearer``)::

        client = Client('http://127.0.0.1:8080', username='admin', password='...')
        project = client.projects.get(name='default')

    Args:
        url: The server's base URL (``http://host:port``).
        username: User name, with ``password``.
        password: The user's password.
        token: An API token (instead of a user name and password).
        timeout: Seconds to wait for each request.
        transport: An httpx transport (tests: ``httpx.MockTransport``).
        verify: Verify TLS certificates (or a CA bundle path).
    """

    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
    ) -> None:
        if token is not None and (username is not None or password is not None):
            raise ValueError("Give either token= or username= and password=, not both")
        if (username is None) != (password is None):
            raise ValueError("username= and password= go together")
        if token is None and username is None:
            raise ValueError("Give username= and password=, or token=")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"The server URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.username = username
        headers = {"Accept": "application/json", "User-Agent": "flowport-sdk"}
        auth: httpx.Auth | None = None
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        else:
            assert username is not None and password is not None
            auth = httpx.BasicAuth(username, password)
        self._http = httpx.Client(
            base_url=self.url,
            auth=auth,
            headers=headers,
            timeout=timeout,
            transport=transport,
            verify=verify,
            follow_redirects=False,
        )
        self._stages: list[dict[str, Any]] | None = None
        self.projects = Projects(self)
        self.deployments = Deployments(self)
        self.schedules = Schedules(self)
        self.pipelines = Pipelines(self)
        self.webhooks = Webhooks(self)

    def __repr__(self) -> str:
        who = f", username={self.username!r}" if self.username else ""
        return f"Client(url={self.url!r}{who})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- HTTP ------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        files: Any = None,
    ) -> httpx.Response:
        """Send one request; an error answer raises the matching domain exception.

        Raises:
            FlowportError (or the subclass the server named): the server said no,
            or it cannot be reached.
        """
        clean = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(method, path, params=clean, json=json, files=files)
        except httpx.TimeoutException as exc:
            raise FlowportError(
                f"The Flowport server at {self.url} did not answer {method} {path} in time ({exc}); "
                "retry, or give the Client a longer timeout="
            ) from exc
        except httpx.TransportError as exc:
            raise FlowportError(
                f"Cannot reach the Flowport server at {self.url} ({exc}): check the URL and that "
                "`flowport server` is running"
            ) from exc
        if response.is_error:
            raise error_from_response(response)
        return response

    def get_json(self, path: str, **params: Any) -> Any:
        """GET ``path`` and return its JSON body."""
        return self.request("GET", path, params=params).json()

    def list_all(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a ``{"data": [...], "count"}`` list (``noLimit=true``)."""
        body = self.get_json(path, **params, noLimit=True)
        return list(body.get("data") or []) if isinstance(body, Mapping) else []

    # -- instance-wide ------------------------------------------------------------

    def current_user(self) -> dict[str, Any]:
        """The user this client acts as (``GET /v4/users/current``)."""
        result: dict[str, Any] = self.get_json("/v4/users/current")
        return result

    def create_api_token(self, name: str) -> dict[str, Any]:
        """Create an API token for the current user; the answer's ``token`` is shown this once."""
        result: dict[str, Any] = self.request("POST", "/v4/apiTokens", json={"name": name}).json()
        return result

    def revoke_api_token(self, token_id: int) -> httpx.Response:
        """Revoke one of the current user's API tokens (204)."""
        return self.request("DELETE", f"/v4/apiTokens/{token_id}")

    def stages(self, *, refresh: bool = False) -> list[dict[str, Any]]:
        """The stage plugins installed on the server (``GET /v4/stages``), fetched once."""
        if self._stages is None or refresh:
            self._stages = self.list_all("/v4/stages")
        return self._stages

    def find_stage(
        self, label_or_name: str, *, library: str | None = None, kinds: tuple[str, ...] | None = None
    ) -> dict[str, Any]:
        """The installed plugin whose label or name is ``label_or_name`` (case-insensitive).

        Args:
            label_or_name: A label (``'Write to File'``) or plugin name (``'write_to_file'``).
            library: The artifact to take it from when several provide it.
            kinds: Only plugins of these kinds (``origin``, ``error``, ...).

        Raises:
            PluginNotFound: nothing matches (the message suggests close names).
            ValueError: several artifacts provide it and ``library`` does not choose.
        """
        wanted = label_or_name.strip().casefold()
        candidates = [
            p
            for p in self.stages()
            if (kinds is None or p.get("kind") in kinds)
            and (library is None or (p.get("artifact") or {}).get("name") == library)
        ]
        matches = [p for p in candidates if str(p.get("label", "")).casefold() == wanted]
        matches = matches or [p for p in candidates if str(p.get("name", "")).casefold() == wanted]
        if not matches:
            names = sorted(
                {str(p.get("label")) for p in candidates} | {str(p.get("name")) for p in candidates}
            )
            close = difflib.get_close_matches(label_or_name, names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            where = f" in library '{library}'" if library else ""
            kind_text = f" ({'/'.join(kinds)} stages)" if kinds else ""
            raise PluginNotFound(
                f"No installed stage{kind_text} is labelled or named '{label_or_name}'{where}{hint} "
                "(see GET /v4/stages or `flowport stages list`)",
                details={"stage": label_or_name, "library": library},
            )
        libraries = {(p.get("artifact") or {}).get("name") for p in matches}
        if len(libraries) > 1:
            listed = ", ".join(sorted(str(name) for name in libraries))
            raise ValueError(
                f"Stage '{label_or_name}' is provided by several libraries ({listed}): pass library="
            )
        return matches[0]


def _param(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
