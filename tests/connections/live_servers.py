"""Real servers for connection tests: the PostgreSQL and MariaDB of the test environment.

PostgreSQL at 127.0.0.1:5432 trusts every local login (user ``postgres``),
so a wrong password cannot fail there; a missing role does. MariaDB at
127.0.0.1:3306 (root, no password) checks passwords: :func:`mariadb_account`
creates an account whose password is :data:`PLANTED`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pymysql
from tests.conftest import require_service

# A password that must never show up in any output, log record or message.
PLANTED = "Sup3r-S3cret-pw!"
WRONG = "Wr0ng-S3cret-pw?"

PG_HOST, PG_PORT = "127.0.0.1", 5432
MARIADB_HOST, MARIADB_PORT = "127.0.0.1", 3306


def require_postgres() -> None:
    """Skip (or fail in CI) without the test PostgreSQL."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)


def require_mariadb() -> None:
    """Skip (or fail in CI) without the test MariaDB."""
    require_service("MariaDB", MARIADB_HOST, MARIADB_PORT)


@contextmanager
def postgres_database(prefix: str = "flowport_test") -> Iterator[str]:
    """A new, uniquely named PostgreSQL database (its name), dropped afterwards."""
    require_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres", autocommit=True
    ) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(
            host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres", autocommit=True
        ) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def mariadb_database(prefix: str = "flowport_test") -> Iterator[str]:
    """A new, uniquely named MariaDB database (its name), dropped afterwards."""
    require_mariadb()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root", password="", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@contextmanager
def mariadb_account(password: str = PLANTED) -> Iterator[str]:
    """A MariaDB user (its name) that logs in with ``password`` only; dropped afterwards."""
    require_mariadb()
    user = f"fp_{uuid.uuid4().hex[:10]}"
    conn = pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root", password="", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
        yield user
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@'%%'", (user,))
        conn.close()


def exception_text(exc: BaseException) -> str:
    """str and repr of an exception and of everything chained to it (cause and context)."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(getattr(current, "details", None))]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)
