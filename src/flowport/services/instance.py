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
from flowport.store.database import database_url
from flowport.store.database import transaction as _store_transaction

__all__ = [
    "DEFAULT_LIMIT",
    "InstanceInfo",
    "describe_instance",
    "init_instance",
    "page_bounds",
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
    """The metadata database URL of this instance (``FLOWPORT_DATABASE_URL`` or the SQLite file)."""
    return database_url(settings().home)


@contextmanager
def transaction(url: str | None = None) -> Iterator[Session]:
    """One transaction on the instance's store, committed on success; StoreNotReady before ``init``."""
    url = url or store_url()
    with _ready_lock:
        ready = url in _ready
    if not ready:
        _schema.require_head(url)
        with _ready_lock:
            _ready.add(url)
    with _store_transaction(url) as session:
        yield session


def describe_instance() -> dict[str, Any]:
    """Which instance this is and where each of its places came from (``flowport info``).

    Never a password: the store URL is shown masked; the secret key by where it lives.
    """
    # Imported here: only `flowport info` needs them.
    import os

    from flowport.connections.secrets import SECRET_KEY_ENV, key_path
    from flowport.home import locate_home
    from flowport.services.file_roots import configured_roots
    from flowport.services.permissions import editor_permissions
    from flowport.services.settings import DATA_DIR_ENV, data_dir, file_setting
    from flowport.store.database import DATABASE_URL_ENV, display_url

    home, home_source = locate_home()
    url = store_url()
    if os.environ.get(DATABASE_URL_ENV, "").strip():
        store_source = DATABASE_URL_ENV
    elif file_setting("store", "url"):
        store_source = f"{settings().settings_file} [store] url"
    else:
        store_source = "the default (flowport.db in the instance folder)"
    if os.environ.get(DATA_DIR_ENV, "").strip():
        data_source = DATA_DIR_ENV
    elif file_setting("files", "data_dir"):
        data_source = f"{settings().settings_file} [files] data_dir"
    else:
        data_source = "the default (data in the instance folder)"
    roots, roots_source = configured_roots()
    identity: dict[str, Any] = {"uuid": None, "createdAt": None, "initialized": False}
    try:
        with transaction() as session:
            from flowport.store import instance as _instance_repo

            row = _instance_repo.get(session)
            identity = {"uuid": str(row.uuid), "createdAt": timestamp(row.created_at), "initialized": True}
    except FlowportError:
        pass
    key_file = key_path(home)
    return {
        "instance": identity,
        "home": {"path": str(home), "from": home_source},
        "settingsFile": {"path": str(settings().settings_file), "exists": settings().settings_file.is_file()},
        "store": {"url": display_url(url), "from": store_source},
        "dataDir": {"path": str(data_dir()), "from": data_source},
        "fileRoots": {"paths": [str(r) for r in roots], "from": roots_source},
        "secretKey": {
            "from": SECRET_KEY_ENV if os.environ.get(SECRET_KEY_ENV) else str(key_file),
            "exists": bool(os.environ.get(SECRET_KEY_ENV)) or key_file.is_file(),
        },
        "editorPermissions": sorted(editor_permissions()),
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
