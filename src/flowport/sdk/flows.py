"""Flows, their stages and what the server says about them (validation, preview, runs).

A :class:`Flow` holds its flow document (:class:`flowport.model.flow.Flow`)
in memory: renaming it, adding, connecting and configuring stages, setting
the error stage or using a parameter set change only that copy, and
``project.update_flow(flow)`` sends the whole document back. ``validate``,
``preview`` and ``run`` act on the stored flow, so update it first (a
:class:`UnsavedChangesWarning` says when you did not).
"""

from __future__ import annotations

import copy
import difflib
import re
import uuid as _uuid
import warnings
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from flowport.errors import FlowportError, NotFound, ValidationFailed
from flowport.model.document import describe_validation_error, flow_from_dict, flow_to_dict
from flowport.model.flow import (
    ArtifactRef,
    Edge,
    ErrorStageSpec,
    FlowConfiguration,
    PluginRef,
    Position,
    StageKind,
)
from flowport.model.flow import Flow as FlowDocument
from flowport.model.flow import Stage as StageSpec
from flowport.model.layout import auto_arrange as _auto_arrange
from flowport.sdk._listing import Listing
from flowport.sdk.jobs import Job
from flowport.sdk.parameter_sets import ParameterSet, ParameterSetList

if TYPE_CHECKING:
    from flowport.sdk.client import Client
    from flowport.sdk.projects import Project

__all__ = [
    "BatchFlow",
    "Configuration",
    "ErrorStage",
    "Flow",
    "FlowList",
    "FlowValidationError",
    "PreviewRecord",
    "PreviewStage",
    "Stage",
    "StageConfiguration",
    "StageList",
    "StreamingFlow",
    "UnsavedChangesWarning",
    "ValidationResult",
    "flow_from_record",
]

_X_GAP = 220.0
_ON_RECORD_ERROR = ("to_error", "discard", "stop_pipeline")


class UnsavedChangesWarning(UserWarning):
    """The flow has changes in memory that the server does not have (call ``project.update_flow``)."""


# -- configurations ------------------------------------------------------------


class Configuration(MutableMapping[str, Any]):
    """A flow's configuration, read and edited like a dict: ``flow.configuration['batch_size'] = 1000``.

    Known settings are checked as they are set (a wrong value raises
    :class:`ValidationFailed`); other keys are kept as they are.
    """

    def __init__(self, model: FlowConfiguration) -> None:
        self._model = model

    def _keys(self) -> list[str]:
        return [*type(self._model).model_fields, *(self._model.model_extra or {})]

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self._model, key)

    def __setitem__(self, key: str, value: Any) -> None:
        try:
            setattr(self._model, key, value)
        except ValidationError as exc:
            lines = describe_validation_error(exc, prefix="configuration")
            raise ValidationFailed(
                f"configuration['{key}'] cannot be {value!r}: " + "; ".join(lines), details=lines
            ) from None

    def __delitem__(self, key: str) -> None:
        fields = type(self._model).model_fields
        if key in fields:
            # A built-in setting cannot disappear: it goes back to its default.
            setattr(self._model, key, fields[key].get_default(call_default_factory=True))
        elif key in (self._model.model_extra or {}):
            delattr(self._model, key)
        else:
            raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __repr__(self) -> str:
        return f"Configuration({dict(self.items())!r})"


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; known settings: {', '.join(known)}" if known else "; this stage has no settings"


class StageConfiguration(MutableMapping[str, Any]):
    """A stage's configuration, read and edited like a dict.

    When the server describes the plugin's settings, a key it does not know
    is refused with a suggestion, and reading a setting that was never set
    gives the plugin's default.
    """

    def __init__(self, data: dict[str, Any], schema: Mapping[str, Any] | None, owner: str) -> None:
        self._data = data
        self._schema = schema
        self._owner = owner

    @property
    def known(self) -> list[str] | None:
        """The setting names the plugin declares (None when the server did not describe it)."""
        if self._schema is None:
            return None
        return list((self._schema.get("properties") or {}).keys())

    def check_key(self, key: str) -> str | None:
        """Why ``key`` is not a setting of this stage (None when it is, or when unknown)."""
        known = self.known
        if known is None or key in known:
            return None
        return f"'{key}' is not a setting of {self._owner}{_suggest(key, known)}"

    def __getitem__(self, key: str) -> Any:
        if key in self._data:
            return self._data[key]
        properties = (self._schema or {}).get("properties") or {}
        if key in properties and "default" in properties[key]:
            return copy.deepcopy(properties[key]["default"])
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        problem = self.check_key(key)
        if problem:
            raise KeyError(problem)
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(self._data)


# -- stages --------------------------------------------------------------------


class _StageBase:
    """What a stage and the error stage share: configuration as items and as attributes."""

    _spec: StageSpec | ErrorStageSpec
    _flow: Flow

    def __init__(self, flow: Flow, spec: StageSpec | ErrorStageSpec) -> None:
        object.__setattr__(self, "_flow", flow)
        object.__setattr__(self, "_spec", spec)

    @property
    def instance_name(self) -> str:
        """The stage's unique name in the flow, e.g. ``Trash_01``."""
        return self._spec.name

    @property
    def stage_name(self) -> str:
        """The stage's label as drawn, e.g. ``Trash 1`` (settable)."""
        return self._spec.label or self._spec.name

    @stage_name.setter
    def stage_name(self, value: str) -> None:
        self._spec.label = value

    label = stage_name

    @property
    def plugin_name(self) -> str:
        """The stage plugin, e.g. ``trash``."""
        return self._spec.plugin.name

    @property
    def kind(self) -> str | None:
        """origin, processor, destination, executor or error."""
        kind = self._spec.plugin.type
        return kind.value if kind is not None else None

    @property
    def library(self) -> str | None:
        """The artifact the plugin comes from (e.g. ``flowport-core``)."""
        artifact = self._spec.plugin.artifact
        return artifact.name if artifact is not None else None

    @property
    def library_version(self) -> str | None:
        """The pinned artifact version (or range)."""
        artifact = self._spec.plugin.artifact
        return artifact.version if artifact is not None else None

    @property
    def configuration(self) -> StageConfiguration:
        """The stage's settings, like a dict (also readable and settable as attributes)."""
        return StageConfiguration(
            self._spec.configuration, self._flow._plugin_schema(self._spec.plugin), self.instance_name
        )

    def __getattr__(self, key: str) -> Any:
        # Only called when normal lookup fails: a configuration setting.
        if key.startswith("_"):
            raise AttributeError(key)
        config = self.configuration
        try:
            return config[key]
        except KeyError:
            pass
        known = config.known
        if known is not None and key in known:
            return None  # a required setting not set yet
        problem = config.check_key(key) if known is not None else None
        raise AttributeError(problem or f"{type(self).__name__} has no attribute or setting '{key}'")

    def __setattr__(self, key: str, value: Any) -> None:
        if key.startswith("_") or hasattr(type(self), key):
            object.__setattr__(self, key, value)
            return
        config = self.configuration
        problem = config.check_key(key)
        if problem:
            raise AttributeError(problem)
        config[key] = value

    def __dir__(self) -> list[str]:
        known = self.configuration.known or list(self._spec.configuration)
        return sorted({*super().__dir__(), *known})

    def __repr__(self) -> str:
        return f"{self.instance_name}(stage_name={self.stage_name!r})"


class Stage(_StageBase):
    """One stage of a flow.

    Connect stages with ``>>`` (``origin >> processor >> [dest_a, dest_b]``),
    configure them through :attr:`configuration` or as attributes
    (``stage.path = 'in.csv'``). A setting named like one of the stage's own
    attributes (``description``, ``label``, ...) is reached through
    :attr:`configuration` only.
    """

    _spec: StageSpec

    @property
    def description(self) -> str:
        """Free text about the stage (settable)."""
        return self._spec.description

    @description.setter
    def description(self, value: str) -> None:
        self._spec.description = value

    @property
    def on_record_error(self) -> str:
        """What a record the stage cannot handle becomes: to_error, discard or stop_pipeline."""
        return self._spec.on_record_error

    @on_record_error.setter
    def on_record_error(self, value: str) -> None:
        if value not in _ON_RECORD_ERROR:
            raise ValueError(f"on_record_error is one of {', '.join(_ON_RECORD_ERROR)}, got {value!r}")
        self._spec.on_record_error = value  # type: ignore[assignment]

    @property
    def position(self) -> tuple[float, float] | None:
        """Where the stage is drawn, ``(x, y)`` (settable)."""
        position = self._spec.position
        return (position.x, position.y) if position is not None else None

    @position.setter
    def position(self, value: tuple[float, float] | None) -> None:
        self._spec.position = None if value is None else Position(x=value[0], y=value[1])

    @property
    def inputs(self) -> list[Stage]:
        """The stages that feed this one."""
        return self._flow._stages_named(self._flow._document.inputs_of(self.instance_name))

    @property
    def outputs(self) -> list[Stage]:
        """The stages this one feeds."""
        return self._flow._stages_named(self._flow._document.outputs_of(self.instance_name))

    def connect(self, *stages: Stage) -> Stage:
        """Add an edge from this stage to each of ``stages``; returns this stage."""
        for target in stages:
            self._flow._connect(self, target)
        return self

    def disconnect(self, *stages: Stage) -> Stage:
        """Remove the edges from this stage to each of ``stages`` (all its outputs when none given)."""
        targets = {s.instance_name for s in stages} if stages else None
        self._flow._document.edges = [
            e
            for e in self._flow._document.edges
            if not (e.from_ == self.instance_name and (targets is None or e.to in targets))
        ]
        return self

    def __rshift__(self, other: Any) -> Any:
        targets = list(other) if isinstance(other, list | tuple) else [other]
        for target in targets:
            self._flow._connect(self, target)
        return other

    def __rrshift__(self, other: Any) -> Any:
        # [a, b] >> c: lists have no >>, so Python asks c.
        if isinstance(other, list | tuple):
            for source in other:
                self._flow._connect(source, self)
            return self
        return NotImplemented


class ErrorStage(_StageBase):
    """The stage that receives a flow's error records (``flow.error_stage``)."""

    _spec: ErrorStageSpec


class StageList(Listing[Stage]):
    """The stages of a flow, in order; ``get(instance_name=...)`` picks one."""

    _what = "stage"


# -- validation and preview -------------------------------------------------------------


@dataclass
class FlowValidationError:
    """One problem the server found in a flow."""

    type: str
    instance_name: str | None
    human_readable_message: str
    code: str | None = None

    @property
    def instanceName(self) -> str | None:
        """Alias of :attr:`instance_name`."""
        return self.instance_name

    @property
    def humanReadableMessage(self) -> str:
        """Alias of :attr:`human_readable_message`."""
        return self.human_readable_message

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FlowValidationError:
        """From the API's ``{type, instanceName, code, humanReadableMessage}``."""
        return cls(
            type=str(data.get("type")),
            instance_name=data.get("instanceName", data.get("instance_name")),
            human_readable_message=str(data.get("humanReadableMessage", data.get("message", ""))),
            code=data.get("code"),
        )

    def __repr__(self) -> str:
        return (
            f"FlowValidationError(type={self.type!r}, instanceName={self.instance_name!r}, "
            f"humanReadableMessage={self.human_readable_message!r})"
        )


@dataclass
class ValidationResult:
    """The outcome of validating a flow: ``success``, every issue, and a ``message``."""

    success: bool
    issues: list[FlowValidationError] = field(default_factory=list)
    message: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationResult:
        """From the API's ``{success, message, issues}``."""
        success = bool(data.get("success"))
        return cls(
            success=success,
            issues=[FlowValidationError.from_dict(i) for i in data.get("issues") or []],
            message=str(data.get("message") or ("Validation Succeeded" if success else "Validation Failed")),
        )

    def __bool__(self) -> bool:
        return self.success


class PreviewRecord(tuple[Any, ...]):
    """One previewed record: a tuple of its values (the seed prints ``('abc', 'xyz', 'lmn')``) that
    keeps its field names: ``record.fields``, ``record['name']``, ``record.to_dict()``."""

    fields: tuple[str, ...]

    def __new__(cls, values: Mapping[str, Any]) -> PreviewRecord:
        record = super().__new__(cls, tuple(values.values()))
        record.fields = tuple(values)
        return record

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self.fields.index(key))
            except ValueError:
                raise KeyError(key) from None
        return tuple.__getitem__(self, key)

    def to_dict(self) -> dict[str, Any]:
        """The record as ``{field: value}``."""
        return dict(zip(self.fields, self, strict=True))


def _records(value: Any) -> Any:
    if isinstance(value, list) and all(isinstance(item, Mapping) for item in value):
        return [PreviewRecord(item) for item in value]
    return value


@dataclass
class PreviewStage:
    """What one stage received (``input``), produced (``output``) and rejected (``errors``) in a preview."""

    instance_name: str
    input: Any = None
    output: Any = None
    errors: list[Any] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, origin: bool = False) -> PreviewStage:
        """From the API's ``{instanceName, input, output, errors}``; records become :class:`PreviewRecord`."""
        return cls(
            instance_name=str(data.get("instanceName", data.get("instance_name"))),
            input=None if origin else _records(data.get("input")),
            output=_records(data.get("output")),
            errors=list(data.get("errors") or []),
        )

    def __repr__(self) -> str:
        return f"PreviewStage(instance_name={self.instance_name!r})"


# -- flows -----------------------------------------------------------------------


def _instance_base(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", label) or "Stage"


def _plugin_ref(plugin: Mapping[str, Any]) -> PluginRef:
    artifact = plugin.get("artifact") or {}
    return PluginRef(
        name=str(plugin["name"]),
        type=StageKind(plugin["kind"]) if plugin.get("kind") else None,
        artifact=ArtifactRef(
            name=artifact.get("name"), version=artifact.get("version"), scope=artifact.get("scope")
        )
        if artifact
        else None,
    )


class Flow:
    """A flow of a project, edited in memory and saved with ``project.update_flow(flow)``.

    :class:`BatchFlow` and :class:`StreamingFlow` are the two kinds; the
    repr says which.
    """

    def __init__(self, client: Client, record: Mapping[str, Any], project: Project | None = None) -> None:
        self._client = client
        self._project = project
        self._record: dict[str, Any] = {}
        self._document = FlowDocument(name="flow")
        self._wrappers: dict[int, _StageBase] = {}
        self._saved: dict[str, Any] = {}
        self._load(record)

    def _load(self, record: Mapping[str, Any]) -> None:
        if "document" not in record:
            record = self._client.get_json(f"/v4/flows/{record['id']}")
        self._record = {k: v for k, v in record.items() if k != "document"}
        self._document = flow_from_dict(record["document"], source=f"flow {record['id']}")
        self._wrappers = {}
        self._saved = flow_to_dict(self._document)

    def _saved_as(self, record: Mapping[str, Any]) -> None:
        """The server stored this flow (update): keep the in-memory objects, take its metadata."""
        self._record = {k: v for k, v in record.items() if k != "document"}
        if record.get("uuid"):
            self._document.uuid = _uuid.UUID(str(record["uuid"]))
        self._saved = flow_to_dict(self._document)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, description={self.description!r}, "
            f"flow_id={self.flow_id!r}, engine_version={self.engine_version!r})"
        )

    @property
    def engine_version(self) -> str | None:
        """The version of the engine (Flowport) on the server that stores and runs the flow."""
        value = self._record.get("engineVersion")
        return str(value) if value is not None else None

    # -- attributes ---------------------------------------------------------------

    @property
    def flow_id(self) -> int:
        """The flow's id on the server."""
        return int(self._record["id"])

    @property
    def uuid(self) -> str:
        """The flow document's uuid: stable across instances (packages refer to it)."""
        return str(self._document.uuid)

    @property
    def name(self) -> str:
        """The flow's name, unique in its project (settable)."""
        return self._document.name

    @name.setter
    def name(self, value: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("A flow's name cannot be blank")
        self._document.name = value

    @property
    def description(self) -> str:
        """Free text about the flow (settable)."""
        return self._document.description

    @description.setter
    def description(self, value: str) -> None:
        if not isinstance(value, str):
            raise ValueError("A flow's description is text")
        self._document.description = value

    @property
    def flow_type(self) -> str:
        """``batch`` or ``streaming``."""
        return self._document.type

    @property
    def project_id(self) -> int | None:
        """The id of the project the flow belongs to."""
        project = self._record.get("project")
        value = project.get("id") if isinstance(project, Mapping) else self._record.get("projectId")
        return int(value) if value is not None else None

    @property
    def project(self) -> Project:
        """The project the flow belongs to."""
        if self._project is None:
            if self.project_id is None:
                raise FlowportError(f"The server did not say which project flow {self.flow_id} is in")
            self._project = self._client.projects.get(project_id=self.project_id)
        return self._project

    @property
    def created_at(self) -> str | None:
        """When the flow was created (ISO 8601, UTC)."""
        return self._record.get("createdAt")

    @property
    def updated_at(self) -> str | None:
        """When the flow was last stored (ISO 8601, UTC)."""
        return self._record.get("updatedAt")

    @property
    def configuration(self) -> Configuration:
        """The flow's settings, like a dict: ``flow.configuration['error_record_policy']``."""
        return Configuration(self._document.configuration)

    @property
    def parameters(self) -> dict[str, str]:
        """The flow's own parameters ``{name: value}`` (a live dict: edit it in place)."""
        return self._document.parameters

    @property
    def document(self) -> FlowDocument:
        """The flow document itself (live: changes to it are changes to the flow)."""
        return self._document

    def to_dict(self) -> dict[str, Any]:
        """The flow document as JSON-compatible data (what ``update_flow`` sends)."""
        return flow_to_dict(self._document)

    @property
    def has_unsaved_changes(self) -> bool:
        """True when the flow was changed in memory since it was last loaded or updated."""
        return flow_to_dict(self._document) != self._saved

    def refresh(self) -> Flow:
        """Load the flow again from the server, dropping unsaved changes."""
        self._load(self._client.get_json(f"/v4/flows/{self.flow_id}"))
        return self

    # -- stages ---------------------------------------------------------------------

    def _wrap_stage(self, spec: StageSpec) -> Stage:
        wrapper = self._wrappers.get(id(spec))
        if not isinstance(wrapper, Stage) or wrapper._spec is not spec:
            wrapper = Stage(self, spec)
            self._wrappers[id(spec)] = wrapper
        return wrapper

    @property
    def stages(self) -> StageList:
        """The flow's stages, in order."""
        return StageList(self._wrap_stage(spec) for spec in self._document.stages)

    def _stages_named(self, names: list[str]) -> list[Stage]:
        by_name: dict[str, Stage] = {}
        for stage in self.stages:
            by_name.setdefault(stage.instance_name, stage)
        return [by_name[name] for name in names if name in by_name]

    def _owns(self, stage: Any) -> bool:
        return isinstance(stage, Stage) and any(s is stage._spec for s in self._document.stages)

    def _connect(self, source: Any, target: Any) -> None:
        for end in (source, target):
            if isinstance(end, ErrorStage):
                raise ValueError(
                    f"{end!r} is the error stage: it receives error records without edges, "
                    "so it cannot be connected"
                )
            if not self._owns(end):
                raise ValueError(f"{end!r} is not a stage of {self!r}: add it with flow.add_stage()")
        if source is target:
            raise ValueError(f"{source!r} cannot feed itself")
        edge = Edge(**{"from": source.instance_name, "to": target.instance_name})
        if not any(e.from_ == edge.from_ and e.to == edge.to for e in self._document.edges):
            self._document.edges.append(edge)

    def _plugin_info(self, ref: PluginRef) -> dict[str, Any] | None:
        library = ref.artifact.name if ref.artifact is not None else None
        candidates = [p for p in self._client.stages() if p.get("name") == ref.name]
        for plugin in candidates:
            if library is None or (plugin.get("artifact") or {}).get("name") == library:
                return plugin
        return candidates[0] if candidates else None

    def _plugin_schema(self, ref: PluginRef) -> Mapping[str, Any] | None:
        plugin = self._plugin_info(ref)
        schema = plugin.get("configSchema") if plugin is not None else None
        return schema if isinstance(schema, Mapping) else None

    def add_stage(self, label_or_name: str, *, library: str | None = None) -> Stage:
        """Add a stage of the installed plugin with this label or name (``'Trash'``, ``'csv_file_origin'``).

        The stage gets an instance name such as ``Trash_01`` (numbered per
        plugin) and a place right of the existing stages; connect it with
        ``>>`` and configure it before ``project.update_flow(flow)``.

        Args:
            label_or_name: The plugin's label or name (see ``GET /v4/stages``).
            library: The artifact to take it from, when several provide it.

        Raises:
            PluginNotFound: no installed plugin has that label or name.
            ValueError: it is an error stage (use :meth:`set_error_stage`).
        """
        plugin = self._client.find_stage(label_or_name, library=library)
        label = str(plugin.get("label") or plugin["name"])
        if plugin.get("kind") == StageKind.ERROR.value:
            raise ValueError(
                f"'{label}' is an error stage: send error records to it with flow.set_error_stage({label!r})"
            )
        base = _instance_base(label)
        taken = {s.name for s in self._document.stages} | {self._document.error_stage.name}
        number = 1
        while f"{base}_{number:02d}" in taken:
            number += 1
        placed = [s.position.x for s in self._document.stages if s.position is not None]
        spec = StageSpec(
            name=f"{base}_{number:02d}",
            label=f"{label} {number}",
            plugin=_plugin_ref(plugin),
            configuration={},
            position=Position(x=max(placed) + _X_GAP if placed else 0.0, y=0.0),
        )
        self._document.stages.append(spec)
        return self._wrap_stage(spec)

    def remove_stage(self, *stages: Stage | str) -> None:
        """Remove stages (objects or instance names) and every edge to or from them."""
        for stage in stages:
            if isinstance(stage, str):
                stage = self.stages.get(instance_name=stage)
            if not self._owns(stage):
                raise ValueError(f"{stage!r} is not a stage of {self!r}")
            name = stage.instance_name
            self._document.stages = [s for s in self._document.stages if s is not stage._spec]
            self._wrappers.pop(id(stage._spec), None)
            if all(s.name != name for s in self._document.stages):
                self._document.edges = [e for e in self._document.edges if name not in (e.from_, e.to)]

    # -- error records ------------------------------------------------------------------

    @property
    def error_stage(self) -> ErrorStage:
        """The stage that receives error records (Discard unless set with :meth:`set_error_stage`)."""
        spec = self._document.error_stage
        wrapper = self._wrappers.get(id(spec))
        if not isinstance(wrapper, ErrorStage) or wrapper._spec is not spec:
            wrapper = ErrorStage(self, spec)
            self._wrappers[id(spec)] = wrapper
        return wrapper

    def set_error_stage(self, label_or_name: str, *, library: str | None = None) -> ErrorStage:
        """Send error records to the error stage plugin with this label or name (``'Write to File'``).

        Returns the new error stage, to configure:
        ``flow.set_error_stage('Write to File').configuration['directory'] = 'errors/'``.
        Setting the plugin the flow already uses keeps its configuration.

        Raises:
            PluginNotFound: no installed plugin has that label or name.
            ValueError: the plugin is not an error stage.
        """
        try:
            plugin = self._client.find_stage(label_or_name, library=library, kinds=("error",))
        except FlowportError:
            other = self._client.find_stage(label_or_name, library=library)  # raises when unknown
            choices = ", ".join(
                sorted(str(p.get("label")) for p in self._client.stages() if p.get("kind") == "error")
            )
            raise ValueError(
                f"'{other.get('label')}' is {other.get('kind')}, not an error stage; error stages: {choices}"
            ) from None
        current = self._document.error_stage
        if current.plugin.name == plugin["name"]:
            return self.error_stage
        label = str(plugin.get("label") or plugin["name"])
        self._document.error_stage = ErrorStageSpec(
            name=f"{_instance_base(label)}_ErrorStage",
            label=f"Error Records - {label}",
            plugin=_plugin_ref(plugin),
            configuration={},
        )
        return self.error_stage

    # -- layout and parameters ---------------------------------------------------------

    def auto_arrange(self) -> Flow:
        """Place the stages left to right by their connections (layered layout); returns the flow."""
        arranged = _auto_arrange(self._document)
        for spec, placed in zip(self._document.stages, arranged.stages, strict=True):
            spec.position = placed.position
        return self

    def use_parameter_set(self, parameter_set: ParameterSet) -> Flow:
        """Use a parameter set of the flow's project; returns the flow.

        Adds the set's name to the flow's parameter sets, so that stages can
        refer to ``${<set>__<parameter>}``, and its parameters as constants
        among the flow's parameters (``<set>__<parameter>``). Those constants
        take precedence over the set's values when the flow runs: call this
        again after changing the set to refresh them.
        """
        if not isinstance(parameter_set, ParameterSet):
            raise TypeError(
                "use_parameter_set() takes a ParameterSet (project.parameter_sets.get(name=...)), "
                f"got {type(parameter_set).__name__}"
            )
        if (
            parameter_set.project_id is not None
            and self.project_id is not None
            and parameter_set.project_id != self.project_id
        ):
            raise ValueError(
                f"Parameter set '{parameter_set.name}' belongs to another project than flow '{self.name}'"
            )
        if parameter_set.name not in self._document.parameter_sets:
            self._document.parameter_sets.append(parameter_set.name)
        for key, value in parameter_set.parameters.items():
            self._document.parameters[f"{parameter_set.name}__{key}"] = (
                value if isinstance(value, str) else _text(value)
            )
        return self

    @property
    def parameter_sets(self) -> ParameterSetList:
        """The parameter sets the flow uses, fetched from its project."""
        available = {ps.name: ps for ps in self.project.parameter_sets}
        return ParameterSetList(available[n] for n in self._document.parameter_sets if n in available)

    # -- on the server ---------------------------------------------------------------------

    def _warn_unsaved(self, action: str) -> None:
        if self.has_unsaved_changes:
            warnings.warn(
                f"{action} uses the stored flow '{self.name}', which lacks this object's unsaved changes: "
                "call project.update_flow(flow) first",
                UnsavedChangesWarning,
                stacklevel=3,
            )

    def validate(self) -> ValidationResult:
        """Validate the stored flow on the server (graph, plugins, configuration, parameters)."""
        self._warn_unsaved("validate()")
        return ValidationResult.from_dict(self._client.get_json(f"/v4/flows/{self.flow_id}/validate"))

    def preview(self, rows: int = 10, parameters: Mapping[str, Any] | None = None) -> list[PreviewStage]:
        """Run the first ``rows`` records of the stored flow through every stage; nothing is written.

        Raises:
            ValidationFailed: the flow is not valid (``details`` holds the validation result).
        """
        self._warn_unsaved("preview()")
        body = self._client.request(
            "POST",
            f"/v4/flows/{self.flow_id}/preview",
            json={"rows": rows, "parameters": dict(parameters or {})},
        ).json()
        data = body.get("data", []) if isinstance(body, Mapping) else body
        # An origin receives nothing: its input is None, as the seed shows.
        origins = {s.name for s in self._document.stages} - {e.to for e in self._document.edges}
        return [PreviewStage.from_dict(item, origin=item.get("instanceName") in origins) for item in data]

    def run(self, parameters: Mapping[str, Any] | None = None) -> Job:
        """Start a job of the stored flow on the server; ``job.wait()`` waits for its end.

        Args:
            parameters: Values for this run, ``{name: value}`` (``set__param`` for a set's).
        """
        self._warn_unsaved("run()")
        body = {"parameters": dict(parameters)} if parameters else {}
        record = self._client.request("POST", f"/v4/flows/{self.flow_id}/run", json=body).json()
        return Job(self._client, record)

    @property
    def jobs(self) -> list[Job]:
        """The flow's jobs, newest first."""
        return [Job(self._client, r) for r in self._client.list_all("/v4/jobGroups", flowId=self.flow_id)]


class BatchFlow(Flow):
    """A batch flow: reads what its origins hold, then ends."""


class StreamingFlow(Flow):
    """A streaming flow: ``start()`` runs it micro-batch after micro-batch until ``stop()``.

    A streaming flow whose origins are not streaming origins (a file, a table)
    runs once when started, like a batch flow.
    """

    _current: Job | None = None

    def start(self, parameters: Mapping[str, Any] | None = None) -> Job:
        """Start the flow on the server (a job that runs until stopped); returns the job."""
        self._current = self.run(parameters)
        return self._current

    def _job(self) -> Job | None:
        if self._current is None:
            jobs = self.jobs
            self._current = jobs[0] if jobs else None
        return self._current

    def stop(self, *, timeout: float = 60.0) -> Job:
        """Stop the running job: the micro-batch in flight commits and is acknowledged; waits for the end.

        Raises:
            NotFound: the flow was never started.
        """
        job = self._job()
        if job is None:
            raise NotFound(f"Flow '{self.name}' has no job to stop: start() it first")
        job.stop()
        return job.wait(timeout=timeout, raise_on_failure=False)

    def reset_offsets(self, position: str = "earliest", *, stages: list[str] | None = None) -> list[str]:
        """Move the stopped flow's streaming origins to ``earliest``, ``latest`` or an offset value.

        Returns the names of the origins reset. Raises Conflict while a job of the flow runs.
        """
        body: dict[str, Any] = {"position": position}
        if stages is not None:
            body["stages"] = list(stages)
        answer = self._client.request("POST", f"/v4/flows/{self.flow_id}/resetOffsets", json=body).json()
        return list(answer.get("stages", []))

    @property
    def status(self) -> str:
        """The status of the flow's latest job (``InProgress`` while it streams), or ``Inactive``."""
        job = self._job()
        return job.status if job is not None else "Inactive"

    @property
    def metrics(self) -> dict[str, Any]:
        """The latest job's totals: ``stages`` (per-stage metrics), ``batches``, ``records``,
        ``recordsPerSecond``, ``failures``, ``lastError`` (empty before the first start)."""
        job = self._job()
        if job is None:
            return {}
        return {"stages": job.metrics, **job.streaming}


class FlowList(Listing[Flow]):
    """The flows of a project: a list with ``get(name=...)``, ``get(flow_id=...)``, ``get_all(...)``."""

    _what = "flow"


def flow_from_record(client: Client, record: Mapping[str, Any], project: Project | None = None) -> Flow:
    """The SDK object for a flow as the API returns it (fetching its document when missing)."""
    kind = record.get("type") or (record.get("document") or {}).get("type")
    cls: type[Flow] = StreamingFlow if kind == "streaming" else BatchFlow
    return cls(client, record, project)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
