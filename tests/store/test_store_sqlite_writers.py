"""SQLite store: pooled connections, and writers of one process taking the write lock in turn.

With a busy timeout cut to 50 ms, twenty threads whose transactions read,
then write and hold the lock a little would make some of them fail with
"database is locked" if each polled SQLite's lock on its own; in turn, all
of them commit. The turn is handed on whatever ends a transaction, and a
thread's second writer never waits for its own first one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from flowport.store import database
from flowport.store.database import dispose_engines, get_engine, transaction

THREADS = 20
TRANSACTIONS = 5


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(database, "SQLITE_BUSY_MS", 50)
    location = f"sqlite:///{tmp_path / 'writers.db'}"
    with get_engine(location).begin() as connection:
        connection.exec_driver_sql("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        connection.exec_driver_sql("CREATE TABLE log (id INTEGER PRIMARY KEY, thread INTEGER NOT NULL)")
        connection.exec_driver_sql("INSERT INTO counter (id, n) VALUES (1, 0)")
    yield location
    dispose_engines()


def _turn_taken(url: str) -> bool:
    return database._sqlite_writers[get_engine(url)]._turn.locked()


def test_concurrent_writers_of_one_process_all_commit(url: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(number: int) -> None:
        start.wait()
        try:
            for _ in range(TRANSACTIONS):
                with transaction(url) as session:
                    session.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one()
                    session.execute(text("INSERT INTO log (thread) VALUES (:t)"), {"t": number})
                    time.sleep(0.005)  # hold the write lock a while, as a busy service would
                    session.execute(text("UPDATE counter SET n = n + 1 WHERE id = 1"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with transaction(url) as session:
        assert session.execute(text("SELECT n FROM counter")).scalar_one() == THREADS * TRANSACTIONS
        assert session.execute(text("SELECT count(*) FROM log")).scalar_one() == THREADS * TRANSACTIONS
    assert not _turn_taken(url)


def test_the_turn_is_handed_on_after_commit_rollback_and_a_failed_statement(url: str) -> None:
    with transaction(url) as session:
        session.execute(text("INSERT INTO log (thread) VALUES (1)"))
        assert _turn_taken(url)
    assert not _turn_taken(url)

    with pytest.raises(RuntimeError), transaction(url) as session:
        session.execute(text("INSERT INTO log (thread) VALUES (2)"))
        raise RuntimeError("the service changed its mind")
    assert not _turn_taken(url)

    with pytest.raises(OperationalError), transaction(url) as session:
        session.execute(text("INSERT INTO nowhere (x) VALUES (1)"))
    assert not _turn_taken(url)

    with get_engine(url).connect() as connection:
        connection.execute(text("INSERT INTO log (thread) VALUES (3)"))
        assert _turn_taken(url)
        # Given back to the pool without a commit: rolled back, and the turn with it.
    assert not _turn_taken(url)
    with transaction(url) as session:
        assert session.execute(text("SELECT thread FROM log ORDER BY id")).scalars().all() == [1]


def test_reads_do_not_wait_for_a_writer(url: str) -> None:
    with transaction(url) as writer:
        writer.execute(text("UPDATE counter SET n = 41 WHERE id = 1"))
        seen: list[int] = []
        reader = threading.Thread(
            target=lambda: seen.append(
                get_engine(url).connect().execute(text("SELECT n FROM counter")).scalar_one()
            )
        )
        reader.start()
        reader.join(timeout=30)
        assert seen == [0]  # the committed value, read while the write is under way (WAL)


def test_a_second_writer_of_the_same_thread_does_not_wait_for_its_own_turn(url: str) -> None:
    # Nested write transactions cannot both hold SQLite's lock: the inner one fails after the busy
    # timeout, as it did before writers took turns, instead of waiting for the outer one forever.
    with transaction(url) as outer:
        outer.execute(text("INSERT INTO log (thread) VALUES (1)"))
        with pytest.raises(OperationalError, match="database is locked"), transaction(url) as inner:
            inner.execute(text("INSERT INTO log (thread) VALUES (2)"))
        assert _turn_taken(url)
    assert not _turn_taken(url)


def test_connections_are_kept_in_the_pool(url: str) -> None:
    opened: list[object] = []
    engine = get_engine(url)
    from sqlalchemy import event

    event.listen(engine, "connect", lambda dbapi_connection, _record: opened.append(dbapi_connection))
    barrier = threading.Barrier(12)

    def read() -> None:
        with transaction(url) as session:
            barrier.wait()  # twelve connections out at once: more than SQLAlchemy's default pool of five
            session.execute(text("SELECT n FROM counter")).scalar_one()

    for _ in range(3):
        threads = [threading.Thread(target=read) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # Opened for the first round (one was open already from the fixture), reused by the next ones.
    assert len(opened) <= 12
