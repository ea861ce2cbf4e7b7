"""The seed's declarative pipeline classes compile to the right flows."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from flowport.datasets import DatasetPipeline
from flowport.errors import ValidationFailed
from flowport.model.datasets import (
    compile_dataset_pipeline,
    compile_view_pipeline,
    default_logical_date,
    find_dataset_classes,
    split_column_type,
    template_context,
)


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
    # The declared type goes to the field mapper whole: the destination creates the constraints.
    assert [f.get("type") for f in mapper["fields"]] == [
        "character varying(100) PRIMARY KEY",
        "character varying(255) NOT NULL",
        "timestamp with time zone",
        "numeric(15,2)",
    ]
    assert mapper["fields"][1] == {
        "source": "company__name",
        "target": "company_name",
        "type": "character varying(255) NOT NULL",
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


def test_find_dataset_classes_by_seed_naming_rule_or_base_class() -> None:
    class OrdersDatasetPipeline(DatasetPipeline):
        table_name = "orders"
        source_url = "http://x"
        target_db = "db"
        field_mapping = [("id", "id", "integer")]

    class Helper:
        table_name = "not a pipeline"

    found = find_dataset_classes(
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


# --- constraints of field_mapping ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("integer DEFAULT 0 PRIMARY KEY", ("integer", ["DEFAULT 0", "PRIMARY KEY"])),
        ("text DEFAULT 'not null' NOT NULL", ("text", ["DEFAULT 'not null'", "NOT NULL"])),
        ("integer default null", ("integer", ["DEFAULT null"])),
        ("integer constraint omis_pk primary key", ("integer", ["CONSTRAINT omis_pk PRIMARY KEY"])),
        (
            "integer REFERENCES orders (id) ON DELETE SET NULL",
            ("integer", ["REFERENCES orders (id) ON DELETE SET NULL"]),
        ),
        (
            "numeric(10, 2) CHECK (total > 0 AND note IS NOT NULL) UNIQUE",
            ("numeric(10, 2)", ["CHECK (total > 0 AND note IS NOT NULL)", "UNIQUE"]),
        ),
        ("bigint GENERATED BY DEFAULT AS IDENTITY", ("bigint", ["GENERATED BY DEFAULT AS IDENTITY"])),
        (
            'text COLLATE "C" UNIQUE NULLS NOT DISTINCT',
            ("text", ['COLLATE "C"', "UNIQUE NULLS NOT DISTINCT"]),
        ),
        ("double precision", ("double precision", [])),
    ],
)
def test_split_column_type_respects_quotes_parentheses_and_keyword_pairs(
    declared: str, expected: tuple[str, list[str]]
) -> None:
    assert split_column_type(declared) == expected


def _dataset(mapping: list[tuple[str, ...]], **attributes: object) -> type:
    body = {
        "table_name": "orders",
        "source_url": "http://api.example/orders",
        "target_db": "db",
        "field_mapping": mapping,
        **attributes,
    }
    return type("OrdersDatasetPipeline", (), body)


def test_constraints_reach_the_field_mapper_and_the_primary_key_is_the_destinations_key() -> None:
    flow = compile_dataset_pipeline(
        _dataset(
            [
                ("id", "order_id", "integer NOT NULL DEFAULT 0 constraint orders_pk primary key"),
                ("email", "email", "varchar(200) UNIQUE NOT NULL"),
                ("note", "note"),
            ]
        )
    )
    _, mapper, load = (s.configuration for s in flow.stages)
    assert mapper["fields"] == [
        {
            "source": "id",
            "target": "order_id",
            "type": "integer NOT NULL DEFAULT 0 constraint orders_pk primary key",
        },
        {"source": "email", "target": "email", "type": "varchar(200) UNIQUE NOT NULL"},
        {"source": "note", "target": "note"},
    ]
    # UNIQUE NOT NULL is not a primary key: only the PRIMARY KEY column identifies rows.
    assert load["keys"] == ["order_id"]


def test_without_primary_key_the_destination_has_no_keys() -> None:
    flow = compile_dataset_pipeline(_dataset([("id", "id", "integer UNIQUE NOT NULL")]))
    assert "keys" not in flow.stages[2].configuration


def test_two_primary_key_columns_are_refused_naming_both() -> None:
    cls = _dataset([("a", "a", "integer PRIMARY KEY"), ("b", "b", "text primary key")])
    with pytest.raises(ValidationFailed, match=r"OrdersDatasetPipeline.*PRIMARY KEY on 2 columns \(a, b\)"):
        compile_dataset_pipeline(cls)


def test_constraints_without_a_type_are_refused() -> None:
    with pytest.raises(ValidationFailed, match=r"field_mapping\[0\] \('id'\): 'PRIMARY KEY' names no column"):
        compile_dataset_pipeline(_dataset([("id", "id", "PRIMARY KEY")]))


def test_field_mapping_that_is_not_a_list_is_a_clear_error() -> None:
    with pytest.raises(ValidationFailed, match="field_mapping must be a non-empty list"):
        compile_dataset_pipeline(_dataset(None))  # type: ignore[arg-type]


# --- fields = True -----------------------------------------------------------------------------


def test_fields_true_selects_every_column_of_the_dataset() -> None:
    class AllOMISViewPipeline:
        view_name = "all_omis"
        dataset_pipeline = OMISDatasetPipeline
        fields = True

    [statement] = (
        compile_view_pipeline(AllOMISViewPipeline, date(2019, 3, 1)).stages[0].configuration["statements"]
    )
    assert statement == (
        'CREATE OR REPLACE VIEW "all_omis" AS SELECT "omis_order_reference", "company_name", '
        '"completion_date", "subtotal" FROM "omis_dataset"'
    )


@pytest.mark.parametrize("fields", [False, "company_name", [], None, [("a", "A", "x")]])
def test_other_fields_values_are_clear_errors(fields: object) -> None:
    cls = type(
        "OddViewPipeline", (), {"view_name": "v", "dataset_pipeline": OMISDatasetPipeline, "fields": fields}
    )
    with pytest.raises(ValidationFailed, match=r"OddViewPipeline\.fields"):
        compile_view_pipeline(cls, date(2020, 1, 1))


def test_fields_true_over_a_broken_dataset_names_the_dataset() -> None:
    broken = _dataset([("only-one",)])
    cls = type("V1ViewPipeline", (), {"view_name": "v", "dataset_pipeline": broken, "fields": True})
    with pytest.raises(ValidationFailed, match=r"V1ViewPipeline.fields = True .* OrdersDatasetPipeline"):
        compile_view_pipeline(cls, date(2020, 1, 1))


def test_dataset_pipeline_that_is_not_a_class_is_a_clear_error() -> None:
    cls = type(
        "V2ViewPipeline", (), {"view_name": "v", "dataset_pipeline": "OMISDatasetPipeline", "fields": True}
    )
    with pytest.raises(
        ValidationFailed, match=r"V2ViewPipeline\.dataset_pipeline must be a dataset pipeline class"
    ):
        compile_view_pipeline(cls, date(2020, 1, 1))


# --- Airflow's template context ------------------------------------------------------------------


def _view(where: str, schedule: object = "@monthly", **attributes: object) -> type:
    body = {
        "view_name": "v",
        "dataset_pipeline": OMISDatasetPipeline,
        "fields": [("company_name", "Company")],
        "where_clause": where,
        "schedule_interval": schedule,
        **attributes,
    }
    return type("TemplatedViewPipeline", (), body)


def _where(cls: type, ds: date | datetime) -> str:
    [statement] = compile_view_pipeline(cls, ds).stages[0].configuration["statements"]
    return str(statement).partition(" WHERE ")[2]


def test_the_seeds_last_day_of_month_macro_renders() -> None:
    where = (
        "d = '{{ macros.datetime.strptime(ds, '%Y-%m-%d') + "
        "macros.dateutil.relativedelta.relativedelta(months=+1, days=-1) }}'"
    )
    assert _where(_view(where), date(2018, 2, 1)) == "d = '2018-02-28 00:00:00'"
    assert _where(_view(where), date(2020, 2, 1)) == "d = '2020-02-29 00:00:00'"


def test_ds_ds_nodash_and_the_data_interval_of_the_schedule() -> None:
    where = (
        "{{ ds }} {{ ds_nodash }} {{ data_interval_start.isoformat() }} {{ data_interval_end.isoformat() }} "
        "{{ ts }} {{ logical_date.month }}"
    )
    assert _where(_view(where), date(2018, 1, 1)) == (
        "2018-01-01 20180101 2018-01-01T00:00:00+00:00 2018-02-01T00:00:00+00:00 2018-01-01T00:00:00+00:00 1"
    )
    # A weekly schedule ends its interval a week later; an hourly one an hour later.
    assert _where(_view("{{ data_interval_end.date() }}", "@weekly"), date(2024, 3, 3)) == "2024-03-10"
    hourly = _view("{{ data_interval_start.hour }}-{{ data_interval_end.hour }} {{ ds }}", "0 * * * *")
    assert _where(hourly, datetime(2024, 3, 3, 23, 0, tzinfo=UTC)) == "23-0 2024-03-03"


def test_macros_timedelta_ds_add_and_params() -> None:
    where = (
        "{{ (macros.datetime.strptime(ds, '%Y-%m-%d') - macros.timedelta(days=1)).date() }} "
        "{{ macros.ds_add(ds, 5) }} {{ macros.ds_format(ds, '%Y-%m-%d', '%d/%m/%Y') }} {{ params.region }}"
    )
    cls = _view(where, params={"region": "north"})
    assert _where(cls, date(2018, 3, 1)) == "2018-02-28 2018-03-06 01/03/2018 north"


def test_a_macro_that_raises_is_a_clear_error() -> None:
    cls = _view("{{ macros.datetime.strptime(ds, '%d/%m/%Y') }}")
    with pytest.raises(
        ValidationFailed, match=r"TemplatedViewPipeline.where_clause could not be rendered: ValueError"
    ):
        compile_view_pipeline(cls, date(2018, 3, 1))


def test_template_context_without_an_interval_is_the_logical_date() -> None:
    context = template_context(_view("", "@once"), date(2020, 5, 4))
    assert context["data_interval_start"] == context["data_interval_end"] == datetime(2020, 5, 4, tzinfo=UTC)


# --- the default logical date ------------------------------------------------------------------


NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "now", "expected"),
    [
        ("@daily", NOW, datetime(2026, 12, 2, tzinfo=UTC)),
        # On the tick itself the interval that ends now is complete.
        ("@daily", datetime(2026, 12, 3, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)),
        ("@daily", datetime(2026, 12, 2, 23, 59, 59, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
        ("@hourly", NOW, datetime(2026, 12, 3, 9, tzinfo=UTC)),
        (
            "@weekly",
            NOW,
            datetime(2026, 11, 22, tzinfo=UTC),
        ),  # Sundays: 22 Nov - 29 Nov is the last full week
        ("@monthly", NOW, datetime(2026, 11, 1, tzinfo=UTC)),
        ("@yearly", NOW, datetime(2025, 1, 1, tzinfo=UTC)),
        ("30 6 * * 1-5", NOW, datetime(2026, 12, 2, 6, 30, tzinfo=UTC)),  # Thursday 10:00: Wednesday's run
        # A naive now is UTC.
        ("@daily", datetime(2026, 12, 3, 10, 0), datetime(2026, 12, 2, tzinfo=UTC)),
    ],
)
def test_default_logical_date_is_the_start_of_the_last_complete_interval(
    schedule: str, now: datetime, expected: datetime
) -> None:
    assert default_logical_date(_view("", schedule), now) == expected


def test_default_logical_date_stops_at_end_date_and_waits_for_start_date() -> None:
    ended = _view("", "@monthly", start_date=datetime(2017, 11, 1), end_date=datetime(2018, 2, 1))
    assert default_logical_date(ended, NOW) == datetime(2018, 2, 1, tzinfo=UTC)
    ended_mid_month = _view("", "@monthly", end_date=date(2018, 2, 15))
    assert default_logical_date(ended_mid_month, NOW) == datetime(2018, 2, 1, tzinfo=UTC)
    future = _view("", "@daily", start_date=datetime(2026, 12, 3, 6, 0))
    with pytest.raises(
        ValidationFailed, match=r"TemplatedViewPipeline has no complete '@daily' interval yet.*--ds"
    ):
        default_logical_date(future, NOW)


def test_default_logical_date_of_once_and_manual_schedules() -> None:
    assert default_logical_date(_view("", "@once", start_date=date(2020, 1, 5)), NOW) == datetime(
        2020, 1, 5, tzinfo=UTC
    )
    assert default_logical_date(_view("", None), NOW) == NOW


def test_an_unknown_schedule_interval_is_a_clear_error() -> None:
    with pytest.raises(ValidationFailed, match=r"TemplatedViewPipeline.schedule_interval must be a cron"):
        compile_view_pipeline(_view("", "every day"), date(2020, 1, 1))
    with pytest.raises(ValidationFailed, match="schedule_interval must be a cron"):
        compile_dataset_pipeline(_dataset([("id", "id")], schedule_interval="@fortnightly"))


# --- start_date <= end_date --------------------------------------------------------------------


def test_start_date_after_end_date_is_refused_naming_the_class() -> None:
    # The seed's own example: start_date = datetime.now().replace(day=1), end_date = datetime(2019, 12, 1).
    dataset = _dataset(
        [("id", "id")], start_date=datetime(2026, 12, 1, 9, 30), end_date=datetime(2019, 12, 1)
    )
    with pytest.raises(
        ValidationFailed,
        match=r"^OrdersDatasetPipeline: start_date 2026-12-01T09:30:00\+00:00 is after end_date 2019-12-01",
    ):
        compile_dataset_pipeline(dataset)
    view = _view("", start_date=date(2018, 2, 2), end_date=date(2018, 2, 1))
    with pytest.raises(ValidationFailed, match=r"^TemplatedViewPipeline: start_date 2018-02-02 is after"):
        compile_view_pipeline(view, date(2018, 2, 1))
    # Equal dates are one day's pipeline, not an error.
    same = _dataset([("id", "id")], start_date=date(2019, 1, 1), end_date=datetime(2019, 1, 1))
    assert compile_dataset_pipeline(same).configuration["schedule"]["end_date"] == "2019-01-01T00:00:00"


def test_a_start_date_that_is_not_a_date_is_refused() -> None:
    with pytest.raises(
        ValidationFailed, match=r"OrdersDatasetPipeline\.start_date must be a datetime or a date"
    ):
        compile_dataset_pipeline(_dataset([("id", "id")], start_date="2019-01-01"))
