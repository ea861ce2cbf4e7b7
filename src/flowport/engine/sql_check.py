"""Validation that sees SQL: every condition, expression and query bound against the schema it will get.

A filter whose SQL does not parse, names a column its input lacks, or calls
a function DuckDB does not have would otherwise pass validation and fail the
run, possibly blamed on another stage (the origin whose fused query it
joined). Here each processor runs once on an empty batch of its input's
schema, exactly as it runs on data, so DuckDB binds the very query the run
will execute; a statement error becomes a ``SQL_INVALID`` issue on the
stage that owns the text.

Schemas start at the origins that know theirs without reading records
(:meth:`~flowport.plugins.contract.Origin.output_schema`: a CSV header, a
Parquet footer) and flow through each processor's output. Where a schema is
unknown (an HTTP or SQL origin, a stage after a failing one), the stages
downstream are not checked here; the run checks them.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from flowport.engine.plan import RunContext, build_plan
from flowport.errors import FlowportError, StageError
from flowport.model.flow import Flow, StageKind
from flowport.model.validation import ValidationIssue
from flowport.plugins.contract import HIDDEN_PREFIX, Origin, Processor
from flowport.plugins.registry import PluginRegistry

__all__ = ["SQL_INVALID", "check_sql"]

SQL_INVALID = "SQL_INVALID"
_log = logging.getLogger(__name__)


def _origin_schema(plugin: Origin[Any]) -> pa.Schema | None:
    if type(plugin).output_schema is Origin.output_schema:
        return None  # it cannot tell without reading: do not open it (no connection, no request)
    try:
        plugin.open()
        return plugin.output_schema()
    except Exception:  # a missing file is the run's business, not the SQL check's
        _log.debug("no schema from origin %s", plugin.context.stage_name, exc_info=True)
        return None
    finally:
        try:
            plugin.close()
        except Exception:
            _log.debug("origin %s failed to close", plugin.context.stage_name, exc_info=True)


def _visible(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f for f in schema if not f.name.startswith(HIDDEN_PREFIX)])


def _processor_schema(plugin: Processor[Any], schema: pa.Schema) -> pa.Schema | None:
    """The processor's output schema on an empty input; StageError when its SQL does not bind."""
    empty = pa.RecordBatch.from_pylist([], schema=schema)
    plugin.open()
    try:
        outputs = [plugin.process(empty), *plugin.finish_batches()]
    finally:
        try:
            plugin.close()
        except Exception:
            _log.debug("stage %s failed to close", plugin.context.stage_name, exc_info=True)
    for out in outputs:
        if out.records is not None:
            return _visible(out.records.schema)
    return None


def check_sql(flow: Flow, registry: PluginRegistry, context: RunContext) -> list[ValidationIssue]:
    """``SQL_INVALID`` issues of a valid, parameter-resolved flow (see the module's docstring)."""
    try:
        planned, _ = build_plan(flow, registry, context, preview=True, record_limit=1)
    except FlowportError:
        return []  # the model's validation reports what keeps the flow from being planned
    schemas: dict[str, pa.Schema | None] = {}
    issues: list[ValidationIssue] = []
    for p in planned:
        if p.kind == StageKind.ORIGIN and isinstance(p.plugin, Origin):
            schemas[p.name] = _origin_schema(p.plugin)
            continue
        if p.kind != StageKind.PROCESSOR or not isinstance(p.plugin, Processor):
            continue
        inputs = [schemas.get(name) for name in p.inputs]
        if not inputs or any(s is None for s in inputs) or len({str(s) for s in inputs}) != 1:
            schemas[p.name] = None
            continue
        schema = inputs[0]
        assert schema is not None
        try:
            schemas[p.name] = _processor_schema(p.plugin, schema)
        except StageError as exc:
            code = exc.code if exc.code != "STAGE_FAILED" else SQL_INVALID
            issues.append(ValidationIssue("stageIssues", p.name, code, exc.reason))
            schemas[p.name] = None
        except Exception as exc:  # a plugin's own failure on an empty batch: not a SQL verdict
            _log.debug("SQL check of %s could not run: %s", p.name, exc, exc_info=True)
            schemas[p.name] = None
    return issues
