"""SQL Query processor: a DuckDB query over the stage's input."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pyarrow as pa

from flowport.errors import StageError
from flowport.plugins.contract import Processor, StageConfig, StageOutput, setting
from flowport.stages._duckdb import DuckSession, duckdb_message

__all__ = ["SqlProcessor", "SqlProcessorConfig"]

INPUT_TABLE = "input"


class SqlProcessorConfig(StageConfig):
    """Settings of the SQL Query processor."""

    query: str = setting(
        label="Query",
        description="DuckDB SQL over the table 'input', e.g. SELECT customer, sum(total) AS total "
        "FROM input GROUP BY customer.",
        min_length=1,
    )
    per_batch: bool = setting(
        False,
        label="Per batch",
        description="Run the query on every batch separately (streaming, for row-wise queries). "
        "Off: run it once over the whole input (aggregations, joins, sorting), after the last batch.",
    )


class SqlProcessor(Processor[SqlProcessorConfig]):
    """Runs a DuckDB query over its input.

    Whole-input mode collects every batch into a table of a private on-disk
    DuckDB database (DuckDB spills to disk, so memory stays bounded) and runs
    the query once in :meth:`finish_batches`. Per-batch mode queries each batch as it
    comes. A query that fails is a stage error with DuckDB's message.
    """

    name = "sql"
    label = "SQL Query"
    description = "Runs a DuckDB SQL query over the input (per batch, or once over all of it)."
    config_model = SqlProcessorConfig

    def open(self) -> None:
        """Open the DuckDB database (on disk in whole-input mode)."""
        self._session = DuckSession(on_disk=not self.config.per_batch)
        self._has_input = False

    def close(self) -> None:
        """Close and delete the DuckDB database."""
        session = getattr(self, "_session", None)
        if session is not None:
            session.close()

    def _fail(self, exc: duckdb.Error) -> StageError:
        return StageError(self.context.stage_name, f"query failed: {duckdb_message(exc)}")

    def process(self, batch: pa.RecordBatch) -> StageOutput:
        """Per batch: the query's result. Whole input: store the batch, no output yet."""
        if not hasattr(self, "_session"):
            self.open()
        try:
            if self.config.per_batch:
                with self._session.registered(INPUT_TABLE, batch):
                    return StageOutput(records=self._session.table(self.config.query))
            with self._session.registered("__fp_batch", batch):
                if not self._has_input:
                    self._session.execute(f"CREATE TABLE {INPUT_TABLE} AS SELECT * FROM __fp_batch")
                    self._has_input = True
                else:
                    self._session.execute(f"INSERT INTO {INPUT_TABLE} BY NAME SELECT * FROM __fp_batch")
        except duckdb.Error as exc:
            raise self._fail(exc) from exc
        return StageOutput()

    def finish_batches(self) -> Iterator[StageOutput]:
        """Whole input: the query's result as a stream of batches (bounded memory)."""
        if self.config.per_batch or not getattr(self, "_has_input", False):
            # No batch ever came: there is no 'input' table (and no schema to make one).
            return
        try:
            reader = self._session.reader(self.config.query, self.context.batch_size)
        except duckdb.Error as exc:
            raise self._fail(exc) from exc
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except (duckdb.Error, pa.ArrowException) as exc:
                    raise StageError(self.context.stage_name, f"query failed: {duckdb_message(exc)}") from exc
                yield StageOutput(records=batch)
        finally:
            reader.close()
