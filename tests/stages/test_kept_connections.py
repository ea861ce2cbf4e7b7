"""SQL connections kept from one run to the next (a streaming job's micro-batches), on a real PostgreSQL.

A connection given back is reset to what a new one is before another run
gets it; a connection to other credentials is never handed out; one whose
server side went away is replaced; closing the keeper closes what it holds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from pydantic import SecretStr
from tests.connections.live_servers import PG_HOST, PG_PORT, postgres_database

from flowport.connections.spec import ConnectionSpec
from flowport.stages.sql.kept import KeptConnections
from flowport.stages.sql.vendors.postgres.connection import PostgresConnection


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with postgres_database("flowport_kept") as name:
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname=name, autocommit=True) as c:
            c.execute("CREATE TABLE things (n integer)")
        yield name


def _spec(database: str, **changes: object) -> ConnectionSpec:
    spec = ConnectionSpec(
        name="warehouse",
        vendor="postgresql",
        host=PG_HOST,
        port=PG_PORT,
        username="postgres",
        params={"database": database},
    )
    return spec.model_copy(update=changes)


def _sessions(database: str) -> set[int]:
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres") as c:
        rows = c.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND state IS NOT NULL", [database]
        ).fetchall()
    return {pid for (pid,) in rows}


def _gone(database: str, pid: int) -> bool:
    # A backend ends just after its client hung up: give it a moment.
    deadline = time.monotonic() + 10
    while pid in _sessions(database):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _lent(database: str) -> tuple[KeptConnections, ConnectionSpec, PostgresConnection, int]:
    """A keeper, a spec, a new connection to it lent by that keeper, and its backend's pid."""
    keeper = KeptConnections()
    spec = _spec(database)
    conn = PostgresConnection.open(spec)
    conn.lend(keeper)
    return keeper, spec, conn, conn.query("SELECT pg_backend_pid()")[0][0]


def test_a_connection_given_back_is_reset_and_serves_the_next_run(database: str) -> None:
    keeper, spec, first, pid = _lent(database)
    # What a run may leave on its session: temporary tables, settings, prepared statements,
    # advisory locks, and a transaction with uncommitted rows.
    first.execute("CREATE TEMPORARY TABLE scratch (x integer)")
    first.commit()
    first.execute("SET search_path TO nowhere")
    first.execute("SET TIME ZONE 'Asia/Tokyo'")
    first.execute("PREPARE fp_parameter_types AS SELECT $1::integer")
    first.query("SELECT pg_advisory_lock(7, 7)")
    first.commit()
    first.execute("INSERT INTO public.things VALUES (1)")  # never committed
    first.close()
    first.close()  # the same run closing it twice: harmless, it stays kept
    again = keeper.take(spec)
    assert again is first
    assert again.query("SELECT pg_backend_pid()")[0][0] == pid
    assert again.query("SELECT to_regclass('pg_temp.scratch') IS NULL")[0][0] is True
    assert again.query("SHOW search_path")[0][0] == '"$user", public'
    assert again.query("SHOW TIME ZONE")[0][0] == "UTC"
    assert again.query("SELECT count(*) FROM pg_prepared_statements")[0][0] == 0
    assert (
        again.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")[
            0
        ][0]
        == 0
    )
    assert again.query("SELECT count(*) FROM public.things")[0][0] == 0
    # The statement a later run prepares under the same name works again.
    again.execute("PREPARE fp_parameter_types AS SELECT $1::integer")
    again.close()
    assert pid in _sessions(database)
    keeper.close()
    assert _gone(database, pid)


def test_a_kept_connection_serves_only_the_very_same_connection_spec(database: str) -> None:
    keeper, spec, conn, _ = _lent(database)
    conn.close()
    try:
        # Another stored connection with the same settings but other credentials: not this one.
        other = _spec(database, username="someone_else")
        assert other.uuid != spec.uuid
        assert keeper.take(other) is None
        assert keeper.take(spec) is conn
    finally:
        conn.close()
        keeper.close()


def test_a_changed_connection_closes_what_was_kept_of_it_before(database: str) -> None:
    keeper, spec, conn, pid = _lent(database)
    conn.close()
    # The same stored connection (its uuid), its password changed since: the old session is closed.
    changed = spec.model_copy(update={"secrets": {"password": SecretStr("rotated")}})
    assert keeper.take(changed) is None
    assert _gone(database, pid)
    assert keeper.take(spec) is None
    keeper.close()


def test_a_kept_connection_whose_server_side_went_away_is_replaced(database: str) -> None:
    keeper, spec, conn, pid = _lent(database)
    conn.close()
    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres", autocommit=True
    ) as c:
        c.execute("SELECT pg_terminate_backend(%s)", [pid])
    assert keeper.take(spec) is None  # found dead, closed: the stage connects afresh
    keeper.close()


def test_a_connection_given_back_after_the_keeper_closed_is_closed(database: str) -> None:
    keeper, _, conn, pid = _lent(database)
    keeper.close()
    conn.close()
    assert _gone(database, pid)
