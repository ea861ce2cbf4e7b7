"""Engines and sessions for the metadata database.

The URL comes from ``FLOWPORT_DATABASE_URL``, else ``[store] url`` in the
instance's ``flowport.toml``; without either the instance keeps an embedded
SQLite file, ``flowport.db`` in the instance folder (found by
:mod:`flowport.home`, like everything else).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from flowport.errors import ValidationFailed
from flowport.home import home_setting, instance_home

__all__ = [
    "DATABASE_URL_ENV",
    "database_url",
    "display_url",
    "dispose_engines",
    "get_engine",
    "parse_url",
    "session_factory",
    "transaction",
]

DATABASE_URL_ENV = "FLOWPORT_DATABASE_URL"

# The drivers Flowport ships with; SQLAlchemy's defaults for these schemes
# (psycopg2, mysqlclient) are not installed.
_DEFAULT_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}

_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}
_lock = threading.Lock()


def database_url(home: Path | None = None) -> str:
    """The metadata database URL: ``FLOWPORT_DATABASE_URL``, ``[store] url``, or ``sqlite:///HOME/flowport.db``.

    Args:
        home: the instance folder; :func:`flowport.home.instance_home` when omitted.
    """
    configured = os.environ.get(DATABASE_URL_ENV, "").strip()
    if configured:
        return configured
    folder = home or instance_home()
    listed = home_setting("store", "url", folder)
    if isinstance(listed, str) and listed.strip():
        return listed.strip()
    return f"sqlite:///{folder / 'flowport.db'}"


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
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
    finally:
        cursor.close()


def _create_engine(url: str) -> Engine:
    parsed = parse_url(url)
    # The store holds (encrypted) secrets and user names: keep bound
    # parameters out of SQLAlchemy's log lines and error messages.
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # Stages may look connections up from their own threads.
        kwargs["connect_args"] = {"check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def get_engine(url: str | None = None) -> Engine:
    """The shared engine for ``url`` (default :func:`database_url`), created on first use."""
    key = url or database_url()
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = _create_engine(key)
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
        engines = list(_engines.values())
        _engines.clear()
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
    for engine in list(_engines.values()):
        engine.dispose(close=False)
    _engines.clear()
    _factories.clear()


os.register_at_fork(after_in_child=_forget_engines_after_fork)
