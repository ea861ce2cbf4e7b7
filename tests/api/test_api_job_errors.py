"""A job's error records through the API (first rows, download) and the job list filtered by schedule."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from tests.api.conftest import Instance

from flowport.services import flow_records
from flowport.services import launcher as launchers
from flowport.services.scheduler import Scheduler

# Five good rows and three malformed ones (wrong number of columns): three error records.
CSV = "id,name\n1,a\n2,b\n3,c,extra\n4,d\n5,e,more,fields\n6,f\n7\n8,h\n"
MALFORMED = 3


@pytest.fixture(scope="module", autouse=True)
def _pool() -> Iterator[None]:
    yield
    launchers.shutdown_launcher()


def _flow(api: Instance, error_stage: dict[str, Any] | None) -> dict[str, Any]:
    api.activate()
    data = flow_records.data_dir()
    data.mkdir(parents=True, exist_ok=True)
    (data / "people.csv").write_text(CSV)
    document: dict[str, Any] = {
        "name": f"People {error_stage['plugin']['name'] if error_stage else 'discarded'}",
        "stages": [
            {
                "name": "People",
                "plugin": {"name": "csv_file_origin"},
                "configuration": {"path": "people.csv"},
            },
            {"name": "Out", "plugin": {"name": "trash"}},
        ],
        "edges": [{"from": "People", "to": "Out"}],
    }
    if error_stage is not None:
        document["error_stage"] = error_stage
    result: dict[str, Any] = api.ok("POST", "/v4/flows", 201, json=document)
    return result


def _run(api: Instance, flow: dict[str, Any]) -> dict[str, Any]:
    started = api.ok("POST", f"/v4/flows/{flow['id']}/run", 201, role="editor")
    group = api.wait(started["id"])
    assert group["status"] == "Complete", group["error"]
    return group


def test_error_records_show_the_first_rows_and_download_all(api: Instance) -> None:
    stage = {"plugin": {"name": "write_to_file"}, "configuration": {"directory": "errors/${folder}"}}
    flow = _flow(api, stage)
    api.ok(
        "PATCH",
        f"/v4/flows/{flow['id']}",
        json={**api.ok("GET", f"/v4/flows/{flow['id']}")["document"], "parameters": {"folder": "people"}},
    )
    group = _run(api, flow)

    shown = api.ok("GET", f"/v4/jobGroups/{group['id']}/errorRecords", params={"limit": 2}, role="editor")
    assert shown["count"] == MALFORMED and shown["errorRecords"] == MALFORMED
    assert shown["stored"] is True and shown["errorStage"] == "write_to_file" and shown["message"] is None
    assert len(shown["data"]) == 2
    first = shown["data"][0]
    assert first["stage"] == "People" and first["code"] and first["message"]
    assert "3,c,extra" in json.dumps(first["record"])  # the raw malformed line

    download = api.get(f"/v4/jobGroups/{group['id']}/errorRecords/download", role="editor")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in download.headers["content-disposition"]
    lines = [json.loads(line) for line in download.text.splitlines()]
    assert len(lines) == MALFORMED and all(line["stage"] == "People" for line in lines)
    # The file is the one the error stage wrote for this run (its directory went through the parameter).
    api.activate()
    written = list((flow_records.data_dir() / "errors" / "people").glob("errors-*.jsonl"))
    assert len(written) == 1 and written[0].read_text().count("\n") == MALFORMED

    # The records hold the data: viewers see the counts on the job, not the records.
    assert api.get(f"/v4/jobGroups/{group['id']}/errorRecords", role="viewer").status_code == 403
    assert api.get(f"/v4/jobGroups/{group['id']}/errorRecords/download", role="viewer").status_code == 403
    missing = api.get("/v4/jobGroups/999999/errorRecords", role="editor")
    assert missing.status_code == 404 and missing.json()["exception"]["name"] == "NotFound"


def test_an_error_stage_that_discards_says_so_and_has_nothing_to_download(api: Instance) -> None:
    group = _run(api, _flow(api, None))
    shown = api.ok("GET", f"/v4/jobGroups/{group['id']}/errorRecords", role="editor")
    assert shown["data"] == [] and shown["count"] == 0 and shown["stored"] is False
    assert shown["errorRecords"] == MALFORMED and shown["errorStage"] == "discard"
    assert "Write to File" in shown["message"]
    download = api.get(f"/v4/jobGroups/{group['id']}/errorRecords/download", role="editor")
    assert download.status_code == 404
    body = download.json()["exception"]
    assert body["name"] == "NotFound" and "does not keep error records" in body["message"]


def test_job_groups_filter_by_schedule(api: Instance) -> None:
    flow = api.create_example()
    schedule = api.ok(
        "POST",
        "/v4/schedules",
        201,
        json={"name": "daily", "flow": {"id": flow["id"]}, "cron": "@daily"},
    )
    manual = _run(api, flow)
    api.activate()
    due = datetime.fromisoformat(schedule["nextRunAt"].replace("Z", "+00:00")) + timedelta(minutes=1)
    (created,) = Scheduler(clock=lambda: due).run_once().created
    scheduled = api.wait(created[2])

    def ids(**params: Any) -> tuple[list[int], int]:
        answer = api.ok("GET", "/v4/jobGroups", params=params, role="viewer")
        return [g["id"] for g in answer["data"]], answer["count"]

    assert ids(scheduleId=schedule["id"]) == ([scheduled["id"]], 1)
    assert ids(flowId=flow["id"]) == ([scheduled["id"], manual["id"]], 2)
    assert ids(scheduleId=schedule["id"], status=scheduled["status"], flowId=flow["id"]) == (
        [scheduled["id"]],
        1,
    )
    assert ids(scheduleId=schedule["id"], status="Canceled") == ([], 0)
    assert ids(scheduleId=schedule["id"], limit=1, offset=1) == ([], 1)
