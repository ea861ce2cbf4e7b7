"""SQL Query origin: the result of one query, streamed in batches."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import pyarrow as pa
from pydantic import field_validator, model_validator

from flowport.plugins.contract import Origin, StageOutput, setting
from flowport.stages._files import limited
from flowport.stages.sql._common import SqlConnectionConfig, driver_errors, open_sql
from flowport.stages.sql._connection import SqlConnection
from flowport.stages.sql._params import bind_named, strip_statement_end

__all__ = ["ParameterValue", "SqlQueryOrigin", "SqlQueryOriginConfig"]

ParameterValue = str | int | float | bool | None
_PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SqlQueryOriginConfig(SqlConnectionConfig):
    """Settings of the SQL Query origin."""

    query: str = setting(
        label="Query",
        description="A SELECT in the database's SQL. Reference parameters as :name; "
        "e.g. SELECT * FROM orders WHERE created_at >= :since.",
        min_length=1,
    )
    parameters: dict[str, ParameterValue] = setting(
        {},
        label="Parameters",
        description="Values for the query's :name parameters. They are bound by the database driver, "
        "never pasted into the SQL text.",
    )

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the query is empty")
        return value

    @field_validator("parameters")
    @classmethod
    def _names(cls, value: dict[str, ParameterValue]) -> dict[str, ParameterValue]:
        for name in value:
            if not _PARAMETER_NAME.match(name):
                raise ValueError(f"parameter name '{name}' must be letters, digits and _ (not first a digit)")
        return value

    @model_validator(mode="after")
    def _parameters_match(self) -> SqlQueryOriginConfig:
        if self.parameters:
            bind_named(self.query, self.parameters, "qmark")  # ValueError names what is missing or unused
        return self


class SqlQueryOrigin(Origin[SqlQueryOriginConfig]):
    """Runs one query and streams its rows in batches of the flow's batch size.

    Memory stays bounded: PostgreSQL results come through ADBC's binary COPY
    stream (or, with parameters, a server-side cursor fetched batch by
    batch), MariaDB through an unbuffered cursor, SQLite through fetchmany
    and DuckDB through its Arrow reader. Parameters are bound by the driver.
    """

    name = "sql_query_origin"
    label = "SQL Query Origin"
    description = "Reads the result of a SQL query (with bound :name parameters) from a database connection."
    config_model = SqlQueryOriginConfig
    restrictions = frozenset({"execute-sql", "network"})

    def open(self) -> None:
        """Connect to the database."""
        self._conn: SqlConnection | None = open_sql(self.context, self.config.connection)

    def close(self) -> None:
        """Close the connection."""
        conn = getattr(self, "_conn", None)
        if conn is not None:
            self._conn = None
            # A failed read may have left the transaction aborted: closing anyway.
            with contextlib.suppress(Exception):
                conn.rollback()
            conn.close()

    def batches(self) -> Iterator[pa.RecordBatch | StageOutput]:
        """Stream the query's result."""
        if getattr(self, "_conn", None) is None:
            self.open()
        conn = self._conn
        assert conn is not None
        stage = self.context.stage_name
        with driver_errors(stage, conn.spec, "the query failed"):
            query = strip_statement_end(
                self.config.query, backslash_escapes=conn.capabilities.backslash_escapes
            )
            stream = conn.stream(query, self.config.parameters, max(1, self.context.batch_size))
            try:
                yield from limited(self.context, stream)
            finally:
                stream.close()
