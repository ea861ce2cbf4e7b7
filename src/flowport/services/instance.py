"""The instance's metadata store as the domain services use it, and the API's JSON conventions.

:func:`transaction` opens one transaction on the instance's store after
checking (once per process and URL) that the schema is current, so every
service reports "run `flowport init`" the same way. :func:`init_instance`
is ``flowport init``: the store, the secret key and the default project.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from flowport.errors import FlowportError, ValidationFailed
from flowport.services import connections as _connections
from flowport.services.settings import settings
from flowport.store import projects as _projects
from flowport.store import schema as _schema
from flowport.store.database import transaction as _store_transaction

__all__ = [
    "DEFAULT_LIMIT",
    "InstanceInfo",
    "describe_instance",
    "init_instance",
    "page_bounds",
    "ready",
    "ref",
    "store_url",
    "timestamp",
    "transaction",
]

# The page size of a list when the client gives none (as the v4 API of the seed).
DEFAULT_LIMIT = 25

InstanceInfo = _connections.InstanceInfo

_ready: set[str] = set()
_ready_lock = threading.Lock()


def store_url() -> str:
    """The metadata database URL (``FLOWPORT_DATABASE_URL``, ``[store] url``, or the SQLite file in home)."""
    return settings().database_url


@contextmanager
def transaction(url: str | None = None) -> Iterator[Session]:
    """One transaction on the instance's store, committed on success; StoreNotReady before ``init``."""
    url = url or store_url()
    ready(url)
    with _store_transaction(url) as session:
        yield session


def ready(url: str) -> None:
    """StoreNotReady unless the store at ``url`` is at the schema this Flowport needs (checked once)."""
    with _ready_lock:
        known = url in _ready
    if not known:
        _schema.require_head(url)
        with _ready_lock:
            _ready.add(url)


def describe_instance() -> dict[str, Any]:
    """Which instance this is and where each of its places came from (``flowport info``).

    Never a password: the store URL is shown masked; the secret key by where it lives.
    """
    # Imported here: only `flowport info` needs them.
    from flowport.store.database import display_url

    current = settings()
    url = None if "database_url" in current.problems else current.database_url
    identity: dict[str, Any] = {"uuid": None, "createdAt": None, "initialized": False}
    try:
        with transaction() as session:
            from flowport.store import instance as _instance_repo

            row = _instance_repo.get(session)
            identity = {"uuid": str(row.uuid), "createdAt": timestamp(row.created_at), "initialized": True}
    except FlowportError:
        pass

    def value(name: str) -> Any:
        # A setting that does not validate is reported under "problems", not raised: info is for diagnosing.
        return None if name in current.problems else getattr(current, name)

    roots = value("file_roots")
    folder = value("data_dir")
    permissions = value("editor_permissions")
    return {
        "instance": identity,
        "home": {"path": str(current.home), "from": current.home_from},
        "settingsFile": {"path": str(current.settings_file), "exists": current.settings_file.is_file()},
        "store": {"url": display_url(url) if url else None, "from": current.origin("database_url")},
        "dataDir": {"path": None if folder is None else str(folder), "from": current.origin("data_dir")},
        "fileRoots": {"paths": [str(r) for r in roots or ()], "from": current.origin("file_roots")},
        "secretKey": {
            "from": current.secret_key_location,
            "exists": current.secret_key_in_env or current.secret_key_file.is_file(),
        },
        "editorPermissions": sorted(permissions or ()),
        "jobs": {
            "launcher": value("launcher"),
            "launcherFrom": current.origin("launcher"),
            "workers": value("workers"),
            "workersFrom": current.origin("workers"),
        },
        "problems": list(dict.fromkeys(current.problems.values())),
    }


def init_instance() -> InstanceInfo:
    """``flowport init``: create or upgrade the store, ensure the secret key and the default project.

    Safe to run again: existing data, key and projects are kept.
    """
    info = _connections.init_instance()
    with transaction() as session:
        _projects.ensure_default(session)
    return info


def timestamp(value: datetime | None) -> str | None:
    """A time as the API writes it: ISO 8601 in UTC with milliseconds and ``Z`` (the seed's shape)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ref(object_id: int | None) -> dict[str, Any] | None:
    """A reference to another object as the API writes it (``{"id": 2}``), or None."""
    return {"id": object_id} if object_id is not None else None


def page_bounds(limit: int | None, offset: int | None, no_limit: bool) -> tuple[int | None, int]:
    """The ``limit`` and ``offset`` a list query uses: ``noLimit`` wins, no limit means DEFAULT_LIMIT."""
    offset = offset or 0
    if offset < 0:
        raise ValidationFailed(f"offset must not be negative, got {offset}")
    if no_limit:
        return None, offset
    if limit is None:
        return DEFAULT_LIMIT, offset
    if limit < 1:
        raise ValidationFailed(f"limit must be at least 1, got {limit}")
    return limit, offset
