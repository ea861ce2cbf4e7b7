"""Starting a real ``flowport server`` for tests: passwords, a free port, waiting until it answers."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from flowport.sdk import Client

__all__ = ["ADMIN_PASSWORD", "EDITOR_PASSWORD", "VIEWER_PASSWORD", "Server", "free_port", "wait_until_up"]

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
