"""The SDK against a real server: typed exceptions, token auth, roles, packages, jobs."""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path

import pytest
from tests.sdk.flowport_server import EDITOR_PASSWORD, VIEWER_PASSWORD, Server

from flowport.sdk import (
    Client,
    Conflict,
    FlowportError,
    Forbidden,
    NotFound,
    StreamingFlow,
    Unauthorized,
    ValidationFailed,
)


def _name(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def test_missing_flow_is_not_found(admin: Client) -> None:
    project = admin.projects.get(name="default")
    with pytest.raises(NotFound, match="No flow with name='nope'"):
        project.flows.get(name="nope")
    with pytest.raises(NotFound) as caught:
        admin.get_json("/v4/flows/999999")
    assert caught.value.status == 404  # type: ignore[attr-defined]
    with pytest.raises(NotFound):
        admin.projects.get(name="no such project")


def test_duplicate_name_is_a_conflict(admin: Client) -> None:
    project = admin.projects.get(name="default")
    name = _name("conflict")
    flow = project.create_flow(name)
    assert isinstance(flow, StreamingFlow) and flow.flow_type == "streaming"  # the seed's default
    assert project.create_flow(_name("batch"), flow_type="batch").flow_type == "batch"
    with pytest.raises(Conflict):
        project.create_flow(name)
    with pytest.raises(Conflict):
        project.duplicate_flow(flow, name=name)
    other = project.create_flow(_name("other"))
    other.name = name
    with pytest.raises(Conflict):
        project.update_flow(other)
    assert other.has_unsaved_changes  # a refused update leaves the flow as edited


def test_bad_password_is_unauthorized(server: Server) -> None:
    with (
        Client(server.url, username="admin", password="wrong-password") as client,
        pytest.raises(Unauthorized),
    ):
        client.projects.get(name="default")
    with Client(server.url, token="fp_not-a-token") as client, pytest.raises(Unauthorized):
        client.current_user()


def test_viewer_reads_but_may_not_write(server: Server, admin: Client) -> None:
    admin_project = admin.projects.get(name="default")
    flow = admin_project.create_flow(_name("viewer reads"))
    with server.client("viewer", VIEWER_PASSWORD) as viewer:
        project = viewer.projects.get(name="default")
        seen = project.flows.get(flow_id=flow.flow_id)
        assert seen.name == flow.name and seen.validate().success is False
        with pytest.raises(Forbidden):
            project.create_flow(_name("viewer writes"))
        seen.description = "changed by a viewer"
        with pytest.raises(Forbidden):
            project.update_flow(seen)
        with pytest.raises(Forbidden):
            project.delete_flow(seen)
        with pytest.raises(Forbidden):
            project.create_parameter_set(_name("vps").replace(" ", "_"), {"a": "1"})
    with server.client("editor", EDITOR_PASSWORD) as editor:
        project = editor.projects.get(name="default")
        made = project.create_flow(_name("editor writes"))
        with pytest.raises(Forbidden):  # plain-text credentials: admins only
            project.export_flow(
                made, destination=Path("/nonexistent/never-written.zip"), with_plain_text_credentials=True
            )
        assert project.delete_flow(made).status_code == 204


def test_token_auth_and_revocation(server: Server, admin: Client) -> None:
    created = admin.create_api_token("sdk test")
    assert created["token"] and created["name"] == "sdk test"
    with Client(server.url, token=created["token"]) as client:
        assert client.current_user()["name"] == "admin"
        assert client.projects.get(name="default").name == "default"
        assert created["token"] not in repr(client)
        admin.revoke_api_token(created["id"])
        with pytest.raises(Unauthorized):
            client.current_user()


def test_invalid_inputs_are_validation_failed(admin: Client, tmp_path: Path) -> None:
    project = admin.projects.get(name="default")
    not_a_zip = tmp_path / "junk.zip"
    not_a_zip.write_bytes(b"this is not a zip")
    with pytest.raises(ValidationFailed) as caught:
        project.import_flows(not_a_zip)
    assert caught.value.details["problem"] == "NOT_A_ZIP"

    hostile = tmp_path / "hostile.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../evil.json", "{}")
    hostile.write_bytes(buffer.getvalue())
    before = len(project.flows)
    with pytest.raises(ValidationFailed):
        project.import_package(hostile, "replace")
    assert len(project.flows) == before

    flow = project.create_flow(_name("invalid"))
    flow.add_stage("Trash")
    project.update_flow(flow)
    with pytest.raises(ValidationFailed) as invalid:
        flow.preview()
    assert "must be an origin" in invalid.value.message
    with pytest.raises(ValidationFailed):
        flow.run()
    with pytest.raises(NotFound):
        project.import_flows(tmp_path / "missing.zip")


def test_dry_run_reports_and_stores_nothing(admin: Client, sample_csv: str, tmp_path: Path) -> None:
    project = admin.projects.get(name="default")
    flow = project.create_flow(_name("dry run"))
    origin = flow.add_stage("CSV File")
    origin.path = sample_csv
    origin >> flow.add_stage("Trash")
    project.update_flow(flow)
    package = project.export_flow(flow, destination=tmp_path)
    assert package == tmp_path / "flows.zip"
    count = len(project.flows)
    report = project.import_package(package, "rename", dry_run=True)
    assert report.dry_run and report.renamed and report.renamed[0]["from"] == flow.name
    assert len(project.flows) == count
    skipped = project.import_package(package, "skip")
    assert skipped.skipped == [flow.name] and skipped.flows == []


def test_run_with_parameters_cancel_and_logs(admin: Client, sample_csv: str) -> None:
    project = admin.projects.get(name="default")
    flow = project.create_flow(_name("parameters"))
    origin = flow.add_stage("CSV File")
    origin.path = "${file}"
    flow.parameters["file"] = "missing.csv"
    origin >> flow.add_stage("Trash")
    project.update_flow(flow)
    job = flow.run(parameters={"file": sample_csv}).wait(timeout=120, poll=0.2)
    assert job.status == "Complete" and job.parameters == {"file": sample_csv}
    assert job.metrics["Trash_01"]["inputRecords"] == 1
    assert job.jobs and job.jobs[0]["status"] == "Complete"
    failed = flow.run().wait(timeout=120, poll=0.2)
    assert failed.status == "Failed" and failed.error
    with pytest.raises(FlowportError):
        flow.run().wait(timeout=120, poll=0.2, raise_on_failure=True)
    assert isinstance(failed.logs, str)
    with pytest.raises(Conflict, match="already ended"):
        failed.cancel()
