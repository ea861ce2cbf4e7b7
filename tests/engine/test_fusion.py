"""Fused runs give exactly the results of unfused runs, and fusion really happens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from flowport.engine import FlowRun, RunContext
from flowport.model.document import flow_from_dict
from flowport.services.flows import plugin_registry

CSV = """id,name,amount,day
1,alpha,10.5,2026-01-01
2,beta,abc,2026-01-02
3,gamma,30,2026-01-03
4,delta,,2026-01-04
5,eps,50,not-a-day
6,zeta,60,2026-01-06
7,eta,70
8,theta,5,2026-01-08
9,iota,0,2026-01-09
"""


def _flow(tmp: Path, condition: str, policy: str, fuse: bool, extra_stage: bool = False) -> dict[str, Any]:
    stages = [
        {"name": "Src", "plugin": {"name": "csv_file_origin"}, "configuration": {"path": "in.csv"}},
        {
            "name": "Types",
            "plugin": {"name": "field_mapper"},
            "configuration": {
                "fields": [
                    {"source": "id", "type": "integer"},
                    {"source": "name", "type": "string"},
                    {"source": "amount", "type": "decimal(10,2)"},
                    {"source": "day", "type": "date"},
                ]
            },
        },
        {"name": "Keep", "plugin": {"name": "filter"}, "configuration": {"condition": condition}},
    ]
    edges = [("Src", "Types"), ("Types", "Keep")]
    last = "Keep"
    if extra_stage:
        stages.append(
            {
                "name": "Derive",
                "plugin": {"name": "expression"},
                "configuration": {"fields": [{"name": "double", "expression": "amount * 2"}]},
            }
        )
        edges.append(("Keep", "Derive"))
        last = "Derive"
    stages.append(
        {
            "name": "Out",
            "plugin": {"name": "parquet_file_destination"},
            "configuration": {"path": "out.parquet"},
        }
    )
    edges.append((last, "Out"))
    return {
        "name": "fusion",
        # Some conditions reject every record: the comparison is about records, not the default
        # rule that such a run fails.
        "configuration": {
            "error_record_policy": policy,
            "fuse_stages": fuse,
            "batch_size": 4,
            "fail_on_no_output": False,
        },
        "error_stage": {"plugin": {"name": "write_to_file"}, "configuration": {"directory": "errors"}},
        "stages": stages,
        "edges": [{"from": a, "to": b} for a, b in edges],
    }


def _run(tmp: Path, doc: dict[str, Any]) -> tuple[FlowRun, Any, list[dict[str, Any]], list[dict[str, Any]]]:
    (tmp / "in.csv").write_text(CSV)
    run = FlowRun(flow_from_dict(doc), plugin_registry(), RunContext(base_dir=tmp, run_id="r"))
    result = run.start().wait(timeout=60)
    out = pq.read_table(tmp / "out.parquet").to_pylist() if (tmp / "out.parquet").exists() else []
    error_file = tmp / "errors" / "errors-r.jsonl"
    errors = [json.loads(line) for line in error_file.read_text().splitlines()] if error_file.exists() else []
    for e in errors:
        e.pop("time")
        if "file" in e["record"]:
            e["record"]["file"] = Path(e["record"]["file"]).name
    # Origin and stage errors reach the error stage from different threads: compare in a stable order.
    errors.sort(key=lambda e: (e["stage"], e["message"]))
    return run, result, out, errors


@pytest.mark.parametrize(
    ("condition", "policy"),
    [
        ("amount >= 10", "ORIGINAL_RECORD"),
        ("amount >= 10", "STAGE_RECORD"),
        # NULL verdicts (amount is NULL on row 4) and a condition that fails on
        # some rows (CAST of 'alpha'...) are re-checked by the stage itself.
        ("CAST(name AS INTEGER) > 0 OR amount > 55", "STAGE_RECORD"),
        ("amount > 20 AND day > DATE '2026-01-02'", "ORIGINAL_RECORD"),
    ],
)
def test_fused_run_equals_unfused_run(tmp_path: Path, condition: str, policy: str) -> None:
    fused_dir, plain_dir = tmp_path / "fused", tmp_path / "plain"
    fused_dir.mkdir()
    plain_dir.mkdir()
    fused_run, fused, fused_out, fused_errors = _run(fused_dir, _flow(fused_dir, condition, policy, True))
    plain_run, plain, plain_out, plain_errors = _run(plain_dir, _flow(plain_dir, condition, policy, False))
    assert fused.status == plain.status == "Complete", (fused.error, plain.error)
    assert "Src" in fused_run.fused and not plain_run.fused
    assert fused_out == plain_out
    assert fused_errors == plain_errors
    for name in ("Src", "Types", "Keep", "Out"):
        f, p = fused.stages[name], plain.stages[name]
        assert (f.input_records, f.output_records, f.error_records) == (
            p.input_records,
            p.output_records,
            p.error_records,
        ), name


def test_fused_results_are_the_expected_ones(tmp_path: Path) -> None:
    _, result, out, errors = _run(tmp_path, _flow(tmp_path, "amount >= 10", "ORIGINAL_RECORD", True))
    assert [r["id"] for r in out] == [1, 3, 6]
    by_code: dict[str, list[dict[str, Any]]] = {}
    for e in errors:
        by_code.setdefault(e["code"], []).append(e)
    assert [e["record"]["id"] for e in by_code["FIELD_MAPPER_CAST_FAILED"]] == ["2", "5"]
    assert by_code["FIELD_MAPPER_CAST_FAILED"][0]["record"]["amount"] == "abc"  # as the origin read it
    assert by_code["FIELD_MAPPER_CAST_FAILED"][0]["policy"] == "ORIGINAL_RECORD"
    assert len(by_code["CSV_MALFORMED_ROW"]) == 1
    assert result.stages["Keep"].input_records == 6 and result.stages["Keep"].output_records == 3


def test_no_fusion_under_original_record_when_a_later_stage_may_reject_records(tmp_path: Path) -> None:
    run, result, out, _ = _run(
        tmp_path, _flow(tmp_path, "amount >= 10", "ORIGINAL_RECORD", True, extra_stage=True)
    )
    assert result.status == "Complete"
    assert run.fused == {}
    assert [r["double"] for r in out] == [21, 60, 120]


def test_fusion_under_stage_record_with_a_later_stage(tmp_path: Path) -> None:
    run, result, out, _ = _run(
        tmp_path, _flow(tmp_path, "amount >= 10", "STAGE_RECORD", True, extra_stage=True)
    )
    assert result.status == "Complete"
    assert [s.stage.name for s in run.fused["Src"].steps] == ["Types", "Keep"]
    assert [r["double"] for r in out] == [21, 60, 120]


def test_a_condition_that_is_not_boolean_fails_like_unfused(tmp_path: Path) -> None:
    _, fused, _, _ = _run(tmp_path, _flow(tmp_path, "amount + 1", "STAGE_RECORD", True))
    assert fused.status == "Failed" and "not a boolean" in fused.error
    assert not (tmp_path / "out.parquet").exists()
