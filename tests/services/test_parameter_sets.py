"""Parameter sets: CRUD, and their values substituted when a stored flow is validated, previewed or run."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
from tests.launchers import run_inline

from flowport.errors import Conflict, Forbidden, NotFound, ValidationFailed
from flowport.services import auth, flow_records, flows, instance, jobs, projects
from flowport.services import parameter_sets as svc


@pytest.fixture(autouse=True)
def _initialized(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWPORT_DATABASE_URL", raising=False)
    monkeypatch.delenv(flow_records.DATA_DIR_ENV, raising=False)
    instance.init_instance()


def orders_flow_using_a_set() -> dict[str, Any]:
    """The example flow with its minimum total taken from the parameter set ``orders``."""
    folder = resources.files("flowport") / "examples" / "orders"
    data = flow_records.data_dir()
    data.mkdir(parents=True, exist_ok=True)
    (data / "orders.csv").write_bytes((folder / "orders.csv").read_bytes())
    document = json.loads((folder / "flow.json").read_text())
    document["parameters"] = {}
    document["parameter_sets"] = ["orders"]
    filter_stage = next(s for s in document["stages"] if s["name"] == "Filter_01")
    filter_stage["configuration"]["condition"] = "total >= ${orders__min_total}"
    return dict(document)


# -- CRUD ----------------------------------------------------------------------------------


def test_create_read_update_delete() -> None:
    created = svc.create_parameter_set(
        {
            "name": "my_streaming_params",
            "description": "d",
            "parameters": {"data_format": "JSON", "threads": 2},
        }
    )
    assert set(created) == {
        "id", "name", "description", "parameters", "project", "createdAt", "updatedAt", "creator", "updater",
    }  # fmt: skip
    assert created["parameters"] == {"data_format": "JSON", "threads": "2"}  # values are text
    assert created["project"] == {"id": projects.default_project()["id"]}
    assert svc.get_parameter_set(created["id"]) == created

    updated = svc.update_parameter_set(created["id"], {"parameters": {"data_format": "CSV"}})
    assert updated["parameters"] == {"data_format": "CSV"} and updated["description"] == "d"
    renamed = svc.update_parameter_set(created["id"], {"name": "renamed", "description": "new"})
    assert (renamed["name"], renamed["description"]) == ("renamed", "new")
    with pytest.raises(ValidationFailed, match="cannot be null"):
        svc.update_parameter_set(created["id"], {"parameters": None})

    svc.delete_parameter_set(created["id"])
    with pytest.raises(NotFound):
        svc.get_parameter_set(created["id"])
    with pytest.raises(NotFound):
        svc.delete_parameter_set(created["id"])


def test_parameters_may_come_as_a_list_of_name_value_pairs() -> None:
    created = svc.create_parameter_set(
        {
            "name": "paths",
            "parameters": [{"name": "out", "value": "/tmp/out"}, {"name": "flag", "value": True}],
        }
    )
    assert created["parameters"] == {"out": "/tmp/out", "flag": "true"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "has space"}, "letters, digits and _"),
        ({"name": "a__b"}, "cannot contain '__'"),
        ({"name": "9lives"}, "letters, digits and _"),
        ({"name": "ok", "parameters": {"bad-name": "1"}}, "not a parameter name"),
        ({"name": "ok", "parameters": [{"value": "1"}]}, "'name' and 'value'"),
        ({"name": "ok", "parameters": {"x": {"nested": 1}}}, "parameters.x"),
        ({"name": "ok", "colour": "red"}, "colour: unknown key"),
        ({}, "name"),
    ],
)
def test_bad_bodies_are_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        svc.create_parameter_set(body)


def test_names_are_unique_per_project_and_lists_filter() -> None:
    svc.create_parameter_set({"name": "orders", "parameters": {"min_total": "100"}})
    svc.create_parameter_set({"name": "paths"})
    with pytest.raises(Conflict, match="'orders' already exists"):
        svc.create_parameter_set({"name": "orders"})
    projects.create_project({"name": "sales"})
    svc.create_parameter_set({"name": "orders", "parameters": {"min_total": "5"}}, project="sales")
    assert svc.list_parameter_sets()["count"] == 3
    in_default = svc.list_parameter_sets(project="default")
    assert [p["name"] for p in in_default["data"]] == ["orders", "paths"]
    by_name = svc.list_parameter_sets(project="sales", name="orders")
    assert by_name["count"] == 1 and by_name["data"][0]["parameters"] == {"min_total": "5"}
    assert svc.list_parameter_sets(limit=1)["count"] == 3


def test_viewers_cannot_change_parameter_sets() -> None:
    viewer = auth.create_user("vic", "Viewer-passw0rd", "viewer")
    editor = auth.create_user("eve", "Editor-passw0rd", "editor")
    with pytest.raises(Forbidden):
        svc.create_parameter_set({"name": "orders"}, user=viewer)
    created = svc.create_parameter_set({"name": "orders"}, user=editor)
    assert created["creator"] == {"id": editor.id}
    with pytest.raises(Forbidden):
        svc.update_parameter_set(created["id"], {"description": "x"}, user=viewer)
    with pytest.raises(Forbidden):
        svc.delete_parameter_set(created["id"], user=viewer)
    assert svc.update_parameter_set(created["id"], {"description": "x"}, user=editor)["updater"] == {
        "id": editor.id
    }


# -- substitution --------------------------------------------------------------------------


def test_a_missing_set_is_a_validation_issue_until_it_exists() -> None:
    flow = flow_records.create_flow(orders_flow_using_a_set())
    result = flow_records.validate_flow(flow["id"])
    assert not result.success
    codes = [issue.code for issue in result.issues]
    assert codes[0] == "PARAMETER_SET_NOT_FOUND" and "UNRESOLVED_PARAMETER" in codes
    assert "'orders'" in result.issues[0].message

    svc.create_parameter_set({"name": "orders", "parameters": {"min_total": "100"}})
    assert flow_records.validate_flow(flow["id"]).success


def test_sets_resolve_in_the_flows_project_only() -> None:
    projects.create_project({"name": "sales"})
    svc.create_parameter_set({"name": "orders", "parameters": {"min_total": "100"}}, project="sales")
    flow = flow_records.create_flow(orders_flow_using_a_set())  # default project
    assert flow_records.validate_flow(flow["id"]).issues[0].code == "PARAMETER_SET_NOT_FOUND"


def test_set_values_are_substituted_in_previews_and_runs_and_overrides_win() -> None:
    created = svc.create_parameter_set({"name": "orders", "parameters": {"min_total": "100"}})
    flow = flow_records.create_flow(orders_flow_using_a_set())

    preview = flow_records.preview_flow(flow["id"], rows=500)
    kept = preview[2]["output"]
    assert kept and all(row["total"] >= 100 for row in kept)

    def filtered(**overrides: str) -> int:
        group = run_inline(flow["id"], overrides=overrides)
        assert group["status"] == "Complete", group["error"]
        return int(group["result"]["stages"]["Filter_01"]["outputRecords"])

    at_100 = filtered()
    assert at_100 == len(kept)
    svc.update_parameter_set(created["id"], {"parameters": {"min_total": "20"}})
    at_20 = filtered()
    assert at_20 > at_100
    assert filtered(orders__min_total="100") == at_100  # an override beats the set


def test_deleting_a_used_set_makes_runs_refuse_to_start() -> None:
    created = svc.create_parameter_set({"name": "orders", "parameters": {"min_total": "100"}})
    flow = flow_records.create_flow(orders_flow_using_a_set())
    svc.delete_parameter_set(created["id"])
    with pytest.raises(flows.FlowInvalid, match="PARAMETER_SET_NOT_FOUND"):
        run_inline(flow["id"])
    assert jobs.list_job_groups()["count"] == 0
