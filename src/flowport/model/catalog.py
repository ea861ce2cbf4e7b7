"""What the pure model needs to know about installed plugins.

Validation and resolution depend on this protocol, not on the plugin
registry itself, so the model stays free of entry points and imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel

from flowport.model.flow import PluginRef, StageKind
from flowport.model.versions import ArtifactVersion

__all__ = [
    "RESTRICTIONS",
    "ArtifactInfo",
    "PathUse",
    "PluginCatalog",
    "PluginInfo",
    "Resolution",
    "Restriction",
]

Restriction = Literal["read-filesystem", "write-filesystem", "execute-code", "execute-sql", "network"]
#: What a stage plugin may declare it does (the NiFi model of restricted components). A user
#: needs the matching permission to create, import, preview or run a flow with such a stage.
RESTRICTIONS: tuple[Restriction, ...] = (
    "read-filesystem",
    "write-filesystem",
    "execute-code",
    "execute-sql",
    "network",
)
PathUse = Literal["read", "write"]


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
    #: What the plugin may do beyond transforming records (see :data:`RESTRICTIONS`).
    restrictions: frozenset[str] = frozenset()
    #: ``(setting, "read"|"write")`` for each setting that names a file or folder.
    path_settings: tuple[tuple[str, PathUse], ...] = ()


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
