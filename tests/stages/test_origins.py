"""CSV, JSON and Parquet file origins."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from flowport.errors import StageError
from flowport.stages.files import csv_origin
from flowport.stages.files.csv_origin import CsvFileOrigin
from flowport.stages.files.json_origin import JsonFileOrigin
from flowport.stages.files.parquet_origin import ParquetFileOrigin

from .conftest import Make, error_rows, run_origin, table_of

ORDERS = (
    "id,customer,total,status,note\n"
    "1,ann,10.50,paid,first\n"
    "2,bob,,open,\n"
    "3,cid,7\n"
    "4,dan,1.25,paid,ok,extra\n"
    '5,eve,3.00,paid,"has, comma"\n'
    "6,fay,4.00,open,last\n"
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- CSV ------------------------------------------------------------------


def test_csv_reads_every_column_as_string_by_default(make: Make, tmp_path: Path) -> None:
    write(tmp_path / "orders.csv", "id,total,day\n1,10.5,2024-01-02\n2,,2024-01-03\n")
    batches, errors = run_origin(make(CsvFileOrigin, path="orders.csv"))
    table = table_of(batches)
    assert table.schema == pa.schema([("id", pa.string()), ("total", pa.string()), ("day", pa.string())])
    # An empty field is NULL (DuckDB's default), not an empty string.
    assert table.to_pydict() == {
        "id": ["1", "2"],
        "total": ["10.5", None],
        "day": ["2024-01-02", "2024-01-03"],
    }
    assert errors == []


def test_csv_malformed_rows_become_error_records_and_the_others_flow_on(make: Make, tmp_path: Path) -> None:
    path = write(tmp_path / "in" / "orders.csv", ORDERS)
    batches, errors = run_origin(make(CsvFileOrigin, path="in/orders.csv"))
    table = table_of(batches)
    assert table.column("id").to_pylist() == ["1", "2", "5", "6"]
    assert table.column("note").to_pylist() == ["first", None, "has, comma", "last"]
    rows = error_rows(errors)
    assert [(r["line"], r["raw"]) for r in rows] == [(4, "3,cid,7"), (5, "4,dan,1.25,paid,ok,extra")]
    assert {r["code"] for r in rows} == {"CSV_MALFORMED_ROW"}
    assert {r["file"] for r in rows} == {str(path)}
    assert rows[0]["message"] == "orders.csv line 4: expected 5 columns, found 3"
    assert rows[1]["message"] == "orders.csv line 5: expected 5 columns, found 6"
    assert errors[0].records.column_names == ["file", "line", "raw"]


def test_csv_unterminated_quote_does_not_abort_the_read(make: Make, tmp_path: Path) -> None:
    write(tmp_path / "q.csv", 'a,b\n1,x\n2,"bad"junk\n3,y\n4,"never closed\n')
    batches, errors = run_origin(make(CsvFileOrigin, path="q.csv"))
    assert table_of(batches).column("a").to_pylist() == ["1", "3"]
    rows = error_rows(errors)
    assert [r["line"] for r in rows] == [3, 5]
    assert rows[0]["raw"] == '2,"bad"junk'
    assert rows[1]["message"].startswith("q.csv line 5: ")


def test_csv_without_header_uses_configured_or_default_names(make: Make, tmp_path: Path) -> None:
    write(tmp_path / "n.csv", "1;a\n2;b;c\n3;c\n")
    batches, errors = run_origin(
        make(CsvFileOrigin, path="n.csv", header=False, delimiter=";", columns=["k", "v"])
    )
    assert table_of(batches).to_pydict() == {"k": ["1", "3"], "v": ["a", "c"]}
    assert [(r["line"], r["message"]) for r in error_rows(errors)] == [
        (2, "n.csv line 2: expected 2 columns, found 3")
    ]

    batches, _ = run_origin(make(CsvFileOrigin, path="n.csv", header=False, delimiter=";"))
    assert table_of(batches).column_names == ["column0", "column1"]


def test_csv_custom_quote_character(make: Make, tmp_path: Path) -> None:
    write(tmp_path / "q.csv", "a,b\n'x, y',2\n")
    batches, _ = run_origin(make(CsvFileOrigin, path="q.csv", quote="'"))
    assert table_of(batches).to_pydict() == {"a": ["x, y"], "b": ["2"]}


def test_csv_infer_types_uses_duckdb_sniffing(make: Make, tmp_path: Path) -> None:
    write(
        tmp_path / "t.csv",
        "id,price,day,flag,name\n1,1.5,2024-01-02,true,a\n2,2.25,2024-02-03,false,b\n3,,2024-03-04,true,\n",
    )
    batches, errors = run_origin(make(CsvFileOrigin, path="t.csv", infer_types=True))
    table = table_of(batches)
    assert [f.type for f in table.schema] == [pa.int64(), pa.float64(), pa.date32(), pa.bool_(), pa.string()]
    assert table.column("day").to_pylist()[0] == dt.date(2024, 1, 2)
    assert table.column("price").to_pylist() == [1.5, 2.25, None]
    assert errors == []


def test_csv_infer_types_sniffs_past_malformed_rows_and_reports_late_bad_values(
    make: Make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tiny sample makes the value after it a "late" one that does not fit the sniffed type.
    monkeypatch.setattr(csv_origin, "_SAMPLE_ROWS", 3)
    write(tmp_path / "t.csv", "id,qty\n1,10\n2\n3,30\n4,40\n5,oops\n6,60\n")
    batches, errors = run_origin(make(CsvFileOrigin, path="t.csv", infer_types=True))
    table = table_of(batches)
    assert table.schema.field("qty").type == pa.int64()
    assert table.column("id").to_pylist() == [1, 3, 4, 6]
    rows = error_rows(errors)
    assert [(r["line"], r["raw"]) for r in rows] == [(3, "2"), (6, "5,oops")]
    assert "column 'qty'" in rows[1]["message"] and "oops" in rows[1]["message"]


def test_csv_glob_reads_every_matching_file_in_order(make: Make, tmp_path: Path) -> None:
    write(tmp_path / "d" / "b.csv", "k,v\n3,c\n")
    write(tmp_path / "d" / "a.csv", "k,v\n1,a\n2,b\n")
    write(tmp_path / "d" / "empty.csv", "")
    write(tmp_path / "d" / "other.txt", "k,v\n9,z\n")
    batches, _ = run_origin(make(CsvFileOrigin, path="d/*.csv"))
    assert table_of(batches).column("k").to_pylist() == ["1", "2", "3"]


def test_csv_files_with_different_headers_fail(make: Make, tmp_path: Path) -> None:
    write(tmp_path / "d" / "a.csv", "k,v\n1,a\n")
    write(tmp_path / "d" / "b.csv", "k,w\n2,b\n")
    with pytest.raises(StageError, match="same header"):
        run_origin(make(CsvFileOrigin, path="d/*.csv"))


def test_csv_no_matching_file_is_a_stage_error(make: Make) -> None:
    with pytest.raises(StageError) as info:
        run_origin(make(CsvFileOrigin, path="x/*.csv"))
    assert info.value.stage == "X"
    assert "no file matches 'x/*.csv'" in info.value.message


def test_csv_streams_in_batches_of_at_most_batch_size(make: Make, tmp_path: Path) -> None:
    write(tmp_path / "big.csv", "n\n" + "".join(f"{i}\n" for i in range(5000)))
    batches, _ = run_origin(make(CsvFileOrigin, path="big.csv", context={"batch_size": 1000}))
    assert len(batches) >= 5
    assert all(b.num_rows <= 1000 for b in batches)
    assert table_of(batches).column("n").to_pylist() == [str(i) for i in range(5000)]


def test_csv_preview_limit_cuts_inside_a_batch(make: Make, tmp_path: Path) -> None:
    write(tmp_path / "big.csv", "n\n" + "".join(f"{i}\n" for i in range(5000)))
    batches, _ = run_origin(make(CsvFileOrigin, path="big.csv", context={"record_limit": 3, "preview": True}))
    assert [b.num_rows for b in batches] == [3]
    assert batches[0].column(0).to_pylist() == ["0", "1", "2"]


def test_csv_preview_stops_at_record_limit_and_still_shows_malformed_rows(make: Make, tmp_path: Path) -> None:
    write(tmp_path / "orders.csv", ORDERS)
    batches, errors = run_origin(
        make(CsvFileOrigin, path="orders.csv", context={"record_limit": 2, "preview": True, "batch_size": 1})
    )
    assert table_of(batches).column("id").to_pylist() == ["1", "2"]
    # DuckDB writes malformed rows down only when its scan ends: the origin reads on (a bounded
    # amount) past the limit so that a small file's bad rows show in the preview.
    assert [r["line"] for r in error_rows(errors)] == [4, 5]


def test_csv_stops_when_cancelled(make: Make, tmp_path: Path) -> None:
    write(tmp_path / "big.csv", "n\n" + "".join(f"{i}\n" for i in range(3000)))
    origin = make(CsvFileOrigin, path="big.csv", context={"batch_size": 1000})
    origin.open()
    stream = origin.batches()
    first = next(stream)
    origin.context.cancel_event.set()
    rest = list(stream)
    origin.close()
    assert first.num_rows == 1000
    assert rest == []


def test_csv_config_is_validated() -> None:
    model = CsvFileOrigin.config_model
    with pytest.raises(ValidationError):
        model(path="a.csv", delimter=";")  # unknown key (typo)
    with pytest.raises(ValidationError):
        model(path="a.csv", header="sometimes")
    with pytest.raises(ValidationError):
        model(path="a.csv", delimiter=";;")
    with pytest.raises(ValidationError):
        model(path="a.csv", columns=["a", "b"])  # columns only without a header
    with pytest.raises(ValidationError):
        model()  # path is required
    assert model(path="a.csv").model_dump() == {
        "path": "a.csv",
        "delimiter": ",",
        "quote": '"',
        "header": True,
        "columns": None,
        "infer_types": False,
        "normalize_line_endings": None,
    }


# -- JSON -----------------------------------------------------------------


def test_json_lines_nested_objects_become_structs(make: Make, tmp_path: Path) -> None:
    lines = [{"id": 1, "company": {"name": "Acme", "city": "Oslo"}}, {"id": 2, "company": {"name": "Beta"}}]
    write(tmp_path / "c.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    batches, errors = run_origin(make(JsonFileOrigin, path="c.jsonl", format="jsonl"))
    table = table_of(batches)
    assert pa.types.is_struct(table.schema.field("company").type)
    assert table.to_pylist() == [
        {"id": 1, "company": {"name": "Acme", "city": "Oslo"}},
        {"id": 2, "company": {"name": "Beta", "city": None}},
    ]
    assert errors == []


@pytest.mark.parametrize("fmt", ["array", "auto"])
def test_json_array_files(make: Make, tmp_path: Path, fmt: str) -> None:
    write(tmp_path / "a.json", json.dumps([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]))
    batches, _ = run_origin(make(JsonFileOrigin, path="a.json", format=fmt))
    assert table_of(batches).to_pydict() == {"a": [1, 2], "b": ["x", "y"]}


def test_json_glob_and_preview_limit(make: Make, tmp_path: Path) -> None:
    for part in range(3):
        write(
            tmp_path / "j" / f"p{part}.jsonl",
            "".join(json.dumps({"n": part * 10 + i}) + "\n" for i in range(10)),
        )
    batches, _ = run_origin(make(JsonFileOrigin, path="j/*.jsonl"))
    assert sorted(table_of(batches).column("n").to_pylist()) == list(range(30))
    batches, _ = run_origin(
        make(JsonFileOrigin, path="j/*.jsonl", context={"record_limit": 4, "batch_size": 3})
    )
    assert [b.num_rows for b in batches] == [3, 1]


def test_json_malformed_file_is_a_stage_error_naming_the_file(make: Make, tmp_path: Path) -> None:
    write(tmp_path / "bad.jsonl", '{"a": 1}\n{"a": 2, oops}\n')
    with pytest.raises(StageError) as info:
        run_origin(make(JsonFileOrigin, path="bad.jsonl"))
    assert "bad.jsonl" in info.value.message
    assert "Malformed JSON" in info.value.message


def test_json_format_must_be_known() -> None:
    with pytest.raises(ValidationError):
        JsonFileOrigin.config_model(path="a.json", format="xml")


# -- Parquet ----------------------------------------------------------------


def test_parquet_reads_files_and_selected_columns(make: Make, tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    pq.write_table(
        pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [1.0, 2.0, 3.0]}), tmp_path / "p" / "1.parquet"
    )
    pq.write_table(pa.table({"a": [4], "b": ["w"], "c": [4.0]}), tmp_path / "p" / "2.parquet")
    batches, errors = run_origin(make(ParquetFileOrigin, path="p/*.parquet", columns=["b", "a"]))
    assert table_of(batches).to_pydict() == {"b": ["x", "y", "z", "w"], "a": [1, 2, 3, 4]}
    assert errors == []
    batches, _ = run_origin(
        make(ParquetFileOrigin, path="p/*.parquet", context={"batch_size": 2, "record_limit": 3})
    )
    assert [b.num_rows for b in batches] == [2, 1]
    assert batches[0].schema.names == ["a", "b", "c"]


def test_parquet_missing_column_is_a_stage_error(make: Make, tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": [1]}), tmp_path / "one.parquet")
    with pytest.raises(StageError, match="no column 'nope'"):
        run_origin(make(ParquetFileOrigin, path="one.parquet", columns=["a", "nope"]))
    with pytest.raises(StageError, match="no file matches"):
        run_origin(make(ParquetFileOrigin, path="none/*.parquet"))
