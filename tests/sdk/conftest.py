"""A real ``flowport server`` process on loopback, shared by the SDK and remote CLI tests.

The server gets its own FLOWPORT_HOME and an admin password
(FLOWPORT_ADMIN_PASSWORD); the fixture waits until it answers, and stops it
at the end of the session. Its log is shown when it fails to start.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from tests.sdk.flowport_server import (
    ADMIN_PASSWORD,
    EDITOR_PASSWORD,
    VIEWER_PASSWORD,
    Server,
    free_port,
    wait_until_up,
)

from flowport.sdk import Client


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Start ``flowport server`` once for the session, with an editor and a viewer besides the admin."""
    home = tmp_path_factory.mktemp("sdk-server-home")
    log = home / "server.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("FLOWPORT_DATABASE_URL", "FLOWPORT_DATA_DIR", "FLOWPORT_URL", "FLOWPORT_TOKEN")
    }
    env.update({"FLOWPORT_HOME": str(home), "FLOWPORT_ADMIN_PASSWORD": ADMIN_PASSWORD})
    # With the example: the SDK tests use the shipped orders flow.
    command = [sys.executable, "-m", "flowport.cli.main", "server", "--port", str(port), "--example"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=home)
    try:
        wait_until_up(process, url, log)
        with httpx.Client(base_url=url, auth=("admin", ADMIN_PASSWORD), timeout=30) as admin:
            for name, password, role in (
                ("editor", EDITOR_PASSWORD, "editor"),
                ("viewer", VIEWER_PASSWORD, "viewer"),
            ):
                created = admin.post("/v4/users", json={"name": name, "password": password, "role": role})
                assert created.status_code == 201, created.text
        yield Server(url=url, home=home, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


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
