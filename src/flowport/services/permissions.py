"""Restricted stages: who may use a stage that reads files, runs SQL or code, or opens the network.

The NiFi model: a stage plugin declares what it may do beyond transforming
records (``restrictions``: ``read-filesystem``, ``write-filesystem``,
``execute-code``, ``execute-sql``, ``network``), and a user needs the
matching permission to create, update, import, preview or run a flow that
contains it.

* **admin** — every permission.
* **editor** — the permissions the operator grants editors:
  ``FLOWPORT_EDITOR_PERMISSIONS`` (comma-separated) or ``[permissions] editor``
  in ``flowport.toml``; by default :data:`DEFAULT_EDITOR_PERMISSIONS`.
  File stages are confined to the file roots and SQL stages to the
  connections an admin created, so editors may use them; ``execute-code``
  runs programs as the server's own user, past every other confinement, so
  it is for admins unless the operator says otherwise.
* **viewer** — none: viewers read flows, jobs and metrics, never records,
  and run or preview nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flowport.errors import Forbidden
from flowport.model.catalog import RESTRICTIONS, PluginCatalog
from flowport.model.flow import Flow, PluginRef
from flowport.services.auth import User, require_role
from flowport.services.settings import DEFAULT_EDITOR_PERMISSIONS, EDITOR_PERMISSIONS_ENV, settings

__all__ = [
    "DEFAULT_EDITOR_PERMISSIONS",
    "EDITOR_PERMISSIONS_ENV",
    "MissingPermission",
    "editor_permissions",
    "missing_permissions",
    "permissions_of",
    "require_flow_permissions",
]


def editor_permissions() -> frozenset[str]:
    """What editors may do, as the operator configured it (see the module's docstring).

    Raises:
        InvalidSettings: the setting names an unknown permission (the message says where and how to fix).
    """
    return settings().editor_permissions


def permissions_of(user: User | None) -> frozenset[str]:
    """The permissions ``user`` holds; ``None`` (a trusted local caller) holds all."""
    if user is None or user.role == "admin":
        return frozenset(RESTRICTIONS)
    if user.role == "editor":
        return editor_permissions()
    return frozenset()


@dataclass(frozen=True)
class MissingPermission:
    """A stage of a flow the user may not use, and the permissions it lacks."""

    stage: str
    plugin: str
    missing: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        """As the API's error ``details`` shows it."""
        return {"stage": self.stage, "plugin": self.plugin, "missing": list(self.missing)}


def missing_permissions(
    flow: Flow, catalog: PluginCatalog, granted: frozenset[str]
) -> list[MissingPermission]:
    """The stages of ``flow`` (error stage included) whose restrictions ``granted`` does not cover.

    A plugin that is not installed restricts nothing here: validation
    reports it, and nothing runs until it resolves.
    """
    found: list[MissingPermission] = []
    stages: list[tuple[str, PluginRef]] = [(s.name, s.plugin) for s in flow.stages]
    stages.append((flow.error_stage.name, flow.error_stage.plugin))
    for name, plugin in stages:
        info = catalog.resolve(plugin).plugin
        if info is None:
            continue
        lacking = sorted(info.restrictions - granted)
        if lacking:
            found.append(MissingPermission(name, info.name, tuple(lacking)))
    return found


def require_flow_permissions(
    user: User | None, flows: Flow | Iterable[Flow], *, action: str, catalog: PluginCatalog | None = None
) -> None:
    """Forbidden (403) unless ``user`` may ``action`` (create, run, preview, import ...) every flow given.

    Viewers may do none of these; editors need the permission of every
    restricted stage; admins and trusted local callers (``None``) pass.
    The message names the first stage refused and the permission it needs;
    ``details`` lists every stage refused.
    """
    if user is None:
        return
    require_role(user, "editor")
    granted = permissions_of(user)
    if granted >= frozenset(RESTRICTIONS):
        return
    if catalog is None:
        from flowport.services.flows import plugin_registry

        catalog = plugin_registry()
    items = [flows] if isinstance(flows, Flow) else list(flows)
    refused = [(flow.name, item) for flow in items for item in missing_permissions(flow, catalog, granted)]
    if not refused:
        return
    flow_name, first = refused[0]
    more = f" (and {len(refused) - 1} more stage(s))" if len(refused) > 1 else ""
    raise Forbidden(
        f"User '{user.name}' (role {user.role}) may not {action} flow '{flow_name}': stage '{first.stage}' "
        f"(plugin '{first.plugin}') needs the permission {', '.join(repr(m) for m in first.missing)}{more}. "
        f"Ask an admin, or ask the operator to grant editors that permission ({EDITOR_PERMISSIONS_ENV})",
        details={
            "permissionsMissing": [{"flow": name, **item.to_dict()} for name, item in refused],
        },
    )
