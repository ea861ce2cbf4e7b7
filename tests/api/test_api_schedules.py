"""``/v4/schedules`` and ``/v4/backfills`` through the real API; the seed's weekly cron on a deployment."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from tests.api.conftest import Instance

from flowport.services import flow_records
from flowport.services.scheduler import Scheduler


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _document(output: str) -> dict[str, Any]:
    folder = resources.files("flowport") / "examples" / "orders"
    document: dict[str, Any] = json.loads((folder / "flow.json").read_text())
    document.pop("uuid")
    document["name"] = f"Orders to {output}"
    document["stages"] = [s for s in document["stages"] if s["name"] != "Parquet_01"]
    document["edges"] = [e for e in document["edges"] if e["to"] != "Parquet_01"]
    document["stages"][-1]["configuration"]["path"] = output
    return document


def _release(api: Instance, deployment_id: int, output: str) -> dict[str, Any]:
    flow = api.ok("POST", "/v4/flows", 201, json=_document(output))
    package = api.get(f"/v4/flows/{flow['id']}/package").content
    api.ok("DELETE", f"/v4/flows/{flow['id']}", 204)
    files = {"files": {"data": ("flow.zip", package, "application/zip")}}
    result: dict[str, Any] = api.ok("POST", f"/v4/deployments/{deployment_id}/releases", 201, **files)
    return result


def _tick(api: Instance, clock: Clock) -> Any:
    api.activate()  # the scheduler reads the instance the environment names
    return Scheduler(clock=clock).run_once()


def test_the_seeds_weekly_cron_runs_the_active_release_and_keeps_running_after_a_new_one(
    api: Instance,
) -> None:
    api.create_example()  # its CSV in the data folder
    deployment_id = api.ok("POST", "/v4/deployments", 201, json={"name": "Production Orders"})["id"]
    _release(api, deployment_id, "out/release1.jsonl")
    clock = Clock(datetime(2026, 11, 30, 12, tzinfo=UTC))  # a Monday
    schedule = api.ok(
        "POST",
        "/v4/schedules",
        201,
        role="editor",
        json={
            "name": "weekly orders",
            "deployment": {"id": deployment_id},
            "cron": "0 6 * * 1",
            "timezone": "Europe/London",
            "startDate": "2026-11-01T00:00:00Z",
        },
    )
    # No guessing: the next run is for the week that started on Monday 23 November at 06:00 London,
    # and it starts when that week ends, on Monday 30 November at 06:00.
    assert schedule["nextLogicalDate"] == "2026-11-23T06:00:00.000Z"
    assert schedule["nextRunAt"] == "2026-11-30T06:00:00.000Z"
    assert schedule["deployment"] == {"id": deployment_id} and schedule["catchup"] is False
    tick = _tick(api, clock)
    (created,) = tick.created
    group = api.wait(created[2])
    assert group["status"] == "Complete", group["error"]
    assert group["trigger"] == "schedule" and group["deployment"] == {"id": deployment_id}
    api.activate()
    assert (flow_records.data_dir() / "out" / "release1.jsonl").exists()

    _release(api, deployment_id, "out/release2.jsonl")  # a new active release; the schedule stays
    clock.now += timedelta(days=7)
    (created,) = _tick(api, clock).created
    assert api.wait(created[2])["status"] == "Complete"
    api.activate()
    assert (flow_records.data_dir() / "out" / "release2.jsonl").exists()
    shown = api.ok("GET", f"/v4/schedules/{schedule['id']}", role="viewer")
    assert shown["lastRun"]["status"] == "Complete"
    assert shown["lastRun"]["logicalDate"] == "2026-11-30T06:00:00.000Z"
    runs = api.ok("GET", f"/v4/schedules/{schedule['id']}/runs", role="viewer")
    assert runs["count"] == 2 and [r["logicalDate"] for r in runs["data"]] == [
        "2026-11-30T06:00:00.000Z",
        "2026-11-23T06:00:00.000Z",
    ]
    status = api.ok("GET", "/v4/scheduler", role="viewer")
    assert status["holder"] and status["expiresAt"]


def test_schedule_crud_roles_and_bad_bodies(api: Instance) -> None:
    flow = api.create_example()
    body = {"name": "nightly", "flow": {"id": flow["id"]}, "cron": "@daily", "maxActiveRuns": 2}
    assert api.post("/v4/schedules", json=body, role="viewer").status_code == 403
    assert api.post("/v4/schedules", json=body, role=None).status_code == 401
    created = api.ok("POST", "/v4/schedules", 201, json=body, role="editor")
    assert api.post("/v4/schedules", json=body).status_code == 409
    listed = api.ok("GET", "/v4/schedules", role="viewer")
    assert listed["count"] == 1 and listed["data"][0]["name"] == "nightly"
    assert api.ok("GET", "/v4/schedules", params={"flowId": flow["id"]})["count"] == 1
    assert api.ok("GET", "/v4/schedules", params={"paused": "true"})["count"] == 0
    for bad, where in [
        ({**body, "name": "b", "cron": "daily"}, "5-field cron"),
        ({**body, "name": "b", "timezone": "Nowhere/City"}, "IANA"),
        ({**body, "name": "b", "maxActiveRuns": 0}, "maxActiveRuns"),
        ({**body, "name": "b", "surprise": True}, "surprise"),
        ({"name": "b", "cron": "@daily"}, "one target"),
    ]:
        answer = api.post("/v4/schedules", json=bad)
        assert answer.status_code == 422, answer.text
        assert where in answer.text
    paused = api.ok("POST", f"/v4/schedules/{created['id']}/pause", role="editor")
    assert paused["paused"] is True and paused["nextRunAt"] is None
    resumed = api.ok("POST", f"/v4/schedules/{created['id']}/resume", role="editor")
    assert resumed["paused"] is False and resumed["nextRunAt"]
    changed = api.ok("PATCH", f"/v4/schedules/{created['id']}", json={"cron": "0 6 * * *"}, role="editor")
    assert changed["cron"] == "0 6 * * *" and changed["nextLogicalDate"].endswith("T06:00:00.000Z")
    plan = api.ok(
        "POST",
        f"/v4/schedules/{created['id']}/backfills",
        201,
        json={"start": "2026-11-01T00:00:00Z", "end": "2026-11-03T23:00:00Z", "dryRun": True},
    )
    assert plan["backfill"] is None and [p["action"] for p in plan["plan"]] == ["create"] * 3
    assert api.ok("GET", "/v4/backfills")["count"] == 0
    assert api.delete(f"/v4/schedules/{created['id']}", role="viewer").status_code == 403
    api.ok("DELETE", f"/v4/schedules/{created['id']}", 204, role="editor")
    assert api.get(f"/v4/schedules/{created['id']}").status_code == 404
