"""The small bodies of ``/v4/flows`` (duplicate, preview, run, a rename); flow documents are the model's."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from flowport.services.schemas.common import (
    PARAMETER_NAME,
    Name,
    ReadModel,
    Ref,
    Timestamp,
    Unset,
    keys_matching,
)

__all__ = [
    "DuplicateBody",
    "FlowChanges",
    "FlowRead",
    "ParameterValue",
    "Parameters",
    "PreviewBody",
    "ResetOffsetsBody",
    "ResetOffsetsRead",
    "RunBody",
    "ValidationIssue",
    "ValidationRead",
]

# A parameter value as a client may send it; the services turn it into text.
ParameterValue = StrictStr | StrictInt | StrictFloat | StrictBool
Parameters = Annotated[
    dict[Annotated[str, Field(max_length=255)], ParameterValue],
    Field(json_schema_extra=keys_matching(PARAMETER_NAME)),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DuplicateBody(_Body):
    """The body of ``POST /v4/flows/{id}/duplicate``: the copy's name and description."""

    name: Name | None = None
    description: str | None = None


class PreviewBody(_Body):
    """The body of ``POST /v4/flows/{id}/preview``."""

    rows: int = Field(default=10, ge=1, le=100_000, description="Records to read from each origin.")
    parameters: Parameters = Field(default_factory=dict, description="Parameter overrides.")


class ResetOffsetsBody(_Body):
    """The body of ``POST /v4/flows/{id}/resetOffsets``."""

    position: str = Field(
        min_length=1,
        max_length=255,
        json_schema_extra={"pattern": r"\S"},
        description="earliest (read everything again), latest (only what arrives from now) or an "
        "origin-specific offset (a Redis entry id, ...).",
    )
    stages: list[Annotated[str, Field(min_length=1, max_length=255)]] | None = Field(
        default=None, description="Only these streaming origins (default: every one)."
    )


class ResetOffsetsRead(ReadModel):
    """What ``POST /v4/flows/{id}/resetOffsets`` answers."""

    flow: Ref
    position: str
    stages: list[str]


class _Override(_Body):
    key: str = Field(max_length=255, json_schema_extra={"pattern": PARAMETER_NAME})
    value: ParameterValue


class _Overrides(_Body):
    data: list[_Override] = Field(default_factory=list)


class _RunParameters(_Body):
    overrides: _Overrides = Field(default_factory=_Overrides)


class RunBody(_Body):
    """The body of ``POST /v4/flows/{id}/run``: parameter overrides, in either of two spellings.

    ``{"parameters": {"k": "v"}}`` or, as the seed's run endpoints take them,
    ``{"runParameters": {"overrides": {"data": [{"key": "k", "value": "v"}]}}}``.
    Given both, ``parameters`` wins for a name in both.
    """

    parameters: Parameters | None = None
    run_parameters: _RunParameters | None = Field(default=None, alias="runParameters")

    def overrides(self) -> dict[str, Any]:
        """The overrides as one ``{name: value}``."""
        values: dict[str, Any] = {}
        if self.run_parameters is not None:
            values.update({item.key: item.value for item in self.run_parameters.overrides.data})
        values.update(self.parameters or {})
        return values


class FlowChanges(_Body):
    """``PATCH /v4/flows/{id}`` without a document: a new name and/or description."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    name: Name | Unset = None
    description: str | Unset = None


# -- what the services answer --------------------------------------------------------------


class FlowRead(ReadModel):
    """A stored flow; ``document`` (the full flow document) unless a list left it out."""

    id: int
    uuid: str
    name: str
    description: str
    type: str
    project: Ref | None
    folder: Ref | None
    workspace: Ref
    engine_version: str
    created_at: Timestamp
    updated_at: Timestamp
    creator: Ref | None
    updater: Ref | None
    document: dict[str, Any] | None = None


class ValidationIssue(ReadModel):
    """One problem of a flow, on the stage it concerns (``instanceName``) or the flow (null)."""

    type: str
    instance_name: str | None
    code: str
    human_readable_message: str


class ValidationRead(ReadModel):
    """A validation result in the SDK's shape."""

    success: bool
    message: str
    issues: list[ValidationIssue]
