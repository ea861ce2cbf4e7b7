"""Engines and sessions for the metadata database.

The URL comes from ``FLOWPORT_DATABASE_URL``, else ``[store] url`` in the
instance's ``flowport.toml``; without either the instance keeps an embedded
SQLite file, ``flowport.db`` in the instance folder (found by
:mod:`flowport.home`, like everything else).

Connections are pooled per URL and kept (a server's worker threads reuse
them rather than opening a connection, and setting SQLite's PRAGMAs, per
request). On SQLite, a transaction that writes takes the database's write
lock when it writes first (``BEGIN IMMEDIATE``), after the writers of its
own process that came before it (:class:`_SQLiteWriters`): concurrent
writers of one process wait their turn in order instead of polling SQLite's
lock until the busy timeout runs out (``database is locked``). Other
processes sharing the file (job workers) wait up to :data:`SQLITE_BUSY_MS`.
Reads never wait for a writer (WAL).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from flowport.errors import ValidationFailed
from flowport.store.location import DATABASE_URL_ENV, SQLITE_BUSY_MS, database_url

__all__ = [
    "DATABASE_URL_ENV",
    "database_url",
    "display_url",
    "dispose_engines",
    "get_engine",
    "parse_url",
    "reader_engine",
    "session_factory",
    "transaction",
]

# The drivers Flowport ships with; SQLAlchemy's defaults for these schemes
# (psycopg2, mysqlclient) are not installed.
_DEFAULT_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}

# How long a writer waits for the writers of its own process before it goes on to SQLite's lock anyway
# (only a connection whose turn was never handed on, a bug, could make it wait that long).
WRITER_TURN_TIMEOUT_S = 120.0
# Connections each engine keeps. The API runs blocking service calls on up
# to 40 threads (AnyIO's default), each holding at most a connection or two
# at once; a connection beyond the pool would be opened and closed per use.
SQLITE_POOL_SIZE = 40
SERVER_POOL_SIZE = 20
SERVER_POOL_OVERFLOW = 20
# The first word of a statement that makes Python's sqlite3 open a transaction (a write).
_SQLITE_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")

_engines: dict[str, Engine] = {}
# The writers of each SQLite engine (tests look at whose turn it is).
_sqlite_writers: weakref.WeakKeyDictionary[Engine, _SQLiteWriters] = weakref.WeakKeyDictionary()
_factories: dict[str, sessionmaker[Session]] = {}
# Engines for one-row reads on a database server (see reader_engine), by URL.
_readers: dict[str, Engine] = {}
_lock = threading.Lock()


def parse_url(url: str) -> URL:
    """``url`` parsed, with Flowport's drivers for bare ``postgresql://`` and ``mysql://``."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        parsed = None
    if parsed is None:
        # Raised outside the except block: ArgumentError repeats the URL,
        # password included, and must not travel along as __context__.
        raise ValidationFailed(
            f"The metadata database URL ({DATABASE_URL_ENV}) is not a valid URL; "
            "expected e.g. postgresql://user@host:5432/flowport or sqlite:////path/flowport.db"
        )
    driver = _DEFAULT_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def display_url(url: str) -> str:
    """``url`` with its password masked, for messages and ``flowport init``."""
    return parse_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the scheduler, the API and workers read while one writes;
    # SQLite leaves foreign keys off unless asked on every connection.
    # Run once per pooled connection, not per transaction.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    finally:
        cursor.close()


class _SQLiteWriters:
    """The writers of one SQLite database in this process, one at a time, in the order they asked.

    Python's sqlite3 opens a transaction only before the first INSERT, UPDATE,
    DELETE or REPLACE (reads before it run on their own, and never block).
    Just before that statement the connection waits for its turn here, then
    takes SQLite's write lock with ``BEGIN IMMEDIATE`` (waiting for other
    processes up to the busy timeout); the turn passes on once the
    transaction has ended (commit, rollback, including the rollback of a
    connection given back to the pool, or the connection closed or
    invalidated). Without this, every waiting writer polls SQLite's lock with
    growing sleeps and, under load, some give up after the busy timeout
    (``database is locked``) although the lock was free most of the time.

    A thread that already has the turn on another connection does not wait
    for itself: its second writer goes straight to SQLite, as before. A turn
    not handed on within :data:`WRITER_TURN_TIMEOUT_S` (a bug) is not waited
    for longer: the writer goes on to SQLite's own lock.
    """

    def __init__(self) -> None:
        self._turn = threading.Lock()
        self._owner: tuple[int, int] | None = None  # (id of the DBAPI connection, thread id)

    def before_execute(
        self, _conn: Any, cursor: Any, statement: str, _parameters: Any, _context: Any, _many: bool
    ) -> None:
        """Engine event: a write outside a transaction waits for its turn, then ``BEGIN IMMEDIATE``."""
        if not statement.lstrip()[:7].upper().startswith(_SQLITE_WRITES):
            return
        dbapi_connection = cursor.connection
        if dbapi_connection.in_transaction:
            return  # this transaction writes already (and has the turn, if it took one)
        owner = self._owner
        mine = owner is not None and owner[1] == threading.get_ident()
        if not mine and self._turn.acquire(timeout=WRITER_TURN_TIMEOUT_S):
            self._owner = (id(dbapi_connection), threading.get_ident())
        try:
            dbapi_connection.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.release(dbapi_connection)
            raise

    def release(self, dbapi_connection: Any) -> None:
        """The transaction of ``dbapi_connection`` ended: the next writer's turn, if it had the turn."""
        owner = self._owner
        if owner is not None and dbapi_connection is not None and owner[0] == id(dbapi_connection):
            self._owner = None
            self._turn.release()

    def on_pool_event(self, dbapi_connection: Any, *_args: Any) -> None:
        """Pool event (checkin, close, invalidate): whatever transaction the connection had is over."""
        self.release(dbapi_connection)

    def install(self, engine: Engine) -> None:
        """Listen to ``engine``; its dialect's commit and rollback hand the turn on once they are done."""
        event.listen(engine, "before_cursor_execute", self.before_execute)
        for name in ("checkin", "close", "invalidate", "soft_invalidate", "close_detached"):
            event.listen(engine.pool, name, self.on_pool_event)
        dialect = engine.dialect
        commit, rollback = dialect.do_commit, dialect.do_rollback

        def do_commit(dbapi_connection: Any) -> None:
            try:
                commit(dbapi_connection)
            finally:
                self.release(dbapi_connection)

        def do_rollback(dbapi_connection: Any) -> None:
            try:
                rollback(dbapi_connection)
            finally:
                self.release(dbapi_connection)

        # This engine's own dialect object: no other engine is affected.
        dialect.do_commit = do_commit  # type: ignore[method-assign]
        dialect.do_rollback = do_rollback  # type: ignore[method-assign]


def _create_engine(url: str, *, reader: bool = False) -> Engine:
    parsed = parse_url(url)
    # The store holds (encrypted) secrets and user names: keep bound
    # parameters out of SQLAlchemy's log lines and error messages.
    kwargs: dict[str, Any] = {"hide_parameters": True}
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        # A file (SQLAlchemy pools those in a QueuePool), not an in-memory database.
        file = (
            bool(parsed.database) and parsed.database != ":memory:" and parsed.query.get("mode") != "memory"
        )
        if file and not str(parsed.database).startswith("file:"):
            Path(str(parsed.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # Stages may look connections up from their own threads; a pooled connection
        # serves one thread at a time (WAL keeps readers and the writer apart).
        kwargs["connect_args"] = {"check_same_thread": False}
        if file:
            # Overflow connections are closed when given back: keep one per API worker thread.
            kwargs.update(pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_POOL_SIZE)
    elif reader:
        # One round trip per read: no ping before each use (the reader retries once instead), and
        # autocommit (no BEGIN before it, no ROLLBACK when the connection goes back to the pool).
        kwargs.update(
            pool_size=2,
            max_overflow=SERVER_POOL_OVERFLOW,
            isolation_level="AUTOCOMMIT",
            pool_reset_on_return=None,
        )
    else:
        kwargs.update(pool_pre_ping=True, pool_size=SERVER_POOL_SIZE, max_overflow=SERVER_POOL_OVERFLOW)
    engine = create_engine(parsed, **kwargs)
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
        _sqlite_writers[engine] = writers = _SQLiteWriters()
        writers.install(engine)
    return engine


def get_engine(url: str | None = None) -> Engine:
    """The shared engine for ``url`` (default :func:`database_url`), created on first use."""
    key = url or database_url()
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = _create_engine(key)
        return engine


def reader_engine(url: str) -> Engine:
    """An engine for one-statement reads that retry once on a lost connection (no ping before each).

    SQLite's is :func:`get_engine`'s (a file has no connection to lose).
    """
    if parse_url(url).get_backend_name() == "sqlite":
        return get_engine(url)
    with _lock:
        engine = _readers.get(url)
        if engine is None:
            engine = _readers[url] = _create_engine(url, reader=True)
        return engine


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    """A session factory bound to :func:`get_engine`.

    Objects stay readable after commit (``expire_on_commit=False``) because
    services return rows to interfaces after their transaction ended.
    """
    key = url or database_url()
    engine = get_engine(key)
    with _lock:
        factory = _factories.get(key)
        if factory is None:
            factory = _factories[key] = sessionmaker(engine, expire_on_commit=False)
        return factory


@contextmanager
def transaction(url: str | None = None) -> Iterator[Session]:
    """A session inside one transaction: committed on success, rolled back on any error."""
    with session_factory(url).begin() as session:
        yield session


def dispose_engines() -> None:
    """Close every pooled connection (before dropping a database, at shutdown, in tests)."""
    with _lock:
        engines = [*_engines.values(), *_readers.values()]
        _engines.clear()
        _readers.clear()
        _factories.clear()
    for engine in engines:
        engine.dispose()


def _forget_engines_after_fork() -> None:
    """In a forked child (a Celery pool process): new connections, never the parent's.

    A pooled connection is a socket shared with the parent after ``fork``:
    using or closing it from the child would corrupt the parent's session.
    The child's engines are dropped without closing anything
    (``dispose(close=False)``); it connects afresh on first use.
    """
    global _lock
    _lock = threading.Lock()  # the parent may have held it while forking
    for engine in [*_engines.values(), *_readers.values()]:
        engine.dispose(close=False)
    _engines.clear()
    _readers.clear()
    _factories.clear()


os.register_at_fork(after_in_child=_forget_engines_after_fork)
