"""The plugin registry: every installed stage plugin, by artifact and version.

Plugins are discovered through the entry-point group ``flowport.stages``.
Each entry point belongs to a distribution, which is the plugin's artifact
(name, version). Flowport's own distribution is the SYSTEM artifact
``flowport-core``; every other distribution is a USER artifact. Several
versions of one artifact may be installed side by side (on different paths),
and a stage reference is resolved to the highest installed version its
version spec admits, as in CDAP.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata as md
import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from flowport.errors import PluginNotFound, VersionSyntaxError
from flowport.model.catalog import RESTRICTIONS, ArtifactInfo, PluginInfo, Resolution
from flowport.model.flow import PluginRef
from flowport.model.versions import ArtifactVersion, parse_version_spec
from flowport.plugins.contract import StagePlugin

__all__ = ["ENTRY_POINT_GROUP", "SYSTEM_ARTIFACT", "PluginRegistry", "RegisteredPlugin"]

ENTRY_POINT_GROUP = "flowport.stages"
SYSTEM_ARTIFACT = "flowport-core"
_CORE_DISTRIBUTION = "flowport"


@dataclass(frozen=True)
class RegisteredPlugin:
    """A plugin class together with the artifact it came from."""

    info: PluginInfo
    cls: type[StagePlugin[Any]] = field(compare=False)


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _label_key(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


class PluginRegistry:
    """Installed plugins, looked up by name or label and resolved by version."""

    def __init__(self) -> None:
        self._plugins_loaded: list[RegisteredPlugin] = []
        # Entry points not imported yet, by entry point name (= plugin name by
        # convention): a run imports only the plugins its flow uses, so start-up
        # does not pay for every installed stage and its libraries.
        self._pending: list[tuple[str, Callable[[], None]]] = []
        self.load_errors: list[str] = []

    # -- building ---------------------------------------------------------
    @classmethod
    def discover(cls, paths: Sequence[str] | None = None) -> PluginRegistry:
        """Build a registry from the entry points installed on ``sys.path`` (plus ``paths``).

        Each directory of ``paths`` is a separate install location (e.g. made
        with ``pip install --target``), so several versions of one artifact
        can be installed side by side. Plugins that fail to load are skipped
        and described in ``load_errors``.
        """
        registry = cls()
        seen: set[tuple[str, str, str]] = set()
        search: list[list[str] | None] = [None]
        if paths:
            search.append([str(p) for p in paths])
        for path in search:
            dists = md.distributions() if path is None else md.distributions(path=path)
            for dist in dists:
                for ep in dist.entry_points:
                    if ep.group != ENTRY_POINT_GROUP:
                        continue
                    name = dist.metadata["Name"] or ""
                    key = (_normalise(name), dist.version, ep.name)
                    if key in seen:
                        continue
                    seen.add(key)
                    # Load from the directory this distribution lives in, not
                    # from the first extra path holding a module of that name:
                    # with two versions installed, that would be the wrong one.
                    root = None if path is None else Path(str(dist.locate_file("")))
                    registry._pending.append(
                        (ep.name, partial(registry._load_entry_point, ep, name, dist.version, root))
                    )
        return registry

    def _load(self, name: str | None = None) -> None:
        """Import pending entry points: those called ``name``, or all of them."""
        if not self._pending:
            return
        todo = [item for item in self._pending if name is None or item[0] == name]
        self._pending = [item for item in self._pending if not (name is None or item[0] == name)]
        for _, load in todo:
            load()

    @property
    def _plugins(self) -> list[RegisteredPlugin]:
        self._load()
        return self._plugins_loaded

    def _load_entry_point(
        self, ep: md.EntryPoint, dist_name: str, dist_version: str, root: Path | None
    ) -> None:
        core = _normalise(dist_name) == _CORE_DISTRIBUTION
        try:
            plugin_cls = _load_isolated(ep, root)
            self.add(
                plugin_cls,
                artifact=SYSTEM_ARTIFACT if core else dist_name,
                version=dist_version,
                scope="SYSTEM" if core else "USER",
            )
        except Exception as exc:  # a broken third-party plugin must not break Flowport
            self.load_errors.append(
                f"{dist_name} {dist_version}: entry point '{ep.name}' failed to load: {exc}"
            )

    def add(
        self, plugin_cls: type[StagePlugin[Any]], *, artifact: str, version: str, scope: str = "USER"
    ) -> None:
        """Register one plugin class as part of ``artifact`` at ``version``."""
        for attr in ("name", "label", "kind", "config_model"):
            if not hasattr(plugin_cls, attr):
                raise TypeError(f"Plugin class {plugin_cls.__qualname__} has no '{attr}'")
        unknown = set(getattr(plugin_cls, "restrictions", ())) - set(RESTRICTIONS)
        if unknown:
            raise TypeError(
                f"Plugin class {plugin_cls.__qualname__} declares unknown restrictions "
                f"{', '.join(sorted(unknown))}; known: {', '.join(RESTRICTIONS)}"
            )
        info = PluginInfo(
            name=plugin_cls.name,
            label=plugin_cls.label,
            kind=plugin_cls.kind,
            artifact=ArtifactInfo(artifact, ArtifactVersion.parse(version), scope),
            config_model=plugin_cls.config_model,
            restrictions=frozenset(getattr(plugin_cls, "restrictions", frozenset())),
            path_settings=tuple(dict(getattr(plugin_cls, "path_settings", {})).items()),
        )
        self._plugins_loaded = [
            p
            for p in self._plugins_loaded
            if not (p.info.name == info.name and p.info.artifact == info.artifact)
        ]
        self._plugins_loaded.append(RegisteredPlugin(info, plugin_cls))

    # -- looking up -------------------------------------------------------
    @property
    def plugins(self) -> list[RegisteredPlugin]:
        """Every registered plugin (all artifacts, all versions)."""
        return list(self._plugins)

    def latest(self) -> list[RegisteredPlugin]:
        """One entry per plugin name and artifact: the highest version."""
        best: dict[tuple[str, str], RegisteredPlugin] = {}
        for p in self._plugins:
            key = (p.info.name, p.info.artifact.name)
            if key not in best or p.info.artifact.version > best[key].info.artifact.version:
                best[key] = p
        return sorted(best.values(), key=lambda p: (p.info.kind.value, p.info.name))

    def artifacts(self) -> list[ArtifactInfo]:
        """Installed artifacts, each version once."""
        return sorted({p.info.artifact for p in self._plugins}, key=lambda a: (a.name, a.version))

    def name_for(self, name_or_label: str) -> str:
        """The plugin name meant by a name or a label (``Trash``, ``Write to File``, ``write_to_file``)."""
        for p in self._plugins:
            if p.info.name == name_or_label:
                return p.info.name
        key = _label_key(name_or_label)
        for p in self._plugins:
            if _label_key(p.info.label) == key or _label_key(p.info.name) == key:
                return p.info.name
        known = ", ".join(sorted({f"{p.info.label} ({p.info.name})" for p in self._plugins}))
        raise PluginNotFound(f"No stage plugin is called '{name_or_label}'. Installed: {known}")

    def resolve(self, ref: PluginRef) -> Resolution:
        """Pick the plugin ``ref`` means: the highest installed version its spec admits."""
        found = self._find(ref)
        if isinstance(found, Resolution):
            return found
        return Resolution(found.info)

    def plugin_class(self, ref: PluginRef) -> type[StagePlugin[Any]]:
        """The class ``ref`` resolves to; PluginNotFound with the reason otherwise."""
        found = self._find(ref)
        if isinstance(found, Resolution):
            raise PluginNotFound(found.message)
        return found.cls

    def _find(self, ref: PluginRef) -> RegisteredPlugin | Resolution:
        self._load(ref.name)
        candidates = [p for p in self._plugins_loaded if p.info.name == ref.name]
        if not candidates and self._pending:
            # An entry point named differently from its plugin: look everywhere.
            candidates = [p for p in self._plugins if p.info.name == ref.name]
        if not candidates:
            return Resolution(
                None, "PLUGIN_NOT_FOUND", f"No installed artifact provides the stage plugin '{ref.name}'"
            )
        art = ref.artifact
        if art is not None and art.name:
            named = [p for p in candidates if _normalise(p.info.artifact.name) == _normalise(art.name)]
            if not named:
                have = ", ".join(sorted({p.info.artifact.name for p in candidates}))
                return Resolution(
                    None,
                    "ARTIFACT_NOT_FOUND",
                    f"Artifact '{art.name}' is not installed; plugin '{ref.name}' is provided by: {have}",
                )
            candidates = named
        if art is not None and art.scope:
            scoped = [p for p in candidates if p.info.artifact.scope == art.scope]
            if scoped:
                candidates = scoped
        try:
            spec = parse_version_spec(art.version if art is not None else None)
        except VersionSyntaxError as exc:
            return Resolution(None, "BAD_VERSION", exc.message)
        by_version = {p.info.artifact.version: p for p in candidates}
        best = spec.best(by_version)
        if best is None:
            installed = ", ".join(str(v) for v in sorted(by_version))
            artifact_name = candidates[0].info.artifact.name
            return Resolution(
                None,
                "ARTIFACT_VERSION_NOT_FOUND",
                f"No installed version of artifact '{artifact_name}' matches {spec} for plugin '{ref.name}'; "
                f"installed: {installed}",
            )
        return by_version[best]


def _load_isolated(ep: md.EntryPoint, root: Path | None) -> type[StagePlugin[Any]]:
    """Load an entry point; for a distribution on an extra path, import it from its own directory.

    Two versions of one plugin module cannot share ``sys.modules``, so a
    plugin found on an extra path is imported from there under a private
    module name.
    """
    loaded = ep.load() if root is None else _load_from_root(ep, root)
    if not isinstance(loaded, type) or not issubclass(loaded, StagePlugin):
        raise TypeError(f"'{ep.value}' is not a StagePlugin subclass")
    return loaded


def _load_from_root(ep: md.EntryPoint, root: Path) -> Any:
    """Import ``ep`` from the distribution installed in ``root``, under a private top-level name.

    The whole top-level package is loaded privately (with its directory as
    search location), so relative imports inside the plugin package work.
    Absolute imports of the plugin's own package from within itself still go
    through ``sys.path``; plugins installed side by side should use relative
    imports.
    """
    top, *rest = ep.module.split(".")
    digest = hashlib.sha256(f"{root}|{top}".encode()).hexdigest()[:12]
    private = f"_flowport_plugin_{digest}_{top}"
    if private not in sys.modules:
        package_init = root / top / "__init__.py"
        single = root / f"{top}.py"
        if package_init.is_file():
            spec = importlib.util.spec_from_file_location(
                private, package_init, submodule_search_locations=[str(root / top)]
            )
        elif single.is_file() and not rest:
            spec = importlib.util.spec_from_file_location(private, single)
        else:
            # Never fall back to sys.path: it may hold another version of the plugin.
            raise ImportError(f"module '{ep.module}' is not a Python source module or package in {root}")
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import '{ep.module}' from {root}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[private] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[private]
            raise
    obj: Any = importlib.import_module(".".join([private, *rest]))
    for name in ep.attr.split(".") if ep.attr else []:
        obj = getattr(obj, name)
    return obj
