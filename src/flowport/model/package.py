"""The package format (``flowport.package/1``): what a package holds, as plain values.

A package is a ZIP with ``manifest.json`` and one ``flows/<uuid>.json`` per
flow. The manifest names the exporting instance and the export time, lists
every flow with the sha256 of its file, the connections the flows refer to
(``uuid``, ``name``, ``vendor``: never their credentials, unless the package
was exported with plain-text credentials by an admin, and then it says so),
and the artifacts their stages use.

This module is pure: building and reading the ZIP belongs to
:mod:`flowport.services.package_archive`. The helpers that walk stage
configurations (:func:`referenced_connections`, :func:`replace_connections`)
are here so that exporting, importing and import rules all agree on what a
connection reference is.
"""

from __future__ import annotations

import re
import uuid as _uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from flowport.errors import PackageInvalid
from flowport.model.catalog import PluginCatalog
from flowport.model.document import describe_validation_error
from flowport.model.flow import Flow, FlowType, PluginRef

__all__ = [
    "CONNECTION_KEY",
    "MANIFEST_FILE",
    "PACKAGE_FORMAT",
    "Package",
    "PackageArtifact",
    "PackageConnection",
    "PackageFlow",
    "PackageInstance",
    "PackageInvalid",
    "PackageManifest",
    "PackagePipeline",
    "copy_name",
    "flow_file_name",
    "manifest_from_dict",
    "pipeline_file_name",
    "referenced_artifacts",
    "referenced_connections",
    "replace_connections",
    "stage_connection_references",
]

PACKAGE_FORMAT: Final = "flowport.package/1"
MANIFEST_FILE: Final = "manifest.json"
# The configuration key under which every stage plugin names its connection
# (by uuid or name); see flowport.stages.sql._common and the HTTP origin.
CONNECTION_KEY: Final = "connection"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def copy_name(base: str, taken: Callable[[str], bool], *, max_length: int = 255) -> str:
    """The name of an imported copy of a flow named ``base``: the first ``"<base> (N)"``, N = 1, 2, ...,
    that ``taken`` says is free (cut to ``max_length``). The one naming rule of every import that keeps
    both flows (a project import's ``rename``, ``flowport flows import --conflict-resolution rename``)."""
    number = 0
    while True:
        number += 1
        suffix = f" ({number})"
        candidate = base[: max_length - len(suffix)] + suffix
        if not taken(candidate):
            return candidate


#: Pipelines have no uuid: their entries are named by a uuid derived from their name.
_PIPELINE_NAMESPACE: Final = _uuid.UUID("6b1f0c1e-3d0a-5a8e-9f51-2c7e4d9a0b13")


def pipeline_file_name(name: str) -> str:
    """The archive entry that holds the pipeline called ``name``: ``pipelines/<uuid5 of name>.json``."""
    return f"pipelines/{_uuid.uuid5(_PIPELINE_NAMESPACE, name)}.json"


def flow_file_name(flow_uuid: _uuid.UUID | str) -> str:
    """The archive entry that holds the flow with this uuid: ``flows/<uuid>.json``."""
    return f"flows/{_uuid.UUID(str(flow_uuid))}.json"


class _ManifestPart(BaseModel):
    # camelCase on the wire like the rest of the v4 API; snake_case in Python.
    # Unknown keys are refused: a manifest is input, and a misspelt key must
    # not be silently dropped on import.
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class PackageInstance(_ManifestPart):
    """The instance that exported the package."""

    uuid: _uuid.UUID
    name: str | None = None


class PackageFlow(_ManifestPart):
    """One flow of the package and the archive entry that holds it."""

    uuid: _uuid.UUID
    name: str = Field(min_length=1)
    type: FlowType = "batch"
    file: str = Field(description="Archive entry, always flows/<uuid>.json.")
    sha256: str = Field(description="Hex sha256 of the entry's bytes.")

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("must be 64 lowercase hexadecimal characters (a sha256 digest)")
        return value

    @model_validator(mode="after")
    def _file_matches_uuid(self) -> PackageFlow:
        # One fixed name per flow leaves no room for paths chosen by the package author.
        expected = flow_file_name(self.uuid)
        if self.file != expected:
            raise ValueError(f"file must be '{expected}' for flow {self.uuid}, not '{self.file}'")
        return self


class PackageConnection(_ManifestPart):
    """A connection the flows refer to, by identity only.

    ``credentials`` is present only in a package exported with plain-text
    credentials (seed: ``credentials`` list of objects, e.g.
    ``[{"username": ..., "password": ...}]``).
    """

    uuid: _uuid.UUID
    name: str = Field(min_length=1)
    vendor: str = Field(min_length=1)
    credentials: list[dict[str, str]] | None = None


class PackageArtifact(_ManifestPart):
    """An artifact (plugin distribution) the flows' stages use.

    ``version`` is what the stages pin (exact or range), or the version that
    provided an unpinned stage on the exporting instance; absent when neither
    is known.
    """

    name: str = Field(min_length=1)
    version: str | None = None
    scope: Literal["SYSTEM", "USER"] | None = None


class PackagePipeline(_ManifestPart):
    """One orchestration pipeline of the package (its flow tasks name flows of the package or the target)."""

    name: str = Field(min_length=1)
    file: str = Field(description="Archive entry, always pipelines/<uuid5 of the name>.json.")
    sha256: str = Field(description="Hex sha256 of the entry's bytes.")

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("must be 64 lowercase hexadecimal characters (a sha256 digest)")
        return value


class PackageManifest(_ManifestPart):
    """``manifest.json``: what the package holds and where it comes from."""

    format: Literal["flowport.package/1"] = PACKAGE_FORMAT
    exported_at: str = Field(description="ISO 8601 time of the export, e.g. 2024-05-01T12:00:00.000Z.")
    instance: PackageInstance
    flows: list[PackageFlow] = Field(default_factory=list)
    connections: list[PackageConnection] = Field(default_factory=list)
    artifacts: list[PackageArtifact] = Field(default_factory=list)
    pipelines: list[PackagePipeline] = Field(default_factory=list)
    with_plain_text_credentials: bool = False

    @field_validator("exported_at")
    @classmethod
    def _iso_time(cls, value: str) -> str:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an ISO 8601 time such as 2024-05-01T12:00:00.000Z") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PackageManifest:
        flow_ids = [f.uuid for f in self.flows]
        if len(set(flow_ids)) != len(flow_ids):
            dup = next(str(u) for u in flow_ids if flow_ids.count(u) > 1)
            raise ValueError(f"flow {dup} is listed more than once")
        if not self.flows and not self.pipelines:
            raise ValueError("a package holds at least one flow or pipeline: flows is empty")
        pipeline_names = [p.name for p in self.pipelines]
        if len(set(pipeline_names)) != len(pipeline_names):
            dup = next(n for n in pipeline_names if pipeline_names.count(n) > 1)
            raise ValueError(f"pipeline '{dup}' is listed more than once")
        conn_ids = [c.uuid for c in self.connections]
        if len(set(conn_ids)) != len(conn_ids):
            dup = next(str(u) for u in conn_ids if conn_ids.count(u) > 1)
            raise ValueError(f"connection {dup} is listed more than once")
        if not self.with_plain_text_credentials:
            # A package is shared freely; credentials may only travel when the
            # export was explicitly made with them and is marked as such.
            carrying = [c.name for c in self.connections if c.credentials is not None]
            if carrying:
                raise ValueError(
                    f"connections {carrying} carry credentials but withPlainTextCredentials is false"
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        """The manifest as the JSON object written to ``manifest.json`` (``pipelines`` only when it has some,
        so a package of flows reads the same as before pipelines could travel)."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        if not self.pipelines:
            data.pop("pipelines", None)
        return data

    def flow_entry(self, flow_uuid: _uuid.UUID | str) -> PackageFlow:
        """The manifest entry of the flow with this uuid; KeyError when there is none."""
        wanted = _uuid.UUID(str(flow_uuid))
        for entry in self.flows:
            if entry.uuid == wanted:
                return entry
        raise KeyError(str(flow_uuid))


def manifest_from_dict(data: Any, *, source: str = MANIFEST_FILE) -> PackageManifest:
    """Validate parsed ``manifest.json``; PackageInvalid lists every problem.

    An unknown ``format`` is reported on its own, before any field, because
    the fields of another format version mean nothing to this one.
    """
    if not isinstance(data, dict):
        raise PackageInvalid(
            f"{source}: the manifest must be a JSON object, got {type(data).__name__}; "
            "re-export the package with Flowport",
            details={"entry": source, "problem": "INVALID_MANIFEST"},
        )
    fmt = data.get("format")
    if fmt != PACKAGE_FORMAT:
        shown = "no format" if fmt is None else f"format '{fmt}'"
        raise PackageInvalid(
            f"{source}: unsupported package format version ({shown}); this Flowport reads "
            f"'{PACKAGE_FORMAT}'. Export the package again from a Flowport that writes '{PACKAGE_FORMAT}'",
            details={"entry": source, "problem": "UNSUPPORTED_FORMAT", "format": fmt},
        )
    try:
        return PackageManifest.model_validate(data)
    except ValidationError as exc:
        lines = describe_validation_error(exc)
        raise PackageInvalid(
            f"{source}: invalid manifest:\n  " + "\n  ".join(lines) + "\nRe-export the package with Flowport",
            details={"entry": source, "problem": "INVALID_MANIFEST", "errors": lines},
        ) from None


@dataclass(frozen=True)
class Package:
    """A package read and checked in memory: its manifest and its flows.

    ``flows`` holds ``(entry name, flow)`` in manifest order. The flows are
    ordinary :class:`Flow` objects, so an importer rewrites them (import
    rules, conflict renames) with :meth:`map_flows` before storing; the
    manifest keeps describing the archive as it was read.
    """

    manifest: PackageManifest
    flows: list[tuple[str, Flow]] = field(default_factory=list)
    archive_sha256: str = ""
    #: ``(entry name, pipeline document)`` in manifest order (validated by the importer, which knows
    #: what the target instance has).
    pipelines: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def map_flows(self, rewrite: Callable[[Flow], Flow]) -> Package:
        """A copy with every flow replaced by ``rewrite(copy of flow)``; this package is unchanged."""
        return Package(
            manifest=self.manifest,
            flows=[(name, rewrite(flow.model_copy(deep=True))) for name, flow in self.flows],
            archive_sha256=self.archive_sha256,
            pipelines=self.pipelines,
        )


def _connection_values(value: Any, found: set[str]) -> None:
    # Nested settings (e.g. a lookup inside a processor) name connections too.
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == CONNECTION_KEY and isinstance(item, str) and item.strip():
                found.add(item)
            else:
                _connection_values(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            _connection_values(item, found)


def referenced_connections(flow: Flow) -> set[str]:
    """Every connection reference (uuid or name, as written) in the flow.

    A reference is a non-empty string under the key ``connection`` anywhere
    in a stage's configuration, including nested objects and lists and the
    error stage. Parameter references such as ``${conn}`` are returned as
    written: they resolve only at run time.
    """
    found: set[str] = set()
    for stage in flow.stages:
        _connection_values(stage.configuration, found)
    _connection_values(flow.error_stage.configuration, found)
    return found


def stage_connection_references(flow: Flow) -> dict[str, set[str]]:
    """The connection references of each stage that has any, by stage name (error stage included).

    The same rule as :func:`referenced_connections`, kept per stage for
    messages that name the stages using a connection.
    """
    found: dict[str, set[str]] = {}
    for name, configuration in [(s.name, s.configuration) for s in flow.stages] + [
        (flow.error_stage.name, flow.error_stage.configuration)
    ]:
        references: set[str] = set()
        _connection_values(configuration, references)
        if references:
            found.setdefault(name, set()).update(references)
    return found


def _replace_values(value: Any, mapping: Mapping[str, str]) -> Any:
    if isinstance(value, Mapping):
        return {
            key: (
                mapping.get(item, item)
                if key == CONNECTION_KEY and isinstance(item, str)
                else _replace_values(item, mapping)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_replace_values(item, mapping) for item in value]
    return value


def replace_connections(flow: Flow, mapping: Mapping[str, str]) -> Flow:
    """A copy of the flow whose connection references are rewritten through ``mapping``.

    Every reference :func:`referenced_connections` finds that is a key of
    ``mapping`` becomes its value (e.g. an object import rule: the Dev uuid
    becomes the Prod connection); the others stay as they are.
    """
    result = flow.model_copy(deep=True)
    for stage in result.stages:
        stage.configuration = _replace_values(stage.configuration, mapping)
    result.error_stage.configuration = _replace_values(result.error_stage.configuration, mapping)
    return result


def _artifact_key(artifact: PackageArtifact) -> tuple[str, str, str]:
    return (artifact.name, artifact.version or "", artifact.scope or "")


def referenced_artifacts(flow: Flow, catalog: PluginCatalog | None = None) -> list[PackageArtifact]:
    """The artifacts the flow's stages (and its error stage) use, once each, sorted.

    What a stage pins wins: it is what the importing instance will resolve.
    With a ``catalog``, a stage that pins no artifact name, version or scope
    gets the missing parts from the plugin the catalog resolves it to (the
    artifact that provided it on the exporting instance). A stage whose
    artifact is still unnamed (no pin, no catalog, or a plugin the catalog
    cannot resolve) contributes nothing.
    """
    refs: list[PluginRef] = [stage.plugin for stage in flow.stages]
    refs.append(flow.error_stage.plugin)
    found: dict[tuple[str, str, str], PackageArtifact] = {}
    for ref in refs:
        pin = ref.artifact
        name = pin.name if pin is not None else None
        version = pin.version if pin is not None else None
        scope = pin.scope if pin is not None else None
        if catalog is not None and (name is None or version is None or scope is None):
            resolution = catalog.resolve(ref)
            if resolution.plugin is not None:
                installed = resolution.plugin.artifact
                # Fill gaps only from the same artifact the stage named.
                if name is None or name == installed.name:
                    name = installed.name
                    version = version if version is not None else str(installed.version)
                    if scope is None and installed.scope in ("SYSTEM", "USER"):
                        scope = "SYSTEM" if installed.scope == "SYSTEM" else "USER"
        if name is None:
            continue
        artifact = PackageArtifact(name=name, version=version, scope=scope)
        found.setdefault(_artifact_key(artifact), artifact)
    return [found[key] for key in sorted(found)]
