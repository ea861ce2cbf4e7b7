"""The one plan of a package import: what becomes of each flow and pipeline, wherever they are stored.

A project import (``POST /v4/flows/package``), a release import (``POST
/v4/deployments/{id}/releases``) and the CLI's local import (``flowport
flows import`` into a folder) store in different places (the metadata
store, a deployment's project, files) but decide the same things the same
way, here, without touching any store:

* what a flow or pipeline whose name (or uuid) is taken becomes, by the
  conflict resolution (``skip``, ``replace``, ``rename`` to ``"<name> (N)"``);
* which manifest connection a stage's or task's reference names;
* how a pipeline's tasks follow the flows and connections the import
  renamed or remapped.
"""

from __future__ import annotations

import copy
import uuid as _uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from flowport.model.flow import Flow
from flowport.model.package import PackageConnection, copy_name

__all__ = [
    "RESOLUTIONS",
    "Action",
    "ImportPlan",
    "Placement",
    "Resolution",
    "manifest_connection",
    "place",
    "plan_flows",
    "retarget_pipeline",
]

Resolution = Literal["skip", "replace", "rename"]
RESOLUTIONS: tuple[Resolution, ...] = ("skip", "replace", "rename")
Action = Literal["create", "skip", "replace", "rename"]


@dataclass(frozen=True)
class Placement:
    """What the import does with one object: its action and the name it is stored under."""

    action: Action
    name: str
    original_name: str


def place(
    name: str,
    resolution: Resolution,
    *,
    conflicting: bool,
    taken: Callable[[str], bool],
    max_length: int = 255,
) -> Placement:
    """The placement of an object called ``name``; ``conflicting``: the target already has it."""
    if not conflicting:
        return Placement("create", name, name)
    if resolution == "skip":
        return Placement("skip", name, name)
    if resolution == "replace":
        return Placement("replace", name, name)
    return Placement("rename", copy_name(name, taken, max_length=max_length), name)


@dataclass
class ImportPlan:
    """The flows of a package as the import stores them (a renamed copy has a new name and uuid)."""

    flows: list[tuple[Placement, Flow]] = field(default_factory=list)

    @property
    def stored(self) -> list[tuple[Placement, Flow]]:
        """The flows that are written (every placement but ``skip``)."""
        return [(placement, flow) for placement, flow in self.flows if placement.action != "skip"]

    @property
    def renamed_flows(self) -> dict[str, str]:
        """Old name → new name of the flows stored as renamed copies."""
        return {p.original_name: p.name for p, _ in self.flows if p.action == "rename"}

    def report(self) -> dict[str, Any]:
        """The v4 answer's ``skipped``, ``renamed`` and ``replaced`` (the seed's shape)."""
        return {
            "skipped": [p.name for p, _ in self.flows if p.action == "skip"],
            "renamed": [{"from": old, "to": new} for old, new in self.renamed_flows.items()],
            "replaced": [p.name for p, _ in self.flows if p.action == "replace"],
        }


def plan_flows(
    flows: Iterable[Flow],
    resolution: Resolution,
    *,
    conflicts: Callable[[Flow], bool],
    taken: Callable[[str], bool],
    max_length: int = 255,
) -> ImportPlan:
    """Place every flow: ``conflicts(flow)`` says the target holds it (same uuid or name), ``taken(name)``
    that a name is in use there. Names this plan gives out count as taken for the flows after them."""
    plan = ImportPlan()
    given: set[str] = set()

    def in_use(name: str) -> bool:
        return name in given or taken(name)

    for flow in flows:
        placement = place(
            flow.name,
            resolution,
            conflicting=conflicts(flow) or flow.name in given,
            taken=in_use,
            max_length=max_length,
        )
        if placement.action == "rename":
            flow = flow.model_copy(update={"uuid": _uuid.uuid4(), "name": placement.name})
        if placement.action != "skip":
            given.add(placement.name)
        plan.flows.append((placement, flow))
    return plan


def manifest_connection(reference: str, listed: Iterable[PackageConnection]) -> PackageConnection | None:
    """The manifest connection a reference names: by uuid (any spelling of it), else by name."""
    try:
        canonical = str(_uuid.UUID(reference))
    except ValueError:
        canonical = None
    for connection in listed:
        if str(connection.uuid) == canonical or connection.name == reference:
            return connection
    return None


def retarget_pipeline(
    document: Mapping[str, Any],
    flow_names: Mapping[str, str],
    connection: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """A copy of a pipeline document whose flow tasks name ``flow_names[old]`` where the import renamed a
    flow, and whose connection references (SQL tasks, dbt targets, shell secrets) go through
    ``connection`` when one is given."""
    retargeted = copy.deepcopy(dict(document))
    tasks: Sequence[Any] = retargeted.get("tasks") or []
    for task in tasks:
        if not isinstance(task, dict):
            continue
        kind = task.get("type")
        if kind == "flow" and task.get("flow") in flow_names:
            task["flow"] = flow_names[task["flow"]]
        if connection is None:
            continue
        if kind == "sql" and "connection" in task:
            task["connection"] = connection(str(task["connection"]))
        references = (task.get("targets") or {}) if kind == "dbt" else (task.get("secrets") or {})
        if kind in ("dbt", "shell") and isinstance(references, dict):
            for reference in references.values():
                if isinstance(reference, dict) and "connection" in reference:
                    reference["connection"] = connection(str(reference["connection"]))
    return retargeted
