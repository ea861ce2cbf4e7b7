"""Webhooks through the SDK and ``flowport webhooks`` against a real ``flowport server``, whose own
dispatcher loop POSTs the signed deliveries to a real HTTP server on loopback."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.sdk.flowport_server import ADMIN_PASSWORD, VIEWER_PASSWORD, Server
from tests.webhook_receiver import Receiver, receiving, verify
from typer.testing import CliRunner

from flowport.cli.main import app
from flowport.sdk import Client, Conflict, Forbidden

runner = CliRunner()
SECRET = "cli-webhook-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def _no_server_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLOWPORT_URL", "FLOWPORT_TOKEN", "FLOWPORT_PROJECT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as server:
        yield server


def _until(done: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.2)


def test_the_servers_own_loop_delivers_signed_pipeline_events(
    admin: Client, server: Server, receiver: Receiver
) -> None:
    name = f"hook-{uuid.uuid4().hex[:6]}"
    hook = admin.webhooks.create(name, url=receiver.url, events=["pipeline.*"], secret=SECRET)
    assert hook.secret == SECRET and "secret" not in hook.record
    assert admin.webhooks.get(hook.webhook_id).secret is None
    assert admin.webhooks.get(name=name).webhook_id == hook.webhook_id
    with server.client("viewer", VIEWER_PASSWORD) as viewer, pytest.raises(Forbidden):
        viewer.webhooks.list()
    pipeline = admin.pipelines.create({"name": name, "tasks": [{"name": "only", "type": "empty"}]})
    run = pipeline.run().wait(timeout=60)
    assert run.status == "Complete"

    # No test drives a dispatcher here: `flowport server` runs one every 2 s.
    # (Events of other tests' runs may come too, if they were still in the outbox when it was created.)
    def mine() -> list[dict[str, Any]]:
        return [b for b in receiver.bodies() if b["jobGroup"]["pipelineId"] == pipeline.record["id"]]

    _until(lambda: len(mine()) >= 3, "three deliveries")
    assert [b["event"] for b in mine()] == ["pipeline.queued", "pipeline.started", "pipeline.succeeded"]
    assert all(verify(r, SECRET) for r in receiver.requests)
    _until(
        lambda: {d["status"] for d in hook.deliveries()} == {"delivered"}, "the log to show them delivered"
    )
    hook.delete()


def test_the_cli_adds_shows_updates_tests_and_removes(server: Server, receiver: Receiver) -> None:
    env = {"FLOWPORT_URL": server.url}
    login = runner.invoke(
        app,
        ["login", "--url", server.url, "--user", "admin", "--password-stdin"],
        input=ADMIN_PASSWORD + "\n",
    )
    assert login.exit_code == 0, login.output
    name = f"cli-{uuid.uuid4().hex[:6]}"
    added = runner.invoke(
        app, ["webhooks", "add", name, "--target", receiver.url, "-e", "job.failed", "--json"], env=env
    )
    assert added.exit_code == 0, added.output
    created = json.loads(added.stdout)
    generated = created["secret"]
    assert len(generated) >= 32 and created["events"] == ["job.failed"]
    shown = runner.invoke(app, ["webhooks", "show", name, "--json"], env=env)
    assert shown.exit_code == 0 and json.loads(shown.stdout)["id"] == created["id"]
    listed = runner.invoke(app, ["webhooks", "list"], env=env)
    assert listed.exit_code == 0 and name in listed.stdout
    assert generated not in shown.stdout + listed.stdout
    # Disabled, it sends nothing: a ping is refused rather than queued unseen.
    disabled = runner.invoke(app, ["webhooks", "update", name, "--disable", "-e", "job.*"], env=env)
    assert disabled.exit_code == 0 and "disabled" in disabled.stdout and "job.*" in disabled.stdout
    refused = runner.invoke(app, ["webhooks", "test", name], env=env)
    assert refused.exit_code == 1 and "disabled" in refused.stderr
    rotated = runner.invoke(
        app,
        ["webhooks", "update", str(created["id"]), "--enable", "--secret-stdin"],
        input=SECRET + "\n",
        env=env,
    )
    assert rotated.exit_code == 0, rotated.output
    assert SECRET not in rotated.stdout
    pinged = runner.invoke(app, ["webhooks", "test", name, "--json"], env=env)
    assert pinged.exit_code == 0, pinged.output
    ping = json.loads(pinged.stdout)

    def pings() -> list[dict[str, Any]]:
        return [r for r in receiver.requests if json.loads(r["body"])["event"] == "ping"]

    _until(lambda: len(pings()) == 1, "the ping")
    assert verify(pings()[0], SECRET) and not verify(pings()[0], generated)
    log = runner.invoke(app, ["webhooks", "deliveries", name, "--json"], env=env)
    assert log.exit_code == 0 and json.loads(log.stdout)["data"][0]["id"] == ping["id"]
    again = runner.invoke(app, ["webhooks", "redeliver", name, str(ping["id"])], env=env)
    assert again.exit_code == 0 and "queued again" in again.stdout
    _until(lambda: len(pings()) == 2, "the redelivered ping")
    # --new-secret makes one on this side and prints it once.
    renewed = runner.invoke(app, ["webhooks", "update", name, "--new-secret"], env=env)
    assert renewed.exit_code == 0 and "shown once" in renewed.stdout
    bad = runner.invoke(
        app, ["webhooks", "add", f"{name}-2", "--target", "ftp://x", "-e", "job.nope"], env=env
    )
    assert bad.exit_code == 1 and "url" in bad.stderr and "job.nope" in bad.stderr
    nothing = runner.invoke(app, ["webhooks", "update", name], env=env)
    assert nothing.exit_code == 2
    removed = runner.invoke(app, ["webhooks", "remove", name], env=env)
    assert removed.exit_code == 0, removed.output
    missing = runner.invoke(app, ["webhooks", "show", name], env=env)
    assert missing.exit_code == 2


def test_the_sdk_maps_a_refused_ping_to_conflict(admin: Client, receiver: Receiver) -> None:
    hook = admin.webhooks.create(f"off-{uuid.uuid4().hex[:6]}", url=receiver.url, events=["*"], enabled=False)
    try:
        with pytest.raises(Conflict, match="disabled"):
            hook.test()
        assert hook.update(enabled=True).record["enabled"] is True
        assert hook.test()["event"] == "ping"
    finally:
        hook.delete()
