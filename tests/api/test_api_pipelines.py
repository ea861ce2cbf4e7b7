"""``/v4/pipelines``, ``/v4/pipelineRuns`` and ``/v4/locks`` through the real API."""

from __future__ import annotations

import io
import json
import time
import zipfile
from importlib import resources
from typing import Any

from tests.api.conftest import Instance, zip_entries

from flowport.services import flow_records


def rezip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in entries.items():
            archive.writestr(name, body)
    return buffer.getvalue()


def _document(marker: str, name: str = "refresh") -> dict[str, Any]:
    return {
        "name": name,
        "parameters": {"seconds": "0"},
        "tasks": [
            {
                "name": "pull",
                "type": "shell",
                "command": f"touch {marker}; sleep ${{seconds}}",
                "lock": "repo",
            },
            {"name": "done", "type": "shell", "command": "echo done", "after": ["pull"]},
        ],
    }


def _finished(api: Instance, run_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        run: dict[str, Any] = api.ok("GET", f"/v4/pipelineRuns/{run_id}")
        if run["status"] in ("Complete", "Failed", "Canceled"):
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.05)


def test_create_run_and_read_a_pipeline(api: Instance) -> None:
    api.activate()
    marker = flow_records.data_dir() / "pulled"
    created = api.ok("POST", "/v4/pipelines", 201, json=_document(str(marker)))
    assert [t["name"] for t in created["tasks"]] == ["pull", "done"] and created["project"]["id"] >= 1
    assert created["document"]["tasks"][1]["after"] == ["pull"]
    run = api.ok("POST", f"/v4/pipelines/{created['id']}/run", 201, json={})
    assert run["pipeline"] == {"id": created["id"]} and run["trigger"] == "manual"
    finished = _finished(api, run["id"])
    assert finished["status"] == "Complete" and marker.exists()
    assert [(t["task"], t["status"]) for t in finished["tasks"]] == [
        ("pull", "Complete"),
        ("done", "Complete"),
    ]
    assert finished["tasks"][1]["log"] == "done"
    listed = api.ok("GET", "/v4/pipelineRuns", params={"pipelineId": created["id"]})
    assert listed["count"] == 1 and listed["data"][0]["id"] == run["id"]
    assert api.ok("GET", "/v4/pipelines")["data"][0]["name"] == "refresh"
    # A run is a job: it shows in the job groups with its pipeline.
    assert api.ok("GET", f"/v4/jobGroups/{run['id']}")["pipeline"] == {"id": created["id"]}


def test_a_held_task_lock_answers_409_naming_the_holder_and_cancel_frees_it(api: Instance) -> None:
    api.activate()
    marker = flow_records.data_dir() / "started"
    pipeline = api.ok("POST", "/v4/pipelines", 201, json=_document(str(marker)))
    first = api.ok("POST", f"/v4/pipelines/{pipeline['id']}/run", 201, json={"parameters": {"seconds": "30"}})
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    refused = api.post(f"/v4/pipelines/{pipeline['id']}/run", json={})
    assert refused.status_code == 409
    body = refused.json()["exception"]
    assert body["name"] == "LocksHeld"
    assert f"held by task 'pull' of pipeline run {first['id']}" in body["message"]
    assert body["details"]["locksHeld"][0]["run"] == {"id": first["id"]}
    locks = api.ok("GET", "/v4/locks", role="viewer")
    assert [(lock["name"], lock["run"]) for lock in locks["data"]] == [("repo", {"id": first["id"]})]
    api.ok("POST", f"/v4/pipelineRuns/{first['id']}/cancel")
    ended = _finished(api, first["id"])
    assert ended["status"] == "Canceled"
    assert [t["status"] for t in ended["tasks"]] == ["Canceled", "Skipped"]
    assert api.ok("GET", "/v4/locks")["count"] == 0
    again = api.ok("POST", f"/v4/pipelines/{pipeline['id']}/run", 201, json={})
    assert _finished(api, again["id"])["status"] == "Complete"


def test_bad_documents_and_roles_are_refused_clearly(api: Instance) -> None:
    api.activate()
    bad = api.post(
        "/v4/pipelines",
        json={
            "name": "x",
            "tasks": [{"name": "a", "type": "shell", "command": "true", "after": ["zz"], "colour": 1}],
        },
    )
    assert bad.status_code == 422
    assert "tasks[0].shell.colour: unknown key" in bad.json()["exception"]["message"]
    missing = api.post(
        "/v4/pipelines", json={"name": "x", "tasks": [{"name": "f", "type": "flow", "flow": "Nope"}]}
    )
    assert missing.status_code == 422 and "No flow named 'Nope'" in missing.json()["exception"]["message"]
    # Editors may not run programs on the server unless the operator allows it; viewers change nothing.
    shell = {"name": "s", "tasks": [{"name": "a", "type": "shell", "command": "id"}]}
    forbidden = api.post("/v4/pipelines", json=shell, role="editor")
    assert forbidden.status_code == 403 and "execute-code" in forbidden.json()["exception"]["message"]
    assert api.post("/v4/pipelines", json=shell, role="viewer").status_code == 403
    created = api.ok("POST", "/v4/pipelines", 201, json=shell)
    assert api.post(f"/v4/pipelines/{created['id']}/run", json={}, role="viewer").status_code == 403
    unknown = api.post(f"/v4/pipelines/{created['id']}/run", json={"parameters": {"nope": "1"}})
    assert unknown.status_code == 422 and "'nope'" in unknown.json()["exception"]["message"]
    changed = api.ok("PATCH", f"/v4/pipelines/{created['id']}", json={"description": "new"})
    assert changed["description"] == "new" and changed["document"]["tasks"] == shell["tasks"]
    cyclic = [{"name": "a", "type": "shell", "command": "id", "after": ["a"]}]
    refused = api.patch(f"/v4/pipelines/{created['id']}", json={"tasks": cyclic})
    assert refused.status_code == 422 and "cannot wait for itself" in refused.json()["exception"]["message"]
    assert api.ok("GET", f"/v4/pipelines/{created['id']}")["document"]["tasks"] == shell["tasks"]
    api.ok("DELETE", f"/v4/pipelines/{created['id']}", 204)
    assert api.get(f"/v4/pipelines/{created['id']}").status_code == 404


def test_a_pipeline_travels_in_a_package_with_its_flows(make_instance: Any) -> None:
    dev = make_instance("dev")
    prod = make_instance("prod")
    dev.activate()
    flow = dev.create_example()
    document = {
        "name": "nightly",
        "tasks": [
            {"name": "load", "type": "flow", "flow": flow["name"]},
            {"name": "note", "type": "empty", "after": ["load"]},
        ],
    }
    pipeline = dev.ok("POST", "/v4/pipelines", 201, json=document)
    package = dev.get(f"/v4/pipelines/{pipeline['id']}/package")
    assert package.status_code == 200 and package.headers["content-type"] == "application/zip"
    entries = zip_entries(package.content)
    manifest = json.loads(entries["manifest.json"])
    assert [p["name"] for p in manifest["pipelines"]] == ["nightly"]
    assert [f["name"] for f in manifest["flows"]] == [flow["name"]]

    files = {"files": {"data": ("nightly.zip", package.content, "application/zip")}}
    prod.activate()
    first = prod.ok("POST", "/v4/flows/package", 201, **files)
    assert [(p["name"], p["action"]) for p in first["pipelines"]] == [("nightly", "created")]
    stored = prod.ok("GET", f"/v4/pipelines/{first['pipelines'][0]['id']}")
    assert stored["document"]["tasks"][0]["flow"] == flow["name"]
    # Again with rename: the flow and the pipeline get copies, and the copy's task names the flow's copy.
    again = prod.ok("POST", "/v4/flows/package", 201, params={"conflictResolution": "rename"}, **files)
    assert again["renamed"] == [{"from": flow["name"], "to": f"{flow['name']} (1)"}]
    assert [(p["name"], p["action"]) for p in again["pipelines"]] == [("nightly (1)", "renamed")]
    copy = prod.ok("GET", f"/v4/pipelines/{again['pipelines'][0]['id']}")
    assert copy["document"]["tasks"][0]["flow"] == f"{flow['name']} (1)"
    skipped = prod.ok("POST", "/v4/flows/package", 201, **files)
    assert [(p["name"], p["action"]) for p in skipped["pipelines"]] == [("nightly", "skipped")]
    # A tampered pipeline entry is refused whole: nothing is stored.
    tampered = dict(entries)
    name = manifest["pipelines"][0]["file"]
    tampered[name] = tampered[name].replace(b"nightly", b"nightlx")
    refused = prod.post("/v4/flows/package", files={"data": ("t.zip", rezip(tampered), "application/zip")})
    assert refused.status_code == 422 and "CHECKSUM_MISMATCH" in refused.text
    assert prod.ok("GET", "/v4/pipelines")["count"] == 2
    # A release carries the pipeline too, into the deployment's project: running the deployment runs it,
    # its flow task the release's copy of the flow.
    deployment = prod.ok("POST", "/v4/deployments", 201, json={"name": "Prod nightly"})
    imported = prod.ok("POST", f"/v4/deployments/{deployment['id']}/releases", 201, **files)
    release_id = imported["release"]["id"]
    (stored,) = imported["pipelines"]
    assert stored["name"] == f"nightly (release {release_id})"
    copy_document = prod.ok("GET", f"/v4/pipelines/{stored['id']}")["document"]
    assert copy_document["tasks"][0]["flow"] == f"{flow['name']} (release {release_id})"
    assert prod.ok("GET", f"/v4/releases/{release_id}")["pipelines"][0]["id"] == stored["id"]
    prod.activate()
    folder = resources.files("flowport") / "examples" / "orders"
    flow_records.data_dir().mkdir(parents=True, exist_ok=True)
    (flow_records.data_dir() / "orders.csv").write_bytes((folder / "orders.csv").read_bytes())
    started = prod.ok("POST", f"/v4/deployments/{deployment['id']}/run", 201, json={})
    run = _finished(prod, started["data"][0]["id"])
    assert run["status"] == "Complete", run
    assert run["pipeline"] == {"id": stored["id"]} and run["deployment"] == {"id": deployment["id"]}
    load = prod.ok("GET", f"/v4/jobGroups/{run['tasks'][0]['job']['id']}")
    assert load["status"] == "Complete" and load["parent"] == {"id": run["id"]}
