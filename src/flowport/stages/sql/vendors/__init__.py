"""SQL vendors, one module (or package) each, and the one registry that maps a vendor name to its class.

A vendor is a :class:`~flowport.stages.sql._connection.SqlConnection`
subclass: how it connects, spells SQL and reads the catalog, its
:class:`~flowport.stages.sql._connection.Capabilities` (the facts shared
code branches on) and its :class:`~flowport.stages.sql._load.TableLoad`
subclass (``load``). Adding a warehouse is one new module and one line in
:data:`VENDORS`; a vendor that speaks another's dialect subclasses it and
overrides what differs (Redshift and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from flowport.connections.spec import ConnectionSpec
from flowport.errors import ValidationFailed
from flowport.stages.sql._connection import SqlConnection
from flowport.stages.sql._identifiers import TableName
from flowport.stages.sql._load import LoadMode, TableLoad
from flowport.stages.sql.vendors.duckdb import DuckDbConnection
from flowport.stages.sql.vendors.mariadb import MariaDbConnection
from flowport.stages.sql.vendors.postgres import PostgresConnection
from flowport.stages.sql.vendors.redshift import RedshiftConnection
from flowport.stages.sql.vendors.sqlite import SqliteConnection

__all__ = ["VENDORS", "open_connection", "table_load", "vendor_class"]

#: Connection vendor name -> the class that implements it.
VENDORS: dict[str, type[SqlConnection]] = {
    cls.vendor: cls
    for cls in (PostgresConnection, RedshiftConnection, MariaDbConnection, SqliteConnection, DuckDbConnection)
}


def vendor_class(spec: ConnectionSpec) -> type[SqlConnection]:
    """The class of the connection's SQL vendor (ValidationFailed when it is not a SQL database)."""
    cls = VENDORS.get(spec.vendor)
    if cls is None:
        raise ValidationFailed(
            f"Connection '{spec.name}' is a {spec.vendor} connection, not a SQL database "
            f"({', '.join(sorted(VENDORS))})"
        )
    return cls


def open_connection(spec: ConnectionSpec) -> SqlConnection:
    """Connect to a SQL database with its vendor's class."""
    return vendor_class(spec).open(spec)


def table_load(
    conn: SqlConnection,
    table: TableName,
    *,
    mode: LoadMode,
    keys: Sequence[str],
    create_table: bool,
    run_id: str,
    stage: str,
    copy_streams: int | None = 1,
    connect: Callable[[], SqlConnection] | None = None,
) -> TableLoad:
    """The staged load for the connection's vendor (``connect``: see :attr:`TableLoad.connect`)."""
    return conn.load(
        conn,
        table,
        mode=mode,
        keys=keys,
        create_table=create_table,
        run_id=run_id,
        stage=stage,
        copy_streams=copy_streams,
        connect=connect,
    )
