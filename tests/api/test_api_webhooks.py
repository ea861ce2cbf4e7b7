"""Webhooks through the real API: signed deliveries to a real HTTP server on loopback, retries after a
500, nothing lost or repeated across a restart of the dispatcher, secrets never shown again."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from tests.api.conftest import Instance
from tests.webhook_receiver import Receiver, receiving
from tests.webhook_receiver import verify as _verify

from flowport.services.webhooks import Dispatcher
from flowport.store.tables import utcnow

SECRET = "a-webhook-secret-of-32-characters!"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as server:
        yield server


class Clock:
    def __init__(self) -> None:
        self.now: datetime = utcnow()

    def __call__(self) -> datetime:
        return self.now


def test_job_events_reach_a_real_server_signed_and_a_500_is_retried(
    api: Instance, receiver: Receiver
) -> None:
    created = api.ok(
        "POST",
        "/v4/webhooks",
        201,
        json={
            "name": "ops",
            "url": receiver.url,
            "events": ["job.started", "job.succeeded"],
            "secret": SECRET,
        },
    )
    assert created["secret"] == SECRET
    flow = api.create_example()
    group = api.ok("POST", f"/v4/flows/{flow['id']}/run", 201, json={})
    assert api.wait(group["id"])["status"] == "Complete"
    clock = Clock()
    api.activate()
    receiver.failing = 1  # the first POST gets a 500
    first = Dispatcher(clock=clock).run_once()
    assert first == {"queued": 2, "sent": 2, "delivered": 1}
    log = api.ok("GET", f"/v4/webhooks/{created['id']}/deliveries")["data"]
    pending = [d for d in log if d["status"] == "pending"]
    assert len(pending) == 1 and pending[0]["lastStatusCode"] == 500 and pending[0]["attempts"] == 1
    # Not due yet; after the backoff it is sent again and delivered.
    assert Dispatcher(clock=clock).run_once()["sent"] == 0
    clock.now += timedelta(seconds=11)
    assert Dispatcher(clock=clock).run_once() == {"queued": 0, "sent": 1, "delivered": 1}
    # The oldest delivery went first and got the 500: it came again after the other one.
    assert receiver.events() == ["job.started", "job.succeeded", "job.started"]
    assert all(_verify(r, SECRET) for r in receiver.requests)
    assert not _verify(receiver.requests[0], "another-secret-entirely-32-chars!")
    body = json.loads(receiver.requests[-1]["body"])
    assert body["jobGroup"]["id"] == group["id"] and body["jobGroup"]["flowId"] == flow["id"]
    statuses = {
        d["event"]: d["status"] for d in api.ok("GET", f"/v4/webhooks/{created['id']}/deliveries")["data"]
    }
    assert statuses == {"job.started": "delivered", "job.succeeded": "delivered"}
    # The secret is never shown again, nor kept in the log.
    assert SECRET not in api.get(f"/v4/webhooks/{created['id']}").text
    assert SECRET not in api.get("/v4/webhooks").text
    assert SECRET not in api.get(f"/v4/webhooks/{created['id']}/deliveries").text
    # Of every answer the API gave in this test, only the one that created the webhook holds it.
    assert sum(SECRET.encode() in body for body in api.bodies) == 1


def test_a_restart_neither_loses_nor_repeats_an_event(api: Instance, receiver: Receiver) -> None:
    hook = api.ok("POST", "/v4/webhooks", 201, json={"name": "all", "url": receiver.url, "events": ["*"]})
    flow = api.create_example()
    api.activate()
    Dispatcher().queue(utcnow())  # the events before this webhook's first job: none yet
    first = api.ok("POST", f"/v4/flows/{flow['id']}/run", 201, json={})
    api.wait(first["id"])
    api.activate()
    # One dispatcher queues the events and "dies" before sending; a new one sends each exactly once.
    assert Dispatcher().queue(utcnow()) == 3  # queued, started, succeeded
    second = api.ok("POST", f"/v4/flows/{flow['id']}/run", 201, json={})
    api.wait(second["id"])
    api.activate()
    restarted = Dispatcher()
    assert restarted.run_once() == {"queued": 3, "sent": 6, "delivered": 6}
    assert restarted.run_once() == {"queued": 0, "sent": 0, "delivered": 0}
    ids = [json.loads(r["body"])["id"] for r in receiver.requests]
    assert len(ids) == len(set(ids)) == 6
    assert receiver.events().count("job.succeeded") == 2
    log = api.ok("GET", f"/v4/webhooks/{hook['id']}/deliveries", params={"noLimit": "true"})
    assert log["count"] == 6


def test_pipeline_runs_send_pipeline_events_and_a_ping_can_be_redelivered(
    api: Instance, receiver: Receiver
) -> None:
    hook = api.ok(
        "POST", "/v4/webhooks", 201, json={"name": "p", "url": receiver.url, "events": ["pipeline.*"]}
    )
    pipeline = api.ok(
        "POST",
        "/v4/pipelines",
        201,
        json={"name": "tiny", "tasks": [{"name": "a", "type": "empty"}]},
    )
    run = api.ok("POST", f"/v4/pipelines/{pipeline['id']}/run", 201, json={})
    api.activate()
    for _ in range(200):
        if api.ok("GET", f"/v4/pipelineRuns/{run['id']}")["status"] == "Complete":
            break
        time.sleep(0.05)
    api.activate()
    Dispatcher().run_once()
    assert receiver.events() == ["pipeline.queued", "pipeline.started", "pipeline.succeeded"]
    assert json.loads(receiver.requests[-1]["body"])["jobGroup"]["pipelineId"] == pipeline["id"]
    ping = api.ok("POST", f"/v4/webhooks/{hook['id']}/test", 201)
    api.activate()
    Dispatcher().run_once()
    assert receiver.events()[-1] == "ping"
    other = api.ok("POST", "/v4/webhooks", 201, json={"name": "q", "url": receiver.url, "events": ["*"]})
    foreign = api.post(f"/v4/webhooks/{other['id']}/deliveries/{ping['id']}/redeliver")
    assert foreign.status_code == 404
    assert api.post(f"/v4/webhooks/{hook['id']}/deliveries/999999/redeliver").status_code == 404
    again = api.ok("POST", f"/v4/webhooks/{hook['id']}/deliveries/{ping['id']}/redeliver")
    assert again["status"] == "pending"
    api.activate()
    Dispatcher().run_once()
    assert receiver.events()[-2:] == ["ping", "ping"]


def test_webhooks_are_for_admins_and_bad_bodies_are_named(api: Instance) -> None:
    body = {"name": "x", "url": "http://127.0.0.1:9/hook", "events": ["job.failed"]}
    assert api.post("/v4/webhooks", json=body, role="editor").status_code == 403
    assert api.get("/v4/webhooks", role="viewer").status_code == 403
    bad = api.post("/v4/webhooks", json={**body, "url": "ftp://x", "events": ["job.exploded"], "colour": 1})
    assert bad.status_code == 422
    message = bad.json()["exception"]["message"]
    assert "url" in message and "job.exploded" in message and "colour" in message
    short = api.post("/v4/webhooks", json={**body, "secret": "short"})
    assert short.status_code == 422 and "secret" in short.json()["exception"]["message"]
    created = api.ok("POST", "/v4/webhooks", 201, json=body)
    assert len(created["secret"]) >= 32
    assert api.patch(f"/v4/webhooks/{created['id']}", json={"events": []}).status_code == 422
    renamed = api.patch(f"/v4/webhooks/{created['id']}", json={"nmae": "y"})
    assert renamed.status_code == 422 and "nmae" in renamed.json()["exception"]["message"]
    assert (
        api.patch(f"/v4/webhooks/{created['id']}", json={"enabled": True}, role="editor").status_code == 403
    )
    changed = api.ok("PATCH", f"/v4/webhooks/{created['id']}", json={"enabled": False, "secret": SECRET})
    assert changed["enabled"] is False and "secret" not in changed
    # A disabled webhook sends nothing: a ping there would wait unseen, so it is refused.
    disabled = api.post(f"/v4/webhooks/{created['id']}/test")
    assert disabled.status_code == 409 and "disabled" in disabled.json()["exception"]["message"]
    assert not any(SECRET.encode() in b for b in api.bodies)
    api.ok("DELETE", f"/v4/webhooks/{created['id']}", 204)
    assert api.get(f"/v4/webhooks/{created['id']}").status_code == 404
