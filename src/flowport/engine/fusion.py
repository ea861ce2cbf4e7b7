"""Fusing an origin and the processors after it into one DuckDB query.

DESIGN.md: "A chain of SQL-expressible stages may be fused into one DuckDB
query." When an origin reads through DuckDB (CSV) and the stages after it
are a field mapper and/or filters, running each stage on its own means
every batch crosses from DuckDB to Arrow and back once per stage. Fused,
DuckDB reads, converts and evaluates the conditions in one parallel query,
and only the result crosses into Arrow once.

Results are exactly those of the unfused run:

* each fused stage adds control columns (an error message, the record it
  received, a filter verdict), and :class:`FusedChain` turns them back into
  per-stage metrics, error records and on_record_error handling;
* a filter verdict SQL could not decide (NULL condition, or an error such
  as a failed conversion) is handed to the stage's own ``process`` for just
  those rows, so errors become error records as without fusion.

What is fused: a linear chain (each stage has exactly one input and one
output) of an origin, then field mappers, then filters. Under
``ORIGINAL_RECORD`` only the first mapper may fuse (its input is the
origin's record) and nothing after the chain may produce error records
that need the origin's record, so the chain only fuses when every stage
after it is a destination.

A stage whose SQL does not bind against its input (a syntax or binder
error, a function the sandbox refuses) ends the chain before it: the stage
then runs on its own and fails under its own name, instead of the origin
being blamed for a query it did not write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowport.engine.plan import PlannedStage
from flowport.errors import StageError
from flowport.model.flow import ErrorRecordPolicy, StageKind
from flowport.plugins.contract import HIDDEN_PREFIX, ErrorBatch, FusedSql, Origin, Processor

__all__ = ["FusedChain", "FusedStep", "plan_fusion"]

_POSITION = "__fp_pos"
# Stands for the origin's SELECT while the fused query is built.
_SOURCE = "__fp_source_7f3a9c__"


@dataclass
class FusedStep:
    """One processor inside a fused query."""

    stage: PlannedStage
    sql: FusedSql
    input_columns: list[str]
    is_filter: bool


@dataclass
class Split:
    """What one fused batch means for each fused stage."""

    records: pa.RecordBatch | None
    errors: list[tuple[PlannedStage, ErrorBatch]] = field(default_factory=list)
    counts: list[tuple[PlannedStage, int, int]] = field(default_factory=list)  # (stage, input, output)


@dataclass
class FusedChain:
    """An origin with the processors fused into its query."""

    origin: PlannedStage
    steps: list[FusedStep]
    columns: list[str]

    @property
    def outputs(self) -> list[str]:
        """Where the chain's records go: the outputs of its last stage."""
        return self.steps[-1].stage.outputs

    def split(self, batch: pa.RecordBatch) -> Split:
        """Metrics, error records and the surviving records of one fused batch."""
        n = batch.num_rows
        # ``alive`` stays None while every row is alive: the common case costs nothing.
        alive: Any = None
        alive_count = n
        result = Split(records=None)
        for step in self.steps:
            count_in = alive_count
            if step.sql.error_column is not None:
                messages = batch.column(step.sql.error_column)
                if messages.null_count < n:
                    bad = pc.is_valid(messages)
                    if alive is not None:
                        bad = pc.and_(bad, alive)
                    if pc.any(bad).as_py():
                        self._collect_errors(step, batch, bad, messages, result)
                        alive = pc.invert(bad) if alive is None else pc.and_(alive, pc.invert(bad))
                        alive_count = int(pc.sum(alive).as_py() or 0)
            if step.sql.keep_column is not None:
                verdict: Any = batch.column(step.sql.keep_column)
                if not (pa.types.is_boolean(verdict.type) or pa.types.is_null(verdict.type)):
                    raise StageError(step.stage.name, f"the condition gives {verdict.type}, not a boolean")
                keep: Any = pc.fill_null(verdict, False) if verdict.null_count else verdict
                if verdict.null_count:
                    unknown: Any = pc.is_null(verdict)
                    if alive is not None:
                        unknown = pc.and_(unknown, alive)
                    if pc.any(unknown).as_py():
                        keep = pc.or_(keep, self._recheck(step, batch, unknown, result))
                alive = keep if alive is None else pc.and_(alive, keep)
                alive_count = int(pc.sum(alive).as_py() or 0)
            result.counts.append((step.stage, count_in, alive_count))
        if alive_count:
            survivors = batch if alive is None or alive_count == n else batch.filter(alive)
            result.records = survivors.select(self.columns)
        return result

    def _collect_errors(
        self,
        step: FusedStep,
        batch: pa.RecordBatch,
        bad: pa.Array[Any],
        messages: pa.Array[Any],
        result: Split,
    ) -> None:
        if step.sql.input_column is not None:
            packed: Any = batch.column(step.sql.input_column).filter(bad)
            records = pa.Table.from_struct_array(packed)
        else:
            records = _visible(batch.filter(bad), step.input_columns)
        msgs = messages.filter(bad)
        codes = pa.repeat(pa.scalar(step.sql.error_code, pa.string()), len(msgs))
        result.errors.append((step.stage, ErrorBatch(records, codes, msgs)))

    def _recheck(
        self, step: FusedStep, batch: pa.RecordBatch, unknown: pa.Array[Any], result: Split
    ) -> pa.Array[Any]:
        """Ask the stage itself about rows SQL could not decide; the rows it keeps, as a mask."""
        positions = np.nonzero(np.asarray(unknown.to_numpy(zero_copy_only=False), dtype=bool))[0]
        rows = _visible(batch.filter(unknown), step.input_columns)
        rows = rows.append_column(_POSITION, pa.array(positions, pa.int64()))
        plugin = step.stage.plugin
        assert isinstance(plugin, Processor)
        kept = np.zeros(batch.num_rows, dtype=bool)
        for piece in rows.to_batches():
            out = plugin.process(piece)
            if out.records is not None and out.records.num_rows:
                kept[np.asarray(out.records.column(_POSITION).to_numpy(zero_copy_only=False))] = True
            if out.errors is not None and out.errors.num_rows:
                errors = out.errors
                visible = [c for c in errors.records.column_names if c != _POSITION]
                result.errors.append(
                    (step.stage, ErrorBatch(errors.records.select(visible), errors.codes, errors.messages))
                )
        return pa.array(kept)


def _visible(batch: pa.RecordBatch | pa.Table, columns: list[str]) -> pa.Table:
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    return table.select(columns)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def plan_fusion(planned: list[PlannedStage], policy: ErrorRecordPolicy) -> list[FusedChain]:
    """Fuse every origin that can with the chain of processors after it."""
    by_name = {p.name: p for p in planned}
    inputs_of = {p.name: p.inputs for p in planned}
    chains: list[FusedChain] = []
    for origin in planned:
        if not isinstance(origin.plugin, Origin) or len(origin.outputs) != 1:
            continue
        columns = origin.plugin.fusable_columns()
        if not columns or any(c.startswith(HIDDEN_PREFIX) for c in columns):
            continue
        steps: list[FusedStep] = []
        origin_columns = list(columns)
        source = _SOURCE
        current, carry, seen_filter, mapped = origin, list[str](), False, 0
        while len(current.outputs) == 1:
            nxt = by_name.get(current.outputs[0])
            if nxt is None or not isinstance(nxt.plugin, Processor) or len(inputs_of[nxt.name]) != 1:
                break
            tag = f"__fp_c{len(steps)}_"
            fused = nxt.plugin.fused_sql(source, columns, carry, tag)
            if fused is None:
                break
            is_filter = fused.keep_column is not None
            if not _binds(_substitute(fused.query, _probe_source(origin_columns))):
                break
            if (not is_filter and seen_filter) or (
                not is_filter and policy == "ORIGINAL_RECORD" and mapped >= 1
            ):
                break
            steps.append(FusedStep(nxt, fused, list(columns), is_filter))
            carry = carry + [c for c in (fused.error_column, fused.input_column, fused.keep_column) if c]
            columns = list(fused.columns)
            source = fused.query
            seen_filter |= is_filter
            mapped += 0 if is_filter else 1
            current = nxt
        if not steps:
            continue
        if policy == "ORIGINAL_RECORD" and not _only_destinations_after(steps[-1].stage, by_name):
            continue
        origin.plugin.fuse(partial(_substitute, source))
        chains.append(FusedChain(origin, steps, columns))
    return chains


def _probe_source(columns: list[str]) -> str:
    # The DuckDB origins that fuse (CSV) read every column as text.
    return "SELECT " + ", ".join(f"CAST(NULL AS VARCHAR) AS {_quote(c)}" for c in columns) + " LIMIT 0"


def _binds(query: str) -> bool:
    """Whether ``query`` binds (parses, names known columns and functions) in a sandboxed DuckDB."""
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        con.sql(query).columns  # noqa: B018 - binding is the point
    except duckdb.Error:
        return False
    finally:
        con.close()
    return True


def _substitute(query: str, select: str) -> str:
    return query.replace(_SOURCE, f"({select})")


def _only_destinations_after(stage: PlannedStage, by_name: dict[str, Any]) -> bool:
    pending = list(stage.outputs)
    while pending:
        p = by_name.get(pending.pop())
        if p is None:
            continue
        if p.kind not in (StageKind.DESTINATION, StageKind.EXECUTOR):
            return False
        pending.extend(p.outputs)
    return True
