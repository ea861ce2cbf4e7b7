"""What the pure model needs to know about installed plugins.

Validation and resolution depend on this protocol, not on the plugin
registry itself, so the model stays free of entry points and imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel

from flowport.model.flow import PluginRef, StageKind
from flowport.model.versions import ArtifactVersion

__all__ = ["ArtifactInfo", "PluginCatalog", "PluginInfo", "Resolution"]


@dataclass(frozen=True)
class ArtifactInfo:
    """An installed artifact: name, version and scope."""

    name: str
    version: ArtifactVersion
    scope: str

    def as_ref(self) -> dict[str, str]:
        """The artifact as written in a flow document."""
        return {"name": self.name, "version": str(self.version), "scope": self.scope}


@dataclass(frozen=True)
class PluginInfo:
    """An installed stage plugin as validation sees it."""

    name: str
    label: str
    kind: StageKind
    artifact: ArtifactInfo
    config_model: type[BaseModel]


@dataclass(frozen=True)
class Resolution:
    """The outcome of resolving a plugin reference: a plugin, or why not."""

    plugin: PluginInfo | None
    code: str = ""
    message: str = ""


class PluginCatalog(Protocol):
    """Resolves plugin references against what is installed."""

    def resolve(self, ref: PluginRef) -> Resolution:
        """Pick the plugin a reference means (highest version in range), or explain why none fits."""
        ...
