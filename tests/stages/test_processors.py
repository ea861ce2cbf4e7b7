"""Filter, Expression Evaluator, SQL Query and Record Deduplicator."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pydantic import ValidationError

from flowport.errors import StageError
from flowport.plugins.contract import ROW_ID
from flowport.stages.processors.dedupe import Dedupe
from flowport.stages.processors.expression import Expression
from flowport.stages.processors.filter import Filter
from flowport.stages.processors.sql import SqlProcessor

from .conftest import Make, error_rows


def orders() -> pa.RecordBatch:
    return pa.record_batch(
        {
            "id": pa.array([1, 2, 3, 4, 5], pa.int32()),
            "status": ["paid", "open", "paid", None, "paid"],
            "amount": ["10", "20", "x", "40", "50"],
            ROW_ID: pa.array([7, 8, 9, 10, 11], pa.int64()),
        }
    )


# -- Filter -----------------------------------------------------------------


def test_filter_keeps_true_and_drops_false_and_null(make: Make) -> None:
    stage = make(Filter, condition="status = 'paid'")
    stage.open()
    out = stage.process(orders())
    stage.close()
    assert out.records.column("id").to_pylist() == [1, 3, 5]
    # Records keep their Arrow types and the lineage column.
    assert out.records.schema == orders().schema
    assert out.records.column(ROW_ID).to_pylist() == [7, 9, 11]
    assert out.errors is None


def test_filter_isolates_only_the_rows_that_fail(make: Make) -> None:
    n = 1000
    amounts = [str(i) for i in range(n)]
    for bad in (3, 500, 998):
        amounts[bad] = f"bad{bad}"
    data = pa.record_batch({"n": list(range(n)), "amount": amounts})
    out = make(Filter, condition="CAST(amount AS INTEGER) % 2 = 0").process(data)
    kept = out.records.column("n").to_pylist()
    assert kept == [i for i in range(n) if i % 2 == 0 and i not in (500, 998)]
    rows = error_rows([out.errors])
    assert [r["n"] for r in rows] == [3, 500, 998]
    assert {r["code"] for r in rows} == {"FILTER_EXPRESSION_FAILED"}
    assert "Could not convert string 'bad500'" in rows[1]["message"]
    assert "LINE 1" not in rows[1]["message"]


def test_filter_error_records_are_the_input_records(make: Make) -> None:
    out = make(Filter, condition="CAST(amount AS INTEGER) > 15").process(orders())
    assert out.records.column("id").to_pylist() == [2, 4, 5]
    assert out.errors.records.to_pylist() == [{"id": 3, "status": "paid", "amount": "x", ROW_ID: 9}]


@pytest.mark.parametrize("condition", ["nope > 1", "status = = 'x'"])
def test_filter_invalid_condition_is_a_stage_error(make: Make, condition: str) -> None:
    with pytest.raises(StageError, match="invalid condition"):
        make(Filter, condition=condition).process(orders())


def test_filter_condition_must_be_boolean(make: Make) -> None:
    with pytest.raises(StageError, match="not a boolean"):
        make(Filter, condition="amount").process(orders())


# -- Expression ---------------------------------------------------------------


def test_expression_adds_and_replaces_fields_in_order(make: Make) -> None:
    stage = make(
        Expression,
        fields=[
            {"name": "label", "expression": "upper(status)"},
            {"name": "id", "expression": "id * 10"},
            {"name": "id_plus", "expression": "id + 1"},  # sees the replaced id
        ],
    )
    stage.open()
    out = stage.process(orders().slice(0, 2))
    stage.close()
    table = out.records
    assert table.column_names == ["id", "status", "amount", ROW_ID, "label", "id_plus"]
    assert table.to_pydict() == {
        "id": [10, 20],
        "status": ["paid", "open"],
        "amount": ["10", "20"],
        ROW_ID: [7, 8],
        "label": ["PAID", "OPEN"],
        "id_plus": [11, 21],
    }
    # Untouched columns keep their Arrow data exactly.
    assert table.schema.field("status") == orders().schema.field("status")


def test_expression_failing_rows_become_error_records(make: Make) -> None:
    out = make(Expression, fields=[{"name": "cents", "expression": "CAST(amount AS INTEGER) * 100"}]).process(
        orders()
    )
    assert out.records.column("id").to_pylist() == [1, 2, 4, 5]
    assert out.records.column("cents").to_pylist() == [1000, 2000, 4000, 5000]
    rows = error_rows([out.errors])
    assert [(r["id"], r[ROW_ID], r["code"]) for r in rows] == [(3, 9, "EXPRESSION_FAILED")]
    assert "Could not convert string 'x'" in rows[0]["message"]


def test_expression_every_row_failing(make: Make) -> None:
    data = pa.record_batch({"a": ["x", "y"]})
    out = make(Expression, fields=[{"name": "b", "expression": "CAST(a AS INTEGER)"}]).process(data)
    assert out.records is None or out.records.num_rows == 0
    assert out.errors.num_rows == 2


def test_expression_invalid_sql_and_config(make: Make) -> None:
    with pytest.raises(StageError, match="invalid expression"):
        make(Expression, fields=[{"name": "b", "expression": "no_such_function(id)"}]).process(orders())
    with pytest.raises(ValidationError):
        Expression.config_model(fields=[{"name": "b"}])
    with pytest.raises(ValidationError):
        Expression.config_model(fields=[{"name": "__fp_rid", "expression": "1"}])


# -- SQL Query ----------------------------------------------------------------


def test_sql_per_batch(make: Make) -> None:
    stage = make(SqlProcessor, query="SELECT id, upper(status) AS s FROM input WHERE id > 2", per_batch=True)
    stage.open()
    out = stage.process(orders())
    assert list(stage.finish_batches()) == []
    stage.close()
    assert out.records.to_pydict() == {"id": [3, 4, 5], "s": ["PAID", None, "PAID"]}


def test_sql_whole_input_runs_once_in_finish(make: Make) -> None:
    stage = make(
        SqlProcessor,
        query="SELECT status, count(*) AS n, sum(id) AS ids FROM input "
        "GROUP BY status ORDER BY status NULLS LAST",
    )
    stage.open()
    first, second = stage.process(orders()), stage.process(orders().slice(0, 2))
    assert first.records is None and second.records is None
    outs = list(stage.finish_batches())
    stage.close()
    assert len(outs) == 1
    assert outs[0].records.to_pydict() == {
        "status": ["open", "paid", None],
        "n": [2, 4, 1],
        "ids": [4, 10, 4],
    }


def test_sql_whole_input_streams_result_batches(make: Make) -> None:
    stage = make(SqlProcessor, query="SELECT * FROM input ORDER BY n DESC", context={"batch_size": 100})
    stage.open()
    for start in range(0, 1000, 250):
        stage.process(pa.record_batch({"n": list(range(start, start + 250))}))
    batches = [o.records for o in stage.finish_batches()]
    stage.close()
    assert all(b.num_rows <= 100 for b in batches) and len(batches) >= 10
    assert pa.Table.from_batches(batches).column("n").to_pylist() == list(range(999, -1, -1))


def test_sql_without_input_gives_nothing(make: Make) -> None:
    stage = make(SqlProcessor, query="SELECT count(*) FROM input")
    stage.open()
    assert list(stage.finish_batches()) == []
    stage.close()


def test_sql_query_error_is_a_stage_error(make: Make) -> None:
    stage = make(SqlProcessor, query="SELECT nope FROM input", per_batch=True)
    with pytest.raises(StageError, match=r"query failed: .*nope"):
        stage.process(orders())
    stage = make(SqlProcessor, query="SELECT nope FROM input")
    stage.open()
    stage.process(orders())
    with pytest.raises(StageError, match="query failed"):
        list(stage.finish_batches())
    stage.close()


def test_sql_whole_input_database_is_removed_on_close(make: Make) -> None:
    stage = make(SqlProcessor, query="SELECT * FROM input")
    stage.open()
    stage.process(orders())
    directory = stage._session.directory
    assert directory is not None and directory.exists()
    stage.close()
    assert not directory.exists()


# -- Record Deduplicator ------------------------------------------------------


def test_dedupe_keeps_first_occurrence_across_batches(make: Make) -> None:
    stage = make(Dedupe, keys=["k"])
    stage.open()
    first = stage.process(pa.record_batch({"k": ["a", "b", "a", None, "c"], "n": [1, 2, 3, 4, 5]}))
    second = stage.process(pa.record_batch({"k": ["c", "d", None, "d", "e"], "n": [6, 7, 8, 9, 10]}))
    stage.close()
    assert first.records.column("n").to_pylist() == [1, 2, 4, 5]
    # Order is preserved, keys of earlier batches (NULL too) are remembered.
    assert second.records.column("n").to_pylist() == [7, 10]


def test_dedupe_on_several_keys_keeps_arrow_data(make: Make) -> None:
    stage = make(Dedupe, keys=["a", "b"])
    data = pa.record_batch(
        {"a": pa.array([1, 1, 2, 1], pa.int16()), "b": ["x", "y", "x", "x"], ROW_ID: pa.array([1, 2, 3, 4])}
    )
    out = stage.process(data)
    stage.close()
    assert out.records.schema == data.schema
    assert out.records.column(ROW_ID).to_pylist() == [1, 2, 3]


def test_dedupe_missing_key_and_config(make: Make) -> None:
    with pytest.raises(StageError, match="'nope'"):
        make(Dedupe, keys=["nope"]).process(pa.record_batch({"k": [1]}))
    with pytest.raises(ValidationError):
        Dedupe.config_model(keys=[])
    with pytest.raises(ValidationError):
        Dedupe.config_model()
    with pytest.raises(ValidationError):
        Dedupe.config_model(keys="k")
