"""``flowport server`` as a real process on a loopback port."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from flowport.store.database import DATABASE_URL_ENV

START_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(home: Path, port: int, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "FLOWPORT_HOME": str(home), "COLUMNS": "200"}
    for name in (
        DATABASE_URL_ENV,
        "FLOWPORT_ADMIN_PASSWORD",
        "FLOWPORT_DATA_DIR",
        "FLOWPORT_EXECUTOR",
        "FLOWPORT_LAUNCHER",
    ):
        env.pop(name, None)
    command = [sys.executable, "-m", "flowport.cli.main", "server", "--port", str(port), *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.stdout is not None
    return process.stdout.read()


def _wait_for(url: str, auth: Any, process: subprocess.Popen[str], check: Any) -> Any:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, _stop(process)
        try:
            response = httpx.get(url, auth=auth, timeout=5)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if response.status_code == 200 and check(response.json()):
            return response.json()
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in time:\n{_stop(process)}")


def test_flowport_server_serves_the_example_flow_and_runs_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process = _start(home, port, "--run-example")
    try:
        password_file = home / "initial-admin-password"
        deadline = time.monotonic() + START_TIMEOUT
        while not password_file.exists() and time.monotonic() < deadline:
            assert process.poll() is None, _stop(process)
            time.sleep(0.1)
        password = password_file.read_text().strip()
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        auth = ("admin", password)
        flows = _wait_for(f"{base}/v4/flows", auth, process, lambda body: body["count"] >= 1)
        assert [f["name"] for f in flows["data"]] == ["Wrangle Orders"]
        assert httpx.get(f"{base}/v4/flows", timeout=5).status_code == 401
        assert httpx.get(f"{base}/openapi.json", timeout=5).json()["info"]["title"] == "Flowport"
        groups = _wait_for(
            f"{base}/v4/jobGroups",
            auth,
            process,
            lambda body: body["count"] and body["data"][0]["status"] in ("Complete", "Failed"),
        )
        assert groups["data"][0]["status"] == "Complete", groups["data"][0]["error"]
        assert (home / "data" / "out" / "orders.jsonl").is_file()
    finally:
        output = _stop(process)
    assert f"{base}/v4" in output and f"{base}/docs" in output
    assert f"Login: admin / {password}" in output and output.count(password) == 1
    assert "Complete" in output and "Orders_01" in output
    assert process.returncode == 0, output

    # Started again: the same admin, the example not loaded twice, the password not printed again.
    process = _start(home, port)
    try:
        flows = _wait_for(f"{base}/v4/flows", auth, process, lambda body: True)
        assert flows["count"] == 1
    finally:
        output = _stop(process)
    assert password not in output and str(password_file) in output


def test_a_server_loads_no_example_unless_asked(tmp_path: Path) -> None:
    home = tmp_path / "prod"
    port = _free_port()
    process = _start(home, port)
    try:
        password_file = home / "initial-admin-password"
        deadline = time.monotonic() + START_TIMEOUT
        while not password_file.exists() and time.monotonic() < deadline:
            assert process.poll() is None, _stop(process)
            time.sleep(0.1)
        auth = ("admin", password_file.read_text().strip())
        flows = _wait_for(f"http://127.0.0.1:{port}/v4/flows", auth, process, lambda body: True)
        assert flows["count"] == 0 and flows["data"] == []
        assert not (home / "data" / "orders.csv").exists()
    finally:
        output = _stop(process)
    assert "Example flow" not in output
