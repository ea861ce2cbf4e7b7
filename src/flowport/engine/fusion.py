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

When the chain's only output is a destination that offers to have its file
written by the query feeding it (the Parquet File destination), the chain
writes that file itself: ``COPY (fused select) TO <the destination's
temporary file>`` in the origin's connection, so the records never cross
into Arrow and back (:class:`FusedCopy`). Only the rows the fused query
cannot settle alone (an error message or an undecided filter verdict) are
read again, streamed as above and split as above; rows dropped by a filter
are counted by the COPY itself (one DuckDB sequence per filter), and the
engine is handed one batch without data that stands for the written and
dropped rows, so every stage's metrics are those of a streamed run. The
destination still publishes (renames) the file only on commit.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowport.connections import duckdb_spares
from flowport.engine.plan import PlannedStage
from flowport.errors import StageError
from flowport.model.flow import ErrorRecordPolicy, StageKind
from flowport.plugins.contract import HIDDEN_PREFIX, ErrorBatch, FusedSql, Origin, Processor

__all__ = ["FusedChain", "FusedCopy", "FusedStep", "plan_fusion"]

_POSITION = "__fp_pos"
# Stands for the origin's SELECT while the fused query is built.
_SOURCE = "__fp_source_7f3a9c__"
# Marks the batches that stand for rows a fused COPY wrote (or dropped) itself.
_COPIED = b"flowport.fused_copy"
#: Names of DuckDB's built-in functions that always give the same result (_consistent_functions).
_CONSISTENT: frozenset[str] | None = None
#: Functions the fused queries of the built-in stages call, and a few that conditions often do, all
#: CONSISTENT in DuckDB (a test holds the list to DuckDB's own): a query calling only these needs
#: no listing of DuckDB's functions (see _Probe.repeatable).
KNOWN_CONSISTENT = frozenset(
    {
        "||", "concat", "concat_ws", "left", "struct_pack", "list_value",
        "lower", "upper", "trim", "length", "abs", "round", "substr", "substring", "starts_with",
        "ends_with", "contains", "regexp_matches", "strftime", "date_trunc", "to_json", "json_extract",
        "+", "-", "*", "/", "%",
    }
)  # fmt: skip
_CONSISTENT_LOCK = threading.Lock()


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
    #: Set when the chain writes its destination's file itself.
    copy: FusedCopy | None = None

    @property
    def outputs(self) -> list[str]:
        """Where the chain's records go: the outputs of its last stage."""
        return self.steps[-1].stage.outputs

    def split(self, batch: pa.RecordBatch) -> Split:
        """Metrics, error records and the surviving records of one fused batch."""
        if FusedCopy.is_placeholder(batch):
            return self._split_placeholder(batch)
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

    def _split_placeholder(self, batch: pa.RecordBatch) -> Split:
        """:meth:`split` of a batch standing for rows a fused COPY settled itself (see
        :meth:`FusedCopy.placeholder`): no error messages, and each filter's verdict TRUE on a
        prefix of the rows, so the survivors of every step are a prefix too: counted, not filtered
        (a filter over millions of placeholder rows cost a tenth of a second)."""
        alive_count = batch.num_rows
        result = Split(records=None)
        for step in self.steps:
            count_in = alive_count
            if step.sql.keep_column is not None:
                kept = int(pc.sum(batch.column(step.sql.keep_column)).as_py() or 0)
                alive_count = min(alive_count, kept)
            result.counts.append((step.stage, count_in, alive_count))
        if alive_count:
            result.records = batch.slice(0, alive_count).select(self.columns)
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


class FusedCopy:
    """A fused chain that writes its destination's file in the same DuckDB query.

    The origin runs :meth:`copy_statement` (after :meth:`prepare`) in its own
    connection: the rows every fused stage settles alone (no error message,
    every filter verdict TRUE) go straight into ``path``; a row dropped by a
    filter (verdict FALSE) bumps that filter's sequence; a row the chain
    cannot settle in SQL (an error message, or a verdict SQL could not
    decide) bumps ``__fp_special`` and is left out. :meth:`counts_query`
    then says how many of each there were. When some rows were left out, the
    origin reads them again with :meth:`special_select` and hands them to the
    engine as ordinary fused batches, so they become exactly the error
    records, re-checks and metrics of a streamed run (a row the stage itself
    keeps on re-check reaches the destination's ``write``, which adds it to
    the file). :meth:`placeholder` is one batch without data standing for the
    rows the COPY wrote or dropped: split like any fused batch, it gives every
    fused stage and the destination the counts of a streamed run, and the
    destination recognises it (:meth:`is_placeholder`) and writes nothing.
    """

    _SPECIAL = "__fp_special"

    def __init__(self, chain: FusedChain, path: Path, options: str, destination: str) -> None:
        self.chain = chain
        self.path = path
        self.options = options
        self.destination = destination
        #: Set by the origin once the COPY wrote ``path`` (from then on the destination publishes it).
        self.copied = False
        self._filters = [s for s in chain.steps if s.sql.keep_column is not None]
        # (condition, outcome) in the order a streamed split looks at them; outcome is None for
        # "left out for the engine", else the index of the filter that drops the row.
        self._cases: list[tuple[str, int | None]] = []
        for step in chain.steps:
            if step.sql.error_column is not None:
                self._cases.append((f"{_quote(step.sql.error_column)} IS NOT NULL", None))
            if step.sql.keep_column is not None:
                keep = _quote(step.sql.keep_column)
                self._cases.append((f"{keep} IS NULL", None))
                self._cases.append((f"NOT {keep}", self._filters.index(step)))

    def _sequence(self, outcome: int | None) -> str:
        return self._SPECIAL if outcome is None else f"__fp_dropped{outcome}"

    def _sequences(self) -> list[str]:
        return [self._SPECIAL] + [self._sequence(i) for i in range(len(self._filters))]

    def accepts(self, types: dict[str, str]) -> bool:
        """Whether the fused query (its column types) allows the COPY: every verdict a BOOLEAN.

        Otherwise the chain streams, and a verdict of another type fails as it does there.
        """
        self._types = types
        return all(types.get(step.sql.keep_column or "") == "BOOLEAN" for step in self._filters)

    def prepare(self) -> list[str]:
        """Statements that create the counters (each used once, so ``currval`` - 1 is its count)."""
        statements = []
        for name in self._sequences():
            statements.append(f"CREATE TEMP SEQUENCE {name}")
            statements.append(f"SELECT nextval('{name}')")
        return statements

    def copy_statement(self, select: str) -> str:
        """``COPY`` of the rows of ``select`` (the fused query) that the chain settles alone."""
        whens = " ".join(
            f"WHEN {condition} THEN nextval('{self._sequence(outcome)}') IS NULL"
            for condition, outcome in self._cases
        )
        # Written as a streamed run writes them: JSON crosses Arrow as text.
        types = getattr(self, "_types", {})
        data = ", ".join(
            f"CAST({_quote(c)} AS VARCHAR) AS {_quote(c)}" if types.get(c) == "JSON" else _quote(c)
            for c in self.chain.columns
        )
        where = f"CASE {whens} ELSE TRUE END" if whens else "TRUE"
        target = "'" + str(self.path).replace("'", "''") + "'"
        return f"COPY (SELECT {data} FROM ({select}) WHERE {where}) TO {target} ({self.options})"

    def counts_query(self) -> str:
        """One row: how many rows were left out, then how many each filter dropped."""
        return "SELECT " + ", ".join(f"currval('{name}') - 1" for name in self._sequences())

    def special_select(self, select: str) -> str:
        """The rows of ``select`` the COPY left out, with every column of the fused query."""
        whens = " ".join(
            f"WHEN {condition} THEN {'TRUE' if outcome is None else 'FALSE'}"
            for condition, outcome in self._cases
        )
        return f"SELECT * FROM ({select}) WHERE CASE {whens} ELSE FALSE END"

    def placeholder(self, written: int, dropped: list[int]) -> pa.RecordBatch | None:
        """One batch without data for ``written`` rows and, per filter, the rows it ``dropped``.

        Rows are laid out as the written ones, then those the last filter
        dropped, ..., then those the first filter dropped; each filter's
        verdict is TRUE up to its own dropped rows and FALSE from there on.
        """
        total = written + sum(dropped)
        if total == 0:
            return None
        names: list[str] = list(self.chain.columns)
        arrays: list[pa.Array[Any]] = [pa.nulls(total) for _ in names]
        for step in self.chain.steps:
            for name in (step.sql.error_column, step.sql.input_column):
                if name is not None:
                    names.append(name)
                    arrays.append(pa.nulls(total))
            if step.sql.keep_column is not None:
                index = self._filters.index(step)
                names.append(step.sql.keep_column)
                arrays.append(_true_prefix(total, written + sum(dropped[index + 1 :])))
        schema = pa.schema([pa.field(n, a.type) for n, a in zip(names, arrays, strict=True)])
        return pa.RecordBatch.from_arrays(arrays, schema=schema.with_metadata({_COPIED: b"1"}))

    @staticmethod
    def is_placeholder(batch: pa.RecordBatch) -> bool:
        """Whether ``batch`` stands for rows the COPY wrote itself (nothing to write)."""
        metadata = batch.schema.metadata
        return bool(metadata) and _COPIED in metadata


def _true_prefix(length: int, true: int) -> pa.Array[Any]:
    """A BOOLEAN array of ``length`` values, TRUE for the first ``true`` ones, FALSE after, no NULL.

    Built as its bitmap (an eighth of a byte per value) rather than through
    NumPy: at millions of rows that takes milliseconds instead of tens of them.
    """
    whole, rest = divmod(true, 8)
    bits = b"\xff" * whole + (bytes([(1 << rest) - 1]) if rest else b"")
    bits += bytes((length + 7) // 8 - len(bits))
    return pa.BooleanArray.from_buffers(pa.bool_(), length, [None, pa.py_buffer(bits)])


def _visible(batch: pa.RecordBatch | pa.Table, columns: list[str]) -> pa.Table:
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    return table.select(columns)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def plan_fusion(planned: list[PlannedStage], policy: ErrorRecordPolicy) -> list[FusedChain]:
    """Fuse every origin that can with the chain of processors after it."""
    probe = _Probe()
    try:
        return _plan(planned, policy, probe)
    finally:
        probe.close()


def _plan(planned: list[PlannedStage], policy: ErrorRecordPolicy, probe: _Probe) -> list[FusedChain]:
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
            if not probe.binds(_substitute(fused.query, _probe_source(origin_columns))):
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
        chain = FusedChain(origin, steps, columns)
        # Only a chain that may write its destination's file asks whether its query repeats.
        target = _copy_offered(chain, by_name, inputs_of)
        if target is not None and probe.repeatable(source):
            chain.copy = _copy_into_destination(chain, target)
        chains.append(chain)
    return chains


def _copy_offered(
    chain: FusedChain, by_name: dict[str, PlannedStage], inputs_of: dict[str, list[str]]
) -> PlannedStage | None:
    """The destination the chain could write itself, when both sides have the methods for it.

    The destination must be the chain's only output and have no other
    input; it offers ``copy_target()`` (its temporary file and the COPY
    options) and ``take_copy(copy)``, the origin ``fuse_copy(copy)``.
    """
    if len(chain.outputs) != 1:
        return None
    target = by_name.get(chain.outputs[0])
    if target is None or target.kind != StageKind.DESTINATION:
        return None
    if inputs_of[target.name] != [chain.steps[-1].stage.name]:
        return None
    methods = (
        getattr(target.plugin, "copy_target", None),
        getattr(target.plugin, "take_copy", None),
        getattr(chain.origin.plugin, "fuse_copy", None),
    )
    return target if all(callable(m) for m in methods) else None


def _copy_into_destination(chain: FusedChain, target: PlannedStage) -> FusedCopy | None:
    """Let the chain write ``target``'s file itself (the destination :func:`_copy_offered` found),
    when the destination offers a file now."""
    offer = getattr(target.plugin, "copy_target")  # noqa: B009 - optional methods, checked above
    take = getattr(target.plugin, "take_copy")  # noqa: B009
    accept = getattr(chain.origin.plugin, "fuse_copy")  # noqa: B009
    offered = offer()
    if offered is None:
        return None
    path, options = offered
    copy = FusedCopy(chain, Path(path), str(options), target.name)
    take(copy)
    accept(copy)
    return copy


def _probe_source(columns: list[str]) -> str:
    # The DuckDB origins that fuse (CSV) read every column as text.
    return "SELECT " + ", ".join(f"CAST(NULL AS VARCHAR) AS {_quote(c)}" for c in columns) + " LIMIT 0"


class _Probe:
    """One sandboxed in-memory DuckDB connection for every check of one plan (connecting costs ~20 ms)."""

    def __init__(self) -> None:
        self._con: duckdb.DuckDBPyConnection | None = None

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            con = duckdb_spares.take()
            con.execute("SET autoinstall_known_extensions = false")
            con.execute("SET autoload_known_extensions = false")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            self._con = con
        return self._con

    def binds(self, query: str) -> bool:
        """Whether ``query`` binds (parses, names known columns and functions)."""
        try:
            self._connection().sql(query).columns  # noqa: B018 - binding is the point
        except duckdb.Error:
            return False
        return True

    def repeatable(self, query: str) -> bool:
        """Whether ``query`` calls only functions that give the same result every time (no random()).

        A fused COPY reads the rows it could not settle a second time and
        must find exactly the same ones. Unknown or unparsable: not repeatable.
        """
        con = self._connection()
        try:
            tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()[0][0])
        except (duckdb.Error, ValueError, IndexError):
            return False
        if tree.get("error"):
            return False
        # Every overload of every name called must be CONSISTENT (a NULL stability is not).
        called = _function_names(tree)
        if called <= KNOWN_CONSISTENT:
            return True
        return called <= _consistent_functions()

    def close(self) -> None:
        if self._con is not None:
            duckdb_spares.close_later(self._con)
            self._con = None


def _consistent_functions() -> frozenset[str]:
    """DuckDB's built-in functions of which every overload is CONSISTENT (no random(), no now()).

    Listing them costs about 20 ms and gives the same answer on every new
    connection of this DuckDB: listed once per process, on a connection of
    its own (nothing a flow defined is listed).
    """
    global _CONSISTENT
    with _CONSISTENT_LOCK:
        if _CONSISTENT is None:
            con = duckdb.connect(":memory:")
            try:
                rows = con.execute(
                    "SELECT function_name FROM duckdb_functions() GROUP BY function_name "
                    "HAVING bool_and(coalesce(stability = 'CONSISTENT', false))"
                ).fetchall()
            finally:
                con.close()
            _CONSISTENT = frozenset(name for (name,) in rows)
        return _CONSISTENT


def _function_names(node: Any) -> set[str]:
    """Every function a parsed statement (``json_serialize_sql``) calls."""
    found: set[str] = set()
    pending = [node]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if item.get("class") == "FUNCTION" and isinstance(item.get("function_name"), str):
                found.add(item["function_name"].lower())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return found


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
