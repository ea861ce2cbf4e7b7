"""What a release changes: flows, stages, configuration keys, edges, artifacts, parameters.

Releases are compared flow by flow, matched by the uuid the flow had in its
package (a release stores copies under new uuids), then by name. For each
flow that is in both, the diff lists stages added and removed, and per
stage that is in both its plugin, artifact pin and configuration keys that
were added, removed or changed (nested settings as dotted paths,
``fields[0].type``), the edges added and removed, the parameters and the
error stage. A configuration value whose key names a secret (password,
token, ...) is never shown: its change says ``"***"`` on both sides.

Pure: no store, no clock. The services pass the flows and the release
reports; :func:`diff_releases` returns plain JSON-ready data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowport.model.flow import Flow

__all__ = ["ReleaseSide", "diff_flows", "diff_releases"]

_SECRET_KEY = re.compile(r"(?i)(pass(word|wd)?|pwd|secret|token|api[_-]?key|private[_-]?key|credential)")
_HIDDEN = "***"


@dataclass(frozen=True)
class ReleaseSide:
    """One side of a comparison: its flows (each with the uuid it had in its package) and its report."""

    label: str
    flows: Sequence[tuple[str, Flow]]
    resolved_artifacts: Sequence[Mapping[str, Any]] = ()
    import_rule_changes: Mapping[str, Any] | None = None


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out or ({prefix: {}} if prefix else {})
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{index}]"))
        return out or {prefix: []}
    return {prefix: value}


def _shown(key: str, value: Any) -> Any:
    return _HIDDEN if _SECRET_KEY.search(key) else value


def _configuration_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    old, new = _flatten(before), _flatten(after)
    return {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "changed": [
            {"key": key, "from": _shown(key, old[key]), "to": _shown(key, new[key])}
            for key in sorted(set(old) & set(new))
            if old[key] != new[key]
        ],
    }


def _is_empty(changes: Mapping[str, Any]) -> bool:
    return all(not v for v in changes.values())


def _artifact(plugin: Any) -> str | None:
    artifact = plugin.artifact
    if artifact is None:
        return None
    return f"{artifact.name}:{artifact.version or '*'}"


def diff_flows(before: Flow, after: Flow) -> dict[str, Any]:
    """What changed inside one flow (empty lists when nothing did)."""
    old = {s.name: s for s in before.stages}
    new = {s.name: s for s in after.stages}
    changed_stages = []
    for name in [s.name for s in after.stages if s.name in old]:
        a, b = old[name], new[name]
        entry: dict[str, Any] = {"stage": name}
        if a.plugin.name != b.plugin.name:
            entry["plugin"] = {"from": a.plugin.name, "to": b.plugin.name}
        if _artifact(a.plugin) != _artifact(b.plugin):
            entry["artifact"] = {"from": _artifact(a.plugin), "to": _artifact(b.plugin)}
        config = _configuration_changes(a.configuration, b.configuration)
        if not _is_empty(config):
            entry["configuration"] = config
        if len(entry) > 1:
            changed_stages.append(entry)
    old_edges = {(e.from_, e.to) for e in before.edges}
    new_edges = {(e.from_, e.to) for e in after.edges}
    parameters = _configuration_changes(before.parameters, after.parameters)
    error_stage = _configuration_changes(
        {"plugin": before.error_stage.plugin.name, **before.error_stage.configuration},
        {"plugin": after.error_stage.plugin.name, **after.error_stage.configuration},
    )
    flow_settings = _configuration_changes(
        before.configuration.model_dump(mode="json"), after.configuration.model_dump(mode="json")
    )
    return {
        "stages": {
            "added": [s.name for s in after.stages if s.name not in old],
            "removed": [s.name for s in before.stages if s.name not in new],
            "changed": changed_stages,
        },
        "edges": {
            "added": [{"from": f, "to": t} for f, t in sorted(new_edges - old_edges)],
            "removed": [{"from": f, "to": t} for f, t in sorted(old_edges - new_edges)],
        },
        "parameters": parameters,
        "parameterSets": {
            "added": sorted(set(after.parameter_sets) - set(before.parameter_sets)),
            "removed": sorted(set(before.parameter_sets) - set(after.parameter_sets)),
        },
        "errorStage": error_stage,
        "configuration": flow_settings,
    }


def _flow_changed(diff: Mapping[str, Any]) -> bool:
    return any(not _is_empty(part) for part in diff.values())


def _artifacts(side: ReleaseSide) -> dict[tuple[str, str, str], str]:
    found: dict[tuple[str, str, str], str] = {}
    for item in side.resolved_artifacts:
        key = (str(item.get("flow")), str(item.get("stage")), str(item.get("artifact")))
        found[key] = str(item.get("resolved"))
    return found


def diff_releases(before: ReleaseSide, after: ReleaseSide) -> dict[str, Any]:
    """What ``after`` changes compared with ``before``.

    Returns:
        ``{"from", "to", "flows": {"added", "removed", "renamed", "changed":
        [{"flow", ...diff_flows}]}, "artifacts": [{"flow", "stage",
        "artifact", "from", "to"}], "importRules": {"from", "to"}}``.
    """
    old = {uuid: flow for uuid, flow in before.flows}
    new = {uuid: flow for uuid, flow in after.flows}
    # Flows without a match by package uuid may still match by name.
    old_by_name = {flow.name: uuid for uuid, flow in before.flows if uuid not in new}
    pairs: list[tuple[Flow, Flow]] = []
    added: list[str] = []
    matched_old: set[str] = set()
    for uuid, flow in after.flows:
        if uuid in old:
            pairs.append((old[uuid], flow))
            matched_old.add(uuid)
        elif flow.name in old_by_name and old_by_name[flow.name] not in matched_old:
            pairs.append((old[old_by_name[flow.name]], flow))
            matched_old.add(old_by_name[flow.name])
        else:
            added.append(flow.name)
    removed = [flow.name for uuid, flow in before.flows if uuid not in matched_old]
    renamed = [{"from": a.name, "to": b.name} for a, b in pairs if a.name != b.name]
    changed = []
    for a, b in pairs:
        diff = diff_flows(a, b)
        if _flow_changed(diff):
            changed.append({"flow": b.name, **diff})
    old_art, new_art = _artifacts(before), _artifacts(after)
    artifacts = [
        {"flow": flow, "stage": stage, "artifact": name, "from": old_art.get(key), "to": new_art.get(key)}
        for key in sorted(set(old_art) | set(new_art))
        for flow, stage, name in [key]
        if old_art.get(key) != new_art.get(key)
    ]
    return {
        "from": before.label,
        "to": after.label,
        "flows": {"added": added, "removed": removed, "renamed": renamed, "changed": changed},
        "artifacts": artifacts,
        "importRules": {
            "from": dict(before.import_rule_changes or {"object": [], "value": []}),
            "to": dict(after.import_rule_changes or {"object": [], "value": []}),
        },
    }
