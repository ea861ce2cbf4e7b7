"""Shared test configuration.

Tests that need an external service (PostgreSQL, MariaDB, Redis, ...) ask
for it through :func:`require_service`: when the service is not reachable
the test is skipped with the reason, unless FLOWPORT_REQUIRE_SERVICES=1
(as in CI), where a missing service fails the test.
"""

from __future__ import annotations

import os
import socket

import pytest


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, with FLOWPORT_REQUIRE_SERVICES=1, fail) when host:port does not answer."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        reason = f"{name} is not reachable at {host}:{port} ({exc})"
    if os.environ.get("FLOWPORT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}; FLOWPORT_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # No test may touch the user's real ~/.flowport.
    monkeypatch.setenv("FLOWPORT_HOME", str(tmp_path_factory.mktemp("flowport-home")))
