"""The release diff as a pure function: flows matched by package uuid, secrets never shown."""

from __future__ import annotations

from typing import Any

from flowport.model.flow import Flow
from flowport.model.release_diff import ReleaseSide, diff_releases


def _flow(name: str, *, password: str = "one", extra_edge: bool = False, **config: Any) -> Flow:
    stages = [
        {
            "name": "In",
            "plugin": {"name": "http_api_origin"},
            "configuration": {"url": "https://x", **config},
        },
        {"name": "Out", "plugin": {"name": "trash"}},
        {"name": "Load", "plugin": {"name": "sql_executor"}, "configuration": {"password": password}},
    ]
    edges = [{"from": "In", "to": "Out"}] + ([{"from": "Out", "to": "Load"}] if extra_edge else [])
    return Flow.model_validate({"name": name, "stages": stages, "edges": edges})


def test_flows_are_matched_by_package_uuid_so_a_rename_is_a_rename() -> None:
    before = ReleaseSide("a", [("u1", _flow("Orders")), ("u2", _flow("Gone"))])
    after = ReleaseSide("b", [("u1", _flow("Orders v2")), ("u3", _flow("New"))])
    flows = diff_releases(before, after)["flows"]
    assert flows["renamed"] == [{"from": "Orders", "to": "Orders v2"}]
    assert flows["added"] == ["New"] and flows["removed"] == ["Gone"]
    assert flows["changed"] == []


def test_secrets_are_never_shown_and_nested_keys_are_paths() -> None:
    before = ReleaseSide(
        "a", [("u1", _flow("F", password="old-secret", headers={"x-api-key": "k1", "a": "1"}))]
    )
    after = ReleaseSide(
        "b",
        [("u1", _flow("F", password="new-secret", extra_edge=True, headers={"x-api-key": "k2", "b": "2"}))],
    )
    (flow,) = diff_releases(before, after)["flows"]["changed"]
    text = repr(flow)
    assert "old-secret" not in text and "new-secret" not in text and "k1" not in text and "k2" not in text
    stages = {s["stage"]: s for s in flow["stages"]["changed"]}
    assert stages["Load"]["configuration"]["changed"] == [{"key": "password", "from": "***", "to": "***"}]
    assert stages["In"]["configuration"] == {
        "added": ["headers.b"],
        "removed": ["headers.a"],
        "changed": [{"key": "headers.x-api-key", "from": "***", "to": "***"}],
    }
    assert flow["edges"] == {"added": [{"from": "Out", "to": "Load"}], "removed": []}


def test_resolved_artifact_versions_that_moved_are_listed() -> None:
    art = {"flow": "F", "stage": "In", "artifact": "flowport-core", "resolved": "1.0.0"}
    before = ReleaseSide("a", [("u1", _flow("F"))], [art])
    after = ReleaseSide("b", [("u1", _flow("F"))], [{**art, "resolved": "1.2.0"}])
    diff = diff_releases(before, after)
    assert diff["artifacts"] == [
        {"flow": "F", "stage": "In", "artifact": "flowport-core", "from": "1.0.0", "to": "1.2.0"}
    ]
    assert diff["flows"]["changed"] == []
