"""Pipelines through the SDK and ``flowport pipelines|locks`` against a real server (process pool)."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from pathlib import Path

import pytest
import yaml
from tests.sdk.flowport_server import ADMIN_PASSWORD, Server
from typer.testing import CliRunner

from flowport.cli.main import app
from flowport.sdk import Client, LocksHeld

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_server_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLOWPORT_URL", "FLOWPORT_TOKEN", "FLOWPORT_PROJECT"):
        monkeypatch.delenv(name, raising=False)


def test_the_sdk_runs_a_pipeline_and_a_held_lock_is_refused_by_name(admin: Client, server: Server) -> None:
    name = f"sdk-{uuid.uuid4().hex[:6]}"
    marker = server.data_dir / f"{name}.started"
    pipeline = admin.pipelines.create(
        {
            "name": name,
            "parameters": {"seconds": "0"},
            "tasks": [
                {
                    "name": "hold",
                    "type": "shell",
                    "command": f"touch {marker}; sleep ${{seconds}}",
                    "lock": name,
                },
                {"name": "after", "type": "shell", "command": "echo ok", "after": ["hold"]},
            ],
        }
    )
    first = pipeline.run(seconds=20)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, first.refresh()
        time.sleep(0.05)
    with pytest.raises(LocksHeld, match=f"pipeline run {first.run_id}"):
        pipeline.run()
    assert [lock["name"] for lock in admin.pipelines.locks()] == [name]
    assert first.cancel().wait(timeout=60).status == "Canceled"
    done = pipeline.run().wait(timeout=60)
    assert done.status == "Complete" and [t["status"] for t in done.tasks] == ["Complete", "Complete"]
    assert [r.run_id for r in pipeline.runs()] == [done.run_id, first.run_id]
    with zipfile.ZipFile(io.BytesIO(pipeline.export())) as package:
        manifest = json.loads(package.read("manifest.json"))
    assert [p["name"] for p in manifest["pipelines"]] == [name] and manifest["flows"] == []


def test_the_cli_creates_runs_and_lists(server: Server, tmp_path: Path) -> None:
    env = {"FLOWPORT_URL": server.url}
    login = runner.invoke(
        app,
        ["login", "--url", server.url, "--user", "admin", "--password-stdin"],
        input=ADMIN_PASSWORD + "\n",
    )
    assert login.exit_code == 0, login.output
    name = f"cli-{uuid.uuid4().hex[:6]}"
    document = tmp_path / "pipeline.yaml"
    document.write_text(
        yaml.safe_dump(
            {"name": name, "tasks": [{"name": "hello", "type": "shell", "command": "echo hello ${target}"}]}
        )
    )
    created = runner.invoke(app, ["pipelines", "create", str(document), "--json"], env=env)
    assert created.exit_code == 0, created.output
    ran = runner.invoke(app, ["pipelines", "run", name, "-p", "target=prod", "--wait", "--json"], env=env)
    assert ran.exit_code == 0, ran.output
    record = json.loads(ran.stdout)
    assert record["status"] == "Complete" and record["tasks"][0]["log"] == "hello prod"
    failing = tmp_path / "failing.json"
    failing.write_text(
        json.dumps({"name": name, "tasks": [{"name": "boom", "type": "shell", "command": "exit 4"}]})
    )
    updated = runner.invoke(app, ["pipelines", "update", name, str(failing)], env=env)
    assert updated.exit_code == 0, updated.output
    failed = runner.invoke(app, ["pipelines", "run", name, "--wait"], env=env)
    assert failed.exit_code == 1 and "exited with status 4" in failed.stdout.replace("\n", " ")
    runs = json.loads(runner.invoke(app, ["pipelines", "runs", name, "--json"], env=env).stdout)
    assert [r["status"] for r in runs["data"]] == ["Failed", "Complete"]
    jobs = json.loads(runner.invoke(app, ["jobs", "list", "--status", "Failed", "--json"], env=env).stdout)
    failed_run = runs["data"][0]["id"]
    assert failed_run in [j["id"] for j in jobs["data"]]
    assert all(j["status"] == "Failed" for j in jobs["data"])
    shown = runner.invoke(app, ["jobs", "show", str(failed_run)], env=env)
    assert shown.exit_code == 0 and f"Job {failed_run}: Failed" in shown.stdout
    ended = runner.invoke(app, ["jobs", "cancel", str(failed_run)], env=env)
    assert ended.exit_code == 1 and "already ended (Failed)" in ended.stderr
    missing = runner.invoke(app, ["jobs", "show", "999999"], env=env)
    assert missing.exit_code == 2
    exported = runner.invoke(app, ["pipelines", "export", name, "-o", str(tmp_path / "p.zip")], env=env)
    assert exported.exit_code == 0 and (tmp_path / "p.zip").read_bytes()[:2] == b"PK"
    # Without a server, the package's pipeline lands beside its flows as a file.
    local = runner.invoke(
        app, ["flows", "import", str(tmp_path / "p.zip"), "--local", "-d", str(tmp_path / "files"), "--json"]
    )
    assert local.exit_code == 0, local.output
    (written,) = json.loads(local.stdout)["pipelines"]
    assert written["action"] == "written"
    assert json.loads(Path(written["file"]).read_text())["tasks"][0]["name"] == "boom"
    locks = runner.invoke(app, ["locks", "--json"], env=env)
    assert locks.exit_code == 0 and json.loads(locks.stdout)["count"] == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntasks:\n  - {name: a, type: shell, command: 'true', after: [nope]}\n")
    refused = runner.invoke(app, ["pipelines", "create", str(bad)], env=env)
    assert refused.exit_code == 1 and "'nope', which is not a task" in refused.stderr.replace("\n", " ")
