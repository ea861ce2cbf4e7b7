"""Running flows through the API: job groups, their jobs, metrics, logs and cancel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.api.conftest import Instance, MakeInstance, trash_only_document

from flowport.services import flow_records
from flowport.services import launcher as launchers

STAGES = ["Orders_01", "Types_01", "Filter_01", "JSON_01", "Parquet_01"]
METRIC_KEYS = {"inputRecords", "outputRecords", "errorRecords", "inputBatches", "outputBatches", "seconds"}


@pytest.fixture(scope="module", autouse=True)
def _pool() -> Iterator[None]:
    yield
    launchers.shutdown_launcher()


def long_flow(api: Instance, rows: int = 400_000) -> dict[str, Any]:
    """A flow that runs for several seconds: a big CSV in batches of 50 through a per-batch query."""
    api.activate()
    data = flow_records.data_dir()
    data.mkdir(parents=True, exist_ok=True)
    with (data / "big.csv").open("w") as file:
        file.write("id,name,total\n")
        file.writelines(f"{i},name{i},{i % 1000}.5\n" for i in range(rows))
    document = {
        "name": "Long",
        "configuration": {"batch_size": 50},
        "stages": [
            {"name": "Big_01", "plugin": {"name": "csv_file_origin"}, "configuration": {"path": "big.csv"}},
            {
                "name": "Sql_01",
                "plugin": {"name": "sql"},
                "configuration": {"query": "SELECT *, upper(name) AS loud FROM input", "per_batch": True},
            },
            {
                "name": "Out_01",
                "plugin": {"name": "csv_file_destination"},
                "configuration": {"path": "out/big.csv"},
            },
        ],
        "edges": [{"from": "Big_01", "to": "Sql_01"}, {"from": "Sql_01", "to": "Out_01"}],
    }
    result: dict[str, Any] = api.ok("POST", "/v4/flows", 201, json=document)
    return result


def assert_complete(api: Instance, group: dict[str, Any]) -> None:
    assert group["status"] == "Complete", group["error"]
    assert group["error"] is None and group["startedAt"] and group["finishedAt"]
    job = group["jobs"]["data"][0]
    assert job["status"] == "Complete" and list(job["metrics"]) == STAGES
    assert set(job["metrics"]["Types_01"]) == METRIC_KEYS
    assert job["metrics"]["Orders_01"]["outputRecords"] == 199
    metrics = api.ok("GET", f"/v4/jobGroups/{group['id']}/metrics", role="viewer")
    assert metrics == {"jobGroup": {"id": group["id"]}, "status": "Complete", "stages": job["metrics"]}
    assert group["result"]["stages"] == job["metrics"]
    logs = api.get(f"/v4/jobGroups/{group['id']}/logs", role="viewer")
    assert logs.status_code == 200 and logs.headers["content-type"].startswith("text/plain")
    assert "Stage JSON_01" in logs.text and "Complete" in logs.text


@pytest.mark.parametrize("launcher", ["thread", "process"])
def test_run_is_a_job_group_polled_to_complete(make_instance: MakeInstance, launcher: str) -> None:
    api = make_instance("dev", launcher=launcher)
    flow = api.create_example()
    started = api.ok("POST", f"/v4/flows/{flow['id']}/run", 201, role="editor")
    assert started["status"] in ("Pending", "InProgress", "Complete")
    assert started["flow"] == {"id": flow["id"]} and started["sessionId"]
    assert started["jobs"]["count"] == 1
    group = api.wait(started["id"])
    assert_complete(api, group)
    api.activate()
    written = flow_records.data_dir() / "out" / "orders.jsonl"
    assert len(written.read_text().splitlines()) == group["result"]["stages"]["JSON_01"]["outputRecords"]

    listed = api.ok("GET", f"/v4/jobGroups/{group['id']}/jobs")
    assert listed["count"] == 1 and listed["data"][0]["jobGroup"] == {"id": group["id"]}
    plain = api.ok("GET", f"/v4/jobGroups/{group['id']}")
    assert "jobs" not in plain and plain["status"] == "Complete"
    cancel_late = api.post(f"/v4/jobGroups/{group['id']}/cancel")
    assert cancel_late.status_code == 409 and cancel_late.json()["exception"]["name"] == "Conflict"


def test_run_takes_overrides_in_both_spellings(make_instance: MakeInstance, store: str) -> None:
    api = make_instance("dev", store=store)
    flow = api.create_example()
    first = api.ok("POST", f"/v4/flows/{flow['id']}/run", 201, json={"parameters": {"min_total": 1000}})
    seed_shape = {"runParameters": {"overrides": {"data": [{"key": "min_total", "value": "100"}]}}}
    second = api.ok("POST", f"/v4/flows/{flow['id']}/run", 201, json=seed_shape)
    assert first["parameters"] == {"min_total": "1000"} and second["parameters"] == {"min_total": "100"}
    none = api.wait(first["id"])
    some = api.wait(second["id"])
    # Nothing passes min_total 1000: by default a run that loads nothing fails (and publishes nothing).
    assert none["status"] == "Failed" and "No record reached a destination" in none["error"]
    assert none["result"]["stages"]["JSON_01"]["outputRecords"] == 0
    assert 0 < some["result"]["stages"]["JSON_01"]["outputRecords"] < 194

    groups = api.ok("GET", "/v4/jobGroups", params={"flowId": flow["id"]})
    assert groups["count"] == 2 and [g["id"] for g in groups["data"]] == [second["id"], first["id"]]
    assert api.ok("GET", "/v4/jobGroups", params={"status": "Failed"})["count"] == 1
    unknown = api.post(f"/v4/flows/{flow['id']}/run", json={"parameters": {"min_totl": 5}})
    assert unknown.status_code == 422 and "did you mean 'min_total'" in unknown.json()["exception"]["message"]
    assert api.get("/v4/jobGroups", params={"status": "Done"}).status_code == 422
    assert api.get("/v4/jobGroups/999").status_code == 404


def test_an_invalid_flow_is_not_run(api: Instance) -> None:
    broken = api.ok("POST", "/v4/flows", 201, json=trash_only_document())
    refused = api.post(f"/v4/flows/{broken['id']}/run")
    assert refused.status_code == 422
    error = refused.json()["exception"]
    assert error["name"] == "FlowInvalid" and len(error["details"]["issues"]) == 2
    assert api.ok("GET", "/v4/jobGroups")["count"] == 0
    bad = api.post(f"/v4/flows/{broken['id']}/run", json={"parameters": {"not a name": "x"}})
    assert bad.status_code == 422
    assert api.post("/v4/flows/999/run").status_code == 404
    assert api.post(f"/v4/flows/{broken['id']}/run", json={"parameters": {"a": [1]}}).status_code == 422
    assert api.post(f"/v4/flows/{broken['id']}/run", json={"overrides": {}}).status_code == 422


def test_cancel_a_running_job(api: Instance) -> None:
    flow = long_flow(api)
    group = api.ok("POST", f"/v4/flows/{flow['id']}/run", 201)
    # Wait until it really runs, so that the cancel reaches a running job.
    for _ in range(600):
        if api.ok("GET", f"/v4/jobGroups/{group['id']}")["status"] == "InProgress":
            break
        time.sleep(0.05)
    assert api.post(f"/v4/jobGroups/{group['id']}/cancel", role="viewer").status_code == 403
    cancelled = api.ok("POST", f"/v4/jobGroups/{group['id']}/cancel", role="editor")
    assert cancelled["cancelRequested"] is True
    ended = api.wait(group["id"])
    assert ended["status"] == "Canceled"
    api.activate()
    assert not (flow_records.data_dir() / "out" / "big.csv").exists()
    again = api.ok("POST", f"/v4/jobGroups/{group['id']}/cancel")
    assert again["status"] == "Canceled"
