"""Opening connections with each vendor's driver.

Every message that leaves this module is scrubbed of the connection's
secrets: drivers sometimes echo the connection string back in errors.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flowport.connections.spec import ConnectionSpec
from flowport.errors import ConnectionFailed, FlowportError, ValidationFailed

__all__ = [
    "ConnectionFailed",
    "TestResult",
    "adbc_uri",
    "allow_local_infile",
    "amqp_connection",
    "connect_adbc",
    "connect_dbapi",
    "mqtt_client",
    "nats_connect_options",
    "postgres_conninfo",
    "scrub_message",
    "sqlalchemy_url",
    "test_connection",
]

SQL_VENDORS = ("postgresql", "redshift", "mysql", "sqlite", "duckdb")


@dataclass(frozen=True)
class TestResult:
    """Outcome of ``flowport connections test``."""

    ok: bool
    message: str


def postgres_conninfo(spec: ConnectionSpec) -> dict[str, Any]:
    """Keyword arguments for psycopg.connect."""
    kwargs: dict[str, Any] = {
        "host": spec.host or "127.0.0.1",
        "port": spec.effective_port(),
        "dbname": spec.database or "postgres",
        "user": spec.username or "postgres",
        "connect_timeout": int(spec.params.get("connectTimeout", 10)),
        "application_name": "flowport",
    }
    if spec.password:
        kwargs["password"] = spec.password
    if spec.ssl:
        kwargs["sslmode"] = "require"
    return kwargs


def adbc_uri(spec: ConnectionSpec) -> str:
    """A libpq URI for the ADBC PostgreSQL driver (contains the password: never log it)."""
    user = quote(spec.username or "postgres", safe="")
    password = f":{quote(spec.password, safe='')}" if spec.password else ""
    host = spec.host or "127.0.0.1"
    database = quote(spec.database or "postgres", safe="")
    query = "?sslmode=require" if spec.ssl else ""
    return f"postgresql://{user}{password}@{host}:{spec.effective_port()}/{database}{query}"


def scrub_message(spec: ConnectionSpec, text: str) -> str:
    """``text`` without the connection's secrets, also in the URL-encoded form a URI carries."""
    text = spec.scrub(text)
    for value in sorted(spec.secret_values(), key=len, reverse=True):
        encoded = quote(value, safe="")
        if encoded != value:
            text = text.replace(encoded, "***")
    return text


def connect_adbc(spec: ConnectionSpec, *, autocommit: bool = False) -> Any:
    """An ADBC (Arrow-native) DB-API connection to PostgreSQL; ConnectionFailed (scrubbed) otherwise.

    Only the PostgreSQL vendor: ADBC reads with binary ``COPY``, which Redshift
    does not offer.
    """
    if spec.vendor != "postgresql":
        raise ValidationFailed(f"Connection '{spec.name}' ({spec.vendor}) has no ADBC driver")
    try:
        import adbc_driver_postgresql.dbapi as adbc_pg

        return adbc_pg.connect(adbc_uri(spec), autocommit=autocommit)
    except Exception as exc:
        raise ConnectionFailed(
            f"Could not connect to '{spec.name}' ({spec.vendor}): {scrub_message(spec, str(exc)).strip()}"
        ) from None


def sqlalchemy_url(spec: ConnectionSpec) -> str:
    """A SQLAlchemy URL for the connection (contains the password: never log it)."""
    if spec.vendor in ("postgresql", "redshift"):
        return "postgresql+psycopg" + adbc_uri(spec)[len("postgresql") :]
    if spec.vendor == "mysql":
        user = quote(spec.username or "root", safe="")
        password = f":{quote(spec.password, safe='')}" if spec.password else ""
        host = f"{spec.host or '127.0.0.1'}:{spec.effective_port()}"
        return f"mysql+pymysql://{user}{password}@{host}/{spec.database or ''}"
    if spec.vendor == "sqlite":
        return f"sqlite:///{spec.database or ':memory:'}"
    raise ValidationFailed(f"Connection '{spec.name}' ({spec.vendor}) has no SQLAlchemy URL")


def connect_dbapi(spec: ConnectionSpec, *, autocommit: bool = False, any_thread: bool = False) -> Any:
    """A DB-API connection for a SQL vendor; ConnectionFailed (scrubbed) when it cannot be opened.

    ``any_thread``: the caller uses the connection from several threads, one
    at a time (the engine opens, writes and commits a stage on different
    threads); only SQLite checks this.
    """
    try:
        if spec.vendor in ("postgresql", "redshift"):
            import psycopg

            return psycopg.connect(**postgres_conninfo(spec), autocommit=autocommit)
        if spec.vendor == "mysql":
            return _guarded_mysql_class()(
                host=spec.host or "127.0.0.1",
                port=spec.effective_port() or 3306,
                user=spec.username or "root",
                password=spec.password or "",
                database=spec.database,
                local_infile=True,
                autocommit=autocommit,
                connect_timeout=int(spec.params.get("connectTimeout", 10)),
                charset="utf8mb4",
            )
        if spec.vendor == "sqlite":
            path = spec.database or ":memory:"
            if path != ":memory:":
                Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path, isolation_level=None if autocommit else "DEFERRED", check_same_thread=not any_thread
            )
            # SQL on this connection reaches this database file only: no ATTACH (nor VACUUM INTO,
            # which attaches), no extensions. Python's sqlite3 leaves extension loading off.
            conn.set_authorizer(_sqlite_authorizer)
            return conn
        if spec.vendor == "duckdb":
            return _sandboxed_duckdb(spec.database or ":memory:")
    except FlowportError:
        raise
    except Exception as exc:
        raise ConnectionFailed(
            f"Could not connect to '{spec.name}' ({spec.vendor}): {spec.scrub(str(exc)).strip()}"
        ) from None
    raise ValidationFailed(
        f"Connection '{spec.name}' is a {spec.vendor} connection, not a SQL database "
        f"({', '.join(SQL_VENDORS)})"
    )


def _sqlite_authorizer(
    action: int, _arg1: str | None, _arg2: str | None, _db: str | None, _src: str | None
) -> int:
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _sandboxed_duckdb(database: str) -> Any:
    """A DuckDB database file whose SQL may touch that file (and its WAL) only: no other file or extension."""
    import duckdb

    conn = duckdb.connect(database)
    locked = conn.execute("SELECT current_setting('lock_configuration')").fetchall()[0]
    if locked is not None and locked[0]:
        # Another connection of this process opened the same file first and shares its
        # configuration: accept it only if that one is sandboxed too.
        external = conn.execute("SELECT current_setting('enable_external_access')").fetchall()[0]
        if external is None or external[0]:
            conn.close()
            raise ValidationFailed(f"DuckDB database '{database}' is open elsewhere without a sandbox")
        return conn
    # Set before the configuration is locked: results in UTC whatever the machine's zone.
    conn.execute("SET TimeZone = 'UTC'")
    paths = (
        [] if database == ":memory:" else [os.path.realpath(database), os.path.realpath(database) + ".wal"]
    )
    conn.execute("SET autoinstall_known_extensions = false")
    conn.execute("SET autoload_known_extensions = false")
    if paths:
        conn.execute(
            "SET allowed_paths = [" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"
        )
    conn.execute("SET enable_external_access = false")
    conn.execute("SET lock_configuration = true")
    return conn


@contextmanager
def allow_local_infile(connection: Any, path: Path) -> Iterator[None]:
    """Let a MariaDB/MySQL connection send ``path`` (and only it) for ``LOAD DATA LOCAL INFILE``.

    Without it, a connection opened by :func:`connect_dbapi` sends no local
    file at all: a server (or a statement in a flow) asking for another file,
    say the instance's secret key, gets an error instead.
    """
    previous = getattr(connection, "flowport_local_file", None)
    connection.flowport_local_file = os.path.realpath(path)
    try:
        yield
    finally:
        connection.flowport_local_file = previous


_guarded_class: Any = None


def _guarded_mysql_class() -> Any:
    """PyMySQL's Connection, answering ``LOAD DATA LOCAL`` requests for the one allowed file only."""
    global _guarded_class
    if _guarded_class is not None:
        return _guarded_class
    import pymysql
    from pymysql import connections as _pm

    class _GuardedResult(_pm.MySQLResult):  # type: ignore[misc]
        def _read_load_local_packet(self, first_packet: Any) -> None:
            conn = self.connection
            asked = _pm.LoadLocalPacketWrapper(first_packet).filename
            if isinstance(asked, bytes):
                asked = asked.decode("utf-8", "replace")
            allowed = getattr(conn, "flowport_local_file", None)
            if allowed is None or os.path.realpath(asked) != allowed:
                # Tell the server there is no data, then refuse.
                conn.write_packet(b"")
                with contextlib.suppress(Exception):
                    conn._read_packet()
                raise pymysql.err.OperationalError(
                    2068,
                    "LOAD DATA LOCAL INFILE is not allowed here: Flowport sends no local file to the server",
                )
            super()._read_load_local_packet(first_packet)

    class _GuardedConnection(_pm.Connection):  # type: ignore[misc]
        flowport_local_file: str | None = None

        def _read_query_result(self, unbuffered: bool = False) -> Any:
            self._result = None
            result = _GuardedResult(self)
            if unbuffered:
                result.init_unbuffered_query()
            else:
                result.read()
            self._result = result
            if result.server_status is not None:
                self.server_status = result.server_status
            return result.affected_rows

    _guarded_class = _GuardedConnection
    return _guarded_class


def test_connection(spec: ConnectionSpec, *, timeout: float = 10.0) -> TestResult:
    """Open a real connection (or request) and report success or the driver's reason."""
    try:
        if spec.vendor in SQL_VENDORS:
            conn = connect_dbapi(spec, autocommit=True)
            try:
                cur = conn.cursor()
                cur.execute("SELECT 1")
                cur.fetchall()
            finally:
                conn.close()
            return TestResult(True, f"Connected to {spec.vendor} '{spec.name}'")
        if spec.vendor == "http":
            import httpx

            base = spec.params.get("baseUrl") or spec.host
            if not base:
                return TestResult(False, f"Connection '{spec.name}' has no host or params.baseUrl")
            response = httpx.get(str(base), timeout=timeout, follow_redirects=True)
            return TestResult(response.status_code < 500, f"HTTP {response.status_code} from {base}")
        if spec.vendor == "redis":
            import redis

            client = redis.Redis(
                host=spec.host or "127.0.0.1",
                port=spec.effective_port() or 6379,
                db=int(spec.params.get("database") or 0),
                username=spec.username,
                password=spec.password,
                ssl=spec.ssl,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
            )
            try:
                client.ping()
            finally:
                client.close()
            return TestResult(True, f"Connected to redis '{spec.name}'")
        if spec.vendor == "nats":
            return _test_nats(spec, timeout)
        if spec.vendor == "rabbitmq":
            conn = amqp_connection(spec, timeout)
            try:
                conn.connect()
                server = conn.server_properties.get("product", "AMQP server")
            finally:
                with contextlib.suppress(Exception):
                    conn.collect()
            return TestResult(True, f"Connected to {_text(server)} '{spec.name}'")
        if spec.vendor == "mqtt":
            return _test_mqtt(spec, timeout)
        if spec.vendor == "filesystem":
            folder = Path(str(spec.params.get("path") or spec.host or "")).expanduser()
            if folder.is_dir():
                return TestResult(True, f"Folder {folder} exists")
            return TestResult(False, f"Folder {folder} does not exist")
    except ConnectionFailed as exc:
        return TestResult(False, exc.message)
    except Exception as exc:
        return TestResult(False, spec.scrub(f"{type(exc).__name__}: {exc}"))
    return TestResult(False, f"Unknown vendor {spec.vendor}")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def nats_connect_options(spec: ConnectionSpec, timeout: float) -> dict[str, Any]:
    """The keyword arguments of ``nats.connect`` for a nats connection (no reconnects, quiet callbacks).

    A user name and password, or a ``token`` credential; ``ssl`` connects over TLS.
    """

    async def _quiet(*_args: Any) -> None:
        return None

    scheme = "tls" if spec.ssl else "nats"
    options: dict[str, Any] = {
        "servers": [f"{scheme}://{spec.host or '127.0.0.1'}:{spec.effective_port() or 4222}"],
        "connect_timeout": timeout,
        "allow_reconnect": False,
        "max_reconnect_attempts": 0,
        "error_cb": _quiet,
        "disconnected_cb": _quiet,
        "closed_cb": _quiet,
    }
    if spec.username:
        options["user"] = spec.username
        options["password"] = spec.password or ""
    token = spec.secret("token")
    if token:
        options["token"] = token
    if spec.ssl:
        import ssl

        options["tls"] = ssl.create_default_context()
    return options


def _test_nats(spec: ConnectionSpec, timeout: float) -> TestResult:
    import asyncio

    import nats

    async def probe() -> str:
        client = await nats.connect(**nats_connect_options(spec, timeout))
        try:
            try:
                await client.jetstream(timeout=timeout).account_info()
                jetstream = "JetStream enabled"
            except Exception:
                jetstream = "JetStream not enabled for this account"
            return f"Connected to NATS {client.connected_server_version} '{spec.name}' ({jetstream})"
        finally:
            await client.close()

    try:
        return TestResult(True, asyncio.run(asyncio.wait_for(probe(), timeout + 5)))
    except Exception as exc:
        where = f"{spec.host or '127.0.0.1'}:{spec.effective_port()}"
        reason = spec.scrub(str(exc).strip()) or type(exc).__name__
        return TestResult(False, f"No NATS server let '{spec.name}' in at {where}: {reason}")


def amqp_connection(spec: ConnectionSpec, timeout: float) -> Any:
    """An unopened ``amqp.Connection`` (py-amqp, AMQP 0-9-1) for a rabbitmq connection.

    ``params.virtualHost`` (default ``/``); ``ssl`` connects over TLS.
    """
    import amqp

    return amqp.Connection(
        host=f"{spec.host or '127.0.0.1'}:{spec.effective_port() or 5672}",
        userid=spec.username or "guest",
        password=spec.password if spec.password is not None else ("guest" if not spec.username else ""),
        virtual_host=str(spec.params.get("virtualHost") or spec.params.get("vhost") or "/"),
        ssl=spec.ssl,
        connect_timeout=timeout,
        read_timeout=timeout,
        write_timeout=timeout,
        heartbeat=0,
    )


def mqtt_client(spec: ConnectionSpec, client_id: str, *, manual_ack: bool = False) -> Any:
    """A paho-mqtt 2.x client speaking MQTT 5 for an mqtt connection, not yet connected.

    Connect it with ``clean_start=False`` and a session expiry interval to
    keep a persistent session under ``client_id``: the broker keeps its
    subscriptions and the QoS 1 messages it got no acknowledgement for, and
    sends them again on the next connect. ``ssl`` connects over TLS.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=manual_ack
    )
    if spec.username:
        client.username_pw_set(spec.username, spec.password)
    if spec.ssl:
        client.tls_set()
    return client


def _test_mqtt(spec: ConnectionSpec, timeout: float) -> TestResult:
    import threading
    import uuid

    connected = threading.Event()
    answer: list[str] = []

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        answer.append(str(reason))
        connected.set()

    client = mqtt_client(spec, f"flowport-test-{uuid.uuid4().hex[:12]}")
    client.on_connect = on_connect
    client.connect(spec.host or "127.0.0.1", spec.effective_port() or 1883, keepalive=max(int(timeout), 5))
    client.loop_start()
    try:
        if not connected.wait(timeout):
            return TestResult(False, f"No answer from the MQTT broker of '{spec.name}' in {timeout:g}s")
    finally:
        client.disconnect()
        client.loop_stop()
    if answer and answer[0] == "Success":
        return TestResult(True, f"Connected to the MQTT broker '{spec.name}'")
    return TestResult(False, f"The MQTT broker of '{spec.name}' refused the connection: {answer[0]}")
