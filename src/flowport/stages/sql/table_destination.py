"""Write SQL Table destination: bulk loads through a staging table, visible only at commit."""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
from pydantic import field_validator, model_validator

from flowport.errors import StageError
from flowport.plugins.contract import Destination, ErrorBatch, StageOutput, setting, visible_columns
from flowport.stages.sql._common import SqlConnectionConfig, connect_spec, driver_errors, open_sql
from flowport.stages.sql._connection import SqlConnection
from flowport.stages.sql._identifiers import check_identifier, parse_table_name
from flowport.stages.sql._load import TableLoad
from flowport.stages.sql.vendors import table_load

__all__ = ["SqlTableDestination", "SqlTableDestinationConfig"]


class SqlTableDestinationConfig(SqlConnectionConfig):
    """Settings of the Write SQL Table destination."""

    table: str = setting(
        label="Table",
        description="Table to write: 'table' or 'schema.table', each part taken exactly as written "
        "(quoted, so case matters on PostgreSQL).",
        min_length=1,
    )
    mode: Literal["append", "replace", "upsert"] = setting(
        "append",
        label="Mode",
        description="append: add the records; replace: the table ends up holding exactly the run's records "
        "(its definition is kept); upsert: update the rows whose keys match, add the others.",
    )
    keys: list[str] = setting(
        [],
        label="Keys",
        description="Columns identifying a row: required for upsert. A table this stage creates gets a "
        "unique key on them (in every mode), unless a Field Mapper declared them PRIMARY KEY.",
    )
    create_table: bool = setting(
        True,
        label="Create table",
        description="Create the table from the records' columns when it does not exist, with the SQL "
        "types a Field Mapper declared (and the constraints after them: PRIMARY KEY, NOT NULL, UNIQUE, "
        "DEFAULT), else types mapped from the data.",
    )

    copy_streams: int | None = setting(
        None,
        label="COPY streams",
        description="PostgreSQL, replace mode: COPY streams loading the staging table at once, each on "
        "its own connection, so the server parses and stores rows on as many cores. Empty: one stream, "
        "and a second one once the load has sent 500,000 rows. 1: always one stream (the whole load is "
        "one transaction). With more than one, the staging table is committed before the swap: a load "
        "killed outright leaves it, and the next load beside the same table that uses more than one "
        "stream drops it. Other vendors and modes load with one stream.",
        ge=1,
        le=16,
    )

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        parse_table_name(value)
        return value

    @field_validator("keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        for name in value:
            check_identifier(name, what="key column")
        if len(set(value)) != len(value):
            raise ValueError("keys must not repeat a column")
        return value

    @model_validator(mode="after")
    def _upsert_needs_keys(self) -> SqlTableDestinationConfig:
        if self.mode == "upsert" and not self.keys:
            raise ValueError("mode 'upsert' needs keys: the columns that identify a row")
        return self


class SqlTableDestination(Destination[SqlTableDestinationConfig]):
    """Loads records into a database table, atomically.

    Batches are bulk-loaded into a staging table (PostgreSQL: ADBC binary
    COPY; MariaDB: LOAD DATA LOCAL INFILE; SQLite: executemany in one
    transaction; DuckDB: straight from Arrow; Redshift: multi-row INSERTs).
    Nothing reaches the target before :meth:`commit`, which publishes the
    whole load in one step; :meth:`abort` drops the staging table and leaves
    the target exactly as it was. In ``replace`` mode the publish swaps the
    staging table in by renaming when nothing depends on the target, and
    otherwise replaces the rows in place in one transaction, so views, foreign
    keys, grants and triggers stay (see :mod:`flowport.stages.sql._load`).

    A record that violates a NOT NULL, primary key or unique constraint of
    the target (declared by a Field Mapper for a table this stage creates) is
    an error record of this stage (``SQL_NOT_NULL_VIOLATION``,
    ``SQL_DUPLICATE_KEY``) and the others load. Any other record the database
    rejects fails the stage with the database's message, and the run's load
    is aborted.
    """

    name = "sql_table_destination"
    label = "Write SQL Table"
    description = "Writes records to a database table (append, replace or upsert), atomically at the end."
    config_model = SqlTableDestinationConfig
    restrictions = frozenset({"network"})
    opens_while_running = True

    def open(self) -> None:
        """Connect and check the target (a missing table without create_table fails here).

        In a run this happens in the stage's own thread while the origin
        already reads; a failure here fails the run before anything is published.
        """
        self._load: TableLoad | None = None
        self._conn: SqlConnection | None = open_sql(
            self.context, self.config.connection, load_mode=self.config.mode
        )
        conn = self._conn
        stage = self.context.stage_name
        table = parse_table_name(self.config.table)
        try:
            try:
                conn.check_table(table)
            except ValueError as exc:
                raise StageError(stage, f"table '{self.config.table}': {exc}") from None
            with driver_errors(stage, conn.spec, f"cannot prepare table '{self.config.table}'"):
                load = table_load(
                    conn,
                    table,
                    mode=self.config.mode,
                    keys=self.config.keys,
                    create_table=self.config.create_table,
                    run_id=self.context.run_id,
                    stage=stage,
                    copy_streams=self.config.copy_streams,
                    connect=lambda: connect_spec(self.context, conn.spec),
                )
                load.prepare()
        except BaseException:
            # Nothing else would close it: a stage that did not open is not closed.
            self._conn = None
            conn.close()
            raise
        self._load = load

    def write(self, batch: pa.RecordBatch) -> StageOutput | None:
        """Stage one batch in the staging table; records violating a constraint come back as errors."""
        if getattr(self, "_load", None) is None:
            self.open()
        assert self._load is not None and self._conn is not None
        with driver_errors(self.context.stage_name, self._conn.spec, f"loading '{self.config.table}' failed"):
            rejected = self._load.write(visible_columns(batch))
        if rejected is None:
            return None
        # The records as this stage received them (lineage column included), in batch order.
        records = pa.Table.from_batches([batch]).take(rejected.positions)
        return StageOutput(errors=ErrorBatch(records, rejected.codes, rejected.messages))

    def commit(self) -> None:
        """Publish the load in one step."""
        load, conn = getattr(self, "_load", None), getattr(self, "_conn", None)
        if load is None or conn is None:
            return
        with driver_errors(self.context.stage_name, conn.spec, f"publishing '{self.config.table}' failed"):
            load.commit()

    def abort(self) -> None:
        """Drop the staging table; the target stays as it was."""
        load, conn = getattr(self, "_load", None), getattr(self, "_conn", None)
        if load is None or conn is None:
            return
        with driver_errors(self.context.stage_name, conn.spec, "cleaning up the staging table failed"):
            load.abort()

    def close(self) -> None:
        """Abort an unfinished load, then close the connection."""
        load, conn = getattr(self, "_load", None), getattr(self, "_conn", None)
        try:
            if load is not None and not load.finished:
                self.abort()
            if load is not None:
                load.close()
        finally:
            self._load = None
            if conn is not None:
                self._conn = None
                conn.close()
