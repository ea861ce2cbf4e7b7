"""DuckDB as stages use it: sandboxed, user SQL sees its input and its stage's files, nothing else."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from flowport.connections.drivers import connect_dbapi
from flowport.connections.spec import ConnectionSpec
from flowport.stages._duckdb import DuckSession, duckdb_message, is_statement_error


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.key"
    path.write_text("TOP-SECRET", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT content FROM read_text('{secret}')",
        "SELECT * FROM read_csv('{secret}')",
        "COPY (SELECT 1 AS x) TO '{out}'",
        "ATTACH '{out}.db' AS other",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "SELECT * FROM glob('{dir}/*')",
    ],
)
@pytest.mark.parametrize("shared", [False, True], ids=["own database", "shared database"])
def test_a_session_refuses_files_extensions_and_settings(
    tmp_path: Path, secret: Path, statement: str, shared: bool
) -> None:
    session = DuckSession(shared=shared)
    try:
        sql = statement.format(secret=secret, out=tmp_path / "out.csv", dir=tmp_path)
        with pytest.raises(duckdb.Error) as caught:
            session.con.execute(sql).fetchall()
        assert is_statement_error(caught.value)  # a configuration error, never a per-record one
        assert "TOP-SECRET" not in str(caught.value)
    finally:
        session.close()
    assert not (tmp_path / "out.csv").exists()
    assert not (tmp_path / "out.csv.db").exists()


def test_a_session_reads_exactly_the_files_its_stage_was_given(tmp_path: Path, secret: Path) -> None:
    data = tmp_path / "orders.csv"
    data.write_text("id\n1\n2\n", encoding="utf-8")
    session = DuckSession(files=[data])
    try:
        assert session.con.execute(f"SELECT count(*) FROM read_csv('{data}')").fetchall() == [(2,)]
        with pytest.raises(duckdb.PermissionException) as caught:
            session.con.execute(f"SELECT * FROM read_text('{secret}')").fetchall()
        assert "sandbox" in duckdb_message(caught.value)
    finally:
        session.close()


def test_a_symlink_next_to_an_allowed_file_does_not_open_its_target(tmp_path: Path, secret: Path) -> None:
    link = tmp_path / "link.csv"
    os.symlink(secret, link)
    session = DuckSession(on_disk=True)
    try:
        assert session.directory is not None
        inner = session.directory / "inner.csv"
        os.symlink(secret, inner)
        with pytest.raises(duckdb.PermissionException):
            session.con.execute(f"SELECT * FROM read_text('{inner}')").fetchall()
        # The session's own database and spill folder keep working.
        session.con.execute("CREATE TABLE t AS SELECT range AS i FROM range(1000)")
        assert session.con.execute("SELECT sum(i) FROM t").fetchall() == [(499500,)]
    finally:
        session.close()


def test_arrow_input_still_flows_through_a_sandboxed_session() -> None:
    session = DuckSession()
    try:
        table = pa.table({"x": [1, 2, 3]})
        with session.registered("input", table):
            assert session.table("SELECT sum(x) AS s FROM input").column("s").to_pylist() == [6]
    finally:
        session.close()


def test_a_sqlite_connection_cannot_attach_other_files(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE users (name TEXT, role TEXT)").connection.commit()
    spec = ConnectionSpec(name="local", vendor="sqlite", params={"path": str(tmp_path / "mine.db")})
    conn = connect_dbapi(spec, autocommit=True)
    try:
        for statement in (f"ATTACH DATABASE '{other}' AS o", f"VACUUM INTO '{tmp_path / 'copy.db'}'"):
            with pytest.raises(sqlite3.DatabaseError):
                conn.execute(statement)
        conn.execute("CREATE TABLE t (x INTEGER)")  # its own database works
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT count(*) FROM t").fetchall() == [(1,)]
    finally:
        conn.close()
    assert not (tmp_path / "copy.db").exists()


def test_a_duckdb_connection_reaches_its_own_file_only(tmp_path: Path, secret: Path) -> None:
    spec = ConnectionSpec(name="duck", vendor="duckdb", params={"path": str(tmp_path / "mine.duckdb")})
    conn = connect_dbapi(spec)
    try:
        conn.execute("CREATE TABLE t AS SELECT 1 AS x")
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
        for statement in (
            f"SELECT * FROM read_text('{secret}')",
            f"ATTACH '{tmp_path / 'other.duckdb'}' AS o",
            f"COPY t TO '{tmp_path / 'out.csv'}'",
        ):
            with pytest.raises(duckdb.Error):
                conn.execute(statement).fetchall()
    finally:
        conn.close()
    assert not (tmp_path / "out.csv").exists()


# ---------------------------------------------------------------------------
# Shared sessions: connections of one database per process
# ---------------------------------------------------------------------------


def test_shared_sessions_see_only_their_own_views_and_temp_tables() -> None:
    first, second = DuckSession(shared=True), DuckSession(shared=True)
    try:
        first.con.execute("CREATE TEMP TABLE seen0 AS SELECT 1 AS k")
        second.con.execute("CREATE TEMP TABLE seen0 AS SELECT 2 AS k")
        with first.registered("__fp_batch", pa.table({"v": [10]})):
            assert first.con.execute("SELECT v FROM __fp_batch").fetchall() == [(10,)]
            with pytest.raises(duckdb.CatalogException):
                second.con.execute("SELECT v FROM __fp_batch").fetchall()
        assert first.con.execute("SELECT k FROM seen0").fetchall() == [(1,)]
        assert second.con.execute("SELECT k FROM seen0").fetchall() == [(2,)]
        # Time zones render in UTC, as in a session's own database (each connection starts from it).
        assert first.con.execute("SELECT TIMESTAMPTZ '2024-05-01 10:00:00+02'::VARCHAR").fetchall() == [
            ("2024-05-01 08:00:00+00",)
        ]
    finally:
        first.close()
    third = DuckSession(shared=True)
    try:
        # A closed session's temp tables are gone; the others' stay.
        assert third.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'seen0'"
        ).fetchall() == [(0,)]
        assert second.con.execute("SELECT k FROM seen0").fetchall() == [(2,)]
    finally:
        second.close()
        third.close()


def test_a_shared_session_has_no_files_or_settings_of_its_own(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shared"):
        DuckSession(shared=True, files=[tmp_path / "orders.csv"])
    with pytest.raises(ValueError, match="shared"):
        DuckSession(shared=True, on_disk=True)
    with pytest.raises(ValueError, match="shared"):
        DuckSession(shared=True, memory_limit="1GB")


def _shared_in_child(queue: Any) -> None:
    session = DuckSession(shared=True)
    try:
        queue.put(session.con.execute("SELECT 40 + 2").fetchall())
    finally:
        session.close()


def test_a_forked_child_opens_its_own_shared_database() -> None:
    import multiprocessing

    parent = DuckSession(shared=True)
    try:
        parent.con.execute("CREATE TEMP TABLE mine AS SELECT 1 AS x")
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_shared_in_child, args=(queue,))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        assert queue.get(timeout=5) == [(42,)]
        assert parent.con.execute("SELECT x FROM mine").fetchall() == [(1,)]
    finally:
        parent.close()


_KILLED_CHILD = """
import os, signal, sys
from flowport.stages._duckdb import DuckSession
session = DuckSession(shared=True)
session.con.execute("SELECT 1").fetchall()
print(os.getpid(), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_spill_folder_of_a_killed_process_is_removed_by_the_next_shared_database(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "TMPDIR": str(tmp_path)}
    killed = subprocess.run([sys.executable, "-c", _KILLED_CHILD], env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    pid = killed.stdout.strip()
    left = list(tmp_path.glob(f"flowport-duckdb-shared-{pid}-*"))
    assert len(left) == 1  # killed: no exit handler ran
    # A folder of a live process (this one) is someone's spill folder in use: it stays.
    alive = tmp_path / f"flowport-duckdb-shared-{os.getpid()}-inuse"
    alive.mkdir()
    after = subprocess.run(
        [
            sys.executable,
            "-c",
            "from flowport.stages._duckdb import DuckSession\n"
            "s = DuckSession(shared=True)\ns.con.execute('SELECT 1').fetchall()\ns.close()",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert after.returncode == 0, after.stderr
    assert not left[0].exists()
    assert alive.exists()
    # The second process ended normally: its own folder went with it.
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name]


_AHEAD = """
import os, sys, tempfile
from pathlib import Path
from flowport.stages._duckdb import DuckSession, shared_database_ahead
shared_database_ahead()
shared_database_ahead()  # a second call while the first opens it opens nothing more
session = DuckSession(shared=True)
print(session.con.execute("SELECT 6 * 7").fetchone()[0])
try:
    session.con.execute("SELECT content FROM read_text(?)", [sys.argv[1]]).fetchall()
    print("read")
except Exception as exc:
    print("refused")
session.close()
folders = list(Path(tempfile.gettempdir()).glob(f"flowport-duckdb-shared-{os.getpid()}-*"))
print(len(folders))
"""


def test_the_shared_database_opened_ahead_is_the_one_sessions_use_and_it_is_sandboxed(
    tmp_path: Path, secret: Path
) -> None:
    import subprocess
    import sys

    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", _AHEAD, str(secret)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # One database (one spill folder) for the process, sandboxed like one a session opens itself.
    assert done.stdout.split() == ["42", "refused", "1"]


def _shared_in_child_after_fork(queue: Any) -> None:
    session = DuckSession(shared=True)
    queue.put(session.con.execute("SELECT 5").fetchall())
    session.close()


def test_a_child_forked_while_the_shared_database_is_being_opened_does_not_wait_for_it() -> None:
    import multiprocessing

    from flowport.stages._duckdb import _SharedDatabase

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    # Another thread of this process is opening the database ahead: it holds the lock at the fork.
    with _SharedDatabase._lock:
        child = context.Process(target=_shared_in_child_after_fork, args=(queue,))
        child.start()
    child.join(30)
    if child.exitcode is None:
        child.kill()
    assert child.exitcode == 0
    assert queue.get(timeout=5) == [(5,)]
