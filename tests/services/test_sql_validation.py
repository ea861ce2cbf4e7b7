"""Validation sees SQL: every condition, expression and query is bound against the schema it will get."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from flowport.engine import FlowRun, RunContext
from flowport.model.document import flow_from_dict
from flowport.services import flows


def _doc(*processors: dict[str, Any], origin: dict[str, Any] | None = None) -> dict[str, Any]:
    stages = [
        origin
        or {"name": "Orders_01", "plugin": {"name": "csv_file_origin"}, "configuration": {"path": "o.csv"}},
        {
            "name": "Types_01",
            "plugin": {"name": "field_mapper"},
            "configuration": {"fields": [{"source": "total", "target": "total", "type": "decimal(10,2)"}]},
        },
        *processors,
        {
            "name": "Out_01",
            "plugin": {"name": "parquet_file_destination"},
            "configuration": {"path": "o.parquet"},
        },
    ]
    return {
        "name": "sql",
        "stages": stages,
        "edges": [{"from": a["name"], "to": b["name"]} for a, b in itertools.pairwise(stages)],
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "o.csv").write_text("id,total\n1,10\n2,20\n", encoding="utf-8")
    (tmp_path / "o.jsonl").write_text('{"id": 1, "total": 10}\n', encoding="utf-8")
    return tmp_path


def _issues(folder: Path, document: dict[str, Any]) -> list[tuple[str | None, str, str]]:
    result = flows.validate(flow_from_dict(document), base_dir=folder)
    return [(i.instance_name, i.code, i.message) for i in result.issues]


@pytest.mark.parametrize(
    ("stage", "needle"),
    [
        (
            {"name": "Filter_01", "plugin": {"name": "filter"}, "configuration": {"condition": "totl >= 5"}},
            "totl",
        ),
        (
            {
                "name": "Filter_01",
                "plugin": {"name": "filter"},
                "configuration": {"condition": "total >== 5"},
            },
            ">==",
        ),
        (
            {
                "name": "Filter_01",
                "plugin": {"name": "filter"},
                "configuration": {"condition": "total::VARCHAR || 'x'"},
            },
            "boolean",
        ),
        (
            {
                "name": "Expr_01",
                "plugin": {"name": "expression"},
                "configuration": {"fields": [{"name": "t2", "expression": "no_such_function(total)"}]},
            },
            "no_such_function",
        ),
        (
            {"name": "SQL_01", "plugin": {"name": "sql"}, "configuration": {"query": "SELEC * FROM input"}},
            "syntax error",
        ),
    ],
)
def test_invalid_sql_is_an_issue_on_the_stage_that_owns_it(
    folder: Path, stage: dict[str, Any], needle: str
) -> None:
    issues = _issues(folder, _doc(stage))
    assert len(issues) == 1, issues
    name, code, message = issues[0]
    assert name == stage["name"] and code == "SQL_INVALID"
    assert needle in message


def test_sql_sees_the_schema_each_stage_produces(folder: Path) -> None:
    # The expression adds 'doubled'; the filter after it may use it; the mapper's decimal is a number.
    expression = {
        "name": "Expr_01",
        "plugin": {"name": "expression"},
        "configuration": {"fields": [{"name": "doubled", "expression": "total * 2"}]},
    }
    keep = {
        "name": "Filter_01",
        "plugin": {"name": "filter"},
        "configuration": {"condition": "doubled > 15.5"},
    }
    assert _issues(folder, _doc(expression, keep)) == []
    late = {"name": "Filter_01", "plugin": {"name": "filter"}, "configuration": {"condition": "doubled > 1"}}
    issues = _issues(folder, _doc(late, expression))
    assert [(n, c) for n, c, _ in issues] == [("Filter_01", "SQL_INVALID")]


def test_an_unknown_schema_is_not_guessed(folder: Path) -> None:
    json_origin = {
        "name": "Orders_01",
        "plugin": {"name": "json_file_origin"},
        "configuration": {"path": "o.jsonl"},
    }
    keep = {"name": "Filter_01", "plugin": {"name": "filter"}, "configuration": {"condition": "anything > 1"}}
    assert _issues(folder, _doc(keep, origin=json_origin)) == []


def test_a_run_blames_the_fused_filter_not_the_origin(folder: Path) -> None:
    # Straight to the engine (no validation first): the filter's SQL cannot join the origin's query.
    keep = {"name": "Filter_01", "plugin": {"name": "filter"}, "configuration": {"condition": "totl >= 5"}}
    run = FlowRun(flow_from_dict(_doc(keep)), flows.plugin_registry(), RunContext(base_dir=folder))
    result = run.start().wait(timeout=60)
    assert result.status == "Failed"
    assert result.error_stage == "Filter_01"
    assert "totl" in (result.error or "")
    assert not (folder / "o.parquet").exists()


def test_a_run_refuses_invalid_sql_before_it_starts(folder: Path) -> None:
    keep = {"name": "Filter_01", "plugin": {"name": "filter"}, "configuration": {"condition": "totl >= 5"}}
    with pytest.raises(flows.FlowInvalid) as caught:
        flows.start_run(flow_from_dict(_doc(keep)), base_dir=folder)
    assert [(i.instance_name, i.code) for i in caught.value.result.issues] == [("Filter_01", "SQL_INVALID")]
