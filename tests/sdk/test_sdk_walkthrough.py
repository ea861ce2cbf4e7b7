"""The whole flows-sdk.txt walk-through, in the seed's order, against a real ``flowport server``."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.sdk.flowport_server import Server

import flowport
from flowport.sdk import (
    Client,
    NotFound,
    ParameterSet,
    PreviewStage,
    StreamingFlow,
)


def test_flows_sdk_walkthrough(
    server: Server, admin: Client, sample_csv: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    project = admin.projects.get(name="default")

    # Creating a flow
    new_flow = project.create_flow(
        name="My streaming flow", description="optional description", environment=None, flow_type="streaming"
    )
    assert isinstance(new_flow, StreamingFlow)
    assert repr(new_flow) == (
        "StreamingFlow(name='My streaming flow', description='optional description', "
        f"flow_id={new_flow.flow_id}, engine_version='{flowport.__version__}')"
    )

    # Retrieving flows
    assert new_flow.flow_id in [f.flow_id for f in project.flows]
    streaming = project.flows.get_all(flow_type="streaming")
    assert all(isinstance(f, StreamingFlow) for f in streaming) and "My streaming flow" in [
        f.name for f in streaming
    ]
    assert "Wrangle Orders" not in [f.name for f in streaming]  # the server's batch example
    by_name = project.flows.get(name="My streaming flow")
    assert repr(by_name).startswith(
        "StreamingFlow(name='My streaming flow', description='optional description'"
    )
    assert project.flows.get(flow_id=new_flow.flow_id).name == "My streaming flow"

    # Editing a flow: attributes, configuration, stages
    new_flow.description = "new description for the flow"
    assert "description='new description for the flow'" in repr(new_flow)
    assert new_flow.configuration["retry_pipeline_on_error"] is True  # the seed's default
    new_flow.configuration["retry_pipeline_on_error"] = False
    assert new_flow.configuration["retry_pipeline_on_error"] is False
    new_flow.configuration["retry_pipeline_on_error"] = True
    origin = new_flow.add_stage("CSV File")
    origin.path = sample_csv
    trash = new_flow.add_stage("Trash")
    origin >> trash
    assert [s.instance_name for s in new_flow.stages] == ["CSVFile_01", "Trash_01"]

    # Arranging stages
    trash.position = (0, 300)
    assert new_flow.auto_arrange() is new_flow
    assert (origin.position, trash.position) == ((0.0, 0.0), (220.0, 0.0))

    # Updating a flow
    new_flow.name = "new flow name"
    response = project.update_flow(new_flow)
    assert response.status_code == 200
    assert repr(new_flow) == (
        f"StreamingFlow(name='new flow name', description='new description for the flow', "
        f"flow_id={new_flow.flow_id}, engine_version='{flowport.__version__}')"
    )
    assert repr(response) == "<Response [200]>" and response.ok
    stored = project.flows.get(flow_id=new_flow.flow_id)
    assert stored.name == "new flow name" and stored.description == "new description for the flow"
    assert [(e.from_, e.to) for e in stored.document.edges] == [("CSVFile_01", "Trash_01")]
    assert stored.stages.get(instance_name="CSVFile_01").path == sample_csv
    assert stored.stages.get(instance_name="Trash_01").position == (220.0, 0.0)

    # Duplicating a flow
    duplicated_flow = project.duplicate_flow(
        new_flow, name="duplicated flow", description="duplicated flow description"
    )
    assert repr(duplicated_flow) == (
        f"StreamingFlow(name='duplicated flow', description='duplicated flow description', "
        f"flow_id={duplicated_flow.flow_id}, engine_version='{flowport.__version__}')"
    )
    assert duplicated_flow.flow_id != new_flow.flow_id and duplicated_flow.uuid != new_flow.uuid
    assert [s.instance_name for s in duplicated_flow.stages] == ["CSVFile_01", "Trash_01"]

    # Deleting a flow
    deleted = project.delete_flow(duplicated_flow)
    assert repr(deleted) == "<Response [204]>" and deleted.ok and deleted.status_code == 204
    with pytest.raises(NotFound):
        project.flows.get(name="duplicated flow")
    with pytest.raises(NotFound):
        duplicated_flow.refresh()

    # Validating a flow: a flow holding only a Trash stage, exactly as in the seed
    trash_only = project.create_flow(name="Trash only", flow_type="streaming")
    assert repr(trash_only.add_stage("Trash")) == "Trash_01(stage_name='Trash 1')"
    assert project.update_flow(trash_only).status_code == 200
    assert repr(trash_only.validate()) == (
        "ValidationResult(success=False, issues=["
        "FlowValidationError(type='stageIssues', instanceName='Trash_01', "
        "humanReadableMessage='The first stage must be an origin'), "
        "FlowValidationError(type='stageIssues', instanceName='Trash_01', "
        "humanReadableMessage='Target must have input streams')], message='Validation Failed')"
    )
    assert new_flow.validate().success

    # Previewing a flow
    preview = new_flow.preview()
    assert (
        repr(preview) == "[PreviewStage(instance_name='CSVFile_01'), PreviewStage(instance_name='Trash_01')]"
    )
    origin_preview, trash_preview = preview
    assert isinstance(origin_preview, PreviewStage)
    assert origin_preview.input is None  # as the seed prints it
    assert origin_preview.output == [("abc", "xyz", "lmn")]
    assert origin_preview.output[0].to_dict() == {"a": "abc", "b": "xyz", "c": "lmn"}
    assert trash_preview.input == [("abc", "xyz", "lmn")]

    # Exporting flows
    exported = project.export_flow(flow=new_flow)
    assert exported == Path("flows.zip") and (tmp_path / "flows.zip").is_file()
    trash_package = project.export_flows([trash_only], destination=tmp_path / "trash.zip")
    assert trash_package == tmp_path / "trash.zip" and trash_package.is_file()
    with pytest.raises(ValueError, match="one type"):
        project.export_flows([new_flow, project.flows.get(name="Wrangle Orders")])

    # Importing flows: skip, replace, rename
    assert project.import_flows(type="streaming", source="flows.zip", conflict_resolution="skip") == []
    assert project.delete_flow(trash_only).status_code == 204
    imported = project.import_flows(type="streaming", source=trash_package, conflict_resolution="skip")
    assert isinstance(imported, StreamingFlow)
    assert repr(imported).startswith("StreamingFlow(name='Trash only', description=''")
    assert imported.uuid == trash_only.uuid
    replaced = project.import_flows(source="flows.zip", conflict_resolution="replace")
    assert isinstance(replaced, StreamingFlow) and replaced.flow_id == new_flow.flow_id
    renamed = project.import_flows(source="flows.zip", conflict_resolution="rename")
    assert isinstance(renamed, StreamingFlow) and renamed.name == "new flow name (1)"
    assert renamed.flow_id != new_flow.flow_id
    with pytest.raises(ValueError, match="streaming"):
        project.import_flows(source="flows.zip", type="batch")

    # Handling error records
    assert new_flow.configuration["error_record_policy"] == "ORIGINAL_RECORD"
    new_flow.configuration["error_record_policy"] = "STAGE_RECORD"
    write_to_file = new_flow.set_error_stage("Write to File")
    write_to_file.configuration["directory"] = "errors"  # in the server's data folder (its file root)
    assert repr(new_flow.error_stage) == "WritetoFile_ErrorStage(stage_name='Error Records - Write to File')"
    assert project.update_flow(new_flow).status_code == 200
    stored = new_flow.refresh()
    assert stored.configuration["error_record_policy"] == "STAGE_RECORD"
    assert stored.error_stage.directory == "errors"

    # Using parameter sets
    project.create_parameter_set(
        name="my_streaming_params", parameters={"file": sample_csv, "delimiter": ","}, description=""
    )
    paramset = project.parameter_sets.get(name="my_streaming_params")
    assert new_flow.use_parameter_set(paramset) is new_flow
    csv_origin = new_flow.stages.get(instance_name="CSVFile_01")
    csv_origin.path = "${my_streaming_params__file}"
    csv_origin.delimiter = "${my_streaming_params__delimiter}"
    assert project.update_flow(new_flow).status_code == 200
    sets = new_flow.parameter_sets
    assert len(sets) == 1 and isinstance(sets[0], ParameterSet)
    assert repr(sets[0]) == (
        "ParameterSet(name='my_streaming_params', parameters={'file': 'seed.csv', 'delimiter': ','}, "
        "description='', value_sets=[])"
    )
    assert new_flow.validate().success

    # Running it as a job
    job = new_flow.run()
    assert job.wait(timeout=120, poll=0.2) is job
    assert job.status == "Complete", job.logs
    metrics = job.metrics
    assert metrics["CSVFile_01"]["outputRecords"] == 1 and metrics["Trash_01"]["inputRecords"] == 1
    assert "CSVFile_01" in job.logs
    assert new_flow.jobs[0].job_id == job.job_id
