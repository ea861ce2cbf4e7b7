"""A real ``flowport server`` process on loopback, shared by the SDK and remote CLI tests.

The server gets its own FLOWPORT_HOME and an admin password
(FLOWPORT_ADMIN_PASSWORD); the fixture waits until it answers, and stops it
at the end of the session. Its log is shown when it fails to start.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from tests.sdk.flowport_server import (
    ADMIN_PASSWORD,
    EDITOR_PASSWORD,
    VIEWER_PASSWORD,
    Server,
    running_server,
)

from flowport.sdk import Client


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Start ``flowport server`` once for the session, with an editor and a viewer besides the admin."""
    # With the example: the SDK tests use the shipped orders flow.
    with running_server(tmp_path_factory.mktemp("sdk-server-home"), "--example") as running:
        with httpx.Client(base_url=running.url, auth=("admin", ADMIN_PASSWORD), timeout=30) as admin:
            for name, password, role in (
                ("editor", EDITOR_PASSWORD, "editor"),
                ("viewer", VIEWER_PASSWORD, "viewer"),
            ):
                created = admin.post("/v4/users", json={"name": name, "password": password, "role": role})
                assert created.status_code == 201, created.text
        yield running


@pytest.fixture
def admin(server: Server) -> Iterator[Client]:
    """An SDK client signed in as the admin."""
    with server.client() as client:
        yield client


@pytest.fixture
def sample_csv(server: Server) -> str:
    """A one-record CSV in the server's data folder; flows refer to it by its relative name."""
    server.data_dir.mkdir(parents=True, exist_ok=True)
    (server.data_dir / "seed.csv").write_text("a,b,c\nabc,xyz,lmn\n", encoding="utf-8")
    return "seed.csv"
