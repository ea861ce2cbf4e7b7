"""An execution plan: the flow's stages instantiated from their plugins."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flowport.errors import FlowDocumentError, StageError
from flowport.model.document import describe_validation_error
from flowport.model.flow import Flow, StageKind
from flowport.model.graph import topological_order
from flowport.model.parameters import find_references
from flowport.plugins.contract import MemoryStageState, StageContext, StagePlugin, StageStateStore
from flowport.plugins.file_roots import FileRoots
from flowport.plugins.registry import PluginRegistry

__all__ = ["PlannedStage", "RunContext", "build_plan"]


@dataclass
class RunContext:
    """Everything a run needs from outside the flow.

    ``base_dir`` anchors relative paths; ``file_roots`` confines every path
    a stage opens (unconfined by default: a local run by the machine's own
    user); ``resources`` carries adapters the stages may need (connections,
    ...); ``cancel_event`` cancels the run.
    """

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    base_dir: Path = field(default_factory=Path.cwd)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    resources: Mapping[str, Any] = field(default_factory=dict)
    file_roots: FileRoots = field(default_factory=FileRoots)
    #: Where the flow's stages keep offsets and checkpoints between runs (the metadata store for
    #: every run Flowport starts; in memory for a bare engine run).
    stage_state: StageStateStore = field(default_factory=MemoryStageState)


@dataclass
class PlannedStage:
    """One stage ready to run."""

    name: str
    kind: StageKind
    plugin: StagePlugin[Any]
    inputs: list[str]
    outputs: list[str]
    on_record_error: str


def _instantiate(
    name: str,
    plugin_ref: Any,
    configuration: dict[str, Any],
    registry: PluginRegistry,
    context: StageContext,
) -> StagePlugin[Any]:
    cls = registry.plugin_class(plugin_ref)
    unresolved = sorted(find_references(configuration))
    if unresolved:
        raise StageError(name, f"unresolved parameters: {', '.join(unresolved)}", code="UNRESOLVED_PARAMETER")
    try:
        config = cls.config_model.model_validate(configuration)
    except ValidationError as exc:
        lines = describe_validation_error(exc, prefix="configuration")
        raise FlowDocumentError(f"Stage '{name}' has an invalid configuration: " + "; ".join(lines)) from None
    return cls(config, context)


def build_plan(
    flow: Flow,
    registry: PluginRegistry,
    run: RunContext,
    *,
    preview: bool = False,
    record_limit: int | None = None,
) -> tuple[list[PlannedStage], StagePlugin[Any]]:
    """Instantiate every stage of a parameter-resolved flow, in topological order, and the error stage."""
    batch_size = flow.configuration.batch_size if record_limit is None else max(1, record_limit)
    planned: list[PlannedStage] = []

    def context(name: str) -> StageContext:
        return StageContext(
            stage_name=name,
            batch_size=batch_size,
            preview=preview,
            record_limit=record_limit,
            base_dir=run.base_dir,
            run_id=run.run_id,
            cancel_event=run.cancel_event,
            resources=run.resources,
            file_roots=run.file_roots,
            state_store=run.stage_state,
        )

    for name in topological_order(flow):
        stage = flow.stage(name)
        plugin = _instantiate(name, stage.plugin, stage.configuration, registry, context(name))
        planned.append(
            PlannedStage(
                name=name,
                kind=plugin.kind,
                plugin=plugin,
                inputs=flow.inputs_of(name),
                outputs=flow.outputs_of(name),
                on_record_error=stage.on_record_error,
            )
        )
    spec = flow.error_stage
    error_sink = _instantiate(spec.name, spec.plugin, spec.configuration, registry, context(spec.name))
    return planned, error_sink
