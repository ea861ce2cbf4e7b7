"""A fake plugin catalog for the pure model tests.

The model only needs something with ``resolve(ref) -> Resolution``; this one
holds a handful of tiny plugins (one per stage kind) built from small
StageConfig models, so these tests depend neither on the plugin registry nor
on the built-in stages.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowport.model.catalog import ArtifactInfo, PluginInfo, Resolution
from flowport.model.flow import Edge, Flow, PluginRef, Stage, StageKind
from flowport.model.versions import ArtifactVersion
from flowport.plugins.contract import StageConfig


class OriginConfig(StageConfig):
    rows: int = 10
    text: str = "abc"


class FilterConfig(StageConfig):
    condition: str

    @field_validator("condition")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the condition must not be blank")
        return value


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    type: Literal["string", "int", "float"] = "string"


class MapperConfig(StageConfig):
    fields: list[FieldSpec] = Field(default_factory=list)
    limit: int | None = Field(default=None, ge=1)


class EmptyConfig(StageConfig):
    pass


class ExecutorConfig(StageConfig):
    statement: str


class WriteToFileConfig(StageConfig):
    directory: str


_ARTIFACT = ArtifactInfo("flowport-core", ArtifactVersion.parse("1.0.0"), "SYSTEM")

_SPECS: list[tuple[str, str, StageKind, type[BaseModel]]] = [
    ("dev_raw", "Dev Raw Data Source", StageKind.ORIGIN, OriginConfig),
    ("filter", "Filter", StageKind.PROCESSOR, FilterConfig),
    ("field_mapper", "Field Mapper", StageKind.PROCESSOR, MapperConfig),
    ("trash", "Trash", StageKind.DESTINATION, EmptyConfig),
    ("sql_executor", "SQL Executor", StageKind.EXECUTOR, ExecutorConfig),
    ("discard", "Discard", StageKind.ERROR, EmptyConfig),
    ("write_to_file", "Write to File", StageKind.ERROR, WriteToFileConfig),
]
PLUGINS = {name: PluginInfo(name, label, kind, _ARTIFACT, model) for name, label, kind, model in _SPECS}


class FakeCatalog:
    """Resolves plugin names against PLUGINS; ``fail`` makes a name resolve to a given failure."""

    def __init__(self) -> None:
        self.failures: dict[str, Resolution] = {}
        self.resolved: list[PluginRef] = []

    def fail(self, name: str, code: str, message: str) -> None:
        """Make plugin ``name`` fail to resolve with ``code`` and ``message``."""
        self.failures[name] = Resolution(None, code, message)

    def resolve(self, ref: PluginRef) -> Resolution:
        """Resolve by plugin name only (versions are the registry's business, tested there)."""
        self.resolved.append(ref)
        if ref.name in self.failures:
            return self.failures[ref.name]
        if ref.name in PLUGINS:
            return Resolution(PLUGINS[ref.name])
        return Resolution(
            None, "PLUGIN_NOT_FOUND", f"No installed artifact provides the stage plugin '{ref.name}'"
        )


@pytest.fixture
def catalog() -> FakeCatalog:
    """A fresh fake catalog per test."""
    return FakeCatalog()


def build_flow(
    stages: list[tuple[Any, ...]], edges: list[tuple[str, str]] | None = None, **kwargs: Any
) -> Flow:
    """A flow from (name, plugin[, configuration]) tuples and (from, to) pairs."""
    built = [
        Stage(name=s[0], plugin=PluginRef(name=s[1]), configuration=s[2] if len(s) > 2 else {})
        for s in stages
    ]
    links = [Edge.model_validate({"from": a, "to": b}) for a, b in edges or []]
    return Flow(name="test flow", stages=built, edges=links, **kwargs)


@pytest.fixture
def make_flow() -> Any:
    """The :func:`build_flow` helper, as a fixture (conftest modules are not imported by tests)."""
    return build_flow
