"""The seed's streaming walk-through against a real ``flowport server``: create (streaming by default),
Dev Raw Data Source set from a parameter set, preview, start, watch, stop, reset offsets."""

from __future__ import annotations

import time

from flowport.sdk import Client, Conflict, StreamingFlow


def test_streaming_flow_walkthrough(admin: Client) -> None:
    project = admin.projects.get(name="default")
    project.create_parameter_set(
        name="stream_params",
        parameters={"data_format": "JSON", "number_of_threads": "2", "stop_after_first_batch": "false"},
        description="",
    )
    flow = project.create_flow(name="Seed streaming flow", environment=None)  # no flow_type: streaming
    assert isinstance(flow, StreamingFlow) and flow.flow_type == "streaming"
    assert flow.status == "Inactive" and flow.metrics == {}
    flow.use_parameter_set(project.parameter_sets.get(name="stream_params"))
    dev_raw_data = flow.add_stage("Dev Raw Data Source")
    dev_raw_data.data_format = "${stream_params__data_format}"
    dev_raw_data.raw_data = '{"f1": "abc", "f2": "xyz"}\n{"f1": "def", "f2": "uvw"}'
    dev_raw_data.number_of_threads = "${stream_params__number_of_threads}"
    dev_raw_data.stop_after_first_batch = "${stream_params__stop_after_first_batch}"
    dev_raw_data.batch_wait = 0.1
    trash = flow.add_stage("Trash")
    dev_raw_data >> trash
    assert project.update_flow(flow).status_code == 200
    assert flow.validate().success

    # Preview reads one batch and stops.
    dev_preview, trash_preview = flow.preview()
    assert [r["f1"] for r in dev_preview.output] == ["abc", "def", "abc", "def"]
    assert len(trash_preview.input) == 4

    # Start: it streams until stopped.
    job = flow.start()
    deadline = time.monotonic() + 60
    while (flow.metrics.get("batches") or 0) < 3:
        assert time.monotonic() < deadline, job.logs
        time.sleep(0.2)
    assert flow.status == "InProgress"
    running = flow.metrics
    assert running["stages"]["Trash_01"]["inputRecords"] >= 12 and running["recordsPerSecond"] > 0
    try:
        flow.reset_offsets("earliest")
        raise AssertionError("a running flow's offsets were reset")
    except Conflict as exc:
        assert "stop it before resetting offsets" in exc.message
    stopped = flow.stop(timeout=60)
    assert stopped.status == "Complete" and flow.status == "Complete"
    final = flow.metrics
    assert final["stopped"] is True and final["failures"] == 0
    assert final["records"] == final["stages"]["Trash_01"]["inputRecords"] == 4 * final["batches"]
    assert flow.reset_offsets("earliest") == ["DevRawDataSource_01"]
