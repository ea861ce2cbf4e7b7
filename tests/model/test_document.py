"""Flow documents: JSON and YAML in and out, with located errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from flowport.errors import FlowDocumentError, ValidationFailed
from flowport.model.document import (
    flow_from_dict,
    flow_from_text,
    flow_json_schema,
    flow_to_dict,
    flow_to_json,
    flow_to_yaml,
)
from flowport.model.flow import Flow, Position, StageKind

SKETCH: dict[str, Any] = {
    "format": "flowport.flow/1",
    "uuid": "6f1c3a52-8d57-4b8e-9f7e-1d2a3b4c5d6e",
    "name": "Wrangle Orders",
    "type": "batch",
    "configuration": {"error_record_policy": "ORIGINAL_RECORD", "batch_size": 65536, "ui_theme": "dark"},
    "parameters": {"min_total": "100"},
    "parameter_sets": ["orders"],
    "error_stage": {"plugin": {"name": "write_to_file"}, "configuration": {"directory": "errors/"}},
    "stages": [
        {
            "name": "Orders_01",
            "label": "Orders",
            "configuration": {"connection": "b801", "table": "Dev-Orders", "where": None},
            "plugin": {
                "name": "sql_table_origin",
                "type": "origin",
                "artifact": {"name": "flowport-core", "version": "1.0.0", "scope": "SYSTEM"},
            },
            "position": {"x": 10.5, "y": 20},
        },
        {
            "name": "Filter_01",
            "plugin": {"name": "filter", "type": "processor", "artifact": {"version": "[1.0.0,2.0.0)"}},
            "configuration": {
                "condition": "total >= ${orders__min_total}",
                "fields": [{"a": 1}, [1, 2.5, True]],
            },
            "on_record_error": "discard",
        },
        {
            "name": "JSON_01",
            "plugin": {"name": "json_file_destination", "type": "destination"},
            "configuration": {"path": "out/orders.json"},
        },
    ],
    "edges": [{"from": "Orders_01", "to": "Filter_01"}, {"from": "Filter_01", "to": "JSON_01"}],
}


@pytest.fixture
def flow() -> Flow:
    return flow_from_dict(SKETCH)


def test_sketch_loads(flow: Flow) -> None:
    assert [s.name for s in flow.stages] == ["Orders_01", "Filter_01", "JSON_01"]
    assert flow.stages[0].plugin.type is StageKind.ORIGIN
    assert flow.stages[0].position == Position(x=10.5, y=20)
    assert flow.inputs_of("JSON_01") == ["Filter_01"]
    assert flow.configuration["ui_theme"] == "dark"


def test_json_round_trip_gives_equal_flow(flow: Flow) -> None:
    text = flow_to_json(flow)
    again = flow_from_text(text)
    assert again == flow
    assert json.loads(text)["edges"][0] == {"from": "Orders_01", "to": "Filter_01"}


def test_yaml_round_trip_gives_equal_flow(flow: Flow) -> None:
    text = flow_to_yaml(flow)
    assert not text.lstrip().startswith("{")  # really YAML, not JSON
    assert flow_from_text(text) == flow


def test_null_in_a_stage_configuration_survives(flow: Flow) -> None:
    data = flow_to_dict(flow)
    assert data["stages"][0]["configuration"]["where"] is None
    assert "label" not in data["stages"][1]  # optional document fields are still left out


def test_yaml_scalars_become_parameter_text() -> None:
    loaded = flow_from_text("name: f\nparameters:\n  limit: 5\n  ratio: 0.5\n  debug: true\n")
    assert loaded.parameters == {"limit": "5", "ratio": "0.5", "debug": "true"}


def test_malformed_json_names_the_line() -> None:
    text = '{\n  "name": "x",\n  "stages": [\n    {"name": "a",}\n  ]\n}\n'
    with pytest.raises(FlowDocumentError, match=r"orders\.json: not valid JSON at line 4, column"):
        flow_from_text(text, source="orders.json")


def test_malformed_yaml_names_the_line() -> None:
    text = "name: x\nstages:\n  - name: a\n    plugin: {name: trash\n  - name: b\n"
    with pytest.raises(FlowDocumentError, match=r"not valid YAML at line 5, column \d+"):
        flow_from_text(text)


def test_unknown_keys_are_named_with_their_path() -> None:
    data = json.loads(json.dumps(SKETCH))
    data["stages"][1]["plugn"] = {"name": "x"}
    data["edges"][0]["form"] = "Orders_01"
    data["nme"] = "typo"
    with pytest.raises(FlowDocumentError) as caught:
        flow_from_dict(data, source="flow.yaml")
    err = caught.value
    assert err.message.startswith("flow.yaml: invalid flow document")
    assert "stages[1].plugn: unknown key (check its spelling)" in err.details
    assert "edges[0].form: unknown key (check its spelling)" in err.details
    assert "nme: unknown key (check its spelling)" in err.details
    assert isinstance(err, ValidationFailed)


def test_missing_and_wrong_values_are_located() -> None:
    data = {"name": "f", "stages": [{"name": "a", "plugin": {}}], "configuration": {"batch_size": 0}}
    with pytest.raises(FlowDocumentError) as caught:
        flow_from_dict(data)
    assert "stages[0].plugin.name: Field required" in caught.value.details
    assert any(line.startswith("configuration.batch_size: ") for line in caught.value.details)


def test_document_must_be_an_object() -> None:
    with pytest.raises(FlowDocumentError, match="must be a JSON/YAML object, got list"):
        flow_from_text("- a\n- b\n")
    with pytest.raises(FlowDocumentError, match="got NoneType"):
        flow_from_text("")


def test_unsupported_format_is_rejected() -> None:
    with pytest.raises(FlowDocumentError, match=r"unsupported flow format 'flowport\.flow/2'"):
        flow_from_dict({"format": "flowport.flow/2", "name": "f"})


def test_json_schema_describes_the_document() -> None:
    schema = flow_json_schema()
    assert schema["$id"].endswith("flowport.flow-1.json")
    assert "stages" in schema["properties"]
    assert yaml.safe_load(json.dumps(schema)) == schema  # plain JSON data
