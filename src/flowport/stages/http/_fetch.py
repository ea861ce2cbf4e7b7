"""One JSON GET with retries, rate limiting and safe error messages (private).

:class:`Fetcher` is shared by every thread of one run (an ``httpx.Client``
is thread-safe). It

* retries 408, 429, 5xx and transport errors (timeouts, refused or reset
  connections) with exponential backoff and jitter, honouring
  ``Retry-After`` (seconds or an HTTP date);
* waits for a :class:`TokenBucket` before every attempt, retries included;
* follows redirects itself, sending credentials and configured headers only
  to the origin (scheme, host, port) of the configured URL, so neither a
  redirect nor a ``next`` link can hand them to another host;
* raises :class:`StageError` naming the method, the URL (without user info
  or secret-looking query values), the status and a short excerpt of the
  body, every known secret scrubbed.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx

from flowport.errors import StageError
from flowport.stages.http._auth import HawkResponseRejected, RequestAuth

__all__ = [
    "MAX_RETRY_AFTER",
    "Fetched",
    "Fetcher",
    "RetryPolicy",
    "Stopped",
    "TokenBucket",
    "origin_of",
    "retry_after_seconds",
    "safe_url",
]

MAX_RETRY_AFTER = 600.0
"""Longest ``Retry-After`` honoured, in seconds; a longer one is cut to this."""
_MAX_BACKOFF = 60.0
_MAX_REDIRECTS = 10
_EXCERPT = 200
_RETRY_STATUSES = frozenset({408, 429})
_SECRET_PARAM_HINTS = (
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "signature",
    "sig",
    "auth",
    "credential",
)


class Stopped(Exception):
    """The run was cancelled (or the pages are no longer wanted) while waiting."""


def origin_of(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of ``url``, the default port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def safe_url(url: str) -> str:
    """``url`` fit for a message or a log: no user info, secret-looking query values masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = [(k, "***" if any(h in k.lower() for h in _SECRET_PARAM_HINTS) else v) for k, v in pairs]
        query = urlencode(masked, safe="/:,*@")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class TokenBucket:
    """At most ``rate`` requests per second, shared by every thread.

    The bucket holds one token, so requests are spaced at least ``1/rate``
    seconds apart: no burst can exceed the limit in any one-second window.
    """

    def __init__(self, rate: float, capacity: float = 1.0) -> None:
        self.rate = rate
        self.capacity = capacity
        self._tokens = capacity
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self, wait: Callable[[float], None]) -> None:
        """Take one token, calling ``wait(seconds)`` while there is none."""
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                delay = (1.0 - self._tokens) / self.rate
            wait(delay)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a request is retried."""

    max_retries: int = 5
    backoff: float = 0.5

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds before retry number ``retry`` (1-based): ``Retry-After`` when given,
        otherwise exponential backoff with jitter (between half and all of ``backoff * 2**(retry-1)``)."""
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        ceiling = min(_MAX_BACKOFF, self.backoff * (2 ** (retry - 1)))
        return float(ceiling * random.uniform(0.5, 1.0))


@dataclass
class Fetched:
    """A decoded JSON response: the body, the final URL and the ``Link: rel=next`` target if any."""

    url: str
    body: Any
    link_next: str | None


def _excerpt(response: httpx.Response) -> str:
    try:
        text = response.text
    except Exception:  # undecodable bytes: say so rather than fail while failing
        return "<undecodable body>"
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "…"


def _status(response: httpx.Response) -> str:
    phrase = response.reason_phrase
    return f"HTTP {response.status_code}" + (f" {phrase}" if phrase else "")


class Fetcher:
    """Fetches JSON documents for one stage run (thread-safe)."""

    def __init__(
        self,
        *,
        stage: str,
        client: httpx.Client,
        auth: RequestAuth,
        trusted_origin: tuple[str, str, int | None],
        headers: Mapping[str, str],
        timeout: float,
        retry: RetryPolicy,
        limiter: TokenBucket | None,
        logger: logging.Logger,
        should_stop: Callable[[], bool],
        connection_name: str | None = None,
    ) -> None:
        self.stage = stage
        self.client = client
        self.auth = auth
        self.trusted_origin = trusted_origin
        self.headers = dict(headers)
        self.timeout = timeout
        self.retry = retry
        self.limiter = limiter
        self.logger = logger
        self.should_stop = should_stop
        self.connection_name = connection_name
        self.requests = 0
        self._count_lock = threading.Lock()

    # -- helpers -----------------------------------------------------------
    def scrub(self, text: str) -> str:
        """``text`` without any credential value."""
        return self.auth.scrub(text)

    def fail(self, message: str, *, code: str = "HTTP_FAILED") -> StageError:
        """A StageError for this stage, its message scrubbed of secrets."""
        return StageError(self.stage, self.scrub(message), code=code)

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, waking up early (with :class:`Stopped`) when the run stops."""
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            if self.should_stop():
                raise Stopped
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    # -- the request -------------------------------------------------------
    def get_json(
        self, url: str, params: Mapping[str, str] | None = None, *, none_on_404: bool = False
    ) -> Fetched | None:
        """GET ``url`` (``params`` merged into its query) and decode the JSON body.

        Retries transient failures; raises :class:`StageError` on a
        non-retryable status, on exhausted retries and on a body that is not
        JSON, and :class:`Stopped` when the run stops meanwhile. With
        ``none_on_404`` a 404 answer is None instead of an error.
        """
        try:
            parsed = httpx.URL(url)
            # Merged, not replaced: a next link's own query must survive (httpx.URL(params=) replaces it).
            request_url = str(parsed.copy_merge_params(dict(params)) if params else parsed)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise self.fail(f"invalid URL {safe_url(url)}: {exc}") from None
        shown = self.scrub(safe_url(request_url))
        attempts = self.retry.max_retries + 1
        problem = ""
        for attempt in range(1, attempts + 1):
            if self.should_stop():
                raise Stopped
            retry_after: float | None = None
            try:
                response = self._send_following_redirects(request_url)
            except httpx.TimeoutException:
                problem = f"timed out after {self.timeout:g} s"
            except httpx.UnsupportedProtocol as exc:
                raise self.fail(f"GET {shown}: {exc}") from None
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            except (httpx.RequestError, httpx.InvalidURL) as exc:
                # Redirect loops, undecodable content encodings: retrying cannot help.
                raise self.fail(f"GET {shown}: {type(exc).__name__}: {exc}") from None
            except HawkResponseRejected as exc:
                raise self.fail(
                    f"GET {shown}: the server's Hawk signature (Server-Authorization) did not verify "
                    f"({exc}); the response was rejected",
                    code="HTTP_AUTH_FAILED",
                ) from None
            else:
                status = response.status_code
                if status < 300:
                    return self._decoded(response, shown)
                if 300 <= status < 400:
                    raise self.fail(f"GET {shown} returned {_status(response)} without a usable Location")
                if status == 404 and none_on_404:
                    return None
                problem = f"{_status(response)}: {_excerpt(response)}"
                if status not in _RETRY_STATUSES and status < 500:
                    raise self.fail(
                        f"GET {shown} returned {problem}{self._hint(status, response)}",
                        code="HTTP_AUTH_FAILED" if status in (401, 403) else "HTTP_FAILED",
                    )
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt == attempts:
                break
            delay = self.retry.delay(attempt, retry_after)
            self.logger.warning(
                "%s: GET %s %s; retry %d of %d in %.2f s",
                self.stage,
                shown,
                self.scrub(problem),
                attempt,
                self.retry.max_retries,
                delay,
            )
            self.sleep(delay)
        raise self.fail(
            f"GET {shown} failed after {attempts} attempt{'s' if attempts != 1 else ''}: {problem}",
            code="HTTP_RETRIES_EXHAUSTED",
        )

    def _hint(self, status: int, response: httpx.Response) -> str:
        if status not in (401, 403):
            return ""
        if self.auth.auth is not None and origin_of(str(response.request.url)) != self.trusted_origin:
            scheme, host, port = self.trusted_origin
            return f" (credentials are only sent to {scheme}://{host}:{port})"
        if self.connection_name is not None:
            return f" (check the credentials of connection '{self.connection_name}')"
        return ""

    def _send_following_redirects(self, url: str) -> httpx.Response:
        for _ in range(_MAX_REDIRECTS + 1):
            trusted = origin_of(url) == self.trusted_origin
            if self.limiter is not None:
                self.limiter.acquire(self.sleep)
            with self._count_lock:
                self.requests += 1
            response = self.client.get(
                url,
                headers=self.headers if trusted else None,
                auth=self.auth.auth if trusted and self.auth.auth is not None else None,
            )
            location = response.headers.get("Location")
            if response.is_redirect and location:
                response.close()
                url = urljoin(url, location)
                continue
            return response
        raise httpx.TooManyRedirects(f"more than {_MAX_REDIRECTS} redirects")

    def _decoded(self, response: httpx.Response, shown: str) -> Fetched:
        content = response.content
        body: Any = None
        if content.strip():
            try:
                body = json.loads(content)
            except ValueError:
                kind = response.headers.get("Content-Type", "no content type")
                raise self.fail(
                    f"GET {shown} returned {_status(response)} but the body is not JSON ({kind}): "
                    f"{_excerpt(response)}",
                    code="HTTP_NOT_JSON",
                ) from None
        link = response.links.get("next", {}).get("url")
        return Fetched(str(response.url), body, urljoin(str(response.url), link) if link else None)
