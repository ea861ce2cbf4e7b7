"""The one import plan that project imports, release imports and the CLI's local import share."""

from __future__ import annotations

import uuid

import pytest

from flowport.model.flow import Flow
from flowport.model.package import PackageConnection
from flowport.model.package_import import manifest_connection, place, plan_flows, retarget_pipeline


def _flows(*names: str) -> list[Flow]:
    return [Flow(name=name) for name in names]


@pytest.mark.parametrize(
    ("resolution", "actions", "names"),
    [
        ("skip", ["create", "skip", "create"], ["new", "orders", "other"]),
        ("replace", ["create", "replace", "create"], ["new", "orders", "other"]),
        ("rename", ["create", "rename", "create"], ["new", "orders (2)", "other"]),
    ],
)
def test_each_resolution_places_only_the_conflicting_flow(
    resolution: str, actions: list[str], names: list[str]
) -> None:
    existing = {"orders", "orders (1)"}
    plan = plan_flows(
        _flows("new", "orders", "other"),
        resolution,  # type: ignore[arg-type]
        conflicts=lambda flow: flow.name in existing,
        taken=existing.__contains__,
    )
    assert [placement.action for placement, _ in plan.flows] == actions
    assert [flow.name for _, flow in plan.flows] == names


def test_a_renamed_copy_gets_a_new_uuid_and_the_report_names_both() -> None:
    original = Flow(name="orders")
    plan = plan_flows([original], "rename", conflicts=lambda _: True, taken=lambda name: name == "orders")
    (placement, copy), *_ = plan.flows
    assert placement.action == "rename" and placement.original_name == "orders"
    assert copy.name == "orders (1)" and copy.uuid != original.uuid
    assert plan.renamed_flows == {"orders": "orders (1)"}
    renamed = [{"from": "orders", "to": "orders (1)"}]
    assert plan.report() == {"skipped": [], "renamed": renamed, "replaced": []}


def test_names_the_plan_gives_out_count_as_taken_for_the_flows_after_them() -> None:
    # Two flows of one package with the same name: the second must not overwrite the first.
    plan = plan_flows(_flows("a", "a"), "rename", conflicts=lambda _: False, taken=lambda _: False)
    assert [flow.name for _, flow in plan.flows] == ["a", "a (1)"]
    skipped = plan_flows(_flows("a", "a"), "skip", conflicts=lambda _: False, taken=lambda _: False)
    assert [placement.action for placement, _ in skipped.flows] == ["create", "skip"]
    assert [flow.name for _, flow in skipped.stored] == ["a"]


def test_a_copy_name_is_cut_to_the_longest_name_allowed() -> None:
    placement = place("x" * 300, "rename", conflicting=True, taken=lambda _: False, max_length=20)
    assert placement.name == "x" * 16 + " (1)" and len(placement.name) == 20


def test_a_pipeline_follows_renamed_flows_and_remapped_connections_without_changing_the_original() -> None:
    document = {
        "name": "nightly",
        "tasks": [
            {"name": "load", "type": "flow", "flow": "orders"},
            {"name": "other", "type": "flow", "flow": "untouched"},
            {"name": "sql", "type": "sql", "connection": "dev-pg", "sql": "select 1"},
            {"name": "dbt", "type": "dbt", "targets": {"dev": {"connection": "dev-pg"}}},
            {"name": "sh", "type": "shell", "secrets": {"PW": {"connection": "dev-pg"}}},
        ],
    }
    moved = retarget_pipeline(document, {"orders": "orders (1)"}, lambda ref: f"prod<{ref}>")
    tasks = {task["name"]: task for task in moved["tasks"]}
    assert tasks["load"]["flow"] == "orders (1)" and tasks["other"]["flow"] == "untouched"
    assert tasks["sql"]["connection"] == "prod<dev-pg>"
    assert tasks["dbt"]["targets"]["dev"]["connection"] == "prod<dev-pg>"
    assert tasks["sh"]["secrets"]["PW"]["connection"] == "prod<dev-pg>"
    assert document["tasks"][0]["flow"] == "orders"  # a copy: the package's document is unchanged
    assert document["tasks"][2]["connection"] == "dev-pg"


def test_a_reference_names_a_manifest_connection_by_uuid_in_any_spelling_or_by_name() -> None:
    ident = uuid.uuid4()
    listed = [PackageConnection(uuid=ident, name="dev-pg", vendor="postgresql")]
    assert manifest_connection(str(ident).upper(), listed) is listed[0]
    assert manifest_connection(ident.hex, listed) is listed[0]
    assert manifest_connection("dev-pg", listed) is listed[0]
    assert manifest_connection("prod-pg", listed) is None
