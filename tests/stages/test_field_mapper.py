"""Field Mapper and the SQL type mapping it uses."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest
from pydantic import ValidationError

from flowport.plugins.contract import ROW_ID
from flowport.stages.processors.field_mapper import FieldMapper
from flowport.stages.sqltypes import SQL_TYPE_METADATA_KEY, sql_type_to_duckdb

from .conftest import Make, error_rows


@pytest.mark.parametrize(
    ("text", "duckdb_type"),
    [
        ("string", "VARCHAR"),
        ("TEXT", "VARCHAR"),
        ("varchar", "VARCHAR"),
        ("character varying(40)", "VARCHAR"),
        ("Character  Varying (40)", "VARCHAR"),
        ("integer", "INTEGER"),
        ("int", "INTEGER"),
        ("bigint", "BIGINT"),
        ("smallint", "SMALLINT"),
        ("double", "DOUBLE"),
        ("double precision", "DOUBLE"),
        ("float", "DOUBLE"),
        ("real", "REAL"),
        ("numeric(10,2)", "DECIMAL(10,2)"),
        ("decimal( 12 , 4 )", "DECIMAL(12,4)"),
        ("numeric(5)", "DECIMAL(5,0)"),
        ("numeric", "DECIMAL(38,10)"),
        ("boolean", "BOOLEAN"),
        ("bool", "BOOLEAN"),
        ("date", "DATE"),
        ("timestamp", "TIMESTAMP"),
        ("timestamp without time zone", "TIMESTAMP"),
        ("timestamp with time zone", "TIMESTAMPTZ"),
        ("timestamptz", "TIMESTAMPTZ"),
        ("timestamp(3) with time zone", "TIMESTAMPTZ"),
        ("json", "JSON"),
    ],
)
def test_sql_type_to_duckdb(text: str, duckdb_type: str) -> None:
    assert sql_type_to_duckdb(text) == duckdb_type


@pytest.mark.parametrize(
    "text", ["", "strnig", "numeric(40,2)", "numeric(4,6)", "int; DROP TABLE x", "varchar(x)"]
)
def test_sql_type_to_duckdb_rejects_unknown_types(text: str) -> None:
    with pytest.raises(ValueError, match="type"):
        sql_type_to_duckdb(text)


def test_config_validates_types_keys_and_targets() -> None:
    model = FieldMapper.config_model
    with pytest.raises(ValidationError, match="unknown type 'intgr'"):
        model(fields=[{"source": "a", "type": "intgr"}])
    with pytest.raises(ValidationError):
        model(fields=[{"source": "a", "targett": "b"}])  # unknown key
    with pytest.raises(ValidationError):
        model(fields=[{"source": "a"}], extra=1)  # unknown key on the stage
    with pytest.raises(ValidationError):
        model(fields="a,b")  # wrong type
    with pytest.raises(ValidationError):
        model(fields=[])
    with pytest.raises(ValidationError, match="more than once"):
        model(fields=[{"source": "a__b"}, {"source": "x", "target": "a_b"}])
    with pytest.raises(ValidationError, match="belong to the engine"):
        model(fields=[{"source": "a", "target": "__fp_x"}])
    assert model(fields=[{"source": "a", "type": ""}]).fields[0].type is None


def batch() -> pa.RecordBatch:
    company = pa.array(
        [
            {"name": "Acme", "city": {"zip": "0150"}},
            {"name": "Beta", "city": None},
            None,
            {"name": "Dyn", "city": None},
        ],
        pa.struct([("name", pa.string()), ("city", pa.struct([("zip", pa.string())]))]),
    )
    return pa.record_batch(
        {
            "id": ["1", "2", "3", "4"],
            "total": ["10.50", "abc", None, "3"],
            "paid": ["true", "false", "yes", "no"],
            "company": company,
            "ignored": [1, 2, 3, 4],
            ROW_ID: pa.array([100, 101, 102, 103], pa.int64()),
        }
    )


def test_maps_casts_renames_and_unnests(make: Make) -> None:
    mapper = make(
        FieldMapper,
        fields=[
            {"source": "id", "type": "bigint"},
            {"source": "company__name", "type": "varchar(20)"},
            {"source": "company__city__zip"},
            {"source": "paid", "target": "is_paid", "type": "boolean"},
        ],
    )
    mapper.open()
    out = mapper.process(batch())
    mapper.close()
    table = out.records
    assert table.column_names == ["id", "company_name", "company_city_zip", "is_paid", ROW_ID]
    assert table.schema.field("id").type == pa.int64()
    assert table.to_pydict() == {
        "id": [1, 2, 3, 4],
        "company_name": ["Acme", "Beta", None, "Dyn"],
        "company_city_zip": ["0150", None, None, None],
        "is_paid": [True, False, True, False],
        ROW_ID: [100, 101, 102, 103],
    }
    # The declared type text is kept for SQL destinations; untyped fields carry none.
    assert table.schema.field("company_name").metadata == {SQL_TYPE_METADATA_KEY: b"varchar(20)"}
    assert table.schema.field("company_city_zip").metadata is None
    assert out.errors is None


def test_values_that_do_not_convert_become_error_records(make: Make) -> None:
    mapper = make(FieldMapper, fields=[{"source": "id"}, {"source": "total", "type": "numeric(10,2)"}])
    mapper.open()
    out = mapper.process(batch())
    # The good records go on, a NULL source is not an error.
    assert out.records.to_pydict() == {
        "id": ["1", "3", "4"],
        "total": [Decimal("10.50"), None, Decimal("3.00")],
        ROW_ID: [100, 102, 103],
    }
    assert out.records.schema.field("total").type == pa.decimal128(10, 2)
    # The error record is the input record as the stage saw it, lineage included.
    rows = error_rows([out.errors])
    assert len(rows) == 1
    assert rows[0]["id"] == "2" and rows[0]["ignored"] == 2 and rows[0][ROW_ID] == 101
    assert rows[0]["code"] == "FIELD_MAPPER_CAST_FAILED"
    assert rows[0]["message"] == "field 'total': cannot convert 'abc' to DECIMAL(10,2)"


def test_every_failing_field_is_named(make: Make) -> None:
    data = pa.record_batch({"a": ["x", "1"], "b": ["2024-13-01", "2024-01-01"]})
    mapper = make(FieldMapper, fields=[{"source": "a", "type": "int"}, {"source": "b", "type": "date"}])
    out = mapper.process(data)
    assert out.records.to_pydict() == {"a": [1], "b": [dt.date(2024, 1, 1)]}
    assert out.errors.messages.to_pylist() == [
        "field 'a': cannot convert 'x' to INTEGER; field 'b': cannot convert '2024-13-01' to DATE"
    ]


def test_flat_column_named_like_a_path_wins(make: Make) -> None:
    data = pa.record_batch(
        {
            "company__name": ["flat"],
            "company": pa.array([{"name": "nested"}], pa.struct([("name", pa.string())])),
        }
    )
    out = make(FieldMapper, fields=[{"source": "company__name"}]).process(data)
    assert out.records.to_pydict() == {"company_name": ["flat"]}


def test_missing_source_gives_nulls(make: Make) -> None:
    mapper = make(
        FieldMapper, fields=[{"source": "id"}, {"source": "nope"}, {"source": "company__nope", "type": "int"}]
    )
    out = mapper.process(batch())
    assert out.records.column("nope").to_pylist() == [None] * 4
    assert out.records.schema.field("company_nope").type == pa.int32()
    assert out.records.column("company_nope").null_count == 4
    assert out.errors is None


def test_hidden_columns_pass_through_even_when_only_missing_fields_are_mapped(make: Make) -> None:
    out = make(FieldMapper, fields=[{"source": "gone", "type": "date"}]).process(batch())
    assert out.records.column_names == ["gone", ROW_ID]
    assert out.records.column(ROW_ID).to_pylist() == [100, 101, 102, 103]


def test_timestamps_and_json(make: Make) -> None:
    data = pa.record_batch(
        {
            "at": ["2024-05-01 10:00:00+02", "not a time"],
            "doc": ['{"a": [1, 2]}', "{broken"],
        }
    )
    out = make(
        FieldMapper,
        fields=[{"source": "at", "type": "timestamp with time zone"}, {"source": "doc", "type": "json"}],
    ).process(data)
    assert out.records.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert out.records.column("at").to_pylist()[0] == dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.UTC)
    assert out.records.column("doc").to_pylist() == ['{"a": [1, 2]}']
    assert out.errors.messages.to_pylist() == [
        "field 'at': cannot convert 'not a time' to TIMESTAMPTZ; "
        "field 'doc': cannot convert '{broken' to JSON"
    ]
