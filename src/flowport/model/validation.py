"""Flow validation: every problem of a flow, each on the stage it belongs to.

Validation never stops at the first problem: the editor shows all of them at
once, each with a stable ``code`` (for programs and tests) and a message
saying what is wrong and how to fix it. Issues that concern one stage are
``stageIssues`` with its ``instance_name`` (the error stage included);
issues of the flow as a whole are ``flowIssues``.

Codes:

- flow: ``FLOW_NO_STAGES``, ``UNKNOWN_EDGE_STAGE``, ``CYCLE``
- graph, on a stage: ``FIRST_STAGE_NOT_ORIGIN``, ``NO_INPUT_STREAMS``,
  ``ORIGIN_HAS_INPUT``, ``DESTINATION_HAS_OUTPUT``, ``ERROR_STAGE_IN_GRAPH``,
  ``DUPLICATE_STAGE_NAME``, ``DUPLICATE_EDGE``, ``SELF_LOOP``,
  ``UNREACHABLE_STAGE``
- plugin: ``PLUGIN_NOT_FOUND``, ``ARTIFACT_NOT_FOUND``,
  ``ARTIFACT_VERSION_NOT_FOUND``, ``BAD_VERSION`` (from the catalog),
  ``PLUGIN_TYPE_MISMATCH``, ``NOT_AN_ERROR_STAGE``
- configuration: ``UNRESOLVED_PARAMETER``, ``CONFIG_MISSING``,
  ``CONFIG_WRONG_TYPE``, ``CONFIG_UNKNOWN_KEY``, ``CONFIG_INVALID``
- files (when the caller passes ``check_path``): ``PATH_OUTSIDE_ROOTS``,
  ``PATH_PROTECTED``
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from flowport.model.catalog import PathUse, PluginCatalog, PluginInfo
from flowport.model.flow import Flow, PluginRef, StageKind
from flowport.model.graph import find_cycles, format_cycle, reachable_from_origins
from flowport.model.parameters import REFERENCE, parameter_values

__all__ = ["IssueType", "PathCheck", "ValidationIssue", "ValidationResult", "validate_flow"]

IssueType = Literal["stageIssues", "flowIssues"]
#: Judges one path setting: ``(code, message)`` when the path may not be used, else None.
PathCheck = Callable[[str, PathUse], "tuple[str, str] | None"]

_TYPE_ERRORS = {"int_from_float", "is_instance_of", "is_subclass_of", "none_required", "callable_type"}


@dataclass(frozen=True)
class ValidationIssue:
    """One problem of a flow: where (``type``, ``instance_name``), what (``code``) and how to fix it."""

    type: IssueType
    instance_name: str | None
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """The issue as the JSON the API sends."""
        return {
            "type": self.type,
            "instance_name": self.instance_name,
            "code": self.code,
            "message": self.message,
        }


@dataclass
class ValidationResult:
    """The outcome of validating a flow: success, or every issue found."""

    success: bool
    issues: list[ValidationIssue] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The result as the JSON the API sends."""
        return {"success": self.success, "issues": [issue.to_dict() for issue in self.issues]}

    def for_stage(self, instance_name: str) -> list[ValidationIssue]:
        """The issues reported on one stage."""
        return [issue for issue in self.issues if issue.instance_name == instance_name]


_KIND_TEXT = {
    StageKind.ORIGIN: "an origin",
    StageKind.PROCESSOR: "a processor",
    StageKind.DESTINATION: "a destination",
    StageKind.EXECUTOR: "an executor",
    StageKind.ERROR: "an error stage",
}


class _Collector:
    """Accumulates issues, then orders them: flow issues, stages in list order, error stage."""

    def __init__(self, flow: Flow) -> None:
        self._issues: list[ValidationIssue] = []
        self._rank: dict[str | None, int] = {None: -1}
        for i, stage in enumerate(flow.stages):
            self._rank.setdefault(stage.name, i)
        self._rank.setdefault(flow.error_stage.name, len(flow.stages))

    def stage(self, name: str, code: str, message: str) -> None:
        self._issues.append(ValidationIssue("stageIssues", name, code, message))

    def flow(self, code: str, message: str) -> None:
        self._issues.append(ValidationIssue("flowIssues", None, code, message))

    def result(self) -> ValidationResult:
        # Duplicate stage names can make two stages report the same issue; say it once.
        unique = list(dict.fromkeys(self._issues))
        unique.sort(key=lambda issue: self._rank.get(issue.instance_name, len(self._rank)))
        return ValidationResult(success=not unique, issues=unique)


def validate_flow(
    flow: Flow,
    catalog: PluginCatalog,
    values: Mapping[str, str] | None = None,
    *,
    check_path: PathCheck | None = None,
) -> ValidationResult:
    """Check a flow's graph, plugins and configurations against the installed plugins.

    Args:
        flow: The flow to check.
        catalog: Resolves each stage's plugin reference (highest installed
            version in range).
        values: Parameter values for ``${name}`` references; ``None`` means
            the flow's own parameters (:func:`parameter_values` without sets).
        check_path: Judges every setting a plugin declares as a path (the
            instance's file roots); ``None`` checks no path.

    Returns:
        A result whose ``issues`` lists every problem found; ``success`` is
        true when there are none.
    """
    if values is None:
        values = parameter_values(flow)
    out = _Collector(flow)

    # Resolve plugins first: the graph rules depend on each stage's kind.
    plugins: dict[int, PluginInfo | None] = {}
    kinds: dict[str, StageKind | None] = {}
    for i, stage in enumerate(flow.stages):
        info = plugins[i] = _resolve(catalog, stage.name, stage.plugin, out)
        # What will run decides; the declared type only stands in for a missing plugin.
        kinds.setdefault(stage.name, info.kind if info is not None else stage.plugin.type)

    # A flow made only of executors (a SQL script, say) is an action flow: it
    # reads nothing, so it needs no origin and its executors no inputs.
    action_flow = bool(flow.stages) and all(k is StageKind.EXECUTOR for k in kinds.values())
    if not flow.stages:
        out.flow("FLOW_NO_STAGES", "The flow has no stages: add an origin, then the stages it feeds.")
    elif not action_flow:
        first = flow.stages[0]
        if kinds[first.name] not in (None, StageKind.ORIGIN):
            out.stage(first.name, "FIRST_STAGE_NOT_ORIGIN", "The first stage must be an origin")

    _check_names(flow, out)
    valid_edges = _check_edges(flow, out)
    if not action_flow:
        _check_streams(flow, kinds, valid_edges, out)

    for i, stage in enumerate(flow.stages):
        info = plugins[i]
        if info is None:
            continue
        if info.kind is StageKind.ERROR:
            out.stage(
                stage.name,
                "ERROR_STAGE_IN_GRAPH",
                f"'{info.name}' is an error stage plugin and cannot be a stage of the flow: "
                "remove this stage and set the plugin as the flow's error stage instead",
            )
        _check_configuration(stage.name, stage.configuration, info, values, out, check_path)

    _check_error_stage(flow, catalog, values, out, check_path)
    return out.result()


def _resolve(catalog: PluginCatalog, name: str, ref: PluginRef, out: _Collector) -> PluginInfo | None:
    resolution = catalog.resolve(ref)
    info = resolution.plugin
    if info is None:
        out.stage(
            name,
            resolution.code or "PLUGIN_NOT_FOUND",
            resolution.message or f"Plugin '{ref.name}' not found",
        )
        return None
    if ref.type is not None and ref.type != info.kind:
        out.stage(
            name,
            "PLUGIN_TYPE_MISMATCH",
            f"The stage declares plugin type '{ref.type.value}' but plugin '{info.name}' "
            f"({info.artifact.name} {info.artifact.version}) is {_KIND_TEXT[info.kind]}: "
            f"set plugin.type to '{info.kind.value}' or choose another plugin",
        )
    return info


def _check_names(flow: Flow, out: _Collector) -> None:
    counts: dict[str, int] = {}
    for stage in flow.stages:
        counts[stage.name] = counts.get(stage.name, 0) + 1
    for name, count in counts.items():
        if count > 1:
            out.stage(
                name,
                "DUPLICATE_STAGE_NAME",
                f"{count} stages are named '{name}': stage names must be unique, rename all but one",
            )
    if flow.error_stage.name in counts:
        out.stage(
            flow.error_stage.name,
            "DUPLICATE_STAGE_NAME",
            f"A stage is named '{flow.error_stage.name}' like the error stage: "
            "rename the stage or the error stage",
        )


def _check_edges(flow: Flow, out: _Collector) -> list[tuple[str, str]]:
    """Report edges that cannot be; return the distinct edges between existing stages."""
    names = {stage.name for stage in flow.stages}
    seen: set[tuple[str, str]] = set()
    valid: list[tuple[str, str]] = []
    for edge in flow.edges:
        pair = (edge.from_, edge.to)
        unknown = [end for end in pair if end not in names]
        if unknown:
            which = " and ".join(f"'{end}'" for end in dict.fromkeys(unknown))
            hint = (
                " (the error stage receives error records without edges)"
                if flow.error_stage.name in unknown
                else ""
            )
            out.flow(
                "UNKNOWN_EDGE_STAGE",
                f"Edge {edge.from_} → {edge.to} refers to {which}, which is not a stage of the flow{hint}: "
                "fix the stage name in the edge or remove the edge",
            )
            continue
        if pair in seen:
            out.stage(
                edge.from_,
                "DUPLICATE_EDGE",
                f"The edge {edge.from_} → {edge.to} is listed more than once: remove the duplicates",
            )
            continue
        seen.add(pair)
        valid.append(pair)
    for cycle in find_cycles(flow):
        if len(cycle) == 1:
            out.stage(
                cycle[0],
                "SELF_LOOP",
                f"Stage '{cycle[0]}' feeds itself: remove the edge {cycle[0]} → {cycle[0]}",
            )
        else:
            out.flow(
                "CYCLE",
                f"Stages {', '.join(cycle)} form a cycle ({format_cycle(cycle)}): "
                "a flow must be acyclic, remove one of these edges",
            )
    return valid


def _check_streams(
    flow: Flow, kinds: Mapping[str, StageKind | None], edges: Sequence[tuple[str, str]], out: _Collector
) -> None:
    inputs: dict[str, list[str]] = {name: [] for name in kinds}
    outputs: dict[str, list[str]] = {name: [] for name in kinds}
    for source, target in edges:
        inputs[target].append(source)
        outputs[source].append(target)

    no_inputs: set[str] = set()
    for name, kind in kinds.items():
        if kind is StageKind.ORIGIN and inputs[name]:
            feeders = ", ".join(inputs[name])
            out.stage(
                name,
                "ORIGIN_HAS_INPUT",
                f"Origin '{name}' cannot have input streams but is fed by {feeders}: remove those edges",
            )
        if kind in (StageKind.PROCESSOR, StageKind.DESTINATION, StageKind.EXECUTOR) and not inputs[name]:
            no_inputs.add(name)
            message = (
                "Processor must have input streams"
                if kind is StageKind.PROCESSOR
                else "Target must have input streams"
            )
            out.stage(name, "NO_INPUT_STREAMS", message)
        if kind in (StageKind.DESTINATION, StageKind.EXECUTOR):
            # A destination may trigger executors (e.g. run SQL after a load); nothing else.
            allowed = (StageKind.EXECUTOR,) if kind is StageKind.DESTINATION else ()
            bad = [t for t in outputs[name] if kinds.get(t) not in allowed]
            if bad:
                what = "a destination, which may only feed executors" if allowed else "an executor"
                out.stage(
                    name,
                    "DESTINATION_HAS_OUTPUT",
                    f"'{name}' is {what}, but it feeds {', '.join(bad)}: remove those edges",
                )

    origins = [name for name, kind in kinds.items() if kind is StageKind.ORIGIN]
    if not origins:
        return
    # A stage of unknown kind without inputs may be an origin whose plugin is
    # missing: what it feeds is not "unreachable", its plugin is the problem.
    maybe_origins = [name for name, kind in kinds.items() if kind is None and not inputs[name]]
    reached = reachable_from_origins(flow, [*origins, *maybe_origins])
    for name, kind in kinds.items():
        # A stage without inputs was already reported as such.
        if name in reached or name in no_inputs or kind is StageKind.ERROR or not inputs[name]:
            continue
        out.stage(
            name,
            "UNREACHABLE_STAGE",
            f"No origin reaches stage '{name}' (it is fed by {', '.join(inputs[name])}): "
            "connect it downstream of an origin or remove it",
        )


def _check_error_stage(
    flow: Flow,
    catalog: PluginCatalog,
    values: Mapping[str, str],
    out: _Collector,
    check_path: PathCheck | None,
) -> None:
    spec = flow.error_stage
    info = _resolve(catalog, spec.name, spec.plugin, out)
    if info is None:
        return
    if info.kind is not StageKind.ERROR:
        out.stage(
            spec.name,
            "NOT_AN_ERROR_STAGE",
            f"The error stage uses plugin '{info.name}', which is {_KIND_TEXT[info.kind]}, "
            "not an error stage: "
            "choose an error stage plugin such as 'discard' or 'write_to_file'",
        )
        return
    _check_configuration(spec.name, spec.configuration, info, values, out, check_path)


# -- configuration ------------------------------------------------------------


def _check_configuration(
    name: str,
    config: dict[str, Any],
    info: PluginInfo,
    values: Mapping[str, str],
    out: _Collector,
    check_path: PathCheck | None = None,
) -> None:
    unresolved_paths: list[tuple[Any, ...]] = []
    missing: set[str] = set()
    substituted = _substitute_tracking(config, values, (), unresolved_paths, missing)
    for param in sorted(missing):
        out.stage(
            name,
            "UNRESOLVED_PARAMETER",
            f"Parameter '{param}' is not defined: add it to the flow's parameters, "
            f"a parameter set the flow uses, or pass --param {param}=VALUE",
        )
    try:
        checked = info.config_model.model_validate(substituted)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            # A check that covers a value still holding ${...} cannot be trusted either way.
            if any(_overlaps(loc, path) for path in unresolved_paths):
                continue
            code, message = _describe_config_error(error, info.config_model)
            out.stage(name, code, f"{_path_text(loc)}: {message}")
    except Exception as exc:  # a third-party validator may raise anything; report, don't crash
        out.stage(name, "CONFIG_INVALID", f"configuration: could not be checked: {exc}")
    else:
        if check_path is not None:
            _check_paths(name, checked, info, unresolved_paths, out, check_path)


def _check_paths(
    name: str,
    config: BaseModel,
    info: PluginInfo,
    unresolved_paths: list[tuple[Any, ...]],
    out: _Collector,
    check_path: PathCheck,
) -> None:
    for setting_name, use in info.path_settings:
        value = getattr(config, setting_name, None)
        if not isinstance(value, str) or any(_overlaps((setting_name,), p) for p in unresolved_paths):
            continue
        problem = check_path(value, use)
        if problem is not None:
            code, message = problem
            out.stage(name, code, f"configuration.{setting_name}: {message}")


def _substitute_tracking(
    value: Any,
    values: Mapping[str, str],
    path: tuple[Any, ...],
    unresolved: list[tuple[Any, ...]],
    missing: set[str],
) -> Any:
    """Substitute like :func:`substitute`, recording where references stay unresolved."""
    if isinstance(value, str):
        holes: list[str] = []

        def replace(match: re.Match[str]) -> str:
            param = match.group(2)
            if match.group(1) is not None:
                return "${" + param + "}"
            if param in values:
                return values[param]
            holes.append(param)
            return match.group(0)

        text = REFERENCE.sub(replace, value)
        if holes:
            missing.update(holes)
            unresolved.append(path)
        return text
    if isinstance(value, Mapping):
        return {k: _substitute_tracking(v, values, (*path, k), unresolved, missing) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_substitute_tracking(v, values, (*path, i), unresolved, missing) for i, v in enumerate(value)]
    return value


def _overlaps(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


def _path_text(loc: tuple[Any, ...]) -> str:
    text = "configuration"
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _describe_config_error(error: ErrorDetails, model: type[BaseModel]) -> tuple[str, str]:
    kind = str(error["type"])
    if kind == "missing":
        return "CONFIG_MISSING", "required setting is missing: add it to the stage's configuration"
    if kind == "extra_forbidden":
        message = "unknown setting (check its spelling)"
        loc = tuple(error["loc"])
        if len(loc) == 1:
            known = [f.alias or n for n, f in model.model_fields.items()]
            close = difflib.get_close_matches(str(loc[0]), known, n=1)
            if close:
                message += f"; did you mean '{close[0]}'?"
            elif known:
                message += f"; known settings: {', '.join(known)}"
        return "CONFIG_UNKNOWN_KEY", message
    got = f" (got {error['input']!r})" if "input" in error else ""
    if kind.endswith(("_type", "_parsing")) or kind in _TYPE_ERRORS:
        return "CONFIG_WRONG_TYPE", f"{error['msg']}{got}"
    return "CONFIG_INVALID", f"{error['msg']}{got}"
