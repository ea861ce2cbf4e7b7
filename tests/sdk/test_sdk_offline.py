"""The SDK without a server: error mapping, and editing a flow in memory (httpx.MockTransport).

The walk-through and everything that needs the server's behaviour run
against a real ``flowport server`` in test_sdk_walkthrough.py and
test_sdk_server.py.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import httpx
import pytest

from flowport.errors import PackageInvalid, PluginNotFound, RequestTooLarge, StageError, StoreNotReady
from flowport.model.flow import StageKind
from flowport.sdk import (
    BatchFlow,
    Client,
    Conflict,
    FlowportError,
    FlowValidationError,
    Forbidden,
    NotFound,
    PreviewStage,
    StreamingFlow,
    Unauthorized,
    UnsavedChangesWarning,
    ValidationFailed,
    ValidationResult,
)
from flowport.sdk.flows import flow_from_record
from flowport.sdk.parameter_sets import ParameterSet
from flowport.services.flows import plugin_registry


def _catalog() -> list[dict[str, Any]]:
    return [
        {
            "name": p.info.name,
            "label": p.info.label,
            "kind": p.info.kind.value,
            "description": "",
            "artifact": p.info.artifact.as_ref(),
            "configSchema": p.info.config_model.model_json_schema(),
        }
        for p in plugin_registry().latest()
    ]


def _record(flow_type: str = "batch") -> dict[str, Any]:
    return {
        "id": 7,
        "uuid": "2b0a2b8e-8b7c-4b8e-9b1a-111111111111",
        "name": "Orders",
        "description": "d",
        "type": flow_type,
        "project": {"id": 1},
        "document": {
            "format": "flowport.flow/1",
            "uuid": "2b0a2b8e-8b7c-4b8e-9b1a-111111111111",
            "name": "Orders",
            "description": "d",
            "type": flow_type,
        },
    }


def _error(status: int, name: str, message: str = "m", details: Any = None) -> httpx.Response:
    return httpx.Response(status, json={"exception": {"name": name, "message": message, "details": details}})


def _client(routes: dict[tuple[str, str], Any]) -> Client:
    def handler(request: httpx.Request) -> httpx.Response:
        answer = routes.get((request.method, request.url.path))
        if answer is None:
            return _error(404, "NotFound", f"no route {request.method} {request.url.path}")
        if callable(answer):
            return answer(request)
        return answer

    routes.setdefault(("GET", "/v4/stages"), httpx.Response(200, json={"data": _catalog(), "count": 0}))
    return Client("http://flowport.test", token="t0ken", transport=httpx.MockTransport(handler))


@pytest.fixture
def flow() -> BatchFlow:
    client = _client({})
    made = flow_from_record(client, _record())
    assert isinstance(made, BatchFlow)
    return made


# -- errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (_error(404, "NotFound"), NotFound),
        (_error(404, "PluginNotFound"), PluginNotFound),
        (_error(409, "Conflict"), Conflict),
        (_error(422, "ValidationFailed"), ValidationFailed),
        # Every class of the hierarchy is rebuilt by name (when it agrees with the status).
        (_error(422, "PackageInvalid"), PackageInvalid),
        (_error(413, "RequestTooLarge"), RequestTooLarge),
        (_error(401, "Unauthorized"), Unauthorized),
        (_error(403, "Forbidden"), Forbidden),
        (_error(400, "StoreNotReady"), StoreNotReady),
        (_error(404, "Conflict"), NotFound),  # a name that disagrees with the status loses
        (_error(400, "StageError"), StageError),  # built without its own constructor
        (httpx.Response(404, json={"detail": "Not Found"}), NotFound),
        (httpx.Response(502, text="<html>bad gateway</html>"), FlowportError),
    ],
)
def test_error_answers_become_the_domain_exceptions(response: httpx.Response, expected: type) -> None:
    client = _client({("GET", "/v4/flows/1"): response})
    with pytest.raises(FlowportError) as caught:
        client.get_json("/v4/flows/1")
    assert type(caught.value) is expected
    assert caught.value.status == response.status_code  # type: ignore[attr-defined]
    assert caught.value.response is not None  # type: ignore[attr-defined]


def test_error_keeps_message_and_details() -> None:
    client = _client({("GET", "/v4/flows/1"): _error(409, "Conflict", "Flow 'x' exists", {"name": "x"})})
    with pytest.raises(Conflict) as caught:
        client.get_json("/v4/flows/1")
    assert caught.value.message == "Flow 'x' exists" and caught.value.details == {"name": "x"}


def test_unreachable_server_is_a_flowport_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = Client("http://flowport.test", token="x", transport=httpx.MockTransport(refuse))
    with pytest.raises(FlowportError, match=r"Cannot reach the Flowport server at http://flowport\.test"):
        client.get_json("/v4/projects")


def test_client_arguments_and_auth_headers() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": [], "count": 0})

    with pytest.raises(ValueError):
        Client("http://x", username="a")
    with pytest.raises(ValueError):
        Client("http://x", username="a", password="b", token="c")
    with pytest.raises(ValueError):
        Client("http://x")
    with pytest.raises(ValueError):
        Client("localhost:8000", token="t")
    Client("http://x/", token="tok", transport=httpx.MockTransport(record)).get_json("/v4/flows")
    Client("http://x", username="ann", password="pw", transport=httpx.MockTransport(record)).get_json("/v4/a")
    assert seen[0].headers["Authorization"] == "Bearer tok"
    assert seen[1].headers["Authorization"].startswith("Basic ")
    assert "tok" not in repr(Client("http://x", token="tok")) and "pw" not in repr(
        Client("http://x", username="ann", password="pw")
    )


# -- editing a flow in memory ---------------------------------------------------------------


def test_flow_repr_kind_and_attributes(flow: BatchFlow) -> None:
    assert repr(flow) == "BatchFlow(name='Orders', description='d', flow_id=7, engine_version=None)"
    streaming = flow_from_record(flow._client, _record("streaming"))
    assert isinstance(streaming, StreamingFlow) and repr(streaming).startswith("StreamingFlow(name='Orders'")
    flow.description = "new"
    flow.name = "Renamed"
    assert flow.has_unsaved_changes and flow.to_dict()["name"] == "Renamed"
    with pytest.raises(ValueError):
        flow.name = "  "


def test_configuration_is_dict_like_and_checked(flow: BatchFlow) -> None:
    config = flow.configuration
    assert config["error_record_policy"] == "ORIGINAL_RECORD"
    config["error_record_policy"] = "STAGE_RECORD"
    assert flow.document.configuration.error_record_policy == "STAGE_RECORD"
    assert flow.configuration["retry_pipeline_on_error"] is True  # the seed's default
    with pytest.raises(ValidationFailed, match="error_record_policy"):
        config["error_record_policy"] = "SOMETIMES"
    config["ui_colour"] = "blue"  # unknown keys are kept (plugins and UIs add their own)
    assert flow.to_dict()["configuration"]["ui_colour"] == "blue"
    del config["ui_colour"]
    assert "ui_colour" not in config and "batch_size" in config
    with pytest.raises(KeyError):
        config["nope"]
    assert "error_record_policy" in repr(config)


def test_add_stage_names_positions_and_connects(flow: BatchFlow) -> None:
    origin = flow.add_stage("CSV File")
    trash = flow.add_stage("Trash")
    trash2 = flow.add_stage("trash")  # by plugin name, any case
    assert repr(trash) == "Trash_01(stage_name='Trash 1')"
    assert (origin.instance_name, trash2.instance_name) == ("CSVFile_01", "Trash_02")
    assert origin.kind == "origin" and origin.library == "flowport-core" and origin.library_version
    assert [s.position for s in flow.stages] == [(0.0, 0.0), (220.0, 0.0), (440.0, 0.0)]
    assert origin >> [trash, trash2] == [trash, trash2]
    assert [e["from"] + ">" + e["to"] for e in flow.to_dict()["edges"]] == [
        "CSVFile_01>Trash_01",
        "CSVFile_01>Trash_02",
    ]
    origin >> trash  # an edge is added once
    assert len(flow.document.edges) == 2
    assert origin.outputs == [trash, trash2] and trash.inputs == [origin]
    assert flow.stages.get(instance_name="Trash_02") is trash2

    flow.remove_stage(trash)
    assert [s.instance_name for s in flow.stages] == ["CSVFile_01", "Trash_02"]
    assert [(e.from_, e.to) for e in flow.document.edges] == [("CSVFile_01", "Trash_02")]
    again = flow.add_stage("Trash")
    assert again.instance_name == "Trash_01"  # the free number is reused
    with pytest.raises(ValueError, match="not a stage"):
        flow.remove_stage(trash)
    with pytest.raises(ValueError, match="cannot feed itself"):
        again >> again


def test_chains_and_lists_on_the_left(flow: BatchFlow) -> None:
    a, b, c = flow.add_stage("CSV File"), flow.add_stage("JSON File"), flow.add_stage("Filter")
    d = flow.add_stage("Trash")
    assert [a, b] >> c >> d is d
    assert sorted((e.from_, e.to) for e in flow.document.edges) == [
        ("CSVFile_01", "Filter_01"),
        ("Filter_01", "Trash_01"),
        ("JSONFile_01", "Filter_01"),
    ]
    other = flow_from_record(flow._client, _record())
    stranger = other.add_stage("Trash")
    with pytest.raises(ValueError, match="not a stage of"):
        a >> stranger


def test_stage_configuration_items_and_attributes(flow: BatchFlow) -> None:
    origin = flow.add_stage("CSV File")
    origin.path = "in/orders.csv"
    origin.configuration["delimiter"] = ";"
    assert flow.document.stages[0].configuration == {"path": "in/orders.csv", "delimiter": ";"}
    assert origin.path == "in/orders.csv" and origin.header is True  # default from the plugin's schema
    with pytest.raises(AttributeError, match="did you mean 'delimiter'"):
        origin.delimeter = ","
    with pytest.raises(KeyError, match="not a setting"):
        origin.configuration["nope"] = 1
    with pytest.raises(AttributeError):
        _ = origin.nope
    origin.stage_name = "Orders CSV"
    assert repr(origin) == "CSVFile_01(stage_name='Orders CSV')"
    origin.on_record_error = "discard"
    with pytest.raises(ValueError):
        origin.on_record_error = "explode"
    assert "path" in dir(origin)


def test_unknown_stage_suggests_and_error_stages_are_separate(flow: BatchFlow) -> None:
    with pytest.raises(PluginNotFound, match="did you mean 'Trash'"):
        flow.add_stage("Trasj")
    with pytest.raises(ValueError, match="set_error_stage"):
        flow.add_stage("Write to File")
    with pytest.raises(ValueError, match="not an error stage"):
        flow.set_error_stage("Trash")
    assert flow.error_stage.plugin_name == "discard"
    stage = flow.set_error_stage("Write to File")
    assert repr(stage) == "WritetoFile_ErrorStage(stage_name='Error Records - Write to File')"
    stage.configuration["directory"] = "/tmp/errors"
    assert flow.error_stage is stage and flow.error_stage.directory == "/tmp/errors"
    assert flow.set_error_stage("write_to_file").directory == "/tmp/errors"  # same plugin: kept
    assert flow.to_dict()["error_stage"]["plugin"]["type"] == StageKind.ERROR.value
    with pytest.raises(ValueError, match="error stage"):
        flow.add_stage("Trash") >> stage


def test_auto_arrange_places_columns(flow: BatchFlow) -> None:
    a, b, c = flow.add_stage("CSV File"), flow.add_stage("Filter"), flow.add_stage("Trash")
    c.position = (0, 500)
    a >> b >> c
    assert flow.auto_arrange() is flow
    assert [s.position for s in flow.stages] == [(0.0, 0.0), (220.0, 0.0), (440.0, 0.0)]
    assert a.position == (0.0, 0.0)  # the objects you hold see the new places


def test_use_parameter_set_adds_name_and_constants(flow: BatchFlow) -> None:
    ps = ParameterSet(
        flow._client,
        {
            "id": 3,
            "name": "orders",
            "parameters": {"min": "5", "n": 2},
            "description": "",
            "project": {"id": 1},
        },
    )
    assert repr(ps) == (
        "ParameterSet(name='orders', parameters={'min': '5', 'n': 2}, description='', value_sets=[])"
    )
    assert flow.use_parameter_set(ps) is flow
    flow.use_parameter_set(ps)
    assert flow.document.parameter_sets == ["orders"]
    assert flow.parameters == {"orders__min": "5", "orders__n": "2"}
    assert ps.references() == {"min": "${orders__min}", "n": "${orders__n}"}
    elsewhere = ParameterSet(flow._client, {"id": 4, "name": "x", "project": {"id": 9}})
    with pytest.raises(ValueError, match="another project"):
        flow.use_parameter_set(elsewhere)
    with pytest.raises(TypeError):
        flow.use_parameter_set("orders")  # type: ignore[arg-type]


def test_results_have_the_seeds_reprs() -> None:
    body = {
        "success": False,
        "message": "Validation Failed",
        "issues": [
            {
                "type": "stageIssues",
                "instanceName": "Trash_01",
                "code": "FIRST_STAGE_NOT_ORIGIN",
                "humanReadableMessage": "The first stage must be an origin",
            }
        ],
    }
    result = ValidationResult.from_dict(body)
    assert repr(result) == (
        "ValidationResult(success=False, issues=[FlowValidationError(type='stageIssues', "
        "instanceName='Trash_01', humanReadableMessage='The first stage must be an origin')], "
        "message='Validation Failed')"
    )
    issue = result.issues[0]
    assert isinstance(issue, FlowValidationError) and not result
    assert issue.instanceName == issue.instance_name == "Trash_01" and issue.code == "FIRST_STAGE_NOT_ORIGIN"
    assert issue.humanReadableMessage == issue.human_readable_message
    stage = PreviewStage.from_dict({"instanceName": "CSVFile_01", "input": [], "output": [{"a": 1}]})
    # Records print as the seed's tuples and keep their field names.
    assert repr(stage) == "PreviewStage(instance_name='CSVFile_01')" and stage.output == [(1,)]
    assert stage.output[0].to_dict() == {"a": 1} and stage.output[0]["a"] == 1


def test_unsaved_changes_warn_before_server_side_actions() -> None:
    calls: list[str] = []

    def validate(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json={"success": True, "message": "Validation Succeeded", "issues": []})

    def patch(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)
        return httpx.Response(200, json={**_record(), "name": sent["name"], "document": sent})

    client = _client({("GET", "/v4/flows/7/validate"): validate, ("PATCH", "/v4/flows/7"): patch})
    flow = flow_from_record(client, _record())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert flow.validate().success
    flow.add_stage("Trash")
    with pytest.warns(UnsavedChangesWarning, match="update_flow"):
        flow.validate()
    from flowport.sdk.projects import Project

    response = Project(client, {"id": 1, "name": "default"}).update_flow(flow)
    assert response.status_code == 200 and not flow.has_unsaved_changes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flow.validate()
    assert calls == ["/v4/flows/7/validate"] * 3
