"""PostgreSQL: ADBC connection, binary COPY loads, one transaction from staging table to swap."""

from __future__ import annotations

from flowport.stages.sql.vendors.postgres.connection import IngestStream, PostgresConnection
from flowport.stages.sql.vendors.postgres.load import PostgresLoad

__all__ = ["IngestStream", "PostgresConnection", "PostgresLoad"]

PostgresConnection.load = PostgresLoad
