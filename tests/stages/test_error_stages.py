"""Error stages: Discard and Write to File."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import ValidationError

from flowport.stages.errors.discard import Discard
from flowport.stages.errors.write_to_file import WriteToFile

from .conftest import Make

RECORD = pa.struct([("id", pa.string()), ("company", pa.struct([("name", pa.string())]))])


def errors(n: int, code: str = "FIELD_MAPPER_CAST_FAILED") -> pa.Table:
    return pa.table(
        {
            "stage": ["Mapper_01"] * n,
            "code": [code] * n,
            "message": [f"field 'total': cannot convert 'x{i}' to INTEGER" for i in range(n)],
            "policy": ["ORIGINAL_RECORD"] * n,
            "time": pa.array(
                [dt.datetime(2024, 5, 1, 12, 30, i, 250000, tzinfo=dt.UTC) for i in range(n)],
                pa.timestamp("us", tz="UTC"),
            ),
            "record": pa.array([{"id": str(i), "company": {"name": f"c{i}"}} for i in range(n)], RECORD),
        }
    )


def test_write_to_file_writes_json_lines_on_commit(make: Make, tmp_path: Path) -> None:
    stage = make(WriteToFile, directory="errs/flow1")
    stage.open()
    stage.write(errors(2))
    stage.write(errors(1, code="FILTER_EXPRESSION_FAILED"))
    target = tmp_path / "errs" / "flow1" / "errors-r1.jsonl"
    assert not target.exists()
    stage.commit()
    stage.close()
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert lines[0] == {
        "stage": "Mapper_01",
        "code": "FIELD_MAPPER_CAST_FAILED",
        "message": "field 'total': cannot convert 'x0' to INTEGER",
        "policy": "ORIGINAL_RECORD",
        "time": "2024-05-01T12:30:00.250000Z",
        "record": {"id": "0", "company": {"name": "c0"}},
    }
    assert [line["code"] for line in lines] == ["FIELD_MAPPER_CAST_FAILED"] * 2 + ["FILTER_EXPRESSION_FAILED"]
    assert list(lines[1]) == ["stage", "code", "message", "policy", "time", "record"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["errors-r1.jsonl"]


def test_write_to_file_prefix_and_no_file_without_errors(make: Make, tmp_path: Path) -> None:
    stage = make(WriteToFile, directory=str(tmp_path / "abs"), file_prefix="rejects")
    stage.open()
    stage.write(errors(0))
    stage.commit()
    stage.close()
    assert not (tmp_path / "abs" / "rejects-r1.jsonl").exists()

    stage = make(WriteToFile, directory=str(tmp_path / "abs"), file_prefix="rejects")
    stage.open()
    stage.write(errors(3))
    stage.commit()
    stage.close()
    assert len((tmp_path / "abs" / "rejects-r1.jsonl").read_text().splitlines()) == 3


def test_write_to_file_closed_without_commit_leaves_nothing(make: Make, tmp_path: Path) -> None:
    stage = make(WriteToFile, directory="errs")
    stage.open()
    stage.write(errors(2))
    stage.close()
    assert list((tmp_path / "errs").iterdir()) == []


def test_write_to_file_config() -> None:
    with pytest.raises(ValidationError):
        WriteToFile.config_model()  # directory is required
    with pytest.raises(ValidationError):
        WriteToFile.config_model(directory="e", file_prefix="a/b")
    with pytest.raises(ValidationError):
        WriteToFile.config_model(directory="e", format="csv")
    assert WriteToFile.config_model(directory="e").file_prefix == "errors"


def test_discard_accepts_and_drops(make: Make, tmp_path: Path) -> None:
    stage = make(Discard)
    stage.open()
    stage.write(errors(5))
    stage.commit()
    stage.close()
    assert list(tmp_path.iterdir()) == []
