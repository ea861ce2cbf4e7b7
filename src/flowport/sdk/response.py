"""The answer of a call that changes something, as the flows SDK seed prints it: ``<Response [200]>``."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["Response"]


class Response:
    """An HTTP answer with the seed's repr; ``ok``, ``status_code``, ``json()``, ``text``, ``headers``.

    Anything else is read from the underlying :class:`httpx.Response`.
    """

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    def __repr__(self) -> str:
        return f"<Response [{self._response.status_code}]>"

    @property
    def status_code(self) -> int:
        """The HTTP status."""
        return int(self._response.status_code)

    @property
    def ok(self) -> bool:
        """True for a 2xx (or 3xx) answer, as in ``requests``."""
        return self._response.status_code < 400

    def json(self) -> Any:
        """The body as JSON."""
        return self._response.json()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)
