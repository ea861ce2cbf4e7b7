"""A real HTTP server on loopback that receives webhooks, and the signature check a receiver does."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Receiver", "receiving", "verify"]


class Receiver:
    """Records each POST (headers, body); answers 500 to the next ``failing`` requests, then 204."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failing = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.requests.append({"headers": dict(self.headers), "body": body})
                    status = 500 if receiver.failing > 0 else 204
                    receiver.failing -= 1
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict[str, Any]]:
        """Every body received, parsed, in order."""
        with self._lock:
            return [json.loads(r["body"]) for r in self.requests]

    def events(self) -> list[str]:
        """The event of every body received, in order."""
        return [body["event"] for body in self.bodies()]

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A receiver for the duration of the block."""
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.close()


def verify(request: dict[str, Any], secret: str) -> bool:
    """What a receiver does (README): recompute the HMAC over "<timestamp>.<body>" and compare."""
    headers = {k.lower(): v for k, v in request["headers"].items()}
    stamp = headers["flowport-timestamp"]
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["flowport-signature"], f"v1={expected}")
