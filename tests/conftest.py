"""Shared test configuration.

Tests that need an external service (PostgreSQL, MariaDB, Redis, ...) ask
for it through :func:`require_service`: when the service is not reachable
the test is skipped with the reason, unless FLOWPORT_REQUIRE_SERVICES=1
(as in CI), where a missing service fails the test.

Every test that initializes an instance on SQLite starts from a copy of a
store this test process migrated once (see :func:`_migrated_sqlite_copies`);
the tests of ``tests/store`` migrate each database themselves.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, with FLOWPORT_REQUIRE_SERVICES=1, fail) when host:port does not answer."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        reason = f"{name} is not reachable at {host}:{port} ({exc})"
    if os.environ.get("FLOWPORT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}; FLOWPORT_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # No test may touch the user's real ~/.flowport.
    monkeypatch.setenv("FLOWPORT_HOME", str(tmp_path_factory.mktemp("flowport-home")))


_template: list[Path] = []  # the SQLite store this process migrated, once it exists


def _migrated_template(
    tmp_path_factory: pytest.TempPathFactory, migrate: Callable[[str, str, str], None]
) -> Path:
    """The SQLite store this test process migrated to head with the real migrations (made on first use)."""
    if not _template:
        template = tmp_path_factory.mktemp("store-template") / "flowport.db"
        migrate(f"sqlite:///{template}", "upgrade", "head")
        from flowport.store.database import get_engine

        get_engine(f"sqlite:///{template}").dispose()
        checkpoint = sqlite3.connect(template)  # everything into the file itself: no WAL to copy
        checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpoint.close()
        _template.append(template)
    return _template[0]


@pytest.fixture(autouse=True)
def _migrated_sqlite_copies(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """A new SQLite store is a copy of one this process migrated to head, not migrated again.

    Migrating a new SQLite file takes about 0.2 s of CPU (SQLite's table
    rebuilds reflect every table), and most tests initialize an instance or
    two: that was a fifth of the suite. A file that does not exist yet,
    upgraded to head, becomes a copy of a database the real migrations made
    (as :func:`flowport.store.schema.upgrade` would make it, with its own
    random store generations), then the real upgrade runs on it (and finds
    it current). The tests of ``tests/store`` and the processes a test starts
    (servers, workers, the CLI) migrate for real.
    """
    if "tests/store/" in request.node.nodeid:
        yield
        return
    from flowport.store import schema

    migrate: Callable[[str, str, str], None] = schema._migrate

    def copy_or_migrate(url: str, action: str, target: str) -> None:
        if action == "upgrade" and target == "head" and schema._sqlite_file_missing(url):
            target_file = Path(str(schema.parse_url(url).database)).expanduser()
            target_file.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_migrated_template(tmp_path_factory, migrate), target_file)
            # As migration 0012 does: a new database starts its generations at random.
            db = sqlite3.connect(target_file)
            with db:
                for (topic,) in db.execute("SELECT topic FROM store_changes").fetchall():
                    db.execute(
                        "UPDATE store_changes SET generation = ? WHERE topic = ?",
                        (secrets.randbelow(1 << 60), topic),
                    )
            db.close()
        migrate(url, action, target)

    monkeypatch.setattr(schema, "_migrate", copy_or_migrate)
    yield
