"""Pure helpers of the SQL stages: named parameters, statement ends, table names, declared types."""

from __future__ import annotations

import pytest

from flowport.stages.sql._identifiers import TableName, parse_table_name, work_table_name
from flowport.stages.sql._params import bind_named, strip_statement_end
from flowport.stages.sql._types import DeclaredType, parse_declared


def test_named_parameters_become_positional_placeholders() -> None:
    sql = "SELECT :a, x::int, ':b', \"c:d\" FROM t WHERE y = :a AND z > :b -- :c\n/* :d */"
    assert bind_named(sql, {"a": 1, "b": 2}, "qmark") == (
        "SELECT ?, x::int, ':b', \"c:d\" FROM t WHERE y = ? AND z > ? -- :c\n/* :d */",
        [1, 1, 2],
    )
    assert bind_named("SELECT :a, :b", {"a": 1, "b": 2}, "dollar")[0] == "SELECT $1, $2"


def test_format_style_escapes_percent_signs_everywhere() -> None:
    sql, values = bind_named("SELECT '100%', \"a%b\" FROM t WHERE n LIKE 'x%' AND m = :m", {"m": 5}, "format")
    assert sql == "SELECT '100%%', \"a%%b\" FROM t WHERE n LIKE 'x%%' AND m = %s" and values == [5]


def test_strings_with_backslash_escapes_and_dollar_quotes_are_skipped() -> None:
    sql, values = bind_named(r"SELECT 'it\'s :not', :yes", {"yes": 1}, "format", backslash_escapes=True)
    assert sql == r"SELECT 'it\'s :not', %s" and values == [1]
    sql, _ = bind_named("SELECT $body$ :not $body$, :yes", {"yes": 1}, "dollar")
    assert sql == "SELECT $body$ :not $body$, $1"
    assert bind_named(r"SELECT '12\:30'", {}, "qmark")[0] == "SELECT '12\\:30'"


def test_missing_and_unused_parameters_are_errors() -> None:
    with pytest.raises(ValueError, match="no parameter 'x'"):
        bind_named("SELECT :x", {}, "qmark")
    with pytest.raises(ValueError, match="not used"):
        bind_named("SELECT 1", {"x": 1}, "qmark")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT 1 ;", "SELECT 1"),
        ("SELECT 1 ; -- note", "SELECT 1"),
        ("SELECT 1;;\n/* end */\n", "SELECT 1"),
        ("SELECT ';'", "SELECT ';'"),
        ("SELECT 1 -- a\n-- b", "SELECT 1"),
    ],
)
def test_statement_ends_are_stripped(query: str, expected: str) -> None:
    assert strip_statement_end(query) == expected


def test_table_names_split_on_the_dot_and_keep_everything_else() -> None:
    assert parse_table_name("orders") == TableName("orders")
    assert parse_table_name("Sales.Orders 2024") == TableName("Orders 2024", "Sales")
    assert parse_table_name('x"; DROP TABLE victims; --') == TableName('x"; DROP TABLE victims; --')
    for bad in ("", "a.b.c", "a..b", "nul\x00", " padded"):
        with pytest.raises(ValueError):
            parse_table_name(bad)


def test_work_table_names_fit_the_vendor_limit() -> None:
    assert work_table_name("orders", "stage", "run-1", limit=63, in_bytes=True) == "orders__fp_stage_run_1"
    long = "é" * 40
    name = work_table_name(long, "stage", "abc", limit=63, in_bytes=True)
    assert len(name.encode()) <= 63 and name.endswith("__fp_stage_abc")
    assert name != work_table_name("é" * 41, "stage", "abc", limit=63, in_bytes=True)


def test_declared_types_are_parsed_never_passed_through() -> None:
    assert parse_declared("numeric(10,2)") == DeclaredType("numeric", precision=10, scale=2)
    assert parse_declared("Character Varying (100)") == DeclaredType("varchar", length=100)
    assert parse_declared("timestamp with time zone") == DeclaredType("timestamptz")
    assert parse_declared("int); DROP TABLE x; --") is None
