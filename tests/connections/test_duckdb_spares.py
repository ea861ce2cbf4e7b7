"""DuckDB databases made ahead of need (spares) and closed in the background."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import duckdb
import pytest

from flowport.connections import duckdb_spares
from flowport.stages._duckdb import DuckSession


@pytest.fixture(autouse=True)
def _no_spares_around() -> None:
    duckdb_spares.drain()


def _wait_ready(count: int) -> None:
    with duckdb_spares._cond:
        while duckdb_spares._making:
            duckdb_spares._cond.wait()
        assert len(duckdb_spares._ready) == count


def test_prefetch_makes_up_to_the_limit_and_take_hands_them_over() -> None:
    duckdb_spares.prefetch(5)
    _wait_ready(duckdb_spares.LIMIT)
    made = list(duckdb_spares._ready)
    taken = [duckdb_spares.take() for _ in made]
    assert {id(d) for d in taken} == {id(d) for d in made}
    assert duckdb_spares._ready == []
    # None ready nor coming: a new one is made on the spot.
    extra = duckdb_spares.take()
    assert all(extra is not d for d in made)
    assert extra.execute("SELECT 41 + 1").fetchone() == (42,)
    for database in [*taken, extra]:
        database.close()


def test_a_spare_is_a_fresh_database_whoever_used_the_one_before() -> None:
    first = duckdb_spares.take()
    first.execute("CREATE TABLE left_behind AS SELECT 1 AS x")
    duckdb_spares.close_later(first)
    duckdb_spares.prefetch(1)
    second = duckdb_spares.take()
    try:
        assert second.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == (0,)
    finally:
        second.close()


def test_close_later_closes_it_before_drain_returns() -> None:
    database = duckdb_spares.take()
    duckdb_spares.close_later(database)
    duckdb_spares.drain()
    with pytest.raises(duckdb.ConnectionException):
        database.execute("SELECT 1")


def test_a_session_on_a_spare_is_sandboxed_like_a_new_one(tmp_path: Path) -> None:
    allowed = tmp_path / "in.csv"
    allowed.write_text("a\n1\n")
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    duckdb_spares.prefetch(1)
    _wait_ready(1)
    session = DuckSession(files=[allowed])
    try:
        assert session.table(f"SELECT a FROM read_csv('{allowed}')").column("a").to_pylist() == [1]
        with pytest.raises(duckdb.PermissionException):
            session.table(f"SELECT * FROM read_csv('{secret}')")
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            session.execute("SET enable_external_access = true")
    finally:
        session.close()
    assert duckdb_spares._ready == []  # the session took the spare


def test_a_closed_session_refuses_work_while_its_database_closes_in_the_background() -> None:
    session = DuckSession()
    session.table("SELECT 1 AS x")
    session.close()
    with pytest.raises(duckdb.ConnectionException, match="closed"):
        session.table("SELECT 1 AS x")


def _child_takes(inherited: list[int], out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    database = duckdb_spares.take()
    out.put((os.getpid(), id(database) in inherited, database.execute("SELECT 7").fetchone()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_never_takes_its_parents_spares() -> None:
    duckdb_spares.prefetch(2)
    _wait_ready(2)
    inherited = [id(d) for d in duckdb_spares._ready]
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    child = context.Process(target=_child_takes, args=(inherited, out))
    child.start()
    pid, reused, value = out.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0
    assert pid != os.getpid()
    assert reused is False
    assert value == (7,)
    # The parent keeps its own.
    assert [id(d) for d in duckdb_spares._ready] == inherited
