"""Answers kept per store generation: a repeated ``GET /v4/flows`` is answered without the route.

A few read-only routes answer from one topic of the store alone (the flow
list: the flows and projects tables), the same for every caller of the same
role. For those, the authenticating middleware first reads the store's
generations in one read-only worker call (which also recognises a bearer
token already checked at the current generation of the users and tokens;
any other credentials get the full check), before the route reads any row.
An answer the route gave earlier to the same user, for the same path and
query string, at the same generation, is sent again as it
was (status 200, its headers and body), skipping routing, dependencies, the
route's own reads and serialization. Any write to the topic's tables, in any
process, moves the generation (the store's triggers, migration 0012), so a
kept answer is never older than the rows it was read from.

Only answers of credentials from the ``Authorization`` header are kept (a
web session's cookie is checked with its CSRF rules every time), only 200s,
never one that sets a cookie, and none larger than :data:`MAX_BODY`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from starlette.types import Message, Scope, Send

from flowport.services import auth, read_cache
from flowport.services.auth import User
from flowport.services.instance import store_url
from flowport.services.read_cache import GenerationCache

__all__ = ["KEPT_ROUTES", "MAX_BODY", "Kept", "kept_topic", "probe", "run_probe"]

# path -> the store topic its answer is read from.
KEPT_ROUTES: Final = {"/v4/flows": read_cache.FLOWS}
MAX_BODY: Final = 1 << 20


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


_answers: GenerationCache[_Answer] = GenerationCache(512)


def kept_topic(scope: Scope, authorization: str | None) -> str | None:
    """The topic of a request whose answer may be kept, or None."""
    if scope["method"] != "GET" or not authorization:
        return None
    return KEPT_ROUTES.get(scope["path"])


def probe(authorization: str | None, topic: str) -> tuple[User | None, str, int]:
    """One read of the store's generations (before the route reads any row): the caller when its
    token was checked at the current generation of the users and tokens (else None: the full check
    follows, off this executor), the store URL and the topic's generation.

    Read-only: a probe never waits for a writer (a token's check may write when it was last used),
    so the probes' two threads are never held up by a busy store.
    """
    url = store_url()
    generations = read_cache.generations(url)
    user = auth.known_token_user(authorization, url, generations.get(read_cache.AUTH, -1))
    return user, url, generations.get(topic, -1)


# The probes' own worker threads, as many as cores there usually are: a probe is a tenth of a
# millisecond of Python, and forty of them at once (the default pool) mostly wait for each other.
# A plain executor rather than anyio's: at a thousand requests a second, its bookkeeping around each
# call (limiter, cancel scope, backend look-ups) cost more of the event loop than the probe itself.
_PROBES: Final = 2
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


async def run_probe(authorization: str | None, topic: str) -> tuple[User | None, str, int]:
    """:func:`probe` in a worker thread of the probes' own."""
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(_PROBES, thread_name_prefix="flowport-probe")
    return await asyncio.get_running_loop().run_in_executor(_executor, probe, authorization, topic)


class Kept:
    """The kept answer of one request, if any, and the ``send`` that keeps the route's answer."""

    def __init__(self, scope: Scope, user: User, url: str, generation: int) -> None:
        self.key: Hashable = (url, scope["path"], scope.get("query_string", b""), user.id, user.role)
        self.generation = generation

    async def replay(self, send: Send) -> bool:
        """Send the kept answer; False when there is none."""
        found = _answers.peek(self.key, self.generation)
        if found is None:
            return False
        answer = found[0]
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
        await send({"type": "http.response.body", "body": answer.body})
        return True

    def keeping(self, send: Send) -> Send:
        """``send``, keeping the answer it carries when it may be kept."""
        start: dict[str, object] = {}
        chunks: list[bytes] = []
        size = 0

        async def keeping_send(message: Message) -> None:
            nonlocal size
            await send(message)
            if message["type"] == "http.response.start":
                start.update(status=message["status"], headers=list(message.get("headers", [])))
            elif message["type"] == "http.response.body" and start.get("status") == 200:
                chunk = bytes(message.get("body", b""))
                size += len(chunk)
                chunks.append(chunk)
                if not message.get("more_body", False) and size <= MAX_BODY:
                    headers = start["headers"]
                    assert isinstance(headers, list)
                    if not any(name.lower() == b"set-cookie" for name, _ in headers):
                        _answers.put(self.key, self.generation, _Answer(200, headers, b"".join(chunks)))

        return keeping_send
