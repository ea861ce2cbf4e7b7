"""Flowport's vectorised binary COPY encoder, checked against PostgreSQL's own parse.

Every supported type is encoded by :func:`encode_batch`, sent with ``COPY
... FROM STDIN (FORMAT binary)``, and compared row by row (their text forms, ``IS NOT DISTINCT
FROM``) with the same values sent as text that PostgreSQL parses itself:
nulls, extremes, decimals of every scale, timestamps with zones, unicode.
The load path that uses the encoder is checked end to end too (it is the
path of a ``replace`` by rename swap), with a failure in the middle of the
COPY leaving the target exactly as it was.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from tests.stages import test_sql_stages as sql_tests
from tests.stages.test_sql_stages import Db, _open_db, batch, leftovers, load

from flowport.errors import StageError
from flowport.stages.sql.vendors.postgres.binary_copy import (
    HEADER,
    TRAILER,
    encodable,
    encode_batch,
    tuple_order,
)

pg_database = sql_tests.pg_database
make = sql_tests.make

UTC = dt.UTC
D = decimal.Decimal


@pytest.fixture
def pg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    handle = _open_db("postgresql", tmp_path, request)
    yield handle
    handle.raw.close()


def _text(value: Any) -> str | None:
    """A value as the text PostgreSQL's input functions parse."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, float):
        return {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}.get(repr(value), repr(value))
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


def round_trip(pg: Db, sql_type: str, array: pa.Array[Any], values: list[Any] | None = None) -> None:
    """Encode ``array`` into a ``sql_type`` column and compare it with PostgreSQL's parse of ``values``."""
    mixed_round_trip(pg, [("v", sql_type, array)], {"v": values} if values is not None else None)


INTEGERS = [
    ("smallint", pa.int16(), [-(2**15), 2**15 - 1, 0, -1, None]),
    ("smallint", pa.int8(), [-128, 127, 0, None]),
    ("smallint", pa.uint8(), [0, 255, None]),
    ("integer", pa.int32(), [-(2**31), 2**31 - 1, 0, 7, None]),
    ("integer", pa.uint16(), [0, 65535, None]),
    ("bigint", pa.int64(), [-(2**63), 2**63 - 1, 0, -42, None]),
    ("bigint", pa.uint32(), [0, 2**32 - 1, None]),
]


@pytest.mark.parametrize(("sql_type", "arrow_type", "values"), INTEGERS, ids=lambda v: str(v))
def test_integers_round_trip(pg: Db, sql_type: str, arrow_type: pa.DataType, values: list[Any]) -> None:
    round_trip(pg, sql_type, pa.array(values, arrow_type))


def test_floats_round_trip_with_extremes_infinities_and_nan(pg: Db) -> None:
    doubles = [0.0, -0.0, 1.5, -2.25, 1.7976931348623157e308, 5e-324, float("inf"), float("-inf"), None]
    round_trip(pg, "double precision", pa.array([*doubles, float("nan")], pa.float64()))
    reals = [0.0, 1.5, -3.4028234663852886e38, 1.401298464324817e-45, float("inf"), float("nan"), None]
    round_trip(pg, "real", pa.array(reals, pa.float32()))


def test_booleans_round_trip(pg: Db) -> None:
    round_trip(pg, "boolean", pa.array([True, False, None, True]))


TEXTS = ["", "a", "Grüße, 東京 😀", 'quote " backslash \\ tab \t newline \n', "x" * 100_000, None, "ü" * 3]


@pytest.mark.parametrize("sql_type", ["text", "character varying", "character varying(100000)", "json"])
def test_text_round_trips_unicode_and_long_values(pg: Db, sql_type: str) -> None:
    values = ['{"a": [1, "é"]}', "[]", None, '"x"'] if sql_type == "json" else TEXTS
    round_trip(pg, sql_type, pa.array(values, pa.string()))
    round_trip(pg, sql_type, pa.array(values, pa.large_string()))


def test_sliced_arrays_and_bytea_round_trip(pg: Db) -> None:
    values = [b"", b"\x00\xff\x10", None, bytes(range(256)) * 40]
    round_trip(pg, "bytea", pa.array(values, pa.binary()))
    round_trip(pg, "bytea", pa.array(values, pa.large_binary()))
    sliced = pa.array(["skip", *TEXTS], pa.string()).slice(1)
    round_trip(pg, "text", sliced)


def test_dates_round_trip_from_year_1_to_9999(pg: Db) -> None:
    dates = [dt.date(1, 1, 1), dt.date(1969, 12, 31), dt.date(1970, 1, 1), dt.date(2000, 1, 1)]
    dates += [dt.date(1999, 12, 31), dt.date(2024, 2, 29), dt.date(9999, 12, 31), None]
    round_trip(pg, "date", pa.array(dates, pa.date32()))


TIMESTAMPS = [
    dt.datetime(1, 1, 1),
    dt.datetime(1969, 12, 31, 23, 59, 59, 999_999),
    dt.datetime(1999, 12, 31, 23, 59, 59, 999_999),
    dt.datetime(2000, 1, 1),
    dt.datetime(2026, 3, 29, 1, 30, 0, 1),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999_999),
    None,
]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_timestamps_round_trip_in_every_unit(pg: Db, unit: str) -> None:
    values = TIMESTAMPS if unit != "ns" else [v for v in TIMESTAMPS if v is None or 1678 < v.year < 2262]
    if unit in ("s", "ms"):
        values = [v if v is None else v.replace(microsecond=v.microsecond // 1000 * 1000) for v in values]
        if unit == "s":
            values = [v if v is None else v.replace(microsecond=0) for v in values]
    round_trip(pg, "timestamp without time zone", pa.array(values, pa.timestamp(unit)))


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "+05:30", "America/St_Johns"])
def test_timestamps_with_zones_round_trip_as_the_same_instant(pg: Db, zone: str) -> None:
    instants = [None if v is None else v.replace(tzinfo=UTC) for v in TIMESTAMPS]
    array = pa.array(instants, pa.timestamp("us", "UTC")).cast(pa.timestamp("us", zone))
    # Arrow keeps the instant (UTC) whatever the zone; PostgreSQL parses the ISO text with its offset.
    round_trip(pg, "timestamp with time zone", array, instants)


def _decimals(precision: int, scale: int) -> list[Any]:
    largest = 10**precision - 1
    unscaled = [
        largest,
        -largest,
        0,
        1,
        -1,
        10 ** (precision // 2),
        -(10 ** (precision - 1)),
        1234567 % (largest + 1),
    ]
    return [D(u).scaleb(-scale) for u in unscaled] + [None]


SCALES = [(18, s) for s in range(19)] + [(1, 0), (1, 1), (4, 4), (5, 1), (10, 2), (12, 9), (17, 3)]


@pytest.mark.parametrize(("precision", "scale"), SCALES, ids=lambda v: str(v))
def test_decimals_of_every_scale_round_trip(pg: Db, precision: int, scale: int) -> None:
    values = _decimals(precision, scale)
    round_trip(pg, "numeric", pa.array(values, pa.decimal128(precision, scale)))
    round_trip(pg, f"numeric({precision},{scale})", pa.array(values, pa.decimal128(precision, scale)))


def test_wider_decimals_and_unsigned_64_bit_are_left_to_the_driver() -> None:
    assert not encodable(pa.decimal128(19, 2))
    assert not encodable(pa.decimal256(10, 2))
    assert not encodable(pa.uint64())
    assert not encodable(pa.time64("us"))
    assert encodable(pa.decimal128(18, 18))


@pytest.mark.parametrize("offsets", ["32-bit", "64-bit"])
def test_many_columns_with_nulls_in_every_one(pg: Db, monkeypatch: pytest.MonkeyPatch, offsets: str) -> None:
    if offsets == "64-bit":
        # Fields past 2 GiB get 64-bit offsets (large binary): forced here on a few bytes.
        from flowport.stages.sql.vendors.postgres import binary_copy

        monkeypatch.setattr(binary_copy, "_MAX_OFFSET", 8)
    table = pg.name("wide")
    pg.run(
        f"CREATE TABLE {pg.quote(table)} "
        "(a integer, b text, c numeric(12,3), d timestamp, e boolean, f bytea)"
    )
    data = pa.table(
        {
            "a": pa.array([1, None, 3], pa.int32()),
            "b": pa.array([None, "zwei", ""]),
            "c": pa.array([D("-1.500"), D("123456789.001"), None], pa.decimal128(12, 3)),
            "d": pa.array([None, dt.datetime(2020, 5, 17, 12), dt.datetime(1900, 1, 1)], pa.timestamp("us")),
            "e": pa.array([True, None, False]),
            "f": pa.array([b"\x01", b"", None]),
        }
    )
    with pg.raw.cursor() as cursor, cursor.copy(f"COPY {pg.quote(table)} FROM STDIN (FORMAT binary)") as copy:
        copy.write(HEADER)
        for piece in data.to_batches(max_chunksize=2):
            copy.write(memoryview(encode_batch(piece)))
        copy.write(TRAILER)
    assert pg.run(f"SELECT * FROM {pg.quote(table)} ORDER BY a NULLS FIRST, b") == [
        (None, "zwei", D("123456789.001"), dt.datetime(2020, 5, 17, 12), None, b""),
        (1, None, D("-1.500"), None, True, b"\x01"),
        (3, "", None, dt.datetime(1900, 1, 1), False, None),
    ]


# ---------------------------------------------------------------------------
# The load path that uses it
# ---------------------------------------------------------------------------


def test_a_replace_loads_through_the_encoder_and_keeps_the_definition(
    make: Any, pg: Db, caplog: pytest.LogCaptureFixture
) -> None:
    table = pg.name()
    pg.run(f"CREATE TABLE {pg.quote(table)} (id integer PRIMARY KEY, name varchar(20), score numeric(6,2))")
    pg.run(f"INSERT INTO {pg.quote(table)} VALUES (1, 'old', 1.50)")
    types_before = pg.column_types(table)
    scores = pa.array([D("9999.99"), None, D("-0.01")], pa.decimal128(6, 2))
    with caplog.at_level(logging.DEBUG, logger="flowport.stages.sql"):
        load(
            make,
            pg,
            [
                pa.RecordBatch.from_arrays(
                    [pa.array([7, 8, 9]), pa.array(["ä", None, "c"]), scores], ["id", "name", "score"]
                )
            ],
            table=table,
            mode="replace",
        )
    assert any("encoded by Flowport" in r.getMessage() for r in caplog.records)
    assert pg.rows(table) == [(7, "ä", D("9999.99")), (8, None, None), (9, "c", D("-0.01"))]
    assert pg.column_types(table) == types_before
    assert pg.run(
        "SELECT count(*) FROM pg_indexes WHERE tablename = %s AND indexname = %s", (table, f"{table}_pkey")
    ) == [(1,)]
    assert not leftovers(pg)


@pytest.mark.parametrize(
    "copy_streams", [1, 2, None], ids=["one stream", "two streams", "left empty, a second stream joined"]
)
def test_a_value_the_server_refuses_mid_copy_leaves_the_target_exactly_as_it_was(
    make: Any, pg: Db, copy_streams: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With two streams, or a second one that joined (after the first 10,000 rows here), the staging
    # table was committed for the other session: it is dropped too.
    from flowport.stages.sql.vendors.postgres import load as pg_load

    monkeypatch.setattr(pg_load, "AUTO_SECOND_STREAM_ROWS", 10_000)
    table = pg.name()
    pg.run(f"CREATE TABLE {pg.quote(table)} (id integer, score numeric(4,2))")
    pg.run(f"INSERT INTO {pg.quote(table)} VALUES (1, 1.50), (2, NULL)")
    before = pg.rows(table)
    good = pa.RecordBatch.from_arrays(
        [pa.array(range(10_000)), pa.array([D("1.25")] * 10_000, pa.decimal128(10, 2))], ["id", "score"]
    )
    too_big = pa.RecordBatch.from_arrays(
        [pa.array([10_001]), pa.array([D("123.45")], pa.decimal128(10, 2))], ["id", "score"]
    )
    with pytest.raises(StageError, match="numeric field overflow"):
        load(
            make,
            pg,
            [good, good, too_big, good, good],
            table=table,
            mode="replace",
            **({} if copy_streams is None else {"copy_streams": copy_streams}),
        )
    assert pg.rows(table) == before
    assert not leftovers(pg)


def test_wide_decimals_still_load_through_the_driver(
    make: Any, pg: Db, caplog: pytest.LogCaptureFixture
) -> None:
    table = pg.name()
    wide = pa.array([D("12345678901234567890.123456789"), None], pa.decimal128(38, 9))
    with caplog.at_level(logging.DEBUG, logger="flowport.stages.sql"):
        load(make, pg, [batch(id=[1, 2], amount=wide)], table=table, mode="replace")
    assert not any("encoded by Flowport" in r.getMessage() for r in caplog.records)
    assert pg.rows(table) == [(1, D("12345678901234567890.123456789")), (2, None)]
    assert not leftovers(pg)


# ---------------------------------------------------------------------------
# Parallel COPY streams (copy_streams > 1)
# ---------------------------------------------------------------------------


def _scores(start: int, rows: int) -> pa.RecordBatch:
    ids = pa.array(range(start, start + rows), pa.int32())
    scores = [D((i * 7919) % 100_000 - 50_000).scaleb(-2) for i in range(start, start + rows)]
    return pa.RecordBatch.from_arrays([ids, pa.array(scores, pa.decimal128(10, 2))], ["id", "score"])


def test_parallel_streams_load_every_row_once_and_keep_the_definition(
    make: Any, pg: Db, caplog: pytest.LogCaptureFixture
) -> None:
    table = pg.name()
    pg.run(f"CREATE TABLE {pg.quote(table)} (id integer PRIMARY KEY, score numeric(10,2))")
    pg.run(f"INSERT INTO {pg.quote(table)} VALUES (-1, 0.50)")
    types_before = pg.column_types(table)
    batches = [_scores(i * 5_000, 5_000) for i in range(9)]
    with caplog.at_level(logging.DEBUG, logger="flowport.stages.sql"):
        load(make, pg, batches, table=table, mode="replace", copy_streams=3)
    assert any("(3 stream(s))" in r.getMessage() for r in caplog.records)
    expected = pa.Table.from_batches(batches)
    summary = f"SELECT count(*), count(DISTINCT id), sum(score) FROM {pg.quote(table)}"
    count, distinct, total = pg.run(summary)[0]
    assert (count, distinct) == (45_000, 45_000)
    assert total == sum(expected.column("score").to_pylist())
    assert pg.rows(table)[:2] == [(0, D("-500.00")), (1, D("-420.81"))]
    assert pg.column_types(table) == types_before
    assert pg.run(
        "SELECT count(*) FROM pg_indexes WHERE tablename = %s AND indexname = %s", (table, f"{table}_pkey")
    ) == [(1,)]
    assert not leftovers(pg)


def test_a_parallel_load_drops_the_staging_tables_of_dead_loads_and_not_of_running_ones(
    make: Any, pg: Db
) -> None:
    import psycopg

    from flowport.stages.sql.vendors.postgres.load import COPY_TABLE_MARK, copy_lock_key

    table = pg.name()
    schema = pg.run("SELECT current_schema()")[0][0]
    dead, running = f"{table}__fp_copy_dead", f"{table}__fp_copy_running"
    users = f"{table}__fp_copy_mine"  # named like one, but not marked: a table of the user's
    for name in (dead, running, users):
        pg.run(f"CREATE TABLE {pg.quote(name)} (id integer, score numeric(10,2))")
    for name in (dead, running):
        pg.run(f"COMMENT ON TABLE {pg.quote(name)} IS '{COPY_TABLE_MARK}'")
    holder = psycopg.connect(pg.raw.info.dsn, password=None, autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", copy_lock_key(schema, running))
        load(make, pg, [_scores(0, 100), _scores(100, 100)], table=table, mode="replace", copy_streams=2)
        assert leftovers(pg) == {running, users}
        assert pg.run(f"SELECT count(*) FROM {pg.quote(table)}") == [(200,)]
    finally:
        holder.close()
    load(make, pg, [_scores(0, 10)], table=table, mode="replace", copy_streams=2)
    assert leftovers(pg) == {users}
    assert pg.run(f"SELECT count(*) FROM {pg.quote(table)}") == [(10,)]
    # The published table does not keep the staging table's mark.
    assert pg.run("SELECT obj_description(to_regclass(%s), 'pg_class')", (pg.quote(table),)) == [(None,)]


# ---------------------------------------------------------------------------
# copy_streams left to Flowport: a second stream once a load is large
# ---------------------------------------------------------------------------


def _beside(pg: Db, table: str) -> set[str]:
    """Work tables beside ``table`` (the module's database holds other tests' tables too)."""
    return {t for t in leftovers(pg) if t.startswith(f"{table}__fp_")}


@pytest.fixture
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> int:
    from flowport.stages.sql.vendors.postgres import load as pg_load

    monkeypatch.setattr(pg_load, "AUTO_SECOND_STREAM_ROWS", 10_000)
    return 10_000


def test_a_large_load_gets_a_second_stream_and_loads_every_row_once(
    make: Any, pg: Db, caplog: pytest.LogCaptureFixture, small_threshold: int
) -> None:
    table = pg.name()
    pg.run(f"CREATE TABLE {pg.quote(table)} (id integer PRIMARY KEY, score numeric(10,2))")
    pg.run(f"INSERT INTO {pg.quote(table)} VALUES (-1, 0.50)")
    types_before = pg.column_types(table)
    batches = [_scores(i * 4_000, 4_000) for i in range(8)]
    with caplog.at_level(logging.DEBUG, logger="flowport.stages.sql"):
        load(make, pg, batches, table=table, mode="replace")
    messages = [r.getMessage() for r in caplog.records]
    # The third batch passes the threshold (12,000 rows sent): the other five go over two streams,
    # the first one going on.
    assert any("a second COPY stream after 12000 rows" in m for m in messages), messages
    expected = pa.Table.from_batches(batches)
    count, distinct, total = pg.run(
        f"SELECT count(*), count(DISTINCT id), sum(score) FROM {pg.quote(table)}"
    )[0]
    assert (count, distinct) == (32_000, 32_000)
    assert total == sum(expected.column("score").to_pylist())
    assert pg.column_types(table) == types_before
    # The staging table's index got the target's usual name, and the staging table's mark is gone.
    assert pg.run(
        "SELECT count(*) FROM pg_indexes WHERE tablename = %s AND indexname = %s", (table, f"{table}_pkey")
    ) == [(1,)]
    assert pg.run("SELECT obj_description(to_regclass(%s), 'pg_class')", (pg.quote(table),)) == [(None,)]
    assert not _beside(pg, table)


def test_a_small_load_keeps_one_stream_and_a_load_told_one_stream_never_gets_another(
    make: Any, pg: Db, caplog: pytest.LogCaptureFixture, small_threshold: int
) -> None:
    table = pg.name()
    with caplog.at_level(logging.DEBUG, logger="flowport.stages.sql"):
        load(make, pg, [_scores(0, 4_000), _scores(4_000, 4_000)], table=table, mode="replace")
        load(
            make,
            pg,
            [_scores(i * 4_000, 4_000) for i in range(5)],
            table=table,
            mode="replace",
            copy_streams=1,
        )
    assert not any("second COPY stream" in r.getMessage() for r in caplog.records)
    assert pg.run(f"SELECT count(*) FROM {pg.quote(table)}") == [(20_000,)]
    assert not _beside(pg, table)


@pytest.mark.parametrize(
    ("copy_streams", "seen"), [(1, False), (None, True)], ids=["one stream", "left empty"]
)
def test_only_a_load_told_one_stream_hides_its_staging_table_until_the_swap(
    make: Any, pg: Db, copy_streams: int | None, seen: bool
) -> None:
    # copy_streams: 1 is one transaction (a killed load leaves nothing); left empty, the staging
    # table is committed, marked and locked from the start so that a second stream can join.
    from flowport.stages.sql.table_destination import SqlTableDestination

    table = pg.name()
    config: dict[str, Any] = {"table": table, "mode": "replace"}
    if copy_streams is not None:
        config["copy_streams"] = copy_streams
    destination = make(SqlTableDestination, pg.lookup, connection=pg.spec.name, **config)
    destination.open()
    try:
        assert destination.write(_scores(0, 1_000)) is None
        assert bool(_beside(pg, table)) is seen
        destination.abort()
    finally:
        destination.close()
    assert not _beside(pg, table)


def test_a_load_with_copy_streams_left_empty_drops_the_staging_tables_of_dead_loads(
    make: Any, pg: Db, small_threshold: int
) -> None:
    from flowport.stages.sql.vendors.postgres.load import COPY_TABLE_MARK

    table = pg.name()
    dead = f"{table}__fp_copy_dead"
    pg.run(f"CREATE TABLE {pg.quote(dead)} (id integer, score numeric(10,2))")
    pg.run(f"COMMENT ON TABLE {pg.quote(dead)} IS '{COPY_TABLE_MARK}'")
    load(make, pg, [_scores(i * 4_000, 4_000) for i in range(4)], table=table, mode="replace")
    assert pg.run(f"SELECT count(*) FROM {pg.quote(table)}") == [(16_000,)]
    assert not _beside(pg, table)


def test_a_copy_that_stores_other_rows_than_it_was_sent_fails(
    pg: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowport.stages.sql._identifiers import TableName
    from flowport.stages.sql.vendors.postgres import copy_session

    table = pg.name()
    pg.run(f"CREATE TABLE {pg.quote(table)} (id integer)")
    real = copy_session.encode_batch
    # An encoder that loses a batch's first row: the server stores fewer rows than were put.
    monkeypatch.setattr(copy_session, "encode_batch", lambda data: real(data.slice(1)))
    session = copy_session.CopySession.open(pg.spec)
    try:
        stream = session.copy_stream(TableName(table), ["id"])
        stream.put(pa.table({"id": pa.array([1, 2, 3], pa.int32())}))
        with pytest.raises(RuntimeError, match="COPY stored 2 rows of the 3 sent"):
            stream.finish()
    finally:
        session.rollback()
        session.close()
    assert pg.run(f"SELECT count(*) FROM {pg.quote(table)}") == [(0,)]


def _flowport_sessions(pg: Db, expected: int) -> int:
    """Flowport's sessions on the test database, once they settle at ``expected`` (a closed
    connection's backend leaves pg_stat_activity a moment after the client let go)."""
    import time

    deadline = time.monotonic() + 10
    while True:
        count = pg.run(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'flowport'"
        )[0][0]
        if count == expected or time.monotonic() > deadline:
            return int(count)
        time.sleep(0.05)


def test_the_session_a_replace_connects_ahead_is_closed_when_the_load_cannot_start_or_stays_in_place(
    make: Any, pg: Db
) -> None:
    # A replace connects its psycopg session while it waits for the first batch; a load that fails
    # in its checks, or replaces in place (a view depends on the target), closes it again.
    before = _flowport_sessions(pg, 0)
    missing = pg.name()
    with pytest.raises(StageError, match="does not exist"):
        load(make, pg, [], table=missing, mode="replace", create_table=False)
    assert _flowport_sessions(pg, before) == before
    table = pg.name()
    pg.run(f"CREATE TABLE {pg.quote(table)} (id integer)")
    pg.run(f"CREATE VIEW {pg.quote(table + '_v')} AS SELECT id FROM {pg.quote(table)}")
    load(
        make,
        pg,
        [pa.RecordBatch.from_arrays([pa.array([1, 2], pa.int32())], ["id"])],
        table=table,
        mode="replace",
    )
    assert pg.rows(table) == [(1,), (2,)]
    assert _flowport_sessions(pg, before) == before
    assert not {t for t in leftovers(pg) if t.startswith(table)}


def test_a_replace_whose_columns_all_have_an_encoding_never_connects_adbc(
    make: Any, pg: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It begins on psycopg (open_for_load): ADBC's import and connect are not on its time.
    from flowport.stages.sql.vendors.postgres.connection import PostgresConnection

    def refused(spec: Any) -> Any:
        raise AssertionError("a replace that encodes its own COPY connected ADBC")

    monkeypatch.setattr(PostgresConnection, "open", classmethod(lambda cls, spec: refused(spec)))
    table = pg.name()
    pg.run(f"CREATE TABLE {pg.quote(table)} (id integer PRIMARY KEY, score numeric(10,2))")
    load(make, pg, [_scores(0, 3)], table=table, mode="replace")
    assert pg.rows(table) == [(0, D("-500.00")), (1, D("-420.81")), (2, D("-341.62"))]
    assert not _beside(pg, table)


def test_a_replace_begun_on_psycopg_moves_to_adbc_for_a_column_without_an_encoding(make: Any, pg: Db) -> None:
    # A decimal of 30 digits has no encoding of Flowport's: ADBC is connected for it, and the
    # psycopg session the load began on is closed with the destination.
    before = _flowport_sessions(pg, 0)
    table = pg.name()
    pg.run(f"CREATE TABLE {pg.quote(table)} (id integer, amount numeric(30,9))")
    wide = pa.array([D("123456789012345678901.123456789"), None], pa.decimal128(30, 9))
    load(make, pg, [batch(id=[1, 2], amount=wide)], table=table, mode="replace")
    assert pg.rows(table) == [(1, D("123456789012345678901.123456789")), (2, None)]
    assert _flowport_sessions(pg, before) == before
    assert not _beside(pg, table)


MIXED: list[tuple[str, str, pa.Array[Any]]] = [
    ("a", "integer", pa.array([1, -2, 3, 2**31 - 1], pa.int32())),
    ("b", "text", pa.array(["x", None, "Grüße 😀", ""], pa.string())),
    (
        "c",
        "numeric(10,2)",
        pa.array([D("12.34"), D("-99999999.99"), D("0"), D("0.01")], pa.decimal128(10, 2)),
    ),
    ("d", "bigint", pa.array([None, 2**62, -1, None], pa.int64())),
    (
        "e",
        "timestamp",
        pa.array([dt.datetime(2026, 1, 1, 10), dt.datetime(1, 1, 1), None, dt.datetime(9999, 12, 31)]),
    ),
    ("f", "text", pa.array(["long " * 50, "b", "c", "d"], pa.large_string())),
    ("g", "boolean", pa.array([True, False, True, False])),
    (
        "h",
        "numeric(18,18)",
        pa.array([D("0.5"), None, D("-0.000000000000000001"), D("0")], pa.decimal128(18, 18)),
    ),
    (
        "i",
        "date",
        pa.array([dt.date(2000, 1, 1), dt.date(1970, 1, 1), dt.date(1, 1, 1), dt.date(9999, 12, 31)]),
    ),
    ("j", "double precision", pa.array([1.5, float("inf"), -0.0, 2.0])),
]


def mixed_round_trip(
    pg: Db, columns: list[tuple[str, str, pa.Array[Any]]], values: dict[str, list[Any]] | None = None
) -> None:
    """A table of several columns, encoded in the order given, against PostgreSQL's parse of their
    text (of ``values[name]`` where given, else of the arrays' own values)."""
    texts = {name: (values or {}).get(name) or array.to_pylist() for name, _, array in columns}
    binary, parsed = pg.name("bin"), pg.name("txt")
    definition = ", ".join(f"{name} {sql_type}" for name, sql_type, _ in columns)
    for table in (binary, parsed):
        pg.run(f"CREATE TABLE {pg.quote(table)} (id integer, {definition})")
    names = ["id"] + [name for name, _, _ in columns]
    rows = len(columns[0][2])
    data = pa.table([pa.array(range(rows), pa.int32()), *(array for _, _, array in columns)], names=names)
    assert all(encodable(f.type) for f in data.schema)
    with (
        pg.raw.cursor() as cursor,
        cursor.copy(f"COPY {pg.quote(binary)} ({', '.join(names)}) FROM STDIN (FORMAT binary)") as copy,
    ):
        copy.write(HEADER)
        copy.write(memoryview(encode_batch(data)))
        copy.write(TRAILER)
    casts = ", ".join(f"CAST(%s::text AS {sql_type})" for _, sql_type, _ in columns)
    with pg.raw.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {pg.quote(parsed)} VALUES (%s, {casts})",
            [[i, *(_text(texts[name][i]) for name, _, _ in columns)] for i in range(rows)],
        )
    row_text = ", ".join(f"{{t}}.{name}::text" for name, _, _ in columns)
    differ = pg.run(
        f"SELECT b.id, ({row_text.format(t='b')})::text, ({row_text.format(t='t')})::text "
        f"FROM {pg.quote(binary)} b FULL JOIN {pg.quote(parsed)} t ON b.id = t.id "
        f"WHERE b.id IS NULL OR t.id IS NULL OR ({row_text.format(t='b')}) IS DISTINCT FROM "
        f"({row_text.format(t='t')}) ORDER BY 1"
    )
    assert differ == []
    assert pg.run(f"SELECT count(*) FROM {pg.quote(binary)}") == [(rows,)]


def test_a_tuple_of_fixed_fields_texts_and_nulls_round_trips_in_any_column_order(pg: Db) -> None:
    # Runs of fixed-width fields are written as blocks, cut by every text and every column with NULLs.
    mixed_round_trip(pg, MIXED)
    mixed_round_trip(pg, list(reversed(MIXED)))
    ordered = pa.schema([(name, array.type) for name, _, array in MIXED])
    by_name = {name: (name, sql_type, array) for name, sql_type, array in MIXED}
    assert tuple_order(ordered)[-2:] == ["b", "f"]  # the texts last
    mixed_round_trip(pg, [by_name[name] for name in tuple_order(ordered)])


def test_a_tuple_of_fixed_fields_only_is_one_block(pg: Db) -> None:
    # No text and no NULL: the tuples are the block itself (nothing to join).
    fixed = [c for c in MIXED if c[0] in ("a", "c", "g", "i", "j")]
    mixed_round_trip(pg, fixed)
    mixed_round_trip(pg, [(name, sql_type, array.slice(1)) for name, sql_type, array in fixed])
