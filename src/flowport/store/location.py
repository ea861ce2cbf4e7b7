"""Where the metadata store is and which schema revision it needs, without SQLAlchemy.

What a process must know of the store before it opens it: its URL, the
file of a SQLite store, and the newest revision the shipped migrations make.
:mod:`flowport.store.database` (the engines) and :mod:`flowport.store.schema`
(the migrations) use these; so does :mod:`flowport.store.sqlite_read`,
which reads one connection without importing SQLAlchemy.
"""

from __future__ import annotations

import ast
import os
import re
from functools import lru_cache
from pathlib import Path

from flowport.home import home_setting, instance_home

__all__ = [
    "DATABASE_URL_ENV",
    "MIGRATIONS_DIR",
    "SQLITE_BUSY_MS",
    "database_url",
    "head_from_files",
    "shipped_head",
    "sqlite_file",
]

DATABASE_URL_ENV = "FLOWPORT_DATABASE_URL"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# How long a SQLite statement waits for another process's write lock before giving up.
SQLITE_BUSY_MS = 30_000

# `revision: str = "0011"`, `down_revision: str | None = "0010"` (a literal: a string, None or a tuple).
_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.MULTILINE)
_SQLITE_PREFIX = "sqlite:///"


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
    return f"{_SQLITE_PREFIX}{folder / 'flowport.db'}"


def sqlite_file(url: str) -> Path | None:
    """The file of a plain ``sqlite:///PATH`` store URL; None for any other store.

    A URL with a driver, query options, escapes or an in-memory database is
    "other" too: those are for SQLAlchemy to read.
    """
    if not url.startswith(_SQLITE_PREFIX):
        return None
    path = url[len(_SQLITE_PREFIX) :]
    if not path or path == ":memory:" or any(c in path for c in "?%#"):
        return None
    return Path(path)


def _revision_ids(value: object) -> tuple[str, ...] | None:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, tuple | list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


def head_from_files(migrations: Path = MIGRATIONS_DIR) -> str | None:
    """The one revision no migration in ``migrations`` names as a ``down_revision``; None if unclear.

    Reads the files' text (no import, no Alembic); None (Alembic decides) when
    a file does not state both ids as literals or there is not exactly one head.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for file in (migrations / "versions").glob("*.py"):
        found: dict[str, tuple[str, ...]] = {}
        for name, literal in _REVISION_LINE.findall(file.read_text(encoding="utf-8")):
            try:
                ids = _revision_ids(ast.literal_eval(literal))
            except (ValueError, SyntaxError):
                ids = None
            if ids is None or name in found:
                return None
            found[name] = ids
        if len(found.get("revision", ())) != 1 or "down_revision" not in found:
            return None
        revisions.update(found["revision"])
        parents.update(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


@lru_cache(maxsize=1)
def shipped_head() -> str | None:
    """:func:`head_from_files` of the shipped migrations, read once per process (they do not change)."""
    return head_from_files(MIGRATIONS_DIR)
