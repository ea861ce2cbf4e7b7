"""Opening connections with each vendor's driver.

Every message that leaves this module is scrubbed of the connection's
secrets: drivers sometimes echo the connection string back in errors.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flowport.connections.spec import ConnectionSpec
from flowport.errors import FlowportError, ValidationFailed

__all__ = [
    "ConnectionFailed",
    "TestResult",
    "adbc_uri",
    "connect_adbc",
    "connect_dbapi",
    "postgres_conninfo",
    "scrub_message",
    "sqlalchemy_url",
    "test_connection",
]

SQL_VENDORS = ("postgresql", "redshift", "mysql", "sqlite", "duckdb")


class ConnectionFailed(FlowportError):
    """The external system could not be reached or refused the login (message already scrubbed)."""

    status_code = 502


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
            import pymysql

            return pymysql.connect(
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
            return conn
        if spec.vendor == "duckdb":
            import duckdb

            return duckdb.connect(spec.database or ":memory:")
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
