"""``flowport login`` and ``flowport flows ...`` against a real server, through the SDK."""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from tests.sdk.flowport_server import ADMIN_PASSWORD, VIEWER_PASSWORD, Server
from typer.testing import CliRunner

from flowport.cli.flows import credentials_path
from flowport.cli.main import app
from flowport.sdk import Client, Unauthorized

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_server_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLOWPORT_URL", "FLOWPORT_TOKEN", "FLOWPORT_PROJECT"):
        monkeypatch.delenv(name, raising=False)


def invoke(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    result = runner.invoke(app, list(args), input=stdin, env=env)
    for secret in (ADMIN_PASSWORD, VIEWER_PASSWORD):
        assert secret not in result.stdout and secret not in result.stderr, args
    stored = credentials_path()
    if stored.is_file():
        token = json.loads(stored.read_text())["token"]
        assert token not in result.stdout and token not in result.stderr, args
    return result


def ok_json(*args: str, env: dict[str, str] | None = None) -> Any:
    result = invoke(*args, "--json", env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _login(server: Server, user: str = "admin", password: str = ADMIN_PASSWORD) -> Result:
    return invoke("login", "--url", server.url, "--user", user, "--password-stdin", stdin=password + "\n")


@pytest.fixture
def flow_name(admin: Client, sample_csv: str) -> str:
    """A valid batch flow on the server (CSV → Trash)."""
    project = admin.projects.get(name="default")
    flow = project.create_flow(f"cli flow {uuid.uuid4().hex[:8]}")
    origin = flow.add_stage("CSV File")
    origin.path = sample_csv
    origin >> flow.add_stage("Trash")
    project.update_flow(flow)
    return flow.name


def test_login_stores_a_private_token_and_never_prints_it(server: Server, admin: Client) -> None:
    result = _login(server)
    assert result.exit_code == 0, result.output
    path = credentials_path()
    assert f"stored in {path}" in result.stdout.replace("\n", "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["url"] == server.url and stored["user"] == "admin" and stored["token"]
    with Client(server.url, token=stored["token"]) as client:
        assert client.current_user()["name"] == "admin"

    again = _login(server)  # logging in again replaces (and revokes) the previous token
    assert again.exit_code == 0
    with Client(server.url, token=stored["token"]) as client, pytest.raises(Unauthorized):
        client.current_user()

    out = invoke("logout")
    assert out.exit_code == 0 and "token revoked" in out.stdout and not path.exists()
    assert invoke("logout").stdout.strip() == "Not logged in."


def test_login_refusals(server: Server) -> None:
    bad = invoke("login", "--url", server.url, "--user", "admin", "--password-stdin", stdin="wrong\n")
    assert bad.exit_code == 1 and "Error" in bad.stderr and not credentials_path().exists()
    no_stdin = invoke("login", "--url", server.url, "--user", "admin")
    assert no_stdin.exit_code == 2
    bad_url = invoke("login", "--url", "localhost:1", "--user", "admin", "--password-stdin", stdin="x\n")
    assert bad_url.exit_code == 2


def test_list_export_import_run_after_login(server: Server, flow_name: str, tmp_path: Path) -> None:
    assert _login(server).exit_code == 0
    listed = ok_json("flows", "list")
    names = [f["name"] for f in listed["data"]]
    assert flow_name in names and listed["count"] == len(names)
    table = invoke("flows", "list")
    assert table.exit_code == 0 and "Wrangle Orders" in table.stdout

    package = tmp_path / "one.zip"
    exported = ok_json("flows", "export", flow_name, "-o", str(package))
    assert exported["output"] == str(package) and package.is_file()
    assert [f["name"] for f in exported["flows"]] == [flow_name]
    missing = invoke("flows", "export", "no such flow", "-o", str(tmp_path / "x.zip"))
    assert missing.exit_code == 2 and "No flow" in missing.stderr

    dry = ok_json("flows", "import", str(package), "--conflict-resolution", "rename", "--dry-run")
    assert dry["dryRun"] and dry["renamed"][0]["from"] == flow_name
    assert f"{flow_name} (1)" not in [f["name"] for f in ok_json("flows", "list")["data"]]
    skipped = ok_json("flows", "import", str(package))
    assert skipped["skipped"] == [flow_name] and skipped["count"] == 0
    renamed = ok_json("flows", "import", str(package), "--conflict-resolution", "rename")
    assert renamed["data"][0]["name"] == f"{flow_name} (1)"
    shown = invoke("flows", "import", str(package), "--conflict-resolution", "replace")
    assert shown.exit_code == 0 and "Replaced" in shown.stdout
    assert invoke("flows", "import", str(package), "--conflict-resolution", "merge").exit_code == 2

    started = invoke("flows", "run", flow_name)
    assert started.exit_code == 0 and "Started job" in started.stdout
    finished = ok_json("flows", "run", flow_name, "--wait")
    assert finished["status"] == "Complete" and finished["metrics"]["Trash_01"]["inputRecords"] == 1
    shown_run = invoke("flows", "run", flow_name, "--wait")
    assert shown_run.exit_code == 0 and "Complete" in shown_run.stdout
    typo = invoke("flows", "run", flow_name, "--param", "x=1")  # the flow has no parameter x
    assert typo.exit_code == 1 and "Unknown parameter 'x'" in typo.output
    assert invoke("flows", "run", flow_name, "--param", "novalue").exit_code == 2


def test_env_token_and_failures(server: Server, admin: Client, flow_name: str, tmp_path: Path) -> None:
    token = admin.create_api_token("cli env")["token"]
    env = {"FLOWPORT_URL": server.url, "FLOWPORT_TOKEN": token}
    listed = ok_json("flows", "list", env=env)
    assert flow_name in [f["name"] for f in listed["data"]]

    bad = invoke("flows", "list", "--json", env={"FLOWPORT_URL": server.url, "FLOWPORT_TOKEN": "fp_bad"})
    assert bad.exit_code == 1 and "flowport login" in json.loads(bad.stdout)["error"]
    # A URL without a token, and no login for it, is a usage error.
    assert invoke("flows", "list", "--url", server.url).exit_code == 2
    # Nothing configured: list and run need a server.
    assert invoke("flows", "list").exit_code == 2
    assert invoke("flows", "run", flow_name).exit_code == 2

    # A failing run exits 1.
    project = admin.projects.get(name="default")
    broken = project.create_flow(f"cli broken {uuid.uuid4().hex[:8]}")
    origin = broken.add_stage("CSV File")
    origin.path = "does-not-exist.csv"
    origin >> broken.add_stage("Trash")
    project.update_flow(broken)
    failed = invoke("flows", "run", str(broken.flow_id), "--wait", "--json", env=env)
    assert failed.exit_code == 1 and json.loads(failed.stdout)["status"] == "Failed"

    # A viewer may list but not import.
    viewer_token = Client(server.url, username="viewer", password=VIEWER_PASSWORD).create_api_token("v")[
        "token"
    ]
    viewer_env = {"FLOWPORT_URL": server.url, "FLOWPORT_TOKEN": viewer_token}
    assert ok_json("flows", "list", env=viewer_env)["count"] >= 1
    package = tmp_path / "p.zip"
    assert invoke("flows", "export", flow_name, "-o", str(package), env=env).exit_code == 0
    refused = invoke("flows", "import", str(package), env=viewer_env)
    assert refused.exit_code == 1 and "Error" in refused.stderr
