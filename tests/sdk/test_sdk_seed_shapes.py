"""The SDK as the flows seed prints it: responses, streamed exports, engine version, previews, imports."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import flowport
from flowport.sdk import Client, ImportedFlows, PreviewRecord


def test_updates_and_deletes_answer_the_seeds_response(admin: Client, sample_csv: str) -> None:
    project = admin.projects.get(name="default")
    flow = project.create_flow(name="shapes", flow_type="batch")
    origin = flow.add_stage("CSV File")
    origin.path = sample_csv
    origin >> flow.add_stage("Trash")
    updated = project.update_flow(flow)
    assert repr(updated) == "<Response [200]>" and updated.ok and updated.status_code == 200
    assert updated.json()["name"] == "shapes"
    assert flow.engine_version == flowport.__version__
    assert f"engine_version='{flowport.__version__}'" in repr(flow)

    preview = flow.preview()
    origin_preview, trash_preview = preview
    assert origin_preview.input is None  # an origin receives nothing
    (record,) = origin_preview.output
    assert isinstance(record, PreviewRecord) and record == ("abc", "xyz", "lmn")
    assert record.fields == ("a", "b", "c") and record["b"] == "xyz"
    assert record.to_dict() == {"a": "abc", "b": "xyz", "c": "lmn"}
    assert trash_preview.input == [("abc", "xyz", "lmn")]

    deleted = project.delete_flow(flow)
    assert repr(deleted) == "<Response [204]>" and deleted.status_code == 204


def test_an_export_streams_and_an_all_skipped_import_says_so(
    admin: Client, sample_csv: str, tmp_path: Path
) -> None:
    project = admin.projects.get(name="default")
    flow = project.create_flow(name="streamed export", flow_type="batch")
    origin = flow.add_stage("CSV File")
    origin.path = sample_csv
    origin >> flow.add_stage("Trash")
    project.update_flow(flow)
    chunks = list(project.export_flow(flow, stream=True))
    assert chunks and all(isinstance(c, bytes) for c in chunks)
    data = b"".join(chunks)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert "manifest.json" in archive.namelist()
    assert not (tmp_path / "flows.zip").exists()

    package = tmp_path / "again.zip"
    package.write_bytes(data)
    skipped = project.import_flows(source=str(package), conflict_resolution="skip")
    assert isinstance(skipped, ImportedFlows) and list(skipped) == []
    assert skipped.skipped == ["streamed export"]
    assert repr(skipped) == "ImportedFlows([], skipped=['streamed export'])"
