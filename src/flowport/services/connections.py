"""Connection services: the instance's metadata store, connections and their encrypted secrets.

Each function owns its transaction (one per call) and is what the CLI, and
later the API, call. Bodies follow the seed's connection object
(``POST /v4/connections``): camelCase keys, ``credentials`` as a list of
objects whose ``user``/``username`` is public and every other key a secret.
Secrets are encrypted before they reach the store and leave it only inside
a :class:`~flowport.connections.spec.ConnectionSpec` for a driver; no
message, log record or public dict ever contains one.
"""

from __future__ import annotations

import logging
import threading
import uuid as _uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from flowport.connections import drivers as _drivers
from flowport.connections.secrets import (
    SecretKey,
    encrypt_secrets,
    ensure_key,
)
from flowport.connections.spec import LOCAL_FILE_VENDORS, ConnectionSpec
from flowport.connections.stored import spec_from_row
from flowport.errors import ValidationFailed
from flowport.plugins.file_roots import FileRoots, PathNotAllowed
from flowport.services.file_roots import instance_roots, local_roots
from flowport.services.schemas.connections import (
    ConnectionCreate,
    ConnectionRead,
    ConnectionUpdate,
    _Body,
    _vendor,
)
from flowport.services.settings import data_dir, settings
from flowport.store import connections as _repo
from flowport.store import instance as _instance
from flowport.store.database import database_url, display_url, transaction
from flowport.store.schema import require_head, upgrade
from flowport.store.tables import Connection

__all__ = [
    "ConnectionCreate",
    "ConnectionUpdate",
    "InstanceInfo",
    "StoreConnectionLookup",
    "add_connection",
    "check_connection_target",
    "connection_counts",
    "connection_public_dict",
    "connection_spec",
    "count_connections",
    "get_connection",
    "init_instance",
    "list_connections",
    "remove_connection",
    "test_connection",
    "update_connection",
]

_log = logging.getLogger(__name__)

# The seed calls a database reached through a driver "jdbc"; kept for clients of that API.
_SQL_TYPE = "jdbc"

# Database URLs already checked to be at the newest schema in this process.
_ready: set[str] = set()
_ready_lock = threading.Lock()


def _parse(model: type[_Body], body: Any) -> Any:
    if isinstance(body, model):
        return body
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # include_input=False: the rejected value may be a password.
        problems = exc.errors(include_input=False, include_url=False, include_context=False)
        lines = [f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}" for e in problems]
    # Raised outside the except block so that the pydantic error, which
    # quotes the input, is not even kept as __context__.
    raise ValidationFailed("Invalid connection: " + "; ".join(lines), details=lines)


def _check_vendor_name(vendor: str | None, vendor_name: str | None) -> None:
    if vendor_name is not None and vendor is not None and _vendor(vendor_name) != vendor:
        raise ValidationFailed(f"vendorName '{vendor_name}' does not match vendor '{vendor}'")


# -- the store ---------------------------------------------------------------


def _url() -> str:
    return database_url(settings().home)


@contextmanager
def _transaction(url: str | None = None) -> Iterator[Session]:
    url = url or _url()
    with _ready_lock:
        ready = url in _ready
    if not ready:
        require_head(url)
        with _ready_lock:
            _ready.add(url)
    with transaction(url) as session:
        yield session


@dataclass(frozen=True)
class InstanceInfo:
    """What ``flowport init`` set up."""

    home: Path
    database: str
    revision: str
    uuid: _uuid.UUID
    created_at: datetime
    secret_key: SecretKey
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """As JSON for ``flowport init --json``."""
        return {
            "home": str(self.home),
            "database": self.database,
            "revision": self.revision,
            "uuid": str(self.uuid),
            "createdAt": _timestamp(self.created_at),
            "secretKey": {
                "source": self.secret_key.source,
                "path": str(self.secret_key.path) if self.secret_key.path else None,
                "created": self.secret_key.created,
            },
            "warnings": list(self.warnings),
        }


def init_instance() -> InstanceInfo:
    """Create or upgrade the metadata store and make sure the instance has a secret key.

    Safe to run again: existing data and an existing key are kept.
    """
    home = settings().home
    home.mkdir(parents=True, exist_ok=True)
    url = _url()
    # The key first: a malformed FLOWPORT_SECRET_KEY stops init before the store changes.
    key = ensure_key(home)
    revision = upgrade(url)
    warnings: list[str] = []
    with transaction(url) as session:
        row = _instance.ensure(session)
        instance_uuid, created_at = row.uuid, row.created_at
        if key.created:
            encrypted = session.scalar(
                select(func.count()).select_from(Connection).where(Connection.secret.is_not(None))
            )
            if encrypted:
                warnings.append(
                    f"A new secret key was created but {encrypted} connection(s) hold credentials "
                    "encrypted with a previous key: restore that key file or enter their credentials again"
                )
    with _ready_lock:
        _ready.add(url)
    _log.info("Instance %s initialized at revision %s", instance_uuid, revision)
    return InstanceInfo(home, display_url(url), revision, instance_uuid, created_at, key, warnings)


# -- connections -------------------------------------------------------------


def _split(credentials: list[dict[str, Any]]) -> tuple[str | None, bytes | None]:
    username, secrets = ConnectionSpec.split_credentials(credentials)
    return username, (encrypt_secrets(secrets, home=settings().home) if secrets else None)


_DATABASE_KEYS = ("defaultDatabase", "database", "path")
_LOOPBACK = {"", "localhost", "127.0.0.1", "::1", "[::1]"}


def _database_key(params: Mapping[str, Any]) -> str | None:
    # The key ConnectionSpec.database reads, in its order.
    return next((key for key in _DATABASE_KEYS if params.get(key)), None)


def _same_host(a: str | None, b: str | None) -> bool:
    left, right = (a or "").lower(), (b or "").lower()
    return left == right or (left in _LOOPBACK and right in _LOOPBACK) or left.startswith("/")


def check_connection_target(
    name: str,
    vendor: str,
    host: str | None,
    port: int | None,
    params: Mapping[str, Any],
    *,
    file_roots: FileRoots,
    base_dir: Path,
) -> dict[str, Any]:
    """``params`` with a local database file made a real path, after checking what it may open.

    A ``sqlite``/``duckdb`` file must resolve inside ``file_roots`` and is
    never the metadata store (real path and file identity); a PostgreSQL
    connection is never the database of a PostgreSQL metadata store.

    Raises:
        ValidationFailed (PathNotAllowed): the connection would open something it may not.
    """
    checked = dict(params)
    if vendor in LOCAL_FILE_VENDORS:
        key = _database_key(params)
        if key is None or str(params[key]) == ":memory:":
            return checked
        try:
            real = file_roots.check(
                str(params[key]), base_dir=base_dir, what=f"connection '{name}': the file"
            )
        except PathNotAllowed as exc:
            raise PathNotAllowed(exc.message, code=exc.code) from None
        checked[key] = str(real)
        return checked
    if vendor in ("postgresql", "redshift"):
        store = make_url(database_url(settings().home))
        if store.get_backend_name() == "postgresql":
            database = str(params.get("defaultDatabase") or params.get("database") or "postgres")
            same_port = (port or 5432) == (store.port or 5432)
            if database == (store.database or "") and same_port and _same_host(host, store.host):
                raise PathNotAllowed(
                    f"connection '{name}' points at the database of this instance's metadata store "
                    f"('{database}'), which no flow or connection may open",
                    code="PATH_PROTECTED",
                )
    return checked


def _roots_for(confined: bool) -> tuple[FileRoots, Path]:
    return (instance_roots() if confined else local_roots()), data_dir()


def add_connection(
    body: ConnectionCreate | Mapping[str, Any], *, creator_id: int | None = None, confined: bool = True
) -> Connection:
    """Store a new connection with its credentials encrypted; Conflict when the name or uuid is taken.

    Args:
        body: the seed's connection body (camelCase or snake_case keys).
        creator_id: the user creating it, when there are users.
        confined: a ``sqlite``/``duckdb`` file must be inside the instance's
            file roots (what the API and every server do); False for the
            machine's own user (the local CLI). The metadata store is refused either way.
    """
    data: ConnectionCreate = _parse(ConnectionCreate, body)
    _check_vendor_name(data.vendor, data.vendor_name)
    roots, base = _roots_for(confined)
    check_connection_target(
        data.name, data.vendor, data.host, data.port, data.params, file_roots=roots, base_dir=base
    )
    username, secret = _split(data.credentials)
    with _transaction() as session:
        row = _repo.create(
            session,
            name=data.name,
            vendor=data.vendor,
            uuid=data.uuid,
            description=data.description,
            host=data.host,
            port=data.port,
            params=data.params,
            ssl=data.ssl,
            credential_type=data.credential_type,
            username=username,
            secret=secret,
            is_global=data.is_global,
            credentials_shared=data.credentials_shared,
            disable_type_inference=data.disable_type_inference,
            creator_id=creator_id,
        )
    _log.info("Connection '%s' added (id %s, uuid %s, vendor %s)", row.name, row.id, row.uuid, row.vendor)
    return row


def get_connection(ref: str | int) -> Connection:
    """The connection with this id, uuid or name; NotFound otherwise."""
    with _transaction() as session:
        return _repo.find(session, ref)


def list_connections(*, limit: int | None = None, offset: int = 0) -> list[Connection]:
    """Stored connections in creation order; all of them unless ``limit`` is given."""
    with _transaction() as session:
        return list(_repo.list_(session, limit=limit, offset=offset))


def count_connections() -> int:
    """How many connections are stored."""
    with _transaction() as session:
        return _repo.count(session)


def connection_counts(user_id: int | None) -> dict[str, int]:
    """The seed's list ``count``: ``owned`` (created by the caller), ``shared`` (the others), ``count``."""
    with _transaction() as session:
        total = _repo.count(session)
        owned = _repo.count(session, creator_id=user_id) if user_id is not None else 0
    return {"owned": owned, "shared": total - owned, "count": total}


def update_connection(
    ref: str | int,
    changes: ConnectionUpdate | Mapping[str, Any],
    *,
    updater_id: int | None = None,
    confined: bool = True,
) -> Connection:
    """Change the given fields of a connection; ``credentials`` replace the stored ones as a whole.

    What the changed connection may open is checked as :func:`add_connection` does.
    """
    data: ConnectionUpdate = _parse(ConnectionUpdate, changes)
    given = data.model_fields_set
    values: dict[str, Any] = {}
    for name in (
        "name",
        "vendor",
        "description",
        "host",
        "port",
        "params",
        "ssl",
        "credential_type",
        "is_global",
        "credentials_shared",
        "disable_type_inference",
    ):
        if name in given:
            value = getattr(data, name)
            if value is None and name in (
                "name",
                "vendor",
                "description",
                "params",
                "ssl",
                "credential_type",
                "is_global",
                "credentials_shared",
                "disable_type_inference",
            ):
                raise ValidationFailed(f"Invalid connection: {to_camel(name)} cannot be null")
            values[name] = value
    if "credentials" in given:
        values["username"], values["secret"] = _split(data.credentials or [])
    if updater_id is not None:
        values["updater_id"] = updater_id
    with _transaction() as session:
        row = _repo.find(session, ref)
        _check_vendor_name(values.get("vendor", row.vendor), data.vendor_name)
        roots, base = _roots_for(confined)
        check_connection_target(
            values.get("name", row.name),
            values.get("vendor", row.vendor),
            values.get("host", row.host),
            values.get("port", row.port),
            values.get("params", row.params) or {},
            file_roots=roots,
            base_dir=base,
        )
        row = _repo.update(session, row, values)
    _log.info("Connection '%s' (id %s) updated: %s", row.name, row.id, ", ".join(sorted(values)) or "nothing")
    return row


def remove_connection(ref: str | int) -> Connection:
    """Delete a connection; returns the deleted row (for messages)."""
    with _transaction() as session:
        row = _repo.find(session, ref)
        _repo.delete(session, row)
    _log.info("Connection '%s' (id %s, uuid %s) removed", row.name, row.id, row.uuid)
    return row


def _checked_spec(spec: ConnectionSpec, file_roots: FileRoots, base_dir: Path) -> ConnectionSpec:
    params = check_connection_target(
        spec.name, spec.vendor, spec.host, spec.port, spec.params, file_roots=file_roots, base_dir=base_dir
    )
    return spec if params == spec.params else spec.model_copy(update={"params": params})


def connection_spec(ref: str | int, *, confined: bool = True) -> ConnectionSpec:
    """The connection with its secrets decrypted, for a driver; SecretKeyError when the key changed.

    What it may open is checked again (:func:`check_connection_target`): a
    stored row may predate the file roots, or have been edited in the store.
    """
    with _transaction() as session:
        row = _repo.find(session, ref)
    return _checked_spec(spec_from_row(row, settings().home), *_roots_for(confined))


def test_connection(ref: str | int, *, confined: bool = True) -> _drivers.TestResult:
    """Open a real connection with the stored credentials: ok, or the driver's reason (scrubbed)."""
    spec = connection_spec(ref, confined=confined)
    # The store's transaction is over: a slow or hanging server holds no lock here.
    result = _drivers.test_connection(spec)
    return _drivers.TestResult(result.ok, spec.scrub(result.message))


test_connection.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported


def _timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _type(vendor: str) -> str:
    return _SQL_TYPE if vendor in _drivers.SQL_VENDORS else vendor


def connection_public_dict(row: Connection) -> dict[str, Any]:
    """The connection as the API shows it (the seed's shape); the user name only, never a secret."""
    return ConnectionRead.shape(
        {
            "id": row.id,
            "uuid": str(row.uuid),
            "name": row.name,
            "description": row.description,
            "vendor": row.vendor,
            "vendorName": row.vendor,
            "type": _type(row.vendor),
            "host": row.host,
            "port": row.port,
            "params": dict(row.params or {}),
            "ssl": row.ssl,
            "credentialType": row.credential_type,
            # The seed shows the user name as "user" (GET) and as "username" (POST answer): both.
            "credentials": [{"user": row.username, "username": row.username}] if row.username else [],
            "isGlobal": row.is_global,
            "credentialsShared": row.credentials_shared,
            "disableTypeInference": row.disable_type_inference,
            "workspace": {"id": 1},
            "createdAt": _timestamp(row.created_at),
            "updatedAt": _timestamp(row.updated_at),
            "creator": {"id": row.creator_id} if row.creator_id is not None else None,
            "updater": {"id": row.updater_id} if row.updater_id is not None else None,
        }
    )


class StoreConnectionLookup:
    """:class:`~flowport.connections.spec.ConnectionLookup` over the metadata store, for runs.

    Handed to every run in ``resources["connections"]``. Creating one only
    notes where the store is: it is opened when a stage first calls
    :meth:`get`, so flows without connections never touch it. Each
    connection is read once per lookup (i.e. per run), and checked then
    against ``file_roots`` (a local database file inside the roots, never
    the metadata store): see :func:`check_connection_target`. Without
    ``file_roots`` (a local run by the machine's own user) only the store is
    refused.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        home: Path | None = None,
        file_roots: FileRoots | None = None,
        base_dir: Path | None = None,
    ) -> None:
        self._home = home or settings().home
        self._url = url or database_url(self._home)
        self._cache: dict[str, ConnectionSpec] = {}
        self._lock = threading.Lock()
        self._roots = file_roots
        self._base_dir = base_dir

    def get(self, ref: str) -> ConnectionSpec:
        """The connection whose uuid, name (or id) is ``ref``; NotFound otherwise."""
        with self._lock:
            spec = self._cache.get(ref)
            if spec is None:
                with _transaction(self._url) as session:
                    row = _repo.find(session, ref)
                roots = self._roots if self._roots is not None else local_roots()
                base = self._base_dir or (data_dir() if roots.is_confined else Path.cwd())
                spec = self._cache[ref] = _checked_spec(spec_from_row(row, self._home), roots, base)
            return spec

    def __repr__(self) -> str:
        return f"StoreConnectionLookup({display_url(self._url)!r})"
