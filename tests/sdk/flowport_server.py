"""Starting a real ``flowport server`` for tests: passwords, a free port, waiting until it answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from flowport.sdk import Client

__all__ = [
    "ADMIN_PASSWORD",
    "EDITOR_PASSWORD",
    "VIEWER_PASSWORD",
    "Server",
    "free_port",
    "running_server",
    "wait_until_up",
]

ADMIN_PASSWORD = "Adm1n-sdk-test-password"
EDITOR_PASSWORD = "Ed1tor-sdk-test-password"
VIEWER_PASSWORD = "V1ewer-sdk-test-password"
_START_TIMEOUT = 90.0


@dataclass(frozen=True)
class Server:
    """The running server: where it is, its home and data folder, and its log."""

    url: str
    home: Path
    log: Path

    @property
    def data_dir(self) -> Path:
        """Where relative paths of stored flows resolve on the server."""
        return self.home / "data"

    def client(self, user: str = "admin", password: str = ADMIN_PASSWORD) -> Client:
        """An SDK client signed in as ``user``."""
        return Client(self.url, username=user, password=password)


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Return once the server answers an authenticated request; fail the test with its log otherwise."""
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"flowport server exited with {process.returncode}:\n{log.read_text(errors='replace')}"
            )
        try:
            response = httpx.get(f"{url}/v4/users/current", auth=("admin", ADMIN_PASSWORD), timeout=2)
            if response.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"flowport server did not answer in {_START_TIMEOUT:g}s:\n{log.read_text(errors='replace')}")


@contextmanager
def running_server(home: Path, *args: str) -> Iterator[Server]:
    """A ``flowport server`` process on a free port for ``home`` (``args``: e.g. ``--example``), its admin
    password ADMIN_PASSWORD; stopped (killed if it must be) on exit."""
    log = home / "server.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("FLOWPORT_DATABASE_URL", "FLOWPORT_DATA_DIR", "FLOWPORT_URL", "FLOWPORT_TOKEN")
    }
    env.update({"FLOWPORT_HOME": str(home), "FLOWPORT_ADMIN_PASSWORD": ADMIN_PASSWORD})
    command = [sys.executable, "-m", "flowport.cli.main", "server", "--port", str(port), *args]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=home)
    try:
        wait_until_up(process, url, log)
        yield Server(url=url, home=home, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
