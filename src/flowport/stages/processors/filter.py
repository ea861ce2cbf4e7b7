"""Filter processor: keeps the records for which a SQL condition is true."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from flowport.errors import StageError
from flowport.plugins.contract import ErrorBatch, FusedSql, Processor, StageConfig, StageOutput, setting
from flowport.stages._duckdb import (
    DuckSession,
    duckdb_message,
    is_statement_error,
    isolate_failures,
    quote_ident,
)

__all__ = ["Filter", "FilterConfig"]

FILTER_FAILED = "FILTER_EXPRESSION_FAILED"


class FilterConfig(StageConfig):
    """Settings of the Filter."""

    condition: str = setting(
        label="Condition",
        description="DuckDB SQL boolean expression over the record's columns, e.g. "
        "status = 'paid' AND total > 100. Records where it is false or NULL are dropped.",
        min_length=1,
    )


class Filter(Processor[FilterConfig]):
    """Keeps the records whose condition is true.

    The condition is evaluated by DuckDB over the whole Arrow batch and only
    the resulting mask is applied to the batch, so the records go on with
    their original Arrow types. When evaluation fails on some values (a
    failed conversion, say), only the records that fail on their own become
    error records (``FILTER_EXPRESSION_FAILED``, DuckDB's message); the rest
    are filtered normally.
    """

    name = "filter"
    label = "Filter"
    description = "Keeps records for which a SQL condition is true; drops the others."
    config_model = FilterConfig

    def open(self) -> None:
        """Open the DuckDB connection."""
        self._session = DuckSession()
        self._query = f"SELECT ({self.config.condition}) AS keep FROM __fp_batch"

    def close(self) -> None:
        """Close the DuckDB connection."""
        session = getattr(self, "_session", None)
        if session is not None:
            session.close()

    def fused_sql(self, source: str, columns: list[str], carry: list[str], tag: str) -> FusedSql | None:
        """The condition as a TRY()'d verdict column; rows it cannot decide are re-checked by process()."""
        keep = f"{tag}keep"
        passed = ", ".join(quote_ident(c) for c in [*columns, *carry])
        query = f"SELECT {passed}, TRY(({self.config.condition})) AS {quote_ident(keep)} FROM ({source})"
        return FusedSql(query=query, columns=list(columns), keep_column=keep)

    def _mask(self, batch: pa.RecordBatch) -> pa.Array[Any]:
        """The condition's value for every row of ``batch`` (DuckDB errors propagate)."""
        with self._session.registered("__fp_batch", batch):
            relation = self._session.relation(self._query)
            kind = str(relation.types[0])
            if kind not in ("BOOLEAN", '"NULL"'):
                raise StageError(self.context.stage_name, f"the condition gives {kind}, not a boolean")
            result: pa.Table = relation.to_arrow_table()
        mask = result.column(0).combine_chunks()
        # A condition that is the NULL literal has type NULL: no row is kept.
        return mask if pa.types.is_boolean(mask.type) else mask.cast(pa.bool_())

    def process(self, batch: pa.RecordBatch) -> StageOutput:
        """Filter one batch."""
        if not hasattr(self, "_session"):
            self.open()
        try:
            # pc.filter drops rows whose mask is null, as SQL's WHERE does.
            return StageOutput(records=batch.filter(self._mask(batch)))
        except duckdb.Error as exc:
            if is_statement_error(exc):
                raise StageError(
                    self.context.stage_name, f"invalid condition: {duckdb_message(exc)}"
                ) from exc
        # Error path only: find the records that fail on their own.
        try:
            found = isolate_failures(batch, self._mask)
        except duckdb.Error as exc:
            raise StageError(self.context.stage_name, f"invalid condition: {duckdb_message(exc)}") from exc
        assert found.good is not None
        evaluated = batch.filter(found.good)
        keep = pa.concat_arrays(found.results) if found.results else pa.array([], pa.bool_())
        bad = batch.take(pa.array(found.failed, pa.int64()))
        errors = ErrorBatch(
            pa.Table.from_batches([bad]),
            pa.repeat(pa.scalar(FILTER_FAILED, pa.string()), len(found.failed)),
            pa.array(found.messages, pa.string()),
        )
        return StageOutput(records=evaluated.filter(keep), errors=errors)
