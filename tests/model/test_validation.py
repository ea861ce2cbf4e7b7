"""Flow validation: every issue, with a stable code, on the right stage."""

from __future__ import annotations

from typing import Any

import pytest

from flowport.model.flow import ErrorStageSpec, PluginRef, Stage, StageKind
from flowport.model.validation import ValidationIssue, ValidationResult, validate_flow

GOOD_STAGES = [("Raw_01", "dev_raw"), ("Filter_01", "filter", {"condition": "x > 1"}), ("Trash_01", "trash")]
GOOD_EDGES = [("Raw_01", "Filter_01"), ("Filter_01", "Trash_01")]


def where(result: ValidationResult) -> list[tuple[str | None, str]]:
    return [(issue.instance_name, issue.code) for issue in result.issues]


def only(result: ValidationResult, code: str) -> list[ValidationIssue]:
    return [issue for issue in result.issues if issue.code == code]


def test_valid_flow(make_flow: Any, catalog: Any) -> None:
    result = validate_flow(make_flow(GOOD_STAGES, GOOD_EDGES), catalog)
    assert result.success
    assert result.issues == []
    assert result.to_dict() == {"success": True, "issues": []}


def test_seed_trash_only_flow_gives_exactly_two_issues(make_flow: Any, catalog: Any) -> None:
    result = validate_flow(make_flow([("Trash_01", "trash")]), catalog)
    assert not result.success
    assert result.to_dict() == {
        "success": False,
        "issues": [
            {
                "type": "stageIssues",
                "instance_name": "Trash_01",
                "code": "FIRST_STAGE_NOT_ORIGIN",
                "message": "The first stage must be an origin",
            },
            {
                "type": "stageIssues",
                "instance_name": "Trash_01",
                "code": "NO_INPUT_STREAMS",
                "message": "Target must have input streams",
            },
        ],
    }


def test_flow_no_stages(make_flow: Any, catalog: Any) -> None:
    result = validate_flow(make_flow([]), catalog)
    assert [(i.type, i.instance_name, i.code) for i in result.issues] == [
        ("flowIssues", None, "FLOW_NO_STAGES")
    ]


def test_first_stage_not_origin_even_when_an_origin_follows(make_flow: Any, catalog: Any) -> None:
    flow = make_flow([GOOD_STAGES[1], GOOD_STAGES[0], GOOD_STAGES[2]], GOOD_EDGES)
    assert where(validate_flow(flow, catalog)) == [("Filter_01", "FIRST_STAGE_NOT_ORIGIN")]


def test_first_stage_of_unknown_kind_is_not_blamed(make_flow: Any, catalog: Any) -> None:
    flow = make_flow([("Mystery_01", "mystery"), GOOD_STAGES[2]], [("Mystery_01", "Trash_01")])
    assert where(validate_flow(flow, catalog)) == [("Mystery_01", "PLUGIN_NOT_FOUND")]


def test_no_input_streams_per_kind(make_flow: Any, catalog: Any) -> None:
    flow = make_flow(
        [
            ("Raw_01", "dev_raw"),
            ("Filter_01", "filter", {"condition": "x"}),
            ("Trash_01", "trash"),
            ("SQL_01", "sql_executor", {"statement": "select 1"}),
        ]
    )
    result = validate_flow(flow, catalog)
    assert [(i.instance_name, i.code, i.message) for i in result.issues] == [
        ("Filter_01", "NO_INPUT_STREAMS", "Processor must have input streams"),
        ("Trash_01", "NO_INPUT_STREAMS", "Target must have input streams"),
        ("SQL_01", "NO_INPUT_STREAMS", "Target must have input streams"),
    ]


def test_origin_has_input(make_flow: Any, catalog: Any) -> None:
    flow = make_flow([*GOOD_STAGES, ("Raw_02", "dev_raw")], [*GOOD_EDGES, ("Raw_01", "Raw_02")])
    result = validate_flow(flow, catalog)
    assert where(result) == [("Raw_02", "ORIGIN_HAS_INPUT")]
    assert "fed by Raw_01" in result.issues[0].message


def test_error_plugin_used_as_a_stage(make_flow: Any, catalog: Any) -> None:
    flow = make_flow([*GOOD_STAGES, ("Discard_01", "discard")], [*GOOD_EDGES, ("Filter_01", "Discard_01")])
    result = validate_flow(flow, catalog)
    assert where(result) == [("Discard_01", "ERROR_STAGE_IN_GRAPH")]
    assert "error stage" in result.issues[0].message


def test_error_stage_must_be_an_error_plugin(make_flow: Any, catalog: Any) -> None:
    flow = make_flow(
        GOOD_STAGES, GOOD_EDGES, error_stage=ErrorStageSpec(name="Err", plugin=PluginRef(name="trash"))
    )
    result = validate_flow(flow, catalog)
    assert where(result) == [("Err", "NOT_AN_ERROR_STAGE")]
    assert "'trash', which is a destination" in result.issues[0].message


def test_destination_may_feed_executors_only(make_flow: Any, catalog: Any) -> None:
    stages = [*GOOD_STAGES, ("SQL_01", "sql_executor", {"statement": "x"}), ("Trash_02", "trash")]
    ok = make_flow(stages[:-1], [*GOOD_EDGES, ("Trash_01", "SQL_01")])
    assert validate_flow(ok, catalog).success
    bad = make_flow(
        stages, [*GOOD_EDGES, ("Trash_01", "SQL_01"), ("Trash_01", "Trash_02"), ("SQL_01", "Trash_02")]
    )
    result = validate_flow(bad, catalog)
    assert where(result) == [("Trash_01", "DESTINATION_HAS_OUTPUT"), ("SQL_01", "DESTINATION_HAS_OUTPUT")]
    assert "feeds Trash_02" in result.issues[0].message


def test_duplicate_stage_name(make_flow: Any, catalog: Any) -> None:
    flow = make_flow([*GOOD_STAGES, ("Filter_01", "filter", {"condition": "y"})], GOOD_EDGES)
    result = validate_flow(flow, catalog)
    assert where(result) == [("Filter_01", "DUPLICATE_STAGE_NAME")]
    assert "2 stages are named 'Filter_01'" in result.issues[0].message


def test_stage_named_like_the_error_stage(make_flow: Any, catalog: Any) -> None:
    flow = make_flow(
        [("ErrorStage", "dev_raw"), *GOOD_STAGES[1:]], [("ErrorStage", "Filter_01"), GOOD_EDGES[1]]
    )
    assert where(validate_flow(flow, catalog)) == [("ErrorStage", "DUPLICATE_STAGE_NAME")]


def test_unknown_edge_stage_is_a_flow_issue_naming_the_edge(make_flow: Any, catalog: Any) -> None:
    flow = make_flow(GOOD_STAGES, [*GOOD_EDGES, ("Filter_01", "Ghost_01")])
    result = validate_flow(flow, catalog)
    assert [(i.type, i.instance_name, i.code) for i in result.issues] == [
        ("flowIssues", None, "UNKNOWN_EDGE_STAGE")
    ]
    assert "Edge Filter_01 → Ghost_01 refers to 'Ghost_01'" in result.issues[0].message


def test_edge_to_the_error_stage_explains_why(make_flow: Any, catalog: Any) -> None:
    flow = make_flow(GOOD_STAGES, [*GOOD_EDGES, ("Filter_01", "ErrorStage")])
    (issue,) = validate_flow(flow, catalog).issues
    assert issue.code == "UNKNOWN_EDGE_STAGE"
    assert "receives error records without edges" in issue.message


def test_self_loop(make_flow: Any, catalog: Any) -> None:
    flow = make_flow(GOOD_STAGES, [*GOOD_EDGES, ("Filter_01", "Filter_01")])
    result = validate_flow(flow, catalog)
    assert where(result) == [("Filter_01", "SELF_LOOP")]


def test_cycle_names_its_stages(make_flow: Any, catalog: Any) -> None:
    flow = make_flow(
        [*GOOD_STAGES[:2], ("Filter_02", "filter", {"condition": "y"}), GOOD_STAGES[2]],
        [
            ("Raw_01", "Filter_01"),
            ("Filter_01", "Filter_02"),
            ("Filter_02", "Filter_01"),
            ("Filter_02", "Trash_01"),
        ],
    )
    result = validate_flow(flow, catalog)
    assert [(i.type, i.instance_name, i.code) for i in result.issues] == [("flowIssues", None, "CYCLE")]
    assert "Filter_01, Filter_02" in result.issues[0].message
    assert "Filter_01 → Filter_02 → Filter_01" in result.issues[0].message


def test_unreachable_stage(make_flow: Any, catalog: Any) -> None:
    # F2 has no input (reported as such); F3 only hangs off F2, so no origin reaches it.
    flow = make_flow(
        [*GOOD_STAGES, ("F2", "filter", {"condition": "a"}), ("F3", "filter", {"condition": "b"})],
        [*GOOD_EDGES, ("F2", "F3")],
    )
    result = validate_flow(flow, catalog)
    assert where(result) == [("F2", "NO_INPUT_STREAMS"), ("F3", "UNREACHABLE_STAGE")]
    assert "fed by F2" in result.issues[1].message


def test_unreachable_only_when_the_flow_has_an_origin(make_flow: Any, catalog: Any) -> None:
    flow = make_flow([("F1", "filter", {"condition": "a"}), ("T1", "trash")], [("F1", "T1")])
    assert "UNREACHABLE_STAGE" not in {i.code for i in validate_flow(flow, catalog).issues}


def test_stage_fed_by_a_missing_plugin_is_not_unreachable(make_flow: Any, catalog: Any) -> None:
    flow = make_flow(
        [*GOOD_STAGES, ("Old_01", "old_origin"), ("T2", "trash")], [*GOOD_EDGES, ("Old_01", "T2")]
    )
    assert where(validate_flow(flow, catalog)) == [("Old_01", "PLUGIN_NOT_FOUND")]


def test_duplicate_edge(make_flow: Any, catalog: Any) -> None:
    flow = make_flow(GOOD_STAGES, [*GOOD_EDGES, ("Raw_01", "Filter_01")])
    result = validate_flow(flow, catalog)
    assert where(result) == [("Raw_01", "DUPLICATE_EDGE")]
    assert "Raw_01 → Filter_01" in result.issues[0].message


def test_plugin_not_found(make_flow: Any, catalog: Any) -> None:
    flow = make_flow(
        [*GOOD_STAGES[:2], ("Sink_01", "no_such_sink")], [*GOOD_EDGES[:1], ("Filter_01", "Sink_01")]
    )
    result = validate_flow(flow, catalog)
    assert where(result) == [("Sink_01", "PLUGIN_NOT_FOUND")]
    assert "no_such_sink" in result.issues[0].message


@pytest.mark.parametrize("code", ["ARTIFACT_NOT_FOUND", "ARTIFACT_VERSION_NOT_FOUND", "BAD_VERSION"])
def test_resolution_failures_are_reported_on_the_stage(make_flow: Any, catalog: Any, code: str) -> None:
    catalog.fail("filter", code, f"explanation for {code}")
    result = validate_flow(make_flow(GOOD_STAGES, GOOD_EDGES), catalog)
    assert [(i.instance_name, i.code, i.message) for i in result.issues] == [
        ("Filter_01", code, f"explanation for {code}")
    ]


def test_declared_type_stands_in_for_a_missing_plugin(make_flow: Any, catalog: Any) -> None:
    flow = make_flow(GOOD_STAGES, GOOD_EDGES)
    flow.stages.append(Stage(name="Lost_01", plugin=PluginRef(name="gone", type=StageKind.DESTINATION)))
    assert where(validate_flow(flow, catalog)) == [
        ("Lost_01", "PLUGIN_NOT_FOUND"),
        ("Lost_01", "NO_INPUT_STREAMS"),
    ]


def test_plugin_type_mismatch_uses_the_real_kind(make_flow: Any, catalog: Any) -> None:
    flow = make_flow(GOOD_STAGES, GOOD_EDGES)
    flow.stages[2].plugin.type = StageKind.PROCESSOR
    result = validate_flow(flow, catalog)
    assert where(result) == [("Trash_01", "PLUGIN_TYPE_MISMATCH")]
    assert "declares plugin type 'processor'" in result.issues[0].message
    assert "is a destination" in result.issues[0].message


def test_config_missing(make_flow: Any, catalog: Any) -> None:
    flow = make_flow([GOOD_STAGES[0], ("Filter_01", "filter"), GOOD_STAGES[2]], GOOD_EDGES)
    result = validate_flow(flow, catalog)
    assert [(i.instance_name, i.code, i.message) for i in result.issues] == [
        (
            "Filter_01",
            "CONFIG_MISSING",
            "configuration.condition: required setting is missing: add it to the stage's configuration",
        )
    ]


def test_config_wrong_type_names_the_key_path(make_flow: Any, catalog: Any) -> None:
    flow = make_flow(
        [
            ("Raw_01", "dev_raw", {"rows": "many"}),
            ("Map_01", "field_mapper", {"fields": [{"name": 5}]}),
            GOOD_STAGES[2],
        ],
        [("Raw_01", "Map_01"), ("Map_01", "Trash_01")],
    )
    result = validate_flow(flow, catalog)
    assert where(result) == [("Raw_01", "CONFIG_WRONG_TYPE"), ("Map_01", "CONFIG_WRONG_TYPE")]
    assert result.issues[0].message.startswith("configuration.rows: Input should be a valid integer")
    assert "(got 'many')" in result.issues[0].message
    assert result.issues[1].message.startswith("configuration.fields[0].name: Input should be a valid string")


def test_config_unknown_key_suggests_the_right_one(make_flow: Any, catalog: Any) -> None:
    flow = make_flow([("Raw_01", "dev_raw", {"rowz": 5, "zzz": 1}), *GOOD_STAGES[1:]], GOOD_EDGES)
    result = validate_flow(flow, catalog)
    assert where(result) == [("Raw_01", "CONFIG_UNKNOWN_KEY"), ("Raw_01", "CONFIG_UNKNOWN_KEY")]
    assert (
        result.issues[0].message
        == "configuration.rowz: unknown setting (check its spelling); did you mean 'rows'?"
    )
    assert (
        result.issues[1].message
        == "configuration.zzz: unknown setting (check its spelling); known settings: rows, text"
    )


def test_config_invalid(make_flow: Any, catalog: Any) -> None:
    flow = make_flow(
        [
            GOOD_STAGES[0],
            ("Filter_01", "filter", {"condition": "   "}),
            ("Map_01", "field_mapper", {"fields": [{"name": "a", "type": "blob"}], "limit": 0}),
            GOOD_STAGES[2],
        ],
        [("Raw_01", "Filter_01"), ("Filter_01", "Map_01"), ("Map_01", "Trash_01")],
    )
    result = validate_flow(flow, catalog)
    assert where(result) == [
        ("Filter_01", "CONFIG_INVALID"),
        ("Map_01", "CONFIG_INVALID"),
        ("Map_01", "CONFIG_INVALID"),
    ]
    assert "configuration.condition: Value error, the condition must not be blank" in result.issues[0].message
    messages = sorted(i.message for i in result.issues[1:])
    assert messages[0].startswith("configuration.fields[0].type: Input should be 'string', 'int' or 'float'")
    assert messages[1].startswith("configuration.limit: Input should be greater than or equal to 1")


def test_parameters_are_substituted_before_type_checks(make_flow: Any, catalog: Any) -> None:
    flow = make_flow(
        [("Raw_01", "dev_raw", {"rows": "${n}"}), *GOOD_STAGES[1:]], GOOD_EDGES, parameters={"n": "5"}
    )
    assert validate_flow(flow, catalog).success
    assert where(validate_flow(flow, catalog, {"n": "lots"})) == [("Raw_01", "CONFIG_WRONG_TYPE")]


def test_parameter_set_values_are_used_when_given(make_flow: Any, catalog: Any) -> None:
    flow = make_flow([("Raw_01", "dev_raw", {"rows": "${orders__n}"}), *GOOD_STAGES[1:]], GOOD_EDGES)
    assert validate_flow(flow, catalog, {"orders__n": "7"}).success


def test_unresolved_parameter_is_not_also_a_type_error(make_flow: Any, catalog: Any) -> None:
    flow = make_flow(
        [
            ("Raw_01", "dev_raw", {"rows": "${n}", "text": 5}),
            ("Map_01", "field_mapper", {"fields": [{"name": "a", "type": "${t}"}], "limit": "${n}"}),
            GOOD_STAGES[2],
        ],
        [("Raw_01", "Map_01"), ("Map_01", "Trash_01")],
    )
    result = validate_flow(flow, catalog)
    assert where(result) == [
        ("Raw_01", "UNRESOLVED_PARAMETER"),
        ("Raw_01", "CONFIG_WRONG_TYPE"),  # 'text' holds no parameter: still checked
        ("Map_01", "UNRESOLVED_PARAMETER"),
        ("Map_01", "UNRESOLVED_PARAMETER"),
    ]
    assert result.issues[0].message == (
        "Parameter 'n' is not defined: add it to the flow's parameters, a parameter set the flow uses, "
        "or pass --param n=VALUE"
    )
    assert result.issues[1].message.startswith("configuration.text:")
    assert {i.message.split("'")[1] for i in result.issues[2:]} == {"n", "t"}


def test_escaped_reference_is_checked_as_literal_text(make_flow: Any, catalog: Any) -> None:
    flow = make_flow([("Raw_01", "dev_raw", {"rows": "$${n}"}), *GOOD_STAGES[1:]], GOOD_EDGES)
    assert where(validate_flow(flow, catalog)) == [("Raw_01", "CONFIG_WRONG_TYPE")]


def test_error_stage_configuration_is_checked(make_flow: Any, catalog: Any) -> None:
    spec = ErrorStageSpec(name="Errors", plugin=PluginRef(name="write_to_file"), configuration={"dir": "x"})
    result = validate_flow(make_flow(GOOD_STAGES, GOOD_EDGES, error_stage=spec), catalog)
    assert where(result) == [("Errors", "CONFIG_MISSING"), ("Errors", "CONFIG_UNKNOWN_KEY")]
    spec = ErrorStageSpec(plugin=PluginRef(name="write_to_file"), configuration={"directory": "${where}"})
    result = validate_flow(make_flow(GOOD_STAGES, GOOD_EDGES, error_stage=spec), catalog)
    assert where(result) == [("ErrorStage", "UNRESOLVED_PARAMETER")]


def test_error_stage_plugin_problems(make_flow: Any, catalog: Any) -> None:
    spec = ErrorStageSpec(plugin=PluginRef(name="nowhere"))
    assert where(validate_flow(make_flow(GOOD_STAGES, GOOD_EDGES, error_stage=spec), catalog)) == [
        ("ErrorStage", "PLUGIN_NOT_FOUND")
    ]
    spec = ErrorStageSpec(plugin=PluginRef(name="discard", type=StageKind.DESTINATION))
    assert where(validate_flow(make_flow(GOOD_STAGES, GOOD_EDGES, error_stage=spec), catalog)) == [
        ("ErrorStage", "PLUGIN_TYPE_MISMATCH")
    ]


def test_every_issue_is_reported_and_ordered(make_flow: Any, catalog: Any) -> None:
    flow = make_flow(
        [("Trash_01", "trash"), ("Filter_01", "filter"), ("Raw_01", "dev_raw", {"rows": "x"})],
        [("Raw_01", "Ghost")],
        error_stage=ErrorStageSpec(plugin=PluginRef(name="trash")),
    )
    result = validate_flow(flow, catalog)
    assert where(result) == [
        (None, "UNKNOWN_EDGE_STAGE"),
        ("Trash_01", "FIRST_STAGE_NOT_ORIGIN"),
        ("Trash_01", "NO_INPUT_STREAMS"),
        ("Filter_01", "NO_INPUT_STREAMS"),
        ("Filter_01", "CONFIG_MISSING"),
        ("Raw_01", "CONFIG_WRONG_TYPE"),
        ("ErrorStage", "NOT_AN_ERROR_STAGE"),
    ]
    assert result.for_stage("Filter_01") == result.issues[3:5]


def test_every_stage_and_the_error_stage_are_resolved(make_flow: Any, catalog: Any) -> None:
    validate_flow(make_flow(GOOD_STAGES, GOOD_EDGES), catalog)
    assert [ref.name for ref in catalog.resolved] == ["dev_raw", "filter", "trash", "discard"]


def test_a_flow_of_executors_only_is_an_action_flow(make_flow: Any, catalog: Any) -> None:
    flow = make_flow(
        [
            ("Sql_01", "sql_executor", {"statement": "SELECT 1"}),
            ("Sql_02", "sql_executor", {"statement": "x"}),
        ],
        [("Sql_01", "Sql_02")],
    )
    assert validate_flow(flow, catalog).issues == []
    # ...but an executor beside an origin still needs its inputs.
    mixed = make_flow([("Raw_01", "dev_raw"), ("Sql_01", "sql_executor", {"statement": "SELECT 1"})])
    assert [(i.instance_name, i.code) for i in validate_flow(mixed, catalog).issues] == [
        ("Sql_01", "NO_INPUT_STREAMS")
    ]
