"""A lean HTTP/1.1 load client: one keep-alive connection per client, requests one after the other.

The benchmarks run the clients on the same 2-core machine as the server.
httpx spends about as much CPU on each request as the server's answer
from memory does, so with fifty of them the measure became the client's
own queue. This client does what ``wrk`` or ``hey`` do: it writes the
request line and headers, reads the status line and headers, then exactly
``Content-Length`` bytes of body (a chunked or unframed answer is refused,
the server never sends one here). A latency is from the first byte written
to the last byte read.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

__all__ = ["Answer", "run_client"]


class Answer:
    """One answer: status and body."""

    __slots__ = ("body", "status")

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body


async def _answer(reader: asyncio.StreamReader) -> Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            raise RuntimeError(f"unexpected Transfer-Encoding {value.strip()!r}")
    if length is None:
        raise RuntimeError("an answer without Content-Length")
    return Answer(status, await reader.readexactly(length))


async def run_client(
    url: str,
    method: str,
    paths: list[str],
    headers: dict[str, str],
    start: asyncio.Event,
    failures: list[str],
) -> list[float]:
    """Send ``method`` to each of ``paths`` in turn on one connection; each request's latency, in seconds.

    An answer other than 200/201 is a failure: its first 300 characters go to ``failures``.
    """
    where = urlsplit(url)
    host, port = where.hostname or "127.0.0.1", where.port or 80
    reader, writer = await asyncio.open_connection(host, port)
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    samples = []
    try:
        await start.wait()
        for path in paths:
            request = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}Content-Length: 0\r\n\r\n"
            began = time.perf_counter()
            writer.write(request.encode())
            answer = await _answer(reader)
            samples.append(time.perf_counter() - began)
            if answer.status not in (200, 201):
                text = answer.body[:300].decode(errors="replace")
                failures.append(f"{method} {path} answered {answer.status}: {text}")
    finally:
        writer.close()
    return samples
