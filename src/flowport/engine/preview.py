"""Preview: the first records of a flow through every stage, writing nothing.

Origins read at most ``rows`` records; processors run on them; destinations
and executors are neither opened nor written to, so nothing changes outside
Flowport. Each stage reports the records it received and produced, and
the records it rejected with their error code and message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from flowport.engine.plan import RunContext, build_plan
from flowport.model.flow import Flow, StageKind
from flowport.plugins.contract import ErrorBatch, Origin, Processor, StageOutput, visible_columns
from flowport.plugins.registry import PluginRegistry

__all__ = ["PreviewStage", "preview_flow"]


@dataclass
class PreviewStage:
    """What one stage received and produced during a preview."""

    instance_name: str
    input: list[dict[str, Any]] = field(default_factory=list)
    output: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The stage's preview as plain data."""
        return {
            "instance_name": self.instance_name,
            "input": self.input,
            "output": self.output,
            "errors": self.errors,
        }


def _concat(tables: list[pa.Table]) -> pa.Table | None:
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]


def _records(table: pa.Table | None) -> list[dict[str, Any]]:
    return [] if table is None else visible_columns(table).to_pylist()


def _error_rows(errors: ErrorBatch | None) -> list[dict[str, Any]]:
    if errors is None or not errors.num_rows:
        return []
    records = visible_columns(errors.records).to_pylist()
    return [
        {"code": code, "message": message, "record": record}
        for code, message, record in zip(
            errors.codes.to_pylist(), errors.messages.to_pylist(), records, strict=True
        )
    ]


def _as_table(data: pa.RecordBatch | pa.Table | None) -> pa.Table | None:
    if data is None:
        return None
    return pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data


def preview_flow(
    flow: Flow,
    registry: PluginRegistry,
    context: RunContext | None = None,
    *,
    rows: int = 10,
) -> list[PreviewStage]:
    """Preview a parameter-resolved flow on its first ``rows`` records."""
    context = context or RunContext()
    planned, _ = build_plan(flow, registry, context, preview=True, record_limit=rows)
    produced: dict[str, pa.Table | None] = {}
    result: list[PreviewStage] = []
    opened = []
    try:
        for p in planned:
            stage = PreviewStage(p.name)
            if p.kind in (StageKind.DESTINATION, StageKind.EXECUTOR):
                stage.input = _records(_concat([t for i in p.inputs if (t := produced.get(i)) is not None]))
                result.append(stage)
                continue
            p.plugin.open()
            opened.append(p.plugin)
            if isinstance(p.plugin, Origin):
                outputs: list[pa.Table] = []
                taken = 0
                for item in p.plugin.batches():
                    out = item if isinstance(item, StageOutput) else StageOutput(records=item)
                    stage.errors.extend(_error_rows(out.errors))
                    table = _as_table(out.records)
                    if table is not None and table.num_rows:
                        table = table.slice(0, rows - taken)
                        outputs.append(table)
                        taken += table.num_rows
                    if taken >= rows:
                        break
                produced[p.name] = _concat(outputs)
            elif isinstance(p.plugin, Processor):
                incoming = _concat([t for i in p.inputs if (t := produced.get(i)) is not None])
                stage.input = _records(incoming)
                outputs = []
                if incoming is not None:
                    for batch in incoming.combine_chunks().to_batches():
                        out = p.plugin.process(batch)
                        stage.errors.extend(_error_rows(out.errors))
                        if (table := _as_table(out.records)) is not None:
                            outputs.append(table)
                for final in p.plugin.finish_batches():
                    stage.errors.extend(_error_rows(final.errors))
                    if (table := _as_table(final.records)) is not None:
                        outputs.append(table)
                produced[p.name] = _concat(outputs)
            stage.output = _records(produced.get(p.name))
            result.append(stage)
    finally:
        for plugin in opened:
            plugin.close()
    return result
