"""Stored flows: create, read, list, patch, duplicate, delete, validate and preview."""

from __future__ import annotations

import json
import shutil
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from tests.launchers import run_inline

from flowport.errors import Conflict, FlowDocumentError, NotFound, ValidationFailed
from flowport.model.flow import Flow
from flowport.services import flow_records as svc
from flowport.services import flows, instance, jobs, projects
from flowport.services.settings import settings


@pytest.fixture(autouse=True)
def _initialized(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWPORT_DATABASE_URL", raising=False)
    monkeypatch.delenv(svc.DATA_DIR_ENV, raising=False)
    instance.init_instance()


def example() -> dict[str, Any]:
    """The shipped orders flow, its CSV copied into the instance's data folder."""
    folder = resources.files("flowport") / "examples" / "orders"
    data = svc.data_dir()
    data.mkdir(parents=True, exist_ok=True)
    (data / "orders.csv").write_bytes((folder / "orders.csv").read_bytes())
    return dict(json.loads((folder / "flow.json").read_text()))


def test_data_dir_is_under_home_unless_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert svc.data_dir() == settings().home / "data"
    monkeypatch.setenv(svc.DATA_DIR_ENV, str(tmp_path / "elsewhere"))
    assert svc.data_dir() == tmp_path / "elsewhere"


# -- create and read ---------------------------------------------------------------------


def test_create_from_a_full_document_keeps_it_and_shows_the_api_shape() -> None:
    document = example()
    created = svc.create_flow(document)
    assert set(created) == {
        "id", "uuid", "name", "description", "type", "project", "createdAt", "updatedAt",
        "creator", "updater", "document", "folder", "workspace", "engineVersion",
    }  # fmt: skip
    assert created["uuid"] == document["uuid"] and created["name"] == "Wrangle Orders"
    assert created["project"] == {"id": projects.default_project()["id"]}
    assert created["creator"] is None and created["createdAt"].endswith("Z")
    stored = svc.get_flow_document(created["id"])
    assert stored == Flow.model_validate(document)
    assert created["document"]["stages"][0]["configuration"] == {"path": "orders.csv"}
    assert svc.get_flow(created["id"]) == created
    assert "document" not in svc.get_flow(created["id"], include_document=False)
    assert svc.get_flow_by_name("Wrangle Orders")["id"] == created["id"]
    assert svc.get_flow_by_uuid(document["uuid"])["id"] == created["id"]


def test_create_from_a_name_description_and_type() -> None:
    created = svc.create_flow(
        {"name": "  My streaming flow ", "description": "optional", "type": "streaming"}
    )
    assert (created["name"], created["description"], created["type"]) == (
        "My streaming flow",
        "optional",
        "streaming",
    )
    document = created["document"]
    assert document["format"] == "flowport.flow/1" and document["stages"] == []
    assert uuid.UUID(document["uuid"]) == uuid.UUID(created["uuid"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x", "stagez": []}, "stagez: unknown key"),
        ({"description": "no name"}, "name"),
        ({"name": "x", "type": "micro-batch"}, "type"),
        ({"name": "x" * 256}, "longer than 255"),
        ({"name": "   "}, "blank"),
        ({"name": "x", "format": "other/2"}, "unsupported flow format"),
        (["not", "an", "object"], "must be a JSON/YAML object"),
    ],
)
def test_bad_documents_are_refused(body: Any, message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        svc.create_flow(body)
    assert svc.list_flows()["count"] == 0


def test_names_and_uuids_are_unique_within_a_project() -> None:
    document = example()
    svc.create_flow(document)
    with pytest.raises(Conflict, match="named 'Wrangle Orders' already exists"):
        svc.create_flow({**document, "uuid": str(uuid.uuid4())})
    with pytest.raises(Conflict, match="uuid"):
        svc.create_flow({**document, "name": "Other"})
    projects.create_project({"name": "sales"})
    elsewhere = svc.create_flow(document, project="sales")
    assert elsewhere["uuid"] == document["uuid"]
    with pytest.raises(NotFound, match="project"):
        svc.create_flow({"name": "x"}, project="nope")


def test_missing_flows_are_not_found() -> None:
    for call in (
        lambda: svc.get_flow(404),
        lambda: svc.get_flow_by_name("nothing"),
        lambda: svc.get_flow_by_uuid("not-a-uuid"),
        lambda: svc.update_flow(404, {"name": "x"}),
        lambda: svc.delete_flow(404),
        lambda: svc.duplicate_flow(404),
        lambda: svc.preview_flow(404),
    ):
        with pytest.raises(NotFound):
            call()


# -- list --------------------------------------------------------------------------------


def test_list_filters_by_name_and_type_with_counts_and_paging() -> None:
    projects.create_project({"name": "sales"})
    for name, kind in [
        ("Orders A", "batch"),
        ("orders B", "batch"),
        ("Customers", "batch"),
        ("Live", "streaming"),
    ]:
        svc.create_flow({"name": name, "type": kind})
    svc.create_flow({"name": "Orders C"}, project="sales")

    everything = svc.list_flows()
    assert everything["count"] == 5 and len(everything["data"]) == 5
    assert "document" not in everything["data"][0]
    assert svc.list_flows(project="default")["count"] == 4
    assert [f["name"] for f in svc.list_flows(name="Customers")["data"]] == ["Customers"]
    assert [f["name"] for f in svc.list_flows(project="default", name_contains="orders")["data"]] == [
        "Orders A",
        "orders B",
    ]
    assert [f["name"] for f in svc.list_flows(flow_type="streaming")["data"]] == ["Live"]
    page = svc.list_flows(limit=2, offset=1)
    assert page["count"] == 5 and [f["name"] for f in page["data"]] == ["orders B", "Customers"]
    assert len(svc.list_flows(limit=1, no_limit=True)["data"]) == 5
    assert svc.list_flows(include_document=True)["data"][0]["document"]["name"] == "Orders A"
    with pytest.raises(ValidationFailed, match="Unknown flow type"):
        svc.list_flows(flow_type="micro")
    with pytest.raises(ValidationFailed, match="limit"):
        svc.list_flows(limit=0)
    with pytest.raises(ValidationFailed, match="offset"):
        svc.list_flows(offset=-3)


def test_lists_default_to_25_rows() -> None:
    for number in range(27):
        svc.create_flow({"name": f"Flow {number:02}"})
    page = svc.list_flows()
    assert page["count"] == 27 and len(page["data"]) == 25


# -- patch -------------------------------------------------------------------------------


def test_patch_only_name_or_description_keeps_the_document_in_step() -> None:
    created = svc.create_flow(example())
    renamed = svc.update_flow(created["id"], {"name": "Wrangle Orders v2"})
    assert renamed["name"] == renamed["document"]["name"] == "Wrangle Orders v2"
    assert renamed["document"]["stages"] == created["document"]["stages"]
    described = svc.update_flow(created["id"], {"description": "new description for the flow"})
    assert described["description"] == described["document"]["description"]
    assert described["name"] == "Wrangle Orders v2" and described["uuid"] == created["uuid"]
    assert described["updatedAt"] >= created["updatedAt"]
    with pytest.raises(ValidationFailed, match="text"):
        svc.update_flow(created["id"], {"name": 5})
    with pytest.raises(ValidationFailed, match="empty"):
        svc.update_flow(created["id"], {})


def test_patch_with_a_full_document_replaces_it_but_not_its_uuid() -> None:
    created = svc.create_flow(example())
    flow = svc.get_flow_document(created["id"])
    flow.configuration["error_record_policy"] = "STAGE_RECORD"
    flow.stages = flow.stages[:1]
    flow.edges = []
    updated = svc.update_flow(created["id"], flow)
    assert updated["document"]["configuration"]["error_record_policy"] == "STAGE_RECORD"
    assert [s["name"] for s in updated["document"]["stages"]] == ["Orders_01"]

    # A document without a uuid keeps the stored one.
    body = {k: v for k, v in example().items() if k != "uuid"}
    body["type"] = "streaming"
    replaced = svc.update_flow(created["id"], body)
    assert replaced["uuid"] == created["uuid"] and replaced["type"] == "streaming"
    with pytest.raises(ValidationFailed, match="cannot change"):
        svc.update_flow(created["id"], {**body, "uuid": str(uuid.uuid4())})
    with pytest.raises(FlowDocumentError, match="unknown key"):
        svc.update_flow(created["id"], {**body, "colour": "red"})
    svc.create_flow({"name": "Taken"})
    with pytest.raises(Conflict):
        svc.update_flow(created["id"], {"name": "Taken"})


# -- duplicate and delete ----------------------------------------------------------------


def test_duplicate_gives_a_new_uuid_and_a_free_name() -> None:
    created = svc.create_flow(example())
    copy = svc.duplicate_flow(created["id"], name="duplicated flow", description="duplicated description")
    assert copy["id"] != created["id"] and copy["uuid"] != created["uuid"]
    assert (copy["name"], copy["description"]) == ("duplicated flow", "duplicated description")
    assert copy["document"]["stages"] == created["document"]["stages"]
    assert copy["document"]["uuid"] == copy["uuid"]
    first = svc.duplicate_flow(created["id"])
    second = svc.duplicate_flow(created["id"])
    assert (first["name"], second["name"]) == ("Wrangle Orders (copy)", "Wrangle Orders (copy) (2)")
    assert first["description"] == created["description"]
    with pytest.raises(Conflict):
        svc.duplicate_flow(created["id"], name="duplicated flow")


def test_delete_removes_the_flow_but_keeps_its_jobs() -> None:
    created = svc.create_flow(example())
    group = run_inline(created["id"])
    svc.delete_flow(created["id"])
    with pytest.raises(NotFound):
        svc.get_flow(created["id"])
    kept = jobs.get_job_group(group["id"], embed_jobs=True)
    assert kept["flow"] is None and kept["status"] == "Complete"
    assert kept["jobs"]["data"][0]["flow"] is None


# -- validate and preview ----------------------------------------------------------------


def test_validate_a_stored_flow_in_the_sdk_shape() -> None:
    created = svc.create_flow(example())
    result = svc.validate_flow(created["id"])
    assert result.success
    assert svc.validation_dict(result) == {"success": True, "message": "Validation Succeeded", "issues": []}

    broken = svc.create_flow(
        {"name": "Broken", "stages": [{"name": "Trash_01", "plugin": {"name": "trash"}}]}
    )
    issues = svc.validation_dict(svc.validate_flow(broken["id"]))
    assert issues["success"] is False and issues["message"] == "Validation Failed"
    assert {
        "type": "stageIssues",
        "instanceName": "Trash_01",
        "code": "FIRST_STAGE_NOT_ORIGIN",
        "humanReadableMessage": "The first stage must be an origin",
    } in issues["issues"]


def test_validate_uses_overrides() -> None:
    document = example()
    document["parameters"] = {}
    created = svc.create_flow(document)
    missing = svc.validate_flow(created["id"])
    assert [i.code for i in missing.issues] == ["UNRESOLVED_PARAMETER"]
    assert svc.validate_flow(created["id"], overrides={"min_total": 20}).success
    with pytest.raises(ValidationFailed, match="parameter name"):
        svc.validate_flow(created["id"], overrides={"bad name": "1"})
    with pytest.raises(ValidationFailed, match="must be text"):
        svc.validate_flow(created["id"], overrides={"x": {"nested": 1}})


def test_preview_returns_json_safe_records_per_stage() -> None:
    created = svc.create_flow(example())
    stages = svc.preview_flow(created["id"], rows=3)
    assert [s["instanceName"] for s in stages] == [
        "Orders_01",
        "Types_01",
        "Filter_01",
        "JSON_01",
        "Parquet_01",
    ]
    assert len(stages[0]["output"]) == 3
    typed = stages[1]["output"][0]
    assert isinstance(typed["total"], float) and isinstance(typed["ordered_at"], str)
    json.dumps(stages)  # JSON-safe throughout
    assert not (svc.data_dir() / "out").exists()  # a preview writes nothing
    lower = svc.preview_flow(created["id"], rows=50, overrides={"min_total": "1000"})
    assert lower[2]["output"] == []


def test_preview_of_an_invalid_flow_raises_with_the_issues() -> None:
    broken = svc.create_flow(
        {"name": "Broken", "stages": [{"name": "Trash_01", "plugin": {"name": "trash"}}]}
    )
    with pytest.raises(flows.FlowInvalid) as caught:
        svc.preview_flow(broken["id"])
    assert caught.value.details["success"] is False
    with pytest.raises(ValidationFailed, match="1 to 100000 rows"):
        svc.preview_flow(broken["id"], rows=0)


def test_relative_paths_resolve_in_the_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(svc.DATA_DIR_ENV, str(tmp_path / "data"))
    created = svc.create_flow(example())
    shutil.rmtree(settings().home / "data", ignore_errors=True)
    assert (tmp_path / "data" / "orders.csv").exists()
    assert len(svc.preview_flow(created["id"], rows=2)[0]["output"]) == 2


@pytest.mark.parametrize("body", [["a", "list"], "text", 5, None])
def test_patch_bodies_that_are_not_objects_are_refused(body: Any) -> None:
    created = svc.create_flow({"name": "Target"})
    with pytest.raises(ValidationFailed):
        svc.update_flow(created["id"], body)


def test_imports_write_several_flows_in_one_transaction_or_none() -> None:
    project_id = projects.default_project()["id"]
    first = Flow(name="Imported A")
    with pytest.raises(Conflict), instance.transaction() as session:
        svc.insert_flow(session, first, project_id=project_id)
        svc.insert_flow(session, {"name": "Imported A"}, project_id=project_id)  # clashes: all rolled back
    assert svc.list_flows()["count"] == 0
    with instance.transaction() as session:
        row = svc.insert_flow(session, first, project_id=project_id, creator_id=7)
        replacement = Flow(name="Imported A", description="from the package")
        svc.replace_flow_document(session, row, replacement, updater_id=8)
    stored = svc.get_flow_by_name("Imported A")
    assert stored["uuid"] == str(replacement.uuid) != str(first.uuid)
    assert (stored["description"], stored["creator"], stored["updater"]) == (
        "from the package",
        {"id": 7},
        {"id": 8},
    )
