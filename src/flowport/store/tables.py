"""Declarative models of the metadata database.

Column types are chosen to be portable across SQLite, PostgreSQL and
MySQL/MariaDB; every schema change goes through an Alembic revision in
``migrations/versions`` (the models are not used to create tables).
"""

from __future__ import annotations

import uuid as _uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    Uuid,
)
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "Connection", "Instance", "UTCDateTime", "utcnow"]

# Deterministic constraint names, so that later migrations can address them
# on every database (SQLite included, through batch mode).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


# MySQL's DATETIME drops fractions of a second unless asked for them.
_TIMESTAMP = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_JSON = JSON().with_variant(postgresql.JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always aware and in UTC in Python, whatever the database keeps.

    SQLite and MySQL have no time zones: they store naive UTC and this type
    puts ``tzinfo=UTC`` back when reading.
    """

    impl = _TIMESTAMP
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Aware datetimes only, converted to UTC (naive UTC for databases without zones)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UTCDateTime needs a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """An aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


class Base(DeclarativeBase):
    """Base of every model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Instance(Base):
    """This Flowport instance: one row, written by ``flowport init``.

    Packages record the exporting instance's ``uuid`` so an import can tell
    where a package came from.
    """

    __tablename__ = "instance"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, default=1)
    uuid: Mapped[_uuid.UUID] = mapped_column(Uuid(), unique=True, default=_uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Connection(Base):
    """A stored connection. ``secret`` is the Fernet token of the JSON secrets, never plaintext."""

    __tablename__ = "connections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[_uuid.UUID] = mapped_column(Uuid(), unique=True, default=_uuid.uuid4)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    vendor: Mapped[str] = mapped_column(String(32))
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(_JSON, default=dict)
    ssl: Mapped[bool] = mapped_column(Boolean, default=False)
    credential_type: Mapped[str] = mapped_column(String(64), default="basic")
    username: Mapped[str | None] = mapped_column(String(255))
    secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    is_global: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    creator_id: Mapped[int | None] = mapped_column(Integer)
    updater_id: Mapped[int | None] = mapped_column(Integer)

    def __repr__(self) -> str:
        # Never the secret blob: a repr ends up in logs and tracebacks.
        return f"Connection(id={self.id!r}, uuid={self.uuid!r}, name={self.name!r}, vendor={self.vendor!r})"
