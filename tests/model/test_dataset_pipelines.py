"""The seed's declarative pipeline classes compile to the right flows."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from flowport.errors import ValidationFailed
from flowport.model.dataset_pipelines import (
    compile_dataset_pipeline,
    compile_view_pipeline,
    find_pipelines,
    split_column_type,
)
from flowport.pipelines import DatasetPipeline


class OMISDatasetPipeline:
    table_name = "omis_dataset"
    source_url = "http://api.example/v4/dataset/omis-dataset"
    target_db = "datasets_db"
    start_date = datetime(2019, 1, 1)
    end_date = datetime(2019, 12, 1)
    field_mapping = [
        ("reference", "omis_order_reference", "character varying(100) PRIMARY KEY"),
        ("company__name", "company_name", "character varying(255) NOT NULL"),
        ("completed_on", "completion_date", "timestamp with time zone"),
        ("subtotal", "subtotal", "numeric(15,2)"),
    ]


class CompletedOMISOrderViewPipeline:
    view_name = "completed_omis_orders"
    dataset_pipeline = OMISDatasetPipeline
    catchup = True
    fields = [("company_name", "Company Name"), ("subtotal::numeric/100", "Subtotal")]
    where_clause = """
        order_status = 'complete' AND
        date_trunc('month', completion_date)::DATE =
            date_trunc('month', to_date('{{ ds }}', 'YYYY-MM-DD'));
    """
    schedule_interval = "@monthly"


def test_split_column_type_keeps_the_type_and_lists_constraints() -> None:
    assert split_column_type("character varying(100) PRIMARY KEY") == (
        "character varying(100)",
        ["PRIMARY KEY"],
    )
    assert split_column_type("varchar(5) not null unique") == ("varchar(5)", ["NOT NULL", "UNIQUE"])
    assert split_column_type("timestamp with time zone") == ("timestamp with time zone", [])


def test_dataset_pipeline_compiles_to_fetch_map_load_replace() -> None:
    flow = compile_dataset_pipeline(OMISDatasetPipeline)
    assert [s.plugin.name for s in flow.stages] == [
        "http_api_origin",
        "field_mapper",
        "sql_table_destination",
    ]
    assert [(e.from_, e.to) for e in flow.edges] == [("Fetch_01", "Map_01"), ("Map_01", "Load_01")]
    fetch, mapper, load = (s.configuration for s in flow.stages)
    assert fetch["url"] == OMISDatasetPipeline.source_url
    assert fetch["pagination"] == {"style": "next_link", "next_field": "next"}
    assert fetch["records_path"] == "results"
    assert mapper["fields"][1] == {
        "source": "company__name",
        "target": "company_name",
        "type": "character varying(255)",
    }
    assert load == {
        "connection": "datasets_db",
        "table": "omis_dataset",
        "mode": "replace",
        "keys": ["omis_order_reference"],
    }
    assert flow.configuration["schedule"]["start_date"] == "2019-01-01T00:00:00"
    # Compiling twice names the same flow.
    assert compile_dataset_pipeline(OMISDatasetPipeline).uuid == flow.uuid


def test_view_pipeline_renders_where_clause_with_ds() -> None:
    flow = compile_view_pipeline(CompletedOMISOrderViewPipeline, date(2018, 1, 15))
    [stage] = flow.stages
    assert stage.plugin.name == "sql_executor"
    assert stage.configuration["connection"] == "datasets_db"
    [statement] = stage.configuration["statements"]
    assert statement.startswith(
        'CREATE OR REPLACE VIEW "completed_omis_orders" AS SELECT company_name AS "Company Name", '
        'subtotal::numeric/100 AS "Subtotal" FROM "omis_dataset" WHERE order_status'
    )
    assert "to_date('2018-01-15', 'YYYY-MM-DD')" in statement
    assert not statement.rstrip().endswith(";")
    assert flow.configuration["schedule"] == {
        "interval": "@monthly",
        "start_date": None,
        "end_date": None,
        "catchup": True,
        "timezone": "UTC",
    }


def test_find_pipelines_by_seed_naming_rule_or_base_class() -> None:
    class OrdersDatasetPipeline(DatasetPipeline):
        table_name = "orders"
        source_url = "http://x"
        target_db = "db"
        field_mapping = [("id", "id", "integer")]

    class Helper:
        table_name = "not a pipeline"

    found = find_pipelines(
        {
            "A": OMISDatasetPipeline,
            "B": CompletedOMISOrderViewPipeline,
            "C": OrdersDatasetPipeline,
            "D": Helper,
            "E": 42,
        }
    )
    assert set(found) == {"A", "B", "C"}


def test_bad_field_mapping_and_template_are_clear_errors() -> None:
    class BrokenDatasetPipeline:
        table_name = "t"
        source_url = "http://x"
        target_db = "db"
        field_mapping = [("only-one",)]

    with pytest.raises(ValidationFailed, match=r"field_mapping\[0\] must be"):
        compile_dataset_pipeline(BrokenDatasetPipeline)

    class BrokenViewPipeline:
        view_name = "v"
        dataset_pipeline = OMISDatasetPipeline
        fields = [("a", "A")]
        where_clause = "x = '{{ undefined_thing }}'"

    with pytest.raises(ValidationFailed, match="where_clause is not a valid template"):
        compile_view_pipeline(BrokenViewPipeline, date(2020, 1, 1))
