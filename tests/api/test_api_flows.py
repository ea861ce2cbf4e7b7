"""Flows, projects and parameter sets through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

import pytest
from tests.api.conftest import Instance, MakeInstance, example_document, trash_only_document

from flowport.services import flow_records

CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")
FLOW_KEYS = {
    "id", "uuid", "name", "description", "type", "project", "projectId", "createdAt", "updatedAt",
    "creator", "updater", "folder", "workspace", "engineVersion",
}  # fmt: skip


@pytest.fixture
def dev(make_instance: MakeInstance, store: str) -> Instance:
    return make_instance("dev", store=store)


def assert_camel(item: dict[str, Any]) -> None:
    """Every key the API itself names is camelCase (documents and user maps keep their own keys)."""
    for key in item:
        assert CAMEL.match(key), key


def assert_list(body: Any, count: int | None = None) -> list[dict[str, Any]]:
    assert set(body) >= {"data", "count"} and isinstance(body["data"], list)
    if count is not None:
        assert body["count"] == count
    for item in body["data"]:
        assert_camel(item)
    return list(body["data"])


def test_flow_crud_list_shapes_and_paging(dev: Instance) -> None:
    created = dev.create_example()
    assert set(created) == FLOW_KEYS | {"document"}
    # The seed's folder and workspace: the project, in the instance's one workspace.
    assert created["folder"] == created["project"] and created["workspace"] == {"id": 1}
    assert created["uuid"] == example_document()["uuid"] and created["name"] == "Wrangle Orders"
    assert created["creator"] == created["updater"] and created["creator"]["id"] >= 1
    assert created["projectId"] == created["project"]["id"] and created["createdAt"].endswith("Z")
    assert created["document"]["stages"][0]["name"] == "Orders_01"
    broken = dev.ok("POST", "/v4/flows", 201, json=trash_only_document(), role="editor")
    streaming = dev.ok("POST", "/v4/flows", 201, json={"name": "Stream", "type": "streaming"})

    listed = assert_list(dev.ok("GET", "/v4/flows"), 3)
    assert [f["name"] for f in listed] == ["Wrangle Orders", "Broken", "Stream"]
    assert set(listed[0]) == FLOW_KEYS  # no document unless asked
    embedded = dev.ok("GET", "/v4/flows", params={"embed": "document"})["data"]
    assert embedded[0]["document"]["uuid"] == created["uuid"]
    assert [f["id"] for f in dev.ok("GET", "/v4/flows", params={"name": "Broken"})["data"]] == [broken["id"]]
    assert [f["id"] for f in dev.ok("GET", "/v4/flows", params={"type": "streaming"})["data"]] == [
        streaming["id"]
    ]
    page = dev.ok("GET", "/v4/flows", params={"limit": 1, "offset": 1})
    assert page["count"] == 3 and [f["name"] for f in page["data"]] == ["Broken"]
    assert len(dev.ok("GET", "/v4/flows", params={"noLimit": "true", "limit": 1})["data"]) == 3
    assert dev.get("/v4/flows", params={"type": "tabular"}).status_code == 422
    assert dev.get("/v4/flows", params={"limit": 0}).status_code == 422
    assert dev.get("/v4/flows", params={"projectId": 999}).status_code == 404

    got = dev.ok("GET", f"/v4/flows/{created['id']}")
    assert got["document"] == created["document"]

    renamed = dev.ok("PATCH", f"/v4/flows/{created['id']}", json={"name": "Orders"}, role="editor")
    assert renamed["name"] == "Orders" and renamed["document"]["name"] == "Orders"
    described = dev.ok("PATCH", f"/v4/flows/{created['id']}", json={"description": "weekly"})
    assert described["description"] == "weekly" and described["name"] == "Orders"

    document = got["document"]
    document["stages"][2]["configuration"]["condition"] = "total >= 100"
    document.pop("uuid")
    replaced = dev.ok("PATCH", f"/v4/flows/{created['id']}", json=document)
    assert replaced["uuid"] == created["uuid"] and replaced["name"] == "Wrangle Orders"
    assert replaced["document"]["stages"][2]["configuration"]["condition"] == "total >= 100"
    other_uuid = {**document, "uuid": "00000000-0000-4000-8000-000000000000"}
    refused = dev.patch(f"/v4/flows/{created['id']}", json=other_uuid)
    assert refused.status_code == 422 and "uuid" in refused.json()["exception"]["message"]
    taken = dev.patch(f"/v4/flows/{created['id']}", json={"name": "Broken"})
    assert taken.status_code == 409 and taken.json()["exception"]["name"] == "Conflict"
    empty = dev.patch(f"/v4/flows/{created['id']}", json={})
    assert empty.status_code == 422

    copy = dev.ok("POST", f"/v4/flows/{created['id']}/duplicate", 201)
    assert copy["name"] == "Wrangle Orders (copy)" and copy["uuid"] != created["uuid"]
    named = dev.ok(
        "POST",
        f"/v4/flows/{created['id']}/duplicate",
        201,
        json={"name": "duplicated flow", "description": "duplicated flow description"},
    )
    assert (named["name"], named["description"]) == ("duplicated flow", "duplicated flow description")
    again = dev.post(f"/v4/flows/{created['id']}/duplicate", json={"name": "duplicated flow"})
    assert again.status_code == 409

    assert dev.delete(f"/v4/flows/{named['id']}", role="editor").status_code == 204
    gone = dev.get(f"/v4/flows/{named['id']}")
    assert gone.status_code == 404 and gone.json()["exception"]["name"] == "NotFound"
    assert dev.delete(f"/v4/flows/{named['id']}").status_code == 404


def test_create_refuses_invalid_documents_with_the_field_named(dev: Instance) -> None:
    cases = [
        ({"name": "x", "stages": [{"plugin": {"name": "trash"}}]}, "name"),
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": "x", "type": "tabular"}, "type"),
        ({"name": " "}, "name"),
        ({"name": "x" * 300}, "name"),
        ({"format": "flowport.flow/99", "name": "x"}, "format"),
    ]
    for body, field in cases:
        response = dev.post("/v4/flows", json=body)
        assert response.status_code == 422, (body, response.text)
        error = response.json()["exception"]
        assert field in error["message"], (field, error)
    assert dev.flow_names() == []


def test_validate_gives_the_seeds_two_issues_for_a_trash_only_flow(dev: Instance) -> None:
    broken = dev.ok("POST", "/v4/flows", 201, json=trash_only_document())
    result = dev.ok("GET", f"/v4/flows/{broken['id']}/validate", role="viewer")
    assert result["success"] is False and result["message"] == "Validation Failed"
    assert [(i["type"], i["instanceName"], i["humanReadableMessage"]) for i in result["issues"]] == [
        ("stageIssues", "Trash_01", "The first stage must be an origin"),
        ("stageIssues", "Trash_01", "Target must have input streams"),
    ]
    assert all(set(i) == {"type", "instanceName", "code", "humanReadableMessage"} for i in result["issues"])
    good = dev.create_example()
    assert dev.ok("GET", f"/v4/flows/{good['id']}/validate") == {
        "success": True,
        "message": "Validation Succeeded",
        "issues": [],
    }
    assert dev.get("/v4/flows/999/validate").status_code == 404


def test_preview_shows_every_stage_and_writes_nothing(dev: Instance) -> None:
    flow = dev.create_example()
    # A preview is data access: viewers read flows and jobs, never records.
    refused = dev.post(f"/v4/flows/{flow['id']}/preview", role="viewer")
    assert refused.status_code == 403, refused.text
    preview = dev.ok("POST", f"/v4/flows/{flow['id']}/preview", role="editor")
    stages = assert_list(preview, 5)
    assert [s["instanceName"] for s in stages] == [
        "Orders_01",
        "Types_01",
        "Filter_01",
        "JSON_01",
        "Parquet_01",
    ]
    assert len(stages[0]["output"]) == 10 and stages[0]["input"] == []
    assert stages[3]["input"] and stages[3]["output"] == []
    assert all(r["total"] >= 20 for r in stages[2]["output"])
    dev.activate()
    written = [p for p in flow_records.data_dir().rglob("*") if p.is_file() and p.name != "orders.csv"]
    assert written == []

    few = dev.ok(
        "POST", f"/v4/flows/{flow['id']}/preview", json={"rows": 3, "parameters": {"min_total": 1000}}
    )
    assert len(few["data"][0]["output"]) == 3 and few["data"][2]["output"] == []
    assert dev.post(f"/v4/flows/{flow['id']}/preview", json={"rows": 0}).status_code == 422
    assert dev.post(f"/v4/flows/{flow['id']}/preview", json={"rows": 10, "limit": 1}).status_code == 422

    broken = dev.ok("POST", "/v4/flows", 201, json=trash_only_document())
    invalid = dev.post(f"/v4/flows/{broken['id']}/preview")
    assert invalid.status_code == 422
    error = invalid.json()["exception"]
    assert error["name"] == "FlowInvalid" and error["details"]["success"] is False


def test_projects_and_parameter_sets(dev: Instance) -> None:
    projects = assert_list(dev.ok("GET", "/v4/projects"), 1)
    assert projects[0]["name"] == "default"
    project = dev.ok(
        "POST", "/v4/projects", 201, json={"name": "orders", "description": "Orders team"}, role="editor"
    )
    assert set(project) == {"id", "name", "description", "createdAt", "updatedAt", "creator", "updater"}
    assert dev.post("/v4/projects", json={"name": "orders"}).status_code == 409
    assert dev.post("/v4/projects", json={"name": "x", "owner": "me"}).status_code == 422
    assert dev.ok("GET", "/v4/projects", params={"name": "orders"})["count"] == 1
    patched = dev.ok("PATCH", f"/v4/projects/{project['id']}", json={"description": "Team Orders"})
    assert patched["description"] == "Team Orders"
    # The body is well formed; the default project's state refuses it.
    assert dev.patch(f"/v4/projects/{projects[0]['id']}", json={"name": "renamed"}).status_code == 409

    pid = project["id"]
    made = dev.ok(
        "POST",
        "/v4/parameterSets",
        201,
        params={"projectId": pid},
        json={"name": "orders", "description": "", "parameters": {"min_total": 150}},
    )
    assert made["parameters"] == {"min_total": "150"} and made["project"] == {"id": pid}
    assert dev.post("/v4/parameterSets", params={"projectId": pid}, json={"name": "a__b"}).status_code == 422

    document = example_document()
    document["parameters"] = {}
    document["parameter_sets"] = ["orders"]
    document["stages"][2]["configuration"]["condition"] = "total >= ${orders__min_total}"
    flow = dev.ok("POST", "/v4/flows", 201, params={"projectId": pid}, json=document)
    assert flow["projectId"] == pid
    assert dev.ok("GET", f"/v4/flows/{flow['id']}/validate")["success"] is True
    assert dev.ok("GET", "/v4/flows", params={"projectId": pid})["count"] == 1
    assert dev.ok("GET", "/v4/flows", params={"projectId": projects[0]["id"]})["count"] == 0

    sets = assert_list(dev.ok("GET", "/v4/parameterSets", params={"projectId": pid}), 1)
    updated = dev.ok("PATCH", f"/v4/parameterSets/{sets[0]['id']}", json={"parameters": {"min_total": "1"}})
    assert updated["parameters"] == {"min_total": "1"}
    assert dev.ok("GET", f"/v4/parameterSets/{made['id']}")["parameters"] == {"min_total": "1"}
    assert dev.delete(f"/v4/parameterSets/{made['id']}").status_code == 204
    issues = dev.ok("GET", f"/v4/flows/{flow['id']}/validate")["issues"]
    assert issues[0]["code"] == "PARAMETER_SET_NOT_FOUND"


def test_stages_and_artifacts_describe_the_installed_plugins(dev: Instance) -> None:
    stages = assert_list(dev.ok("GET", "/v4/stages", role="viewer"))
    by_name = {s["name"]: s for s in stages}
    assert {"csv_file_origin", "filter", "trash", "write_to_file", "sql_table_origin"} <= set(by_name)
    trash = by_name["trash"]
    assert trash["kind"] == "destination" and trash["label"] == "Trash"
    assert trash["artifact"]["name"] == "flowport-core" and trash["artifact"]["scope"] == "SYSTEM"
    assert by_name["csv_file_origin"]["configSchema"]["type"] == "object"
    assert "path" in by_name["csv_file_origin"]["configSchema"]["properties"]
    artifacts = assert_list(dev.ok("GET", "/v4/artifacts"))
    core = next(a for a in artifacts if a["name"] == "flowport-core")
    assert {"name": "trash", "label": "Trash", "kind": "destination", "restrictions": []} in core["plugins"]
    assert {
        "name": "csv_file_origin",
        "label": "CSV File",
        "kind": "origin",
        "restrictions": ["read-filesystem"],
    } in core["plugins"]
