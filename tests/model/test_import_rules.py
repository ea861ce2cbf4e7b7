"""Import rules rewrite package flows while they are imported."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from flowport.errors import ValidationFailed, VersionSyntaxError
from flowport.model.flow import Flow
from flowport.model.import_rules import (
    ObjectImportRule,
    ValueImportRule,
    apply_object_rules,
    apply_value_rules,
)
from flowport.model.pins import widen_pins

DEV = "b8014610-ce56-11e7-9739-27deec2c3249"
PROD = "fa7e06c0-0143-11e8-8faf-27c0392328c5"


def _flow(**extra: Any) -> Flow:
    artifact = {"name": "flowport-core", "version": "1.2.0", "scope": "SYSTEM"}
    return Flow.model_validate(
        {
            "name": "Wrangle Orders",
            "parameters": {"region": "dev-eu", "limit": "10"},
            "error_stage": {
                "plugin": {"name": "write_to_file"},
                "configuration": {"directory": "/data/dev/errors"},
            },
            "stages": [
                {
                    "name": "Orders_01",
                    "plugin": {"name": "sql_table_origin", "artifact": artifact},
                    "configuration": {"connection": DEV, "table": "Dev-Orders"},
                },
                {
                    "name": "Lookup_01",
                    "plugin": {
                        "name": "sql_query_origin",
                        "artifact": {**artifact, "version": "[1.0.0,2.0.0)"},
                    },
                    "configuration": {"connection": "other-conn", "query": "SELECT 1"},
                },
                {
                    "name": "JSON_01",
                    "plugin": {"name": "json_file_destination"},
                    "configuration": {"path": "/data/dev/out/orders.json"},
                },
                {
                    "name": "S3_01",
                    "plugin": {
                        "name": "parquet_file_destination",
                        "artifact": {**artifact, "version": "0.9.1-SNAPSHOT"},
                    },
                    "configuration": {"path": "s3://dev-bucket/orders/part.parquet"},
                },
            ],
            "edges": [{"from": "Orders_01", "to": "JSON_01"}, {"from": "Orders_01", "to": "S3_01"}],
            **extra,
        }
    )


def test_object_rule_points_stages_at_the_local_connection() -> None:
    rule = ObjectImportRule.model_validate(
        {"tableName": "connections", "onCondition": {"uuid": DEV}, "withCondition": {"id": 12}}
    )
    unused = ObjectImportRule.model_validate(
        {"tableName": "connections", "onCondition": {"uuid": "not-in-flow"}, "withCondition": {"id": 12}}
    )
    flow, applied = apply_object_rules(_flow(), [rule, unused], {12: PROD})
    assert flow.stage("Orders_01").configuration["connection"] == PROD
    assert flow.stage("Lookup_01").configuration["connection"] == "other-conn"
    assert applied == [rule]
    assert rule.to_dict() == {
        "tableName": "connections",
        "onCondition": {"uuid": DEV},
        "withCondition": {"id": 12},
    }


def test_object_rule_to_a_missing_local_connection_is_a_clear_error() -> None:
    rule = ObjectImportRule.model_validate(
        {"tableName": "connections", "onCondition": {"uuid": DEV}, "withCondition": {"id": 99}}
    )
    with pytest.raises(ValidationFailed, match="connection id 99, which does not exist"):
        apply_object_rules(_flow(), [rule], {12: PROD})


@pytest.mark.parametrize(
    "body",
    [
        {"tableName": "flows", "onCondition": {"uuid": DEV}, "withCondition": {"id": 1}},
        {"tableName": "connections", "onCondition": {"name": "x"}, "withCondition": {"id": 1}},
        {"tableName": "connections", "onCondition": {"uuid": DEV}, "withCondition": {"uuid": "x"}},
        {"tableName": "connections", "onCondition": {"uuid": DEV}, "withCondition": {"id": 1}, "extra": 1},
    ],
)
def test_malformed_object_rules_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ObjectImportRule.model_validate(body)


def test_value_rules_apply_in_order_with_literals_and_regex() -> None:
    rules = [
        # A literal (it does not both start and end with '/', which would make it a regex).
        ValueImportRule.model_validate({"type": "fileLocation", "on": "/data/dev", "with": "/data/prod"}),
        # Runs after the first: sees the already rewritten path.
        ValueImportRule.model_validate(
            {"type": "fileLocation", "on": r"/\/prod\/(\w+)\//", "with": r"/prod/\1-v2/"}
        ),
        ValueImportRule.model_validate({"type": "tableName", "on": "/^Dev-(.*)$/", "with": r"Prod-\1"}),
        ValueImportRule.model_validate({"type": "s3Bucket", "on": "dev-bucket", "with": "prod-bucket"}),
        ValueImportRule.model_validate({"type": "parameter", "on": "dev-", "with": "prod-"}),
    ]
    flow, changes = apply_value_rules(_flow(), rules)
    assert flow.stage("JSON_01").configuration["path"] == "/data/prod/out-v2/orders.json"
    assert flow.error_stage.configuration["directory"] == "/data/prod/errors"
    assert flow.stage("Orders_01").configuration["table"] == "Prod-Orders"
    assert flow.stage("S3_01").configuration["path"] == "s3://prod-bucket/orders/part.parquet"
    assert flow.parameters == {"region": "prod-eu", "limit": "10"}
    # Connection references and queries are not values these rules touch.
    assert flow.stage("Orders_01").configuration["connection"] == DEV
    reported = [(c.rule, c.stage, c.key, c.before, c.after) for c in changes]
    assert (0, "JSON_01", "path", "/data/dev/out/orders.json", "/data/prod/out/orders.json") in reported
    assert (1, "JSON_01", "path", "/data/prod/out/orders.json", "/data/prod/out-v2/orders.json") in reported
    assert (2, "Orders_01", "table", "Dev-Orders", "Prod-Orders") in reported
    assert (4, None, "parameters.region", "dev-eu", "prod-eu") in reported
    assert changes[0].to_dict()["from"] == changes[0].before


def test_a_bad_regex_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        ValueImportRule.model_validate({"type": "tableName", "on": "/(unclosed/", "with": "x"})


def test_widen_pins_turns_exact_versions_into_major_ranges() -> None:
    flow, changes = widen_pins(_flow())
    assert flow.stage("Orders_01").plugin.artifact.version == "[1.2.0,2.0.0)"
    assert flow.stage("S3_01").plugin.artifact.version == "[0.9.1-SNAPSHOT,1.0.0)"
    assert flow.stage("Lookup_01").plugin.artifact.version == "[1.0.0,2.0.0)"  # already a range: untouched
    assert [(c.stage, c.before, c.after) for c in changes] == [
        ("Orders_01", "1.2.0", "[1.2.0,2.0.0)"),
        ("S3_01", "0.9.1-SNAPSHOT", "[0.9.1-SNAPSHOT,1.0.0)"),
    ]
    explicit, _ = widen_pins(_flow(), "[0.0.1,10.0.0]")
    assert explicit.stage("Orders_01").plugin.artifact.version == "[0.0.1,10.0.0]"
    with pytest.raises(VersionSyntaxError):
        widen_pins(_flow(), "[2.0,1.0]")
