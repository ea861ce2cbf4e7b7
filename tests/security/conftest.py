"""A real ``flowport server`` to attack: its own home, an editor, a viewer, and a restricted test plugin.

The plugin ``run_command_test`` (artifact ``flowport-restricted-test``)
declares ``execute-code``: it stands for the coming shell and dbt tasks.
It is installed the way any distribution is — a module and a
``.dist-info`` folder with its entry point — on the server's PYTHONPATH.
It never runs a command: it writes a marker file, so a test can tell
whether it ran.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.sdk.flowport_server import ADMIN_PASSWORD, free_port, wait_until_up

EDITOR = ("editor1", "Ed1tor-attack-password")
VIEWER = ("viewer1", "V1ewer-attack-password")
ADMIN = ("admin", ADMIN_PASSWORD)

_PLUGIN = """
from pathlib import Path
from flowport.plugins.contract import Executor, StageConfig, setting


class RunCommandConfig(StageConfig):
    marker: str = setting("ran.txt", label="Marker", description="File written when the stage runs.")


class RunCommand(Executor[RunCommandConfig]):
    name = "run_command_test"
    label = "Run Command (test)"
    config_model = RunCommandConfig
    restrictions = frozenset({"execute-code"})

    def execute(self) -> None:
        self.context.resolve_path(self.config.marker).write_text("ran")
"""


def install_restricted_plugin(folder: Path) -> Path:
    """A distribution ``flowport-restricted-test`` 1.0.0 in ``folder`` (put it on PYTHONPATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flowport_restricted_test.py").write_text(_PLUGIN, encoding="utf-8")
    info = folder / "flowport_restricted_test-1.0.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: flowport-restricted-test\nVersion: 1.0.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[flowport.stages]\nrun_command_test = flowport_restricted_test:RunCommand\n", encoding="utf-8"
    )
    return folder


@dataclass(frozen=True)
class Target:
    """The server under attack."""

    url: str
    home: Path
    log: Path

    @property
    def data_dir(self) -> Path:
        """The instance's data folder: its only file root."""
        return self.home / "data"

    def client(self, who: tuple[str, str]) -> httpx.Client:
        """An HTTP client signed in as ``who`` (name, password)."""
        return httpx.Client(base_url=self.url, auth=who, timeout=60)


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """``flowport server`` with the default file roots (its data folder) and default editor permissions."""
    base = tmp_path_factory.mktemp("attack")
    home = base / "home"
    home.mkdir()
    log = base / "server.log"
    plugins = install_restricted_plugin(base / "plugins")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FLOWPORT_") or key == "FLOWPORT_REQUIRE_SERVICES"
    }
    env.update(
        {
            "FLOWPORT_HOME": str(home),
            "FLOWPORT_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "PYTHONPATH": os.pathsep.join([str(plugins), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        }
    )
    command = [sys.executable, "-m", "flowport.cli.main", "server", "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=base)
    try:
        wait_until_up(process, url, log)
        with httpx.Client(base_url=url, auth=ADMIN, timeout=30) as admin:
            for (name, password), role in ((EDITOR, "editor"), (VIEWER, "viewer")):
                created = admin.post("/v4/users", json={"name": name, "password": password, "role": role})
                assert created.status_code == 201, created.text
        yield Target(url=url, home=home, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
