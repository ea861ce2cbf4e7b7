"""Expression Evaluator processor: derived fields from SQL expressions."""

from __future__ import annotations

import duckdb
import pyarrow as pa
from pydantic import model_validator

from flowport.errors import StageError
from flowport.plugins.contract import HIDDEN_PREFIX, ErrorBatch, Processor, StageConfig, StageOutput, setting
from flowport.stages._duckdb import (
    DuckSession,
    duckdb_message,
    is_statement_error,
    isolate_failures,
    quote_ident,
)

__all__ = ["Expression", "ExpressionConfig", "ExpressionField"]

EXPRESSION_FAILED = "EXPRESSION_FAILED"


class ExpressionField(StageConfig):
    """One derived field."""

    name: str = setting(
        label="Name", description="Output column; an existing column of that name is replaced.", min_length=1
    )
    expression: str = setting(
        label="Expression",
        description="DuckDB SQL expression over the record's columns and the fields defined before this one, "
        "e.g. quantity * unit_price.",
        min_length=1,
    )


class ExpressionConfig(StageConfig):
    """Settings of the Expression Evaluator."""

    fields: list[ExpressionField] = setting(
        label="Fields",
        description="Fields to compute, in order: [{name, expression}]. Later expressions may use "
        "earlier fields.",
        min_length=1,
    )

    @model_validator(mode="after")
    def _no_engine_columns(self) -> ExpressionConfig:
        for item in self.fields:
            if item.name.startswith(HIDDEN_PREFIX):
                raise ValueError(
                    f"field '{item.name}': names starting with '{HIDDEN_PREFIX}' belong to the engine"
                )
        return self


class Expression(Processor[ExpressionConfig]):
    """Adds or replaces fields computed by SQL expressions; every other column passes unchanged.

    All expressions of a batch run in one DuckDB query (a chain of
    subqueries, so each expression sees the fields defined before it). Only
    the computed columns come back from DuckDB; the others keep their
    original Arrow data. Records on which an expression fails on their own
    become error records (``EXPRESSION_FAILED``, DuckDB's message).
    """

    name = "expression"
    label = "Expression Evaluator"
    description = "Computes new or replacement fields from SQL expressions, in order."
    config_model = ExpressionConfig

    def open(self) -> None:
        """Open the DuckDB connection."""
        self._session = DuckSession()
        self._plans: dict[tuple[str, ...], tuple[str, list[tuple[str, int | None]]]] = {}

    def close(self) -> None:
        """Close the DuckDB connection."""
        session = getattr(self, "_session", None)
        if session is not None:
            session.close()

    def _plan(self, columns: list[str]) -> tuple[str, list[tuple[str, int | None]]]:
        """The query for a batch with ``columns`` and where each computed column goes.

        Returns the SQL and, per computed column, its output name and the
        index of the input column it replaces (None: appended).
        """
        key = tuple(columns)
        if key in self._plans:
            return self._plans[key]
        # DuckDB resolves names ignoring case, so "Total" replaces "total".
        current = {name.lower(): name for name in columns}
        query = "SELECT * FROM __fp_batch"
        outputs: dict[str, str] = {}  # lower-cased name -> output name, in first-computed order
        for item in self.config.fields:
            existing = current.get(item.name.lower())
            if existing is not None:
                query = (
                    f"SELECT * REPLACE (({item.expression}) AS {quote_ident(existing)}) FROM ({query}) AS t"
                )
                outputs.setdefault(existing.lower(), existing)
            else:
                query = f"SELECT *, ({item.expression}) AS {quote_ident(item.name)} FROM ({query}) AS t"
                current[item.name.lower()] = item.name
                outputs.setdefault(item.name.lower(), item.name)
        final = f"SELECT {', '.join(quote_ident(n) for n in outputs.values())} FROM ({query}) AS t"
        positions = {name: index for index, name in enumerate(columns)}
        placed = [(name, positions.get(name)) for name in outputs.values()]
        self._plans[key] = (final, placed)
        return final, placed

    def _evaluate(self, batch: pa.RecordBatch) -> pa.Table:
        query, _ = self._plan(batch.schema.names)
        with self._session.registered("__fp_batch", batch):
            return self._session.table(query)

    def process(self, batch: pa.RecordBatch) -> StageOutput:
        """Compute the fields for one batch."""
        if not hasattr(self, "_session"):
            self.open()
        errors: ErrorBatch | None = None
        try:
            computed = self._evaluate(batch)
            good = batch
        except duckdb.Error as exc:
            if is_statement_error(exc):
                raise StageError(
                    self.context.stage_name, f"invalid expression: {duckdb_message(exc)}"
                ) from exc
            # Error path only: find the records that fail on their own.
            try:
                found = isolate_failures(batch, self._evaluate)
            except duckdb.Error as inner:
                raise StageError(
                    self.context.stage_name, f"invalid expression: {duckdb_message(inner)}"
                ) from inner
            assert found.good is not None
            good = batch.filter(found.good)
            bad = batch.take(pa.array(found.failed, pa.int64()))
            errors = ErrorBatch(
                pa.Table.from_batches([bad]),
                pa.repeat(pa.scalar(EXPRESSION_FAILED, pa.string()), len(found.failed)),
                pa.array(found.messages, pa.string()),
            )
            if not found.results:
                return StageOutput(errors=errors)
            computed = pa.concat_tables(found.results, promote_options="permissive")
        _, placed = self._plan(batch.schema.names)
        table = pa.Table.from_batches([good], schema=batch.schema)
        for index, (name, position) in enumerate(placed):
            column = computed.column(index)
            if position is None:
                table = table.append_column(pa.field(name, column.type), column)
            else:
                table = table.set_column(position, pa.field(name, column.type), column)
        return StageOutput(records=table, errors=errors)
