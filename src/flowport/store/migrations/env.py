"""Alembic environment of the metadata store.

Flowport runs migrations itself (:mod:`flowport.store.schema`) and hands
the open connection over in ``config.attributes["connection"]``, so no
``alembic.ini`` is needed at runtime. For a developer running the
``alembic`` command (e.g. ``revision --autogenerate``) the URL comes from
``sqlalchemy.url`` or, failing that, ``FLOWPORT_DATABASE_URL``/``FLOWPORT_HOME``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from flowport.store.database import database_url, get_engine
from flowport.store.tables import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url") or database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the connection Flowport passed, or on a new one."""
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = get_engine(config.get_main_option("sqlalchemy.url") or database_url())
    with engine.begin() as new_connection:
        _configure(new_connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
