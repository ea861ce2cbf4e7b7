"""Deployments, releases and import rules through the services, on SQLite and on PostgreSQL.

The "Dev" side is a package built here (as a Dev instance exports it):
a SQL table origin on the Dev connection's uuid and table ``Dev-Orders``,
writing JSON Lines under ``dev/``. The "Prod" side is the instance under
test, whose data lives in a SQLite database with a ``Prod-Orders`` table.
Runs use the inline executor, so a run has ended when it returns.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, func, select
from tests.connections.live_servers import postgres_database

from flowport.connections.secrets import SECRET_KEY_ENV
from flowport.connections.spec import ConnectionSpec
from flowport.errors import Conflict, Forbidden, NotFound, ValidationFailed
from flowport.model.flow import Flow
from flowport.model.package import PackageInvalid
from flowport.model.pins import widen_pins
from flowport.services import auth, connections, deployments, flow_records, instance, jobs
from flowport.services import launcher as launchers
from flowport.services.flows import plugin_registry
from flowport.services.package_archive import build_package
from flowport.store.database import DATABASE_URL_ENV, dispose_engines, get_engine

DEV_CONNECTION = "b8014610-ce56-11e7-9739-27deec2c3249"
DEV_INSTANCE = uuid.UUID("0b7c2f52-1d3e-4a5b-8c6d-7e8f9a0b1c2d")
FLOW_UUID = uuid.UUID("6f1c2a70-3d5e-4f7b-9a51-0c2b8e1f4d10")
CORE = next(str(a.version) for a in plugin_registry().artifacts() if a.name == "flowport-core")
EXPORTED_AT = datetime(2025, 1, 6, 9, 30, tzinfo=UTC)
PROD_ROWS = [(1, "Prod Alpha", 120.5), (2, "Prod Beta", 30.0), (3, "Prod Gamma", 75.25)]


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _postgresql_url() -> Iterator[str]:
    with postgres_database("flowport_deployments") as name:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        dispose_engines()


@pytest.fixture(params=["sqlite", "postgresql"])
def prod(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An initialized Prod instance (metadata on SQLite or PostgreSQL); returns its source database."""
    for name in (DATABASE_URL_ENV, flow_records.DATA_DIR_ENV, launchers.EXECUTOR_ENV, SECRET_KEY_ENV):
        monkeypatch.delenv(name, raising=False)
    # Runs end before run_deployment returns.
    monkeypatch.setenv(launchers.LAUNCHER_ENV, "inline")
    if request.param == "postgresql":
        url = request.getfixturevalue("_postgresql_url")
        engine = get_engine(url)
        metadata = MetaData()
        metadata.reflect(engine)
        metadata.drop_all(engine)
        monkeypatch.setenv(DATABASE_URL_ENV, url)
    instance.init_instance()
    # In the instance's data folder: a connection's file must be inside the file roots.
    source = flow_records.data_dir() / "prod-source.sqlite"
    source.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(source) as db:
        db.execute('CREATE TABLE "Prod-Orders" (order_id INTEGER, customer TEXT, total REAL)')
        db.executemany('INSERT INTO "Prod-Orders" VALUES (?, ?, ?)', PROD_ROWS)
    return source


@pytest.fixture
def prod_connection(prod: Path) -> dict[str, Any]:
    """The Prod connection ("Prod Redshift Conn" of the seed) to the Prod source database."""
    row = connections.add_connection({"name": "Prod Conn", "vendor": "sqlite", "params": {"path": str(prod)}})
    return {"id": row.id, "uuid": str(row.uuid)}


# -- packages as Dev exports them -------------------------------------------------------------


def orders_flow(
    *,
    name: str = "Wrangle Orders",
    flow_uuid: uuid.UUID = FLOW_UUID,
    connection: str = DEV_CONNECTION,
    table: str = "Dev-Orders",
    output: str = "dev/out/orders.jsonl",
    version: str | None = f"[{CORE},99.0.0)",
    condition: str | None = None,
) -> Flow:
    """The seed's flow: one table dataset -> (a filter) -> one JSON output."""
    artifact = {"name": "flowport-core", "scope": "SYSTEM", **({"version": version} if version else {})}
    stages: list[dict[str, Any]] = [
        {
            "name": "Orders_01",
            "plugin": {"name": "sql_table_origin", "type": "origin", "artifact": artifact},
            "configuration": {"connection": connection, "table": table},
        },
        {
            "name": "JSON_01",
            "plugin": {"name": "json_file_destination", "type": "destination"},
            "configuration": {"path": output, "format": "jsonl"},
        },
    ]
    edges = [{"from": "Orders_01", "to": "JSON_01"}]
    if condition is not None:
        stages.insert(
            1, {"name": "Filter_01", "plugin": {"name": "filter"}, "configuration": {"condition": condition}}
        )
        edges = [{"from": "Orders_01", "to": "Filter_01"}, {"from": "Filter_01", "to": "JSON_01"}]
    return Flow.model_validate(
        {
            "uuid": str(flow_uuid),
            "name": name,
            "parameters": {"min_total": "50"},
            "stages": stages,
            "edges": edges,
        }
    )


def package(*flows: Flow) -> bytes:
    """The package ZIP a Dev instance with the Dev connection exports."""
    dev = ConnectionSpec(uuid=uuid.UUID(DEV_CONNECTION), name="Dev Redshift Conn", vendor="postgresql")
    return build_package(list(flows) or [orders_flow()], [dev], DEV_INSTANCE, exported_at=EXPORTED_AT)


OBJECT_RULE = {
    "tableName": "connections",
    "onCondition": {"uuid": DEV_CONNECTION},
    "withCondition": {"id": 0},
}
TABLE_RULE = {"type": "tableName", "on": "/^Dev-(.*)$/", "with": r"Prod-\1"}
PATH_RULE = {"type": "fileLocation", "on": "/^dev/", "with": "prod"}


def mapped(connection_id: int) -> dict[str, Any]:
    """The seed's object rule, pointing the Dev connection at local connection ``connection_id``."""
    return {**OBJECT_RULE, "withCondition": {"id": connection_id}}


def ready_deployment(prod_connection: dict[str, Any], name: str = "Production Orders") -> int:
    """A deployment with the seed's object rule and the table and path value rules."""
    deployment_id: int = deployments.create_deployment({"name": name})["id"]
    deployments.set_object_import_rules(deployment_id, [mapped(prod_connection["id"])])
    deployments.set_value_import_rules(deployment_id, [TABLE_RULE, PATH_RULE])
    return deployment_id


def stage_config(flow_id: int, stage: str) -> dict[str, Any]:
    """The configuration of one stage of a stored flow."""
    document = flow_records.get_flow(flow_id)["document"]
    return next(s["configuration"] for s in document["stages"] if s["name"] == stage)


def row_counts() -> dict[str, int]:
    """Rows in every table of the metadata store."""
    engine = get_engine(instance.store_url())
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.connect() as connection:
        return {
            table.name: int(connection.execute(select(func.count()).select_from(table)).scalar() or 0)
            for table in metadata.sorted_tables
        }


def output_rows(path: str = "prod/out/orders.jsonl") -> list[dict[str, Any]]:
    """The records a run wrote to ``path`` under the data folder."""
    text = (flow_records.data_dir() / path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def run(deployment_id: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the deployment inline; returns the ended job group."""
    answer = deployments.run_deployment(deployment_id, overrides)
    (started,) = answer["data"]
    assert started["reason"] == "JobStarted" and uuid.UUID(started["sessionId"])
    return jobs.get_job_group(started["id"], embed_jobs=True)


# -- deployments and rules -------------------------------------------------------------------


def test_deployments_are_created_listed_renamed_and_deleted_with_their_project(prod: Path) -> None:
    created = deployments.create_deployment({"name": "  Production Orders "})
    assert created["name"] == "Production Orders" and created["activeRelease"] is None
    assert created["createdAt"].endswith("Z") and created["creator"] is None
    project = created["project"]["id"]
    assert flow_records.list_flows(project=f"deployment:{created['id']}")["count"] == 0
    with pytest.raises(Conflict, match="already exists"):
        deployments.create_deployment({"name": "Production Orders"})
    with pytest.raises(ValidationFailed, match="name"):
        deployments.create_deployment({"name": ""})
    with pytest.raises(ValidationFailed, match="unknown key"):
        deployments.create_deployment({"name": "X", "project": 1})
    other = deployments.create_deployment({"name": "Other"})
    assert [d["name"] for d in deployments.list_deployments()["data"]] == ["Production Orders", "Other"]
    assert deployments.list_deployments(name="Other")["count"] == 1
    renamed = deployments.patch_deployment(other["id"], {"name": "Staging"})
    assert renamed["name"] == "Staging" and renamed["project"] == other["project"]
    with pytest.raises(Conflict):
        deployments.patch_deployment(other["id"], {"name": "Production Orders"})
    deployments.import_release(created["id"], package())
    deployments.delete_deployment(created["id"])
    with pytest.raises(NotFound):
        deployments.get_deployment(created["id"])
    with pytest.raises(NotFound):
        flow_records.list_flows(project=project)
    assert deployments.list_releases()["count"] == 0
    viewer = auth.create_user("watcher", "watcher-pass-1", "viewer")
    with pytest.raises(Forbidden):
        deployments.create_deployment({"name": "Nope"}, user=viewer)


def test_rule_sets_replace_the_previous_ones_and_answer_them_as_deleted(prod: Path) -> None:
    deployment_id = deployments.create_deployment({"name": "D"})["id"]
    first = connections.add_connection({"name": "First", "vendor": "http", "host": "https://a.example"}).id
    second = connections.add_connection({"name": "Second", "vendor": "http", "host": "https://b.example"}).id
    rule = mapped(first)
    assert deployments.set_object_import_rules(deployment_id, [rule]) == {"deleted": []}
    upper = {**OBJECT_RULE, "onCondition": {"uuid": DEV_CONNECTION.upper()}, "withCondition": {"id": second}}
    assert deployments.set_object_import_rules(deployment_id, [upper]) == {"deleted": [rule]}
    # Stored in the canonical form stage configurations use.
    assert deployments.get_object_import_rules(deployment_id) == {"data": [mapped(second)], "count": 1}
    # A rule to a connection this instance does not have is refused when it is set, naming the id.
    with pytest.raises(ValidationFailed, match="connection id 9999") as caught:
        deployments.set_object_import_rules(deployment_id, [rule, mapped(9999)])
    assert caught.value.details == {"rule": 1, "connectionId": 9999}
    assert deployments.get_object_import_rules(deployment_id)["data"] == [mapped(second)]
    assert deployments.set_object_import_rules(deployment_id, []) == {"deleted": [mapped(second)]}

    assert deployments.set_value_import_rules(deployment_id, [TABLE_RULE, PATH_RULE]) == {"deleted": []}
    assert deployments.get_value_import_rules(deployment_id)["data"] == [TABLE_RULE, PATH_RULE]
    assert deployments.set_value_import_rules(deployment_id, [PATH_RULE])["deleted"] == [
        TABLE_RULE,
        PATH_RULE,
    ]

    bad: list[tuple[Any, str]] = [
        ({"type": "tableName"}, "JSON array"),
        ([{"type": "columns", "on": "a", "with": "b"}], r"\[0\]\.type"),
        ([{"type": "tableName", "on": "/(/", "with": "b"}], "not a valid regular expression"),
        ([{"type": "tableName", "on": "/a/", "with": r"\3"}], "not a valid replacement"),
        ([{"type": "tableName", "on": "a", "with": "b", "extra": 1}], "unknown key"),
        ([{"type": "tableName", "on": "a\x00", "with": "b"}], "NUL"),
        ([PATH_RULE] * (deployments.MAX_RULES + 1), "at most"),
    ]
    for rules, message in bad:
        with pytest.raises(ValidationFailed, match=message):
            deployments.set_value_import_rules(deployment_id, rules)
    with pytest.raises(ValidationFailed, match="withCondition"):
        deployments.set_object_import_rules(deployment_id, [{**OBJECT_RULE, "withCondition": {"name": "x"}}])
    assert deployments.get_value_import_rules(deployment_id)["data"] == [PATH_RULE]
    with pytest.raises(NotFound):
        deployments.set_value_import_rules(999, [])


# -- importing ------------------------------------------------------------------------------


def test_import_points_stages_at_the_prod_connection_and_applies_value_rules_in_order(
    prod: Path, prod_connection: dict[str, Any]
) -> None:
    deployment_id = ready_deployment(prod_connection)
    # In order: the regex makes Prod-Orders, which the literal rule after it then rewrites.
    later = {"type": "tableName", "on": "Prod-Orders", "with": "Prod-Orders-2024"}
    deployments.set_value_import_rules(deployment_id, [TABLE_RULE, later, PATH_RULE])
    report = deployments.import_release(deployment_id, package(), notes="first")

    assert report["importRuleChanges"] == {
        "object": [mapped(prod_connection["id"])],
        "value": [TABLE_RULE, later, PATH_RULE],
    }
    assert report["flowName"] == "Wrangle Orders" and report["dryRun"] is False
    (flow_id,) = report["primaryFlowIds"]
    origin = stage_config(flow_id, "Orders_01")
    assert origin == {"connection": prod_connection["uuid"], "table": "Prod-Orders-2024"}
    assert stage_config(flow_id, "JSON_01")["path"] == "prod/out/orders.jsonl"
    assert [(c["rule"], c["stage"], c["from"], c["to"]) for c in report["valueChanges"]] == [
        (0, "Orders_01", "Dev-Orders", "Prod-Orders"),
        (1, "Orders_01", "Prod-Orders", "Prod-Orders-2024"),
        (2, "JSON_01", "dev/out/orders.jsonl", "prod/out/orders.jsonl"),
    ]
    assert report["unresolvedConnections"] == []
    assert report["resolvedArtifacts"] == [
        {"flow": "Wrangle Orders", "stage": "Orders_01", "artifact": "flowport-core",
         "requested": f"[{CORE},99.0.0)", "resolved": CORE}
    ]  # fmt: skip

    release = report["release"]
    assert release == deployments.get_release(release["id"])
    assert (
        release["active"] and release["notes"] == "first" and release["deployment"] == {"id": deployment_id}
    )
    assert release["primaryFlow"] == {"id": flow_id}
    assert release["flows"] == [
        {"id": flow_id, "name": f"Wrangle Orders (release {release['id']})",
         "packageFlow": {"uuid": str(FLOW_UUID), "name": "Wrangle Orders"}}
    ]  # fmt: skip
    data = package()
    sha = hashlib.sha256(data).hexdigest()
    assert release["packageUuid"] == str(deployments.package_uuid(sha))
    assert deployments.get_release_package(release["id"]) == data
    stored = flow_records.get_flow(flow_id)
    assert stored["project"] == deployments.get_deployment(deployment_id)["project"]

    # Never retroactively: new rules leave release 1's flow alone and apply to the next import.
    deployments.set_value_import_rules(deployment_id, [PATH_RULE])
    assert stage_config(flow_id, "Orders_01")["table"] == "Prod-Orders-2024"
    second = deployments.import_release(deployment_id, package())
    assert stage_config(second["primaryFlowIds"][0], "Orders_01")["table"] == "Dev-Orders"
    assert second["importRuleChanges"]["value"] == [PATH_RULE]


def test_an_object_rule_matches_a_stage_naming_the_dev_connection_by_name(
    prod: Path, prod_connection: dict[str, Any]
) -> None:
    deployment_id = ready_deployment(prod_connection)
    report = deployments.import_release(deployment_id, package(orders_flow(connection="Dev Redshift Conn")))
    assert stage_config(report["primaryFlowIds"][0], "Orders_01")["connection"] == prod_connection["uuid"]
    assert report["importRuleChanges"]["object"] == [mapped(prod_connection["id"])]


def test_a_dry_run_answers_the_same_and_stores_nothing(prod: Path, prod_connection: dict[str, Any]) -> None:
    deployment_id = ready_deployment(prod_connection)
    deployments.import_release(deployment_id, package())
    before = row_counts()
    dry = deployments.import_release(deployment_id, package(), dry_run=True, notes="try")
    assert row_counts() == before
    real = deployments.import_release(deployment_id, package())
    assert dry["dryRun"] is True and dry["primaryFlowIds"] == [] and dry["release"] is None
    for key in (
        "importRuleChanges",
        "flowName",
        "valueChanges",
        "resolvedArtifacts",
        "unresolvedConnections",
    ):
        assert dry[key] == real[key], key

    # Failing dry runs and imports store nothing either.
    before = row_counts()
    for dry_run in (True, False):
        with pytest.raises(PackageInvalid):
            deployments.import_release(deployment_id, b"not a zip", dry_run=dry_run)
        with pytest.raises(ValidationFailed, match=r"not installed|cannot be resolved"):
            deployments.import_release(deployment_id, package(orders_flow(version="0.0.9")), dry_run=dry_run)
    assert row_counts() == before


def test_hostile_packages_and_missing_rule_targets_store_nothing(prod: Path) -> None:
    deployment_id = deployments.create_deployment({"name": "D"})["id"]
    before = row_counts()
    good = package()
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as archive:
        for name, body in entries.items():
            archive.writestr(name, body)
        archive.writestr("../../etc/passwd", b"root")
    tampered = io.BytesIO()
    with zipfile.ZipFile(tampered, "w") as archive:
        for name, body in entries.items():
            archive.writestr(name, body.replace(b"Dev-Orders", b"Hax-Orders"))
    for data, problem in [(evil.getvalue(), "traversal|\\.\\."), (tampered.getvalue(), "sha256")]:
        with pytest.raises(PackageInvalid, match=problem):
            deployments.import_release(deployment_id, data)
    assert row_counts() == before
    # A rule's connection deleted after the rule was set: the import names the missing id.
    gone = connections.add_connection({"name": "Gone", "vendor": "http", "host": "https://gone.example"}).id
    deployments.set_object_import_rules(deployment_id, [mapped(gone)])
    connections.remove_connection(gone)
    before = row_counts()
    with pytest.raises(ValidationFailed, match=f"connection id {gone}, which does not exist"):
        deployments.import_release(deployment_id, good)
    with pytest.raises(ValidationFailed, match="NUL"):
        deployments.import_release(deployment_id, good, notes="a\x00b")
    with pytest.raises(NotFound):
        deployments.import_release(999, good)
    assert row_counts() == before


def test_an_exact_pin_must_be_installed_and_a_range_resolves_to_what_is(prod: Path) -> None:
    deployment_id = deployments.create_deployment({"name": "D"})["id"]
    exact = orders_flow(version="0.0.9")
    with pytest.raises(ValidationFailed) as refused:
        deployments.import_release(deployment_id, package(exact))
    message = refused.value.message
    assert "stage 'Orders_01'" in message and "flowport-core 0.0.9" in message
    assert f"installed versions: {CORE}" in message and "flowport packages upgrade" in message
    (problem,) = refused.value.details["problems"]
    assert problem["installed"] == [CORE] and problem["code"] == "ARTIFACT_VERSION_NOT_FOUND"
    assert deployments.list_releases(deployment_id=deployment_id)["count"] == 0

    # The seed's sed step: the same flow with its pins widened imports and resolves to what is installed.
    widened, _changes = widen_pins(exact, "[0.0.1,10.0.0]")
    report = deployments.import_release(deployment_id, package(widened))
    assert report["resolvedArtifacts"][0]["resolved"] == CORE
    assert report["resolvedArtifacts"][0]["requested"] == "[0.0.1,10.0.0]"
    # A range nothing installed matches is refused the same way.
    with pytest.raises(ValidationFailed, match=f"installed versions: {CORE}"):
        deployments.import_release(deployment_id, package(orders_flow(version="[50.0.0,60.0.0)")))
    with pytest.raises(ValidationFailed, match="no_such_plugin"):
        bad = orders_flow().model_dump(mode="json", by_alias=True)
        bad["stages"][1]["plugin"]["name"] = "no_such_plugin"
        deployments.import_release(deployment_id, package(Flow.model_validate(bad)))


# -- releases --------------------------------------------------------------------------------


def test_activation_keeps_exactly_one_active_and_rolls_back(prod: Path) -> None:
    deployment_id = deployments.create_deployment({"name": "D"})["id"]
    # Forced: the package's connection is not mapped here, and activation is what this test is about.
    ids = [
        deployments.import_release(deployment_id, package(), activate="force")["release"]["id"]
        for _ in range(3)
    ]

    def active() -> list[int]:
        return [
            r["id"] for r in deployments.list_releases(deployment_id=deployment_id)["data"] if r["active"]
        ]

    assert active() == [ids[2]]
    assert deployments.get_deployment(deployment_id)["activeRelease"] == {"id": ids[2]}
    rolled_back = deployments.patch_release(ids[0], {"active": True})
    assert rolled_back["active"] and active() == [ids[0]]
    assert deployments.patch_release(ids[0], {"active": True})["active"] and active() == [ids[0]]
    embedded = deployments.get_deployment(deployment_id, embed_releases=True)["releases"]
    assert embedded["count"] == 3 and [r["id"] for r in embedded["data"]] == ids

    for body, message in [
        ({"notes": "changed"}, "immutable: only 'active' can change, not notes"),
        ({"active": True, "packageUuid": "x"}, "not packageUuid"),
        ({"active": "yes"}, "active"),
        ({}, "active"),
        ([], "release"),
    ]:
        with pytest.raises(ValidationFailed, match=message):
            deployments.patch_release(ids[1], body)  # type: ignore[arg-type]
    assert active() == [ids[0]]

    # Deleting an inactive release keeps the active one; deleting the active one leaves none.
    flow_of = {r["id"]: r["primaryFlow"]["id"] for r in deployments.list_releases()["data"]}
    deployments.delete_release(ids[1])
    assert active() == [ids[0]]
    with pytest.raises(NotFound):
        flow_records.get_flow(flow_of[ids[1]])
    deployments.delete_release(ids[0])
    assert active() == [] and deployments.get_deployment(deployment_id)["activeRelease"] is None
    with pytest.raises(Conflict, match="has no active release"):
        run(deployment_id)
    deployments.patch_release(ids[2], {"active": False})
    assert active() == []
    with pytest.raises(NotFound):
        deployments.get_release(ids[0])
    with pytest.raises(NotFound):
        deployments.list_releases(deployment_id=999)


# -- running -----------------------------------------------------------------------------------


def test_run_without_an_active_release_is_a_conflict_and_starts_nothing(prod: Path) -> None:
    deployment_id = deployments.create_deployment({"name": "Empty"})["id"]
    with pytest.raises(Conflict, match=r"'Empty'.*has no active release: import a package"):
        deployments.run_deployment(deployment_id)
    with pytest.raises(NotFound):
        deployments.run_deployment(999)
    assert jobs.list_job_groups()["count"] == 0


def test_run_with_a_connection_this_instance_lacks_names_the_stage_and_validate_flags_it(prod: Path) -> None:
    # No object rule: the stage keeps the Dev connection's uuid (the seed's red dot).
    deployment_id = deployments.create_deployment({"name": "D"})["id"]
    kept = deployments.import_release(deployment_id, package())
    assert kept["activated"] is False and "stored but not activated" in kept["message"]
    assert deployments.get_deployment(deployment_id)["activeRelease"] is None
    with pytest.raises(Conflict, match="no active release"):
        deployments.run_deployment(deployment_id)
    report = deployments.import_release(deployment_id, package(), activate="force")
    assert report["activated"] is True
    assert report["unresolvedConnections"] == [
        {"flow": "Wrangle Orders", "stage": "Orders_01", "connection": DEV_CONNECTION,
         "name": "Dev Redshift Conn", "vendor": "postgresql"}
    ]  # fmt: skip
    with pytest.raises(ValidationFailed) as refused:
        deployments.run_deployment(deployment_id)
    message = refused.value.message
    assert "stage 'Orders_01' uses connection" in message and DEV_CONNECTION in message
    assert "Dev Redshift Conn" in message and "objectImportRules" in message
    assert refused.value.details["missingConnections"] == [
        {"stage": "Orders_01", "connection": DEV_CONNECTION}
    ]
    assert jobs.list_job_groups()["count"] == 0

    validation = flow_records.validation_dict(flow_records.validate_flow(report["primaryFlowIds"][0]))
    assert not validation["success"]
    red = [i for i in validation["issues"] if i["code"] == "CONNECTION_NOT_FOUND"]
    assert [(i["type"], i["instanceName"]) for i in red] == [("stageIssues", "Orders_01")]
    assert DEV_CONNECTION in red[0]["humanReadableMessage"]


def test_a_release_with_unresolved_connections_never_replaces_a_working_one(
    prod: Path, prod_connection: dict[str, Any]
) -> None:
    deployment_id = ready_deployment(prod_connection)
    working = deployments.import_release(deployment_id, package())
    assert working["activated"] is True and working["unresolvedConnections"] == []
    stranger = str(uuid.uuid4())
    broken = deployments.import_release(deployment_id, package(orders_flow(connection=stranger)))
    assert broken["activated"] is False and broken["release"]["active"] is False
    assert f"release {working['release']['id']} stays active" in broken["message"]
    assert [u["connection"] for u in broken["unresolvedConnections"]] == [stranger]
    assert deployments.get_deployment(deployment_id)["activeRelease"] == {"id": working["release"]["id"]}
    group = run(deployment_id)
    assert group["status"] == "Complete", group["error"]
    assert group["flow"] == {"id": working["primaryFlowIds"][0]}
    with pytest.raises(ValidationFailed, match="activate must be 'auto' or 'force'"):
        deployments.import_release(deployment_id, package(), activate="yes")


def test_runs_use_the_active_release_and_a_rollback_is_verified_by_a_run(
    prod: Path, prod_connection: dict[str, Any]
) -> None:
    deployment_id = ready_deployment(prod_connection)
    first = deployments.import_release(deployment_id, package())["release"]["id"]
    group = run(deployment_id)
    assert group["status"] == "Complete", group["error"]
    assert group["deployment"] == {"id": deployment_id}
    assert group["flow"] == {"id": deployments.get_release(first)["primaryFlow"]["id"]}
    rows = output_rows()
    assert [r["customer"] for r in rows] == [name for _id, name, _total in PROD_ROWS]

    # Release 2 filters on a parameter; the run's overrides reach it.
    deployments.import_release(deployment_id, package(orders_flow(condition="total >= ${min_total}")))
    assert run(deployment_id)["status"] == "Complete"
    assert [r["customer"] for r in output_rows()] == ["Prod Alpha", "Prod Gamma"]
    group = run(deployment_id, {"min_total": 100})
    assert group["status"] == "Complete" and group["parameters"] == {"min_total": "100"}
    assert [r["customer"] for r in output_rows()] == ["Prod Alpha"]

    deployments.patch_release(first, {"active": True})
    assert run(deployment_id)["status"] == "Complete"
    assert len(output_rows()) == len(PROD_ROWS)
    with pytest.raises(ValidationFailed, match="parameter name"):
        deployments.run_deployment(deployment_id, {"bad name": 1})


# -- release diff ------------------------------------------------------------------------------


def test_a_release_diff_lists_exactly_what_changed(prod: Path, prod_connection: dict[str, Any]) -> None:
    deployment_id = ready_deployment(prod_connection)
    first = deployments.import_release(deployment_id, package(orders_flow(condition="total > 10")))
    assert first["diff"]["from"] == "no active release"
    assert first["diff"]["flows"]["added"] == ["Wrangle Orders"]
    changed = orders_flow(condition="total > 20", table="Dev-Orders2", version=CORE)
    dry = deployments.import_release(deployment_id, package(changed), dry_run=True)
    second = deployments.import_release(deployment_id, package(changed))
    diff = deployments.release_diff(second["release"]["id"], first["release"]["id"])
    assert dry["diff"]["flows"] == diff["flows"]  # the dry run says beforehand what the import changes
    assert (
        diff["from"] == f"release {first['release']['id']}"
        and diff["to"] == f"release {second['release']['id']}"
    )
    assert diff["flows"]["added"] == diff["flows"]["removed"] == diff["flows"]["renamed"] == []
    (flow,) = diff["flows"]["changed"]
    assert flow["flow"] == "Wrangle Orders"
    assert flow["stages"]["added"] == flow["stages"]["removed"] == []
    stages = {s["stage"]: s for s in flow["stages"]["changed"]}
    assert set(stages) == {"Orders_01", "Filter_01"}
    assert stages["Filter_01"]["configuration"] == {
        "added": [],
        "removed": [],
        "changed": [{"key": "condition", "from": "total > 10", "to": "total > 20"}],
    }
    # The table name as the value rule rewrote it, and the artifact pin.
    assert stages["Orders_01"]["configuration"]["changed"] == [
        {"key": "table", "from": "Prod-Orders", "to": "Prod-Orders2"}
    ]
    assert stages["Orders_01"]["artifact"] == {
        "from": f"flowport-core:[{CORE},99.0.0)",
        "to": f"flowport-core:{CORE}",
    }
    for part in ("parameters", "errorStage", "configuration"):
        assert flow[part] == {"added": [], "removed": [], "changed": []}, part
    assert flow["edges"] == {"added": [], "removed": []}
    assert diff["importRules"]["to"]["value"] == [TABLE_RULE, PATH_RULE]  # the rules that fired
    # Against the active release (the second): nothing changes.
    assert deployments.release_diff(second["release"]["id"])["flows"]["changed"] == []
    with pytest.raises(ValidationFailed, match="against"):
        deployments.release_diff(second["release"]["id"], "latest")
    with pytest.raises(NotFound):
        deployments.release_diff(second["release"]["id"], 99_999)
