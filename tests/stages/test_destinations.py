"""CSV, JSON and Parquet file destinations and Trash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from flowport.errors import StageError
from flowport.plugins.contract import ROW_ID
from flowport.stages.destinations.trash import Trash
from flowport.stages.files.csv_destination import CsvFileDestination
from flowport.stages.files.json_destination import JsonFileDestination
from flowport.stages.files.parquet_destination import ParquetFileDestination

from .conftest import Make

CUSTOMER = pa.struct([("name", pa.string()), ("address", pa.struct([("city", pa.string())]))])


def people(ids: list[int]) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "id": pa.array(ids, pa.int64()),
            "name": [f"p{i}" for i in ids],
            "customer": pa.array([{"name": f"c{i}", "address": {"city": "Oslo"}} for i in ids], CUSTOMER),
            ROW_ID: pa.array([1000 + i for i in ids], pa.int64()),
        }
    )


def leftovers(directory: Path) -> list[str]:
    """Every file in ``directory`` (temporary files included)."""
    return sorted(p.name for p in directory.iterdir())


ALL = [
    (CsvFileDestination, {}),
    (JsonFileDestination, {"format": "jsonl"}),
    (JsonFileDestination, {"format": "array"}),
    (ParquetFileDestination, {}),
]


@pytest.mark.parametrize(("plugin", "extra"), ALL)
def test_nothing_is_visible_before_commit(
    make: Make, tmp_path: Path, plugin: Any, extra: dict[str, Any]
) -> None:
    stage = make(plugin, path="out/sub/result.dat", **extra)
    stage.open()
    stage.write(people([1, 2]))
    target = tmp_path / "out" / "sub" / "result.dat"
    assert not target.exists()
    # Data goes to a hidden temporary file beside the target, named after the run
    # (a streaming writer may not have created it yet): nothing else appears.
    assert set(leftovers(target.parent)) <= {".result.dat.r1.tmp"}
    stage.commit()
    stage.close()
    assert target.exists()
    assert leftovers(target.parent) == ["result.dat"]


@pytest.mark.parametrize(("plugin", "extra"), ALL)
def test_abort_leaves_the_previous_target_untouched(
    make: Make, tmp_path: Path, plugin: Any, extra: dict[str, Any]
) -> None:
    target = tmp_path / "result.dat"
    target.write_bytes(b"previous run")
    stage = make(plugin, path="result.dat", **extra)
    stage.open()
    stage.write(people([1, 2, 3]))
    stage.abort()
    stage.close()
    assert target.read_bytes() == b"previous run"
    assert leftovers(tmp_path) == ["result.dat"]


@pytest.mark.parametrize(("plugin", "extra"), ALL)
def test_close_without_commit_leaves_no_file(
    make: Make, tmp_path: Path, plugin: Any, extra: dict[str, Any]
) -> None:
    stage = make(plugin, path="result.dat", **extra)
    stage.open()
    stage.write(people([1]))
    stage.close()  # the run failed before commit
    assert leftovers(tmp_path) == []


def test_csv_content_header_delimiter_and_nested_values(make: Make, tmp_path: Path) -> None:
    stage = make(CsvFileDestination, path="o.csv", delimiter=";")
    stage.open()
    stage.write(people([1]))
    stage.write(people([2]))
    stage.commit()
    lines = (tmp_path / "o.csv").read_text().splitlines()
    # Hidden columns are not written; structs are written as JSON text.
    assert lines[0] == '"id";"name";"customer"'
    assert lines[1] == '1;"p1";"{""name"":""c1"",""address"":{""city"":""Oslo""}}"'
    assert len(lines) == 3

    stage = make(CsvFileDestination, path="n.csv", header=False)
    stage.open()
    stage.write(pa.record_batch({"a": [1, None], "b": ["x,y", "z"]}))
    stage.commit()
    assert (tmp_path / "n.csv").read_text().splitlines() == ['1,"x,y"', ',"z"']


def test_json_lines_and_nested_objects(make: Make, tmp_path: Path) -> None:
    stage = make(JsonFileDestination, path="o.jsonl")
    stage.open()
    stage.write(people([1, 2]))
    stage.write(people([3]))
    stage.commit()
    text = (tmp_path / "o.jsonl").read_text()
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 3
    assert json.loads(lines[0]) == {
        "id": 1,
        "name": "p1",
        "customer": {"name": "c1", "address": {"city": "Oslo"}},
    }
    assert [json.loads(line)["id"] for line in lines] == [1, 2, 3]


def test_json_array(make: Make, tmp_path: Path) -> None:
    stage = make(JsonFileDestination, path="o.json", format="array")
    stage.open()
    stage.write(people([1, 2]))
    stage.write(people([]))
    stage.write(people([3]))
    stage.commit()
    data = json.loads((tmp_path / "o.json").read_text())
    assert [row["id"] for row in data] == [1, 2, 3]
    assert data[2]["customer"]["address"] == {"city": "Oslo"}
    assert ROW_ID not in data[0]


def test_json_array_without_records_is_an_empty_array(make: Make, tmp_path: Path) -> None:
    stage = make(JsonFileDestination, path="o.json", format="array")
    stage.open()
    stage.commit()
    assert json.loads((tmp_path / "o.json").read_text()) == []


def test_parquet_roundtrip_with_compression(make: Make, tmp_path: Path) -> None:
    stage = make(ParquetFileDestination, path="o.parquet", compression="zstd")
    stage.open()
    stage.write(people([1, 2]))
    stage.write(people([3]))
    stage.commit()
    table = pq.read_table(tmp_path / "o.parquet")
    assert table.column_names == ["id", "name", "customer"]
    assert table.column("id").to_pylist() == [1, 2, 3]
    assert pq.ParquetFile(tmp_path / "o.parquet").metadata.row_group(0).column(0).compression == "ZSTD"


def test_later_batches_are_cast_to_the_first_schema_when_safe(make: Make, tmp_path: Path) -> None:
    stage = make(ParquetFileDestination, path="o.parquet")
    stage.open()
    stage.write(pa.record_batch({"a": pa.array([1], pa.int64()), "b": ["x"]}))
    # Other column order, narrower integer type, missing column: all safe.
    stage.write(pa.record_batch({"b": ["y"], "a": pa.array([2], pa.int32())}))
    stage.write(pa.record_batch({"a": pa.array([3], pa.int8())}))
    stage.commit()
    assert pq.read_table(tmp_path / "o.parquet").to_pydict() == {"a": [1, 2, 3], "b": ["x", "y", None]}


def test_incompatible_later_batch_is_a_stage_error_naming_the_column(make: Make) -> None:
    stage = make(ParquetFileDestination, path="o.parquet")
    stage.open()
    stage.write(pa.record_batch({"a": pa.array([1], pa.int64())}))
    with pytest.raises(StageError, match="column 'a'"):
        stage.write(pa.record_batch({"a": ["not a number"]}))
    with pytest.raises(StageError, match="column 'extra'"):
        stage.write(pa.record_batch({"a": [2], "extra": [1]}))
    stage.abort()


def test_destination_configs_are_validated() -> None:
    with pytest.raises(ValidationError):
        ParquetFileDestination.config_model(path="o.parquet", compression="lzma")
    with pytest.raises(ValidationError):
        JsonFileDestination.config_model(path="o.json", format="auto")
    with pytest.raises(ValidationError):
        CsvFileDestination.config_model(path="o.csv", delimiter="ab")
    with pytest.raises(ValidationError):
        CsvFileDestination.config_model(path="o.csv", header="maybe")
    with pytest.raises(ValidationError):
        CsvFileDestination.config_model(path="o.csv", mode="append")
    with pytest.raises(ValidationError):
        CsvFileDestination.config_model()


def test_trash_discards_everything(make: Make, tmp_path: Path) -> None:
    stage = make(Trash)
    stage.open()
    assert stage.write(people([1, 2])) is None
    stage.commit()
    stage.abort()
    assert leftovers(tmp_path) == []
    with pytest.raises(ValidationError):
        Trash.config_model(path="x")
