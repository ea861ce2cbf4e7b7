"""A fused chain that writes its Parquet destination itself (one DuckDB COPY) gives what streaming gives.

Same file (Parquet schema and rows, in order), same error records, same
metrics for every stage; a failed or cancelled run leaves the previous
file and no temporary file behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flowport.engine import FlowRun, RunContext
from flowport.engine.fusion import KNOWN_CONSISTENT, FusedCopy, _true_prefix
from flowport.model.document import flow_from_dict
from flowport.plugins.contract import StageContext
from flowport.services.flows import plugin_registry
from flowport.stages.files.parquet_destination import ParquetFileDestination, ParquetFileDestinationConfig

# Bad values for the mapper, NULLs a filter cannot decide, a malformed row, a JSON column.
CSV = """id,name,amount,day,at,doc
1,alpha,10.5,2026-01-01,2026-01-01 10:00:00+02,"{""a"": 1}"
2,beta,abc,2026-01-02,2026-01-02 10:00:00+00,{}
3,gamma,30,2026-01-03,,[1]
4,delta,,2026-01-04,2026-01-04 10:00:00+00,
5,eps,50,not-a-day,2026-01-05 10:00:00+00,{}
6,zeta,60,2026-01-06,2026-01-06 10:00:00+00,"{""b"": [2]}"
7,eta,70
8,theta,5,2026-01-08,2026-01-08 10:00:00+00,{}
9,iota,0,2026-01-09,2026-01-09 10:00:00+00,{}
10,kappa,90,2026-01-10,2026-01-10 10:00:00+00,{}
11,lambda,95,2026-01-11,2026-01-11 10:00:00+00,{}
"""

STAGES = ("Src", "Types", "Keep", "Again", "Out")


def _flow(condition: str, policy: str = "STAGE_RECORD", **configuration: Any) -> dict[str, Any]:
    fields = [
        {"source": "id", "type": "bigint"},
        {"source": "name", "type": "string"},
        {"source": "amount", "type": "decimal(10,2)"},
        {"source": "day", "type": "date"},
        {"source": "at", "type": "timestamptz"},
        {"source": "doc", "type": "json"},
    ]
    return {
        "name": "fused copy",
        "configuration": {
            "error_record_policy": policy,
            "batch_size": 3,
            "fail_on_no_output": False,
            **configuration,
        },
        "error_stage": {"plugin": {"name": "write_to_file"}, "configuration": {"directory": "errors"}},
        "stages": [
            {"name": "Src", "plugin": {"name": "csv_file_origin"}, "configuration": {"path": "in.csv"}},
            {"name": "Types", "plugin": {"name": "field_mapper"}, "configuration": {"fields": fields}},
            {"name": "Keep", "plugin": {"name": "filter"}, "configuration": {"condition": condition}},
            {"name": "Again", "plugin": {"name": "filter"}, "configuration": {"condition": "id <> 10"}},
            {
                "name": "Out",
                "plugin": {"name": "parquet_file_destination"},
                "configuration": {"path": "out.parquet"},
            },
        ],
        "edges": [
            {"from": "Src", "to": "Types"},
            {"from": "Types", "to": "Keep"},
            {"from": "Keep", "to": "Again"},
            {"from": "Again", "to": "Out"},
        ],
    }


def _run(folder: Path, document: dict[str, Any], csv: str = CSV) -> tuple[FlowRun, Any]:
    folder.mkdir(exist_ok=True)
    (folder / "in.csv").write_text(csv)
    run = FlowRun(flow_from_dict(document), plugin_registry(), RunContext(base_dir=folder, run_id="r"))
    return run, run.start().wait(timeout=60)


def _errors(folder: Path) -> list[dict[str, Any]]:
    path = folder / "errors" / "errors-r.jsonl"
    errors = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    for e in errors:
        e.pop("time")
        if "file" in e["record"]:
            e["record"]["file"] = Path(e["record"]["file"]).name
    # Origin and stage errors reach the error stage from different threads.
    return sorted(errors, key=lambda e: (e["stage"], e["message"]))


def _counts(result: Any) -> dict[str, tuple[int, int, int]]:
    return {
        name: (
            result.stages[name].input_records,
            result.stages[name].output_records,
            result.stages[name].error_records,
        )
        for name in STAGES
    }


def _no_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ParquetFileDestination, "copy_target", lambda self: None)


@pytest.mark.parametrize(
    ("condition", "policy"),
    [
        ("amount >= 10", "STAGE_RECORD"),
        ("amount >= 10", "ORIGINAL_RECORD"),
        # NULL verdicts (amount NULL) and values the condition fails on (CAST of the names).
        ("CAST(name AS INTEGER) > 0 OR amount > 55", "STAGE_RECORD"),
        ("amount > 20 AND day > DATE '2026-01-02'", "ORIGINAL_RECORD"),
        ("amount > 1000", "STAGE_RECORD"),  # nothing written
    ],
)
def test_the_copied_file_errors_and_metrics_are_those_of_a_streamed_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, condition: str, policy: str
) -> None:
    copied_run, copied = _run(tmp_path / "copied", _flow(condition, policy))
    copy = copied_run.fused["Src"].copy
    assert copy is not None and copy.copied
    with monkeypatch.context() as patch:
        _no_copy(patch)
        streamed_run, streamed = _run(tmp_path / "streamed", _flow(condition, policy))
    assert streamed_run.fused["Src"].copy is None
    assert copied.status == streamed.status == "Complete", (copied.error, streamed.error)
    assert _errors(tmp_path / "copied") == _errors(tmp_path / "streamed")
    assert _counts(copied) == _counts(streamed)
    out, expected = (
        pq.read_table(tmp_path / "copied" / "out.parquet"),
        pq.read_table(tmp_path / "streamed" / "out.parquet"),
    )
    assert out.to_pylist() == expected.to_pylist()
    if expected.num_columns:  # a streamed run that wrote nothing writes a file without columns
        copied_schema = pq.ParquetFile(tmp_path / "copied" / "out.parquet").schema
        assert copied_schema.equals(pq.ParquetFile(tmp_path / "streamed" / "out.parquet").schema)


def test_rows_are_accounted_for(tmp_path: Path) -> None:
    run, result = _run(tmp_path, _flow("amount >= 10"))
    assert result.status == "Complete"
    assert run.fused["Src"].copy is not None
    counts = _counts(result)
    # 11 data lines, one malformed: 10 records; 2 rejected by the mapper; 1 undecided (NULL amount)
    # and 2 below 10 dropped by Keep; id 10 dropped by Again.
    assert counts["Src"] == (0, 10, 1)
    assert counts["Types"] == (10, 8, 2)
    assert counts["Keep"] == (8, 5, 0)
    assert counts["Again"] == (5, 4, 0)
    assert counts["Out"] == (4, 4, 0)
    assert pq.read_table(tmp_path / "out.parquet").column("id").to_pylist() == [1, 3, 6, 11]


def test_a_condition_that_may_differ_when_evaluated_again_is_streamed(tmp_path: Path) -> None:
    run, result = _run(tmp_path, _flow("amount >= 10 AND random() >= 0"))
    assert result.status == "Complete"
    assert "Src" in run.fused and run.fused["Src"].copy is None
    assert pq.read_table(tmp_path / "out.parquet").column("id").to_pylist() == [1, 3, 6, 11]


def test_a_condition_that_is_not_boolean_fails_as_streamed(tmp_path: Path) -> None:
    _, result = _run(tmp_path, _flow("amount + 1"))
    assert result.status == "Failed" and "not a boolean" in result.error
    assert not (tmp_path / "out.parquet").exists()


def _previous(folder: Path) -> pa.Table:
    folder.mkdir(exist_ok=True)
    previous = pa.table({"id": [41, 42]})
    pq.write_table(previous, folder / "out.parquet")
    return previous


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".out.parquet"))


def test_a_run_over_its_error_limit_leaves_the_previous_file(tmp_path: Path) -> None:
    previous = _previous(tmp_path)
    run, result = _run(tmp_path, _flow("amount >= 10", max_error_records=1))
    assert result.status == "Failed"
    assert run.fused["Src"].copy is not None and run.fused["Src"].copy.copied
    assert pq.read_table(tmp_path / "out.parquet").equals(previous)
    assert _leftovers(tmp_path) == []


def test_a_run_cancelled_while_it_copies_leaves_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = _previous(tmp_path)
    csv = "id,name,amount,day,at,doc\n" + "".join(
        f"{i},n{i},{i % 100},2026-01-01,2026-01-01 00:00:00+00,{{}}\n" for i in range(50_000)
    )
    document = _flow("amount >= 10")
    holder: dict[str, FlowRun] = {}
    statement = FusedCopy.copy_statement

    def cancel_then_copy(self: FusedCopy, select: str) -> str:
        holder["run"].cancel()
        return statement(self, select)

    monkeypatch.setattr(FusedCopy, "copy_statement", cancel_then_copy)
    (tmp_path / "in.csv").write_text(csv)
    run = FlowRun(flow_from_dict(document), plugin_registry(), RunContext(base_dir=tmp_path, run_id="r"))
    holder["run"] = run
    result = run.start().wait(timeout=60)
    assert result.status == "Canceled"
    assert pq.read_table(tmp_path / "out.parquet").equals(previous)
    assert _leftovers(tmp_path) == []


class _Copy:
    """The engine's side of a fused COPY, as the destination sees it."""

    copied = False

    @staticmethod
    def is_placeholder(batch: pa.RecordBatch) -> bool:
        return FusedCopy.is_placeholder(batch)


def _destination(folder: Path) -> tuple[ParquetFileDestination, _Copy, Path]:
    context = StageContext(stage_name="Out", base_dir=folder, run_id="r")
    destination = ParquetFileDestination(ParquetFileDestinationConfig(path="out.parquet"), context)
    destination.open()
    offered = destination.copy_target()
    assert offered is not None
    temp, options = offered
    copy = _Copy()
    destination.take_copy(copy)
    con = duckdb.connect()
    con.execute(f"COPY (SELECT range AS id FROM range(3)) TO '{temp}' ({options})")
    con.close()
    copy.copied = True
    return destination, copy, temp


def test_records_the_copy_left_to_the_engine_and_that_survive_are_added_to_the_file(tmp_path: Path) -> None:
    destination, _, _ = _destination(tmp_path)
    placeholder = pa.RecordBatch.from_arrays(
        [pa.nulls(3)], schema=pa.schema([pa.field("id", pa.null())], metadata={b"flowport.fused_copy": b"1"})
    )
    assert destination.write(placeholder) is None
    destination.write(pa.record_batch({"id": pa.array([7], pa.int64())}))
    destination.commit()
    destination.close()
    assert pq.read_table(tmp_path / "out.parquet").column("id").to_pylist() == [0, 1, 2, 7]
    assert _leftovers(tmp_path) == []


def test_an_aborted_copy_leaves_the_previous_file_and_no_temporary_file(tmp_path: Path) -> None:
    previous = _previous(tmp_path)
    destination, _, temp = _destination(tmp_path)
    destination.write(pa.record_batch({"id": pa.array([7], pa.int64())}))
    assert temp.exists()
    destination.abort()
    destination.close()
    assert pq.read_table(tmp_path / "out.parquet").equals(previous)
    assert _leftovers(tmp_path) == []


def test_the_functions_taken_as_repeatable_without_a_listing_are_consistent_in_this_duckdb() -> None:
    # A fused COPY reads again the rows it could not settle: a function on the list that DuckDB does
    # not call CONSISTENT would let a second read find other rows.
    con = duckdb.connect(":memory:")
    stability = dict(
        con.execute(
            "SELECT function_name, bool_and(coalesce(stability = 'CONSISTENT', false)) "
            "FROM duckdb_functions() GROUP BY function_name"
        ).fetchall()
    )
    assert {name: stability.get(name) for name in KNOWN_CONSISTENT} == dict.fromkeys(KNOWN_CONSISTENT, True)


@pytest.mark.parametrize(
    ("condition", "copied"),
    [
        ("lower(name) <> 'beta' AND amount >= 10", True),  # on the list
        ("sqrt(amount) >= sqrt(10)", True),  # not on it, CONSISTENT in DuckDB's listing
        ("amount >= 10 AND now() > TIMESTAMP '2000-01-01'", False),  # the same within one query only
    ],
)
def test_a_condition_is_copied_only_when_every_function_it_calls_repeats(
    tmp_path: Path, condition: str, copied: bool
) -> None:
    run, result = _run(tmp_path, _flow(condition))
    assert result.status == "Complete", result.error
    assert (run.fused["Src"].copy is not None) is copied
    assert pq.read_table(tmp_path / "out.parquet").column("id").to_pylist() == [1, 3, 6, 11]


@pytest.mark.parametrize(("length", "true"), [(0, 0), (1, 0), (1, 1), (8, 8), (13, 5), (13, 13), (1000, 999)])
def test_the_verdict_of_a_placeholder_is_true_on_its_prefix_only(length: int, true: int) -> None:
    verdict = _true_prefix(length, true)
    assert verdict.null_count == 0
    assert verdict.to_pylist() == [True] * true + [False] * (length - true)
