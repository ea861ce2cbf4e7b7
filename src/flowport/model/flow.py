"""The flow document: a graph of stages joined by edges.

These pydantic models are the single source of the flow format
(``flowport.flow/1``); the JSON Schema published by ``flowport schema flow``
is generated from them. Write models forbid unknown keys so that a typo in a
hand-written flow is reported instead of silently ignored.
"""

from __future__ import annotations

import uuid as _uuid
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "FLOW_FORMAT",
    "ArtifactRef",
    "Edge",
    "ErrorRecordPolicy",
    "ErrorStageSpec",
    "Flow",
    "FlowConfiguration",
    "FlowType",
    "OnRecordError",
    "PluginRef",
    "Position",
    "Stage",
    "StageKind",
]

# Final keeps the Literal type, so it can be the default of the Literal field below.
FLOW_FORMAT: Final = "flowport.flow/1"

FlowType = Literal["batch", "streaming"]
ErrorRecordPolicy = Literal["ORIGINAL_RECORD", "STAGE_RECORD"]
OnRecordError = Literal["to_error", "discard", "stop_pipeline"]


class StageKind(StrEnum):
    """What a stage does in a flow."""

    ORIGIN = "origin"
    PROCESSOR = "processor"
    DESTINATION = "destination"
    EXECUTOR = "executor"
    ERROR = "error"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ArtifactRef(_Strict):
    """The artifact (plugin distribution) a stage comes from.

    ``version`` is an exact version (``1.2.0``), a range (``[1.0.0,2.0.0)``)
    or absent, meaning the highest installed version.
    """

    name: str | None = Field(default=None, description="Artifact name, e.g. flowport-core.")
    version: str | None = Field(default=None, description="Exact version or CDAP-style range.")
    scope: Literal["SYSTEM", "USER"] | None = Field(default=None, description="SYSTEM or USER.")


class PluginRef(_Strict):
    """Which stage plugin a stage uses."""

    name: str = Field(description="Plugin name, e.g. csv_file_origin.")
    type: StageKind | None = Field(default=None, description="origin, processor, destination, ...")
    artifact: ArtifactRef | None = None


class Position(_Strict):
    """Where the stage is drawn on the canvas."""

    x: float = 0.0
    y: float = 0.0


class Stage(_Strict):
    """One use of a stage plugin in a flow."""

    name: str = Field(description="Unique instance name, e.g. Orders_01.", min_length=1)
    label: str | None = Field(default=None, description="Display label.")
    description: str = ""
    plugin: PluginRef
    configuration: dict[str, Any] = Field(default_factory=dict)
    on_record_error: OnRecordError = Field(
        default="to_error",
        description="What to do with a record this stage cannot handle: send it to the error stage, "
        "discard it, or stop the pipeline.",
    )
    position: Position | None = None


class ErrorStageSpec(_Strict):
    """The stage that receives error records (default: discard)."""

    name: str = "ErrorStage"
    label: str | None = None
    plugin: PluginRef = Field(default_factory=lambda: PluginRef(name="discard", type=StageKind.ERROR))
    configuration: dict[str, Any] = Field(default_factory=dict)


class Edge(_Strict):
    """A stream from the output of one stage to the input of another."""

    from_: str = Field(alias="from", serialization_alias="from")
    to: str


class FlowConfiguration(BaseModel):
    """Flow-wide settings. Unknown keys are kept (plugins and UIs may add their own)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    error_record_policy: ErrorRecordPolicy = "ORIGINAL_RECORD"
    batch_size: int = Field(default=65536, ge=1, le=10_000_000)
    retry_pipeline_on_error: bool = Field(
        default=True,
        description="Streaming flows: after a failed micro-batch, try again (after retry_initial_wait "
        "seconds, doubling up to retry_max_wait) instead of ending the job Failed.",
    )
    retry_initial_wait: float = Field(
        default=1.0, ge=0, le=3600, description="Seconds before the first retry."
    )
    retry_max_wait: float = Field(
        default=60.0, ge=0, le=86400, description="The longest wait between retries."
    )
    partitions: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Load an origin that can be split (a file glob: one partition per file) as partition "
        "tasks, at most this many at once (Celery workers anywhere, or local processes), into one staging "
        "table of a PostgreSQL table destination; the target changes once, when every partition succeeded. "
        "1: one task.",
    )
    partition_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Times a failed partition is run again (alone) before the partitioned run fails.",
    )
    worker_lost_retries: int = Field(
        default=0,
        ge=0,
        le=10,
        description="Times a job of this flow is started again when the worker running it was lost "
        "(killed, out of memory, its machine gone) before the job ended. Loads are atomic, so a new try "
        "starts from targets left as they were. 0: such a job fails.",
    )
    queue_size: int = Field(default=4, ge=1, le=1024, description="Batches buffered between two stages.")
    fuse_stages: bool = Field(
        default=True,
        description="Fuse an origin that reads through DuckDB with the field mappers and filters after it "
        "into one query (same results, fewer copies).",
    )
    max_error_records: int | None = Field(
        default=None,
        ge=0,
        description="Fail the run (publishing nothing) when one stage, or the run as a whole, rejects more "
        "error records than this. None: no limit.",
    )
    max_error_percent: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Fail the run (publishing nothing) when one stage rejects more than this percentage of "
        "the records it received, or the run more than this percentage of the records its origins read. "
        "None: no limit.",
    )
    fail_on_no_output: bool = Field(
        default=True,
        description="Fail the run (publishing nothing) when records came in but none reached a destination "
        "(every one was rejected or filtered out), so a 'replace' target is never emptied by mistake; set "
        "false when an empty result is expected.",
    )

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)


class Flow(_Strict):
    """A flow document (``flowport.flow/1``)."""

    format: Literal["flowport.flow/1"] = FLOW_FORMAT
    uuid: _uuid.UUID = Field(default_factory=_uuid.uuid4)
    name: str = Field(min_length=1)
    description: str = ""
    type: FlowType = "batch"
    configuration: FlowConfiguration = Field(default_factory=FlowConfiguration)
    parameters: dict[str, str] = Field(default_factory=dict)
    parameter_sets: list[str] = Field(default_factory=list)
    error_stage: ErrorStageSpec = Field(default_factory=ErrorStageSpec)
    stages: list[Stage] = Field(default_factory=list)
    edges: list[Edge] = Field(default_factory=list)

    @field_validator("parameters", mode="before")
    @classmethod
    def _parameters_as_strings(cls, value: Any) -> Any:
        # Parameters are substituted into text; accept 5 and true from YAML.
        if isinstance(value, dict):
            return {k: v if isinstance(v, str) else _scalar_text(v) for k, v in value.items()}
        return value

    def stage(self, name: str) -> Stage:
        """The stage called ``name``; KeyError when there is none."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def inputs_of(self, name: str) -> list[str]:
        """Names of the stages that feed ``name``, in edge order."""
        return [e.from_ for e in self.edges if e.to == name]

    def outputs_of(self, name: str) -> list[str]:
        """Names of the stages ``name`` feeds, in edge order."""
        return [e.to for e in self.edges if e.from_ == name]


def _scalar_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value
