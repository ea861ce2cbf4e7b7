"""Creating and upgrading the metadata database with the migrations shipped in the package.

Checking that a database is current (:func:`require_head`, before a
process's first transaction) needs no Alembic: the head revision is read
from the shipped migration files' ``revision``/``down_revision`` lines
(once per process) and compared with the ``alembic_version`` row. Alembic
(~0.2 s to import, with Mako and Pygments) is loaded only to migrate, and
to word the message about a database that is not current.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError

from flowport.errors import StoreNotReady
from flowport.store.database import database_url, display_url, get_engine, parse_url
from flowport.store.location import MIGRATIONS_DIR, head_from_files

# Alembic is imported inside the functions that migrate: it costs ~0.2 s,
# which every ``flowport`` command (and every run that looks a connection up)
# would otherwise pay.
if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "MIGRATIONS_DIR",
    "StoreNotReady",
    "current_revision",
    "downgrade",
    "head_revision",
    "require_head",
    "upgrade",
]

# Alembic's table of the revision a database is at (its default name, which env.py keeps).
VERSION_TABLE = "alembic_version"


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _head_from_files() -> str | None:
    """The head the migration files state plainly (:func:`~flowport.store.location.head_from_files`)."""
    return head_from_files(MIGRATIONS_DIR)


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest schema revision this Flowport knows (its migration files do not change while it runs)."""
    head = _head_from_files()
    if head is not None:
        return head
    from alembic.script import ScriptDirectory

    found = ScriptDirectory.from_config(_config()).get_current_head()
    assert found is not None, "the package ships at least one migration"
    return found


def _sqlite_file_missing(url: str) -> bool:
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return False
    return not Path(parsed.database).expanduser().exists()


def current_revision(url: str | None = None) -> str | None:
    """The schema revision of the database at ``url``; None when it was never initialized.

    Does not create anything: an absent SQLite file stays absent.
    """
    url = url or database_url()
    if _sqlite_file_missing(url):
        return None
    reason = None
    try:
        with get_engine(url).connect() as connection:
            # What Alembic's MigrationContext.get_current_revision reads, without importing Alembic.
            if not inspect(connection).has_table(VERSION_TABLE):
                return None
            rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    except OperationalError as exc:
        reason = _reason(url, exc)
    if reason is not None:
        # Raised outside the except block: the driver's error may repeat the URL, password included.
        raise StoreNotReady(f"Cannot open the metadata database {display_url(url)}: {reason}")
    if len(rows) > 1:
        raise StoreNotReady(
            f"The metadata database {display_url(url)} is at several revisions at once "
            f"({', '.join(sorted(str(r) for r in rows))}): it was not migrated by Flowport"
        )
    return str(rows[0]) if rows else None


def _reason(url: str, exc: DBAPIError) -> str:
    # The driver's first line, without the URL's password should a driver echo it.
    lines = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
    text = lines[0] if lines else type(exc.orig or exc).__name__
    password = parse_url(url).password
    return text.replace(str(password), "***") if password else text


def _foreign_key_violations(connection: Connection) -> set[tuple[str, int, str]]:
    # (table, rowid, referred table) of each row whose parent row is missing.
    rows = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    return {(str(row[0]), int(row[1]), str(row[2])) for row in rows}


@contextmanager
def _migration_transaction(connection: Connection, action: str, url: str) -> Iterator[None]:
    """One transaction around the migrations; on SQLite, with foreign keys off and checked before commit.

    SQLite alters a table by rebuilding it (Alembic's batch mode): dropping the
    old table with foreign keys on would delete (``ON DELETE CASCADE``) or
    orphan the rows that refer to it. SQLite lets them change outside a
    transaction only, so they are turned off before it and on again after it,
    and every foreign key is checked before the commit. The explicit ``BEGIN``
    puts the DDL in the transaction too (Python's sqlite3 opens one only
    before INSERT/UPDATE/DELETE): a failed migration leaves nothing half-built.
    """
    if connection.dialect.name != "sqlite":
        with connection.begin():
            yield
        return
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()
    try:
        with connection.begin():
            connection.exec_driver_sql("BEGIN")
            # Rows that were already broken (written with foreign keys off) do not stop a migration.
            before = _foreign_key_violations(connection)
            yield
            broken = _foreign_key_violations(connection) - before
            if broken:
                pairs = ", ".join(sorted({f"{table} -> {parent}" for table, _, parent in broken}))
                raise StoreNotReady(
                    f"Cannot {action} the metadata database {display_url(url)}: {len(broken)} row(s) "
                    f"would refer to missing rows ({pairs}); nothing was changed"
                )
    finally:
        try:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
        except DBAPIError:
            # Never hand a connection without foreign keys back to the pool.
            connection.invalidate()


def _migrate(url: str, action: str, target: str) -> None:
    from alembic import command
    from alembic.util.exc import CommandError

    try:
        with get_engine(url).connect() as connection, _migration_transaction(connection, action, url):
            if action == "upgrade":
                command.upgrade(_config(connection), target)
            else:
                command.downgrade(_config(connection), target)
    except OperationalError as exc:
        reason = _reason(url, exc)
        raise StoreNotReady(f"Cannot {action} the metadata database {display_url(url)}: {reason}") from None
    except CommandError as exc:
        # Typically a database written by a newer Flowport (unknown revision).
        raise StoreNotReady(
            f"Cannot {action} the metadata database {display_url(url)}: {exc}. "
            "Was it created by a newer version of Flowport?"
        ) from None


def upgrade(url: str | None = None, revision: str = "head") -> str:
    """Create the metadata database or upgrade it to ``revision`` (the newest by default), keeping its data.

    Upgrading a database that is already current does nothing.

    Returns:
        The revision the database is at afterwards.
    """
    url = url or database_url()
    _migrate(url, "upgrade", revision)
    reached = current_revision(url)
    assert reached is not None
    return reached


def downgrade(url: str | None = None, revision: str = "base") -> str | None:
    """Revert the schema to ``revision`` (``base`` drops every table and its data)."""
    url = url or database_url()
    _migrate(url, "downgrade", revision)
    return current_revision(url)


def require_head(url: str | None = None) -> str:
    """The current revision; StoreNotReady (saying to run ``flowport init``) unless it is the newest.

    A current database costs one query and no Alembic import (see the module's docstring).
    """
    url = url or database_url()
    revision = current_revision(url)
    head = head_revision()
    if revision == head:
        return revision
    if revision is None:
        problem = "is not initialized"
    else:
        from alembic.script import ScriptDirectory

        try:
            known = ScriptDirectory.from_config(_config()).get_revision(revision) is not None
        except Exception:  # alembic raises several kinds for an unknown id
            known = False
        if not known:
            raise StoreNotReady(
                f"The metadata database {display_url(url)} is at revision {revision}, "
                "unknown to this version of Flowport: was it upgraded by a newer version?"
            )
        problem = f"is at revision {revision}, this Flowport needs {head}"
    raise StoreNotReady(f"The metadata database {display_url(url)} {problem}: run `flowport init`")
