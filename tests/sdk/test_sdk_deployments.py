"""Deployments through the SDK and ``flowport deployments ...``, against a real ``flowport server``.

The packages are exported from the same server (a CSV file → JSON file
flow whose output path value rules rewrite), so no database is needed; the
Dev → Prod walk-through across two servers is ``tests/e2e/test_dev_to_prod.py``.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.sdk.flowport_server import VIEWER_PASSWORD, Server
from typer.testing import CliRunner, Result

from flowport.cli.main import app
from flowport.sdk import (
    Client,
    Conflict,
    Deployment,
    Forbidden,
    ImportResult,
    Job,
    NotFound,
    Release,
    Unauthorized,
    ValidationFailed,
)

runner = CliRunner()


def _name(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def _package(admin: Client, sample_csv: str, tmp_path: Path, *, output: str, connection: str = "") -> Path:
    """Export a flow (CSV file → JSON Lines file at ``output``) from the server as a package ZIP."""
    project = admin.projects.get(name="default")
    flow = project.create_flow(_name("deployable"))
    if connection:
        origin = flow.add_stage("sql_table_origin")
        origin.connection = connection
        origin.table = "orders"
    else:
        origin = flow.add_stage("CSV File")
        origin.path = sample_csv
    destination = flow.add_stage("json_file_destination")
    destination.path = output
    flow.parameters["suffix"] = "default"
    origin >> destination
    project.update_flow(flow)
    path = project.export_flow(flow, tmp_path / f"{uuid.uuid4().hex[:8]}.zip")
    project.delete_flow(flow)
    return path


@pytest.fixture
def package(admin: Client, sample_csv: str, tmp_path: Path) -> Path:
    """A package whose flow writes ``dev-out/<run>-${suffix}.jsonl`` under the data folder."""
    return _package(admin, sample_csv, tmp_path, output=f"dev-out/{uuid.uuid4().hex[:8]}-${{suffix}}.jsonl")


# -- SDK ----------------------------------------------------------------------------------------


def test_create_get_and_list_deployments(admin: Client) -> None:
    name = _name("Production Orders")
    deployment = admin.deployments.create(name)
    assert isinstance(deployment, Deployment) and deployment.name == name
    assert repr(deployment) == f"Deployment(name={name!r}, deployment_id={deployment.deployment_id})"
    assert deployment.releases == [] and deployment.active_release is None
    assert deployment.project_id is not None
    with pytest.raises(Conflict):
        admin.deployments.create(name)
    assert admin.deployments.get(name=name).deployment_id == deployment.deployment_id
    assert admin.deployments.get(deployment_id=deployment.deployment_id).name == name
    assert name in [d.name for d in admin.deployments.get_all()]
    assert [d.name for d in admin.deployments.get_all(name=name)] == [name]
    assert name in [d.name for d in admin.deployments]
    with pytest.raises(NotFound):
        admin.deployments.get(name="no such deployment")
    with pytest.raises(NotFound):
        admin.deployments.get(deployment_id=99_999_999)
    with pytest.raises(ValueError, match="Say which deployment"):
        admin.deployments.get()
    renamed = _name("Renamed")
    assert deployment.rename(renamed).name == renamed
    assert deployment.delete().status_code == 204
    with pytest.raises(NotFound):
        deployment.refresh()


def _connection_id(admin: Client) -> int:
    """A connection of the server, for object rules (which must name one that exists)."""
    body = {"name": _name("rule target"), "vendor": "http", "host": "https://example.invalid"}
    return int(admin.request("POST", "/v4/connections", json=body).json()["id"])


def test_import_rules_replace_and_answer_what_they_deleted(admin: Client) -> None:
    deployment = admin.deployments.create(_name("rules"))
    rule: dict[str, Any] = {
        "tableName": "connections",
        "onCondition": {"uuid": str(uuid.uuid4())},
        "withCondition": {"id": _connection_id(admin)},
    }
    assert deployment.set_object_import_rules([rule]) == []
    assert deployment.object_import_rules == [rule]
    assert deployment.set_object_import_rules([]) == [rule]
    assert deployment.object_import_rules == []
    values = [
        {"type": "tableName", "on": "Dev-Orders", "with": "Prod-Orders"},
        {"type": "fileLocation", "on": "/^dev/(.*)$/", "with": r"prod/\1"},
    ]
    assert deployment.set_value_import_rules(values) == []
    assert deployment.value_import_rules == values
    assert deployment.set_value_import_rules(values[:1]) == values
    with pytest.raises(ValidationFailed):
        deployment.set_value_import_rules([{"type": "tableName", "on": "/[/", "with": "x"}])
    with pytest.raises(ValidationFailed):
        deployment.set_object_import_rules([{"tableName": "users", "onCondition": {}, "withCondition": {}}])
    not_a_list: Any = rule
    with pytest.raises(TypeError):
        deployment.set_object_import_rules(not_a_list)
    assert deployment.value_import_rules == values[:1]  # a refused update changes nothing


def test_import_run_rollback_and_delete(admin: Client, server: Server, package: Path) -> None:
    deployment = admin.deployments.create(_name("Production Orders"))
    # In order: the literal rule moves dev-out/ to stage-out/, then the regex (which only matches
    # what the first rule produced) turns stage-out/X.jsonl into prod-out/X.json.
    values = [
        {"type": "fileLocation", "on": "dev-out/", "with": "stage-out/"},
        {"type": "fileLocation", "on": r"/^stage-out/(.*)\.jsonl$/", "with": r"prod-out/\1.json"},
    ]
    deployment.set_value_import_rules(values)

    with pytest.raises(Conflict, match="has no active release"):
        deployment.run()
    with pytest.raises(NotFound):
        deployment.import_package(package.with_name("missing.zip"))

    dry = deployment.import_package(package, dry_run=True)
    assert isinstance(dry, ImportResult) and dry.dry_run and dry.release is None
    assert dry.primary_flow_ids == [] and dry.import_rule_changes == {"object": [], "value": values}
    assert deployment.releases == []  # a dry run stores nothing

    first = deployment.import_package(package, notes="first")
    assert first.release is not None and first.release.active and first.release.notes == "first"
    assert repr(first.release) == f"Release(id={first.release.release_id}, active=True)"
    assert first.import_rule_changes["value"] == values and len(first.primary_flow_ids) == 1
    assert [c["to"] for c in first.value_changes][-1].startswith("prod-out/")
    assert first.to_dict()["flowName"] == first.flow_name
    assert first.release.package_uuid and first.release.deployment_id == deployment.deployment_id

    job = deployment.run(overrides={"suffix": "one"})
    assert isinstance(job, Job) and job.wait(timeout=120, poll=0.2).status == "Complete", job.error
    assert job.parameters == {"suffix": "one"}
    written = sorted(p.name for p in (server.data_dir / "prod-out").glob("*-one.json"))
    assert len(written) == 1 and not list((server.data_dir / "dev-out").glob("*-one.jsonl"))

    second = deployment.import_package(package, notes="second").release
    assert second is not None
    assert [r.active for r in deployment.releases] == [False, True]
    assert deployment.active_release is not None
    assert deployment.active_release.release_id == second.release_id

    rolled_back = first.release.activate()
    assert rolled_back is first.release and rolled_back.active
    assert second.refresh().active is False
    assert deployment.active_release.release_id == first.release.release_id
    assert admin.deployments.get_release(second.release_id).active is False
    assert deployment.releases.get(active=True).release_id == first.release.release_id
    target = second.download_package(package.with_name("downloaded.zip"))
    assert target.read_bytes() == package.read_bytes()

    # Only this deployment's runs (GET /v4/jobGroups?deploymentId=).
    job = deployment.run()
    assert job.wait(timeout=120, poll=0.2).status == "Complete"
    runs = deployment.jobs
    assert [j.job_id for j in runs] == [job.job_id, runs[1].job_id] and len(runs) == 2
    assert all(j.record["deployment"] == {"id": deployment.deployment_id} for j in runs)
    other = admin.deployments.create(_name("other"))
    assert other.jobs == []

    first.release.deactivate()
    assert deployment.active_release is None
    with pytest.raises(Conflict):
        deployment.run()
    assert second.delete().status_code == 204
    with pytest.raises(NotFound):
        admin.deployments.get_release(second.release_id)
    with pytest.raises(NotFound):
        second.activate()
    assert deployment.delete().status_code == 204
    with pytest.raises(NotFound):
        first.release.refresh()


def test_a_release_on_a_missing_connection_cannot_run(admin: Client, sample_csv: str, tmp_path: Path) -> None:
    missing = str(uuid.uuid4())
    package = _package(admin, sample_csv, tmp_path, output="x.jsonl", connection=missing)
    deployment = admin.deployments.create(_name("red dots"))
    kept = deployment.import_package(package)
    assert kept.activated is False and "not activated" in kept.message
    assert deployment.active_release is None
    result = deployment.import_package(package, activate="force")
    assert result.activated is True
    assert [c["connection"] for c in result.unresolved_connections] == [missing]
    with pytest.raises(ValidationFailed) as caught:
        deployment.run()
    assert caught.value.details["missingConnections"][0]["connection"] == missing
    # An object rule to a connection id this server does not have is refused when it is set.
    with pytest.raises(ValidationFailed, match="connection id 99999"):
        deployment.set_object_import_rules(
            [{"tableName": "connections", "onCondition": {"uuid": missing}, "withCondition": {"id": 99_999}}]
        )
    assert deployment.object_import_rules == []
    assert len(deployment.releases) == 2


def test_viewers_read_but_cannot_change_deployments(admin: Client, server: Server, package: Path) -> None:
    deployment = admin.deployments.create(_name("viewed"))
    release = deployment.import_package(package).release
    assert release is not None
    with server.client("viewer", VIEWER_PASSWORD) as viewer:
        seen = viewer.deployments.get(deployment_id=deployment.deployment_id)
        assert [r.release_id for r in seen.releases] == [release.release_id]
        with pytest.raises(Forbidden):
            viewer.deployments.create(_name("viewer's"))
        with pytest.raises(Forbidden):
            seen.run()
        with pytest.raises(Forbidden):
            seen.releases[0].deactivate()
        with pytest.raises(Forbidden):
            seen.set_value_import_rules([])
    with (
        Client(server.url, username="viewer", password="wrong") as stranger,
        pytest.raises(Unauthorized),
    ):
        stranger.deployments.get_all()


# -- CLI ----------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(admin: Client, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The server and an admin API token, as the environment gives them to the CLI."""
    for name in ("FLOWPORT_URL", "FLOWPORT_TOKEN", "FLOWPORT_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    return {"FLOWPORT_URL": admin.url, "FLOWPORT_TOKEN": admin.create_api_token(_name("cli"))["token"]}


def _cli(env: dict[str, str], *args: str) -> Result:
    result = runner.invoke(app, ["deployments", *args], env=env)
    assert env["FLOWPORT_TOKEN"] not in result.stdout + result.stderr
    return result


def _ok_json(env: dict[str, str], *args: str) -> Any:
    result = _cli(env, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # exactly one JSON document


def test_cli_create_rules_import_activate_run_and_releases(
    cli_env: dict[str, str], server: Server, package: Path, tmp_path: Path, admin: Client
) -> None:
    name = _name("CLI Orders")
    created = _ok_json(cli_env, "create", name)
    assert created["name"] == name and created["activeRelease"] is None
    deployment_id = str(created["id"])
    duplicate = _cli(cli_env, "create", name)
    assert duplicate.exit_code == 1 and "already" in duplicate.stderr
    listed = _ok_json(cli_env, "list")
    assert name in [d["name"] for d in listed["data"]] and listed["count"] == len(listed["data"])
    assert name in _cli(cli_env, "list").stdout.replace("\n", "")

    object_file = tmp_path / "object.json"
    rule: dict[str, Any] = {
        "tableName": "connections",
        "onCondition": {"uuid": str(uuid.uuid4())},
        "withCondition": {"id": _connection_id(admin)},
    }
    object_file.write_text(json.dumps([rule]))
    value_file = tmp_path / "value.json"
    values = [{"type": "fileLocation", "on": "/^dev-out/(.*)$/", "with": r"cli-out/\1"}]
    value_file.write_text(json.dumps(values))
    answer = _ok_json(cli_env, "rules", name, "--object", str(object_file), "--value", str(value_file))
    assert answer["object"] == {"set": [rule], "deleted": []}
    assert answer["value"] == {"set": values, "deleted": []}
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    again = _cli(cli_env, "rules", deployment_id, "--object", str(empty))
    assert (
        again.exit_code == 0 and "deleted 1" in again.stdout and rule["onCondition"]["uuid"] in again.stdout
    )
    shown = _ok_json(cli_env, "rules", deployment_id)
    assert shown["object"] == {"data": [], "count": 0} and shown["value"]["data"] == values
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert _cli(cli_env, "rules", name, "--value", str(bad)).exit_code == 2
    assert _cli(cli_env, "rules", name, "--value", str(tmp_path / "nope.json")).exit_code == 2
    bad.write_text(json.dumps({"type": "tableName"}))
    assert _cli(cli_env, "rules", name, "--value", str(bad)).exit_code == 2
    bad.write_text(json.dumps([{"type": "tableName", "on": "/[/", "with": "x"}]))
    refused = _cli(cli_env, "rules", name, "--value", str(bad), "--json")
    assert refused.exit_code == 1 and "error" in json.loads(refused.stdout)

    dry = _ok_json(cli_env, "import", name, str(package), "--dry-run")
    assert dry["dryRun"] is True and dry["release"] is None
    assert _ok_json(cli_env, "releases", name) == {"data": [], "count": 0}
    first = _ok_json(cli_env, "import", deployment_id, str(package), "--notes", "first release")
    assert first["release"]["active"] and first["release"]["notes"] == "first release"
    assert first["importRuleChanges"]["value"] == values
    shown_import = _cli(cli_env, "import", name, str(package))
    assert shown_import.exit_code == 0 and "active" in shown_import.stdout
    assert _cli(cli_env, "import", name, str(tmp_path / "missing.zip")).exit_code == 2

    releases = _ok_json(cli_env, "releases", name)["data"]
    assert [r["active"] for r in releases] == [False, True]
    table = _cli(cli_env, "releases", name)
    assert table.exit_code == 0 and "first release" in table.stdout
    activated = _ok_json(cli_env, "activate", str(first["release"]["id"]))
    assert activated["id"] == first["release"]["id"] and activated["active"] is True
    assert [r["active"] for r in _ok_json(cli_env, "releases", name)["data"]] == [True, False]
    assert _cli(cli_env, "activate", "99999999").exit_code == 2

    finished = _ok_json(cli_env, "run", name, "--wait", "--param", "suffix=cli")
    assert finished["status"] == "Complete" and finished["parameters"] == {"suffix": "cli"}
    assert finished["deployment"] == {"id": created["id"]} and finished["metrics"]
    assert list((server.data_dir / "cli-out").glob("*-cli.jsonl"))
    started = _cli(cli_env, "run", deployment_id)
    assert started.exit_code == 0 and "Started job" in started.stdout
    started_json = _ok_json(cli_env, "run", deployment_id)
    assert started_json["deployment"] == {"id": created["id"]}
    waited = _cli(cli_env, "run", name, "--wait")
    assert waited.exit_code == 0 and "Complete" in waited.stdout
    assert _cli(cli_env, "run", name, "--param", "no-equals-sign").exit_code == 2


def test_cli_usage_errors_and_refusals(cli_env: dict[str, str], package: Path) -> None:
    unknown = _cli(cli_env, "run", "no such deployment", "--json")
    assert unknown.exit_code == 2 and "No deployment" in json.loads(unknown.stdout)["error"]
    assert _cli(cli_env, "releases", "99999999").exit_code == 2
    assert _cli(cli_env, "import", "no such deployment", str(package)).exit_code == 2
    no_server = runner.invoke(app, ["deployments", "list"], env={"FLOWPORT_URL": "", "FLOWPORT_TOKEN": ""})
    assert no_server.exit_code == 2
    wrong_token = _cli({**cli_env, "FLOWPORT_TOKEN": "fp_not-a-real-token"}, "list", "--json")
    assert wrong_token.exit_code == 1 and "login" in json.loads(wrong_token.stdout)["error"]
    name = _name("no release")
    _ok_json(cli_env, "create", name)
    refused = _cli(cli_env, "run", name)
    assert refused.exit_code == 1 and "no active release" in refused.stderr
    by_option = runner.invoke(
        app,
        ["deployments", "list", "--url", cli_env["FLOWPORT_URL"], "--token", cli_env["FLOWPORT_TOKEN"]],
        env={"FLOWPORT_URL": "", "FLOWPORT_TOKEN": ""},
    )
    assert by_option.exit_code == 0 and name in by_option.stdout.replace("\n", "")


def test_releases_are_release_objects(admin: Client, package: Path) -> None:
    deployment = admin.deployments.create(_name("objects"))
    deployment.import_package(package)
    (release,) = deployment.releases
    assert isinstance(release, Release) and release.primary_flow_id is not None
    assert release.flows and release.flows[0]["id"] == release.primary_flow_id
    assert release.import_rule_changes == {"object": [], "value": []} and release.created_at
