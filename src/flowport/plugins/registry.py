"""The plugin registry: every installed stage plugin, by artifact and version.

Plugins are discovered through the entry-point group ``flowport.stages``.
Each entry point belongs to a distribution, which is the plugin's artifact
(name, version). Flowport's own distribution is the SYSTEM artifact
``flowport-core``; every other distribution is a USER artifact. Several
versions of one artifact may be installed side by side (on different paths),
and a stage reference is resolved to the highest installed version its
version spec admits, as in CDAP.

The class that runs is the class of the resolved version:

- Discovery reads metadata only. A plugin is imported when a reference
  resolves to it, so a run imports exactly the versions its flow resolved
  (listing every plugin, :attr:`PluginRegistry.plugins`, imports them all).
- A distribution found in an extra install location (``paths``, e.g. an
  instance's artifact folders) is imported from its own directory under a
  private module name, and so is a second copy of a distribution further
  down ``sys.path``: two versions of one plugin module never share
  ``sys.modules``, so flows using different versions can run at the same
  time in one process.
- One name and version is one artifact: when it is installed in several
  places, the first copy wins: the extra paths in their order, then
  ``sys.path``. The others are listed as shadowed
  (:attr:`InstalledDistribution.shadowed`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata as md
import importlib.util
import sys
import threading
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

__all__ = [
    "CORE_DISTRIBUTION",
    "ENTRY_POINT_GROUP",
    "SYSTEM_ARTIFACT",
    "InstalledDistribution",
    "PluginRegistry",
    "RegisteredPlugin",
]

ENTRY_POINT_GROUP = "flowport.stages"
SYSTEM_ARTIFACT = "flowport-core"
#: The distribution that is the SYSTEM artifact (Flowport itself).
CORE_DISTRIBUTION = "flowport"

# Private plugin modules are created and executed under this lock: two runs
# starting at once must not both execute a module, nor one of them see the
# other's half-initialised module in sys.modules.
_IMPORT_LOCK = threading.RLock()


@dataclass(frozen=True)
class RegisteredPlugin:
    """A plugin class together with the artifact it came from."""

    info: PluginInfo
    cls: type[StagePlugin[Any]] = field(compare=False)


@dataclass(frozen=True)
class InstalledDistribution:
    """A distribution that provides stage plugins, as discovery found it (nothing imported).

    Attributes:
        artifact: The artifact it is (name, version, scope).
        location: The directory holding its ``.dist-info`` (its install location).
        on_sys_path: Found on ``sys.path`` rather than in an extra install location.
        entry_points: Names of its ``flowport.stages`` entry points.
        shadowed: Install locations of other copies of the same name and
            version, which are not used.
    """

    artifact: ArtifactInfo
    location: Path
    on_sys_path: bool
    entry_points: tuple[str, ...]
    shadowed: tuple[Path, ...] = ()


@dataclass(frozen=True)
class _Pending:
    """An entry point discovered but not imported yet."""

    ep_name: str
    artifact: ArtifactInfo
    load: Callable[[], None] = field(compare=False)


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _label_key(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _location(dist: md.Distribution) -> Path:
    return Path(str(dist.locate_file("")))


def _name_of(dist: md.Distribution) -> str:
    """A distribution's normalised name, from its ``<name>-<version>.dist-info`` folder when it has one.

    Parsing every installed distribution's METADATA costs a run about 20 ms;
    a wheel's folder name already holds the name (escaped, without ``-``).
    Anything else (``.egg-info``, a distribution without a folder) is read.
    """
    folder = getattr(dist, "_path", None)
    if isinstance(folder, Path) and folder.suffix == ".dist-info":
        name, dash, _ = folder.stem.partition("-")
        if dash and name:
            return _normalise(name)
    return _normalise(dist.metadata["Name"] or "")


class PluginRegistry:
    """Installed plugins, looked up by name or label and resolved by version.

    A registry may be shared by threads (runs of a server process): imports
    and lookups are serialised by a lock.
    """

    def __init__(self) -> None:
        self._plugins_loaded: list[RegisteredPlugin] = []
        # Entry points not imported yet: a run imports only the plugin
        # versions its flow resolves to, so start-up does not pay for every
        # installed stage and its libraries, and no other version's code runs.
        self._pending: list[_Pending] = []
        self._distributions: list[InstalledDistribution] = []
        self._errors: dict[tuple[str, ArtifactVersion], list[str]] = {}
        self._lock = threading.RLock()
        self.load_errors: list[str] = []

    # -- building ---------------------------------------------------------
    @classmethod
    def discover(cls, paths: Sequence[str | Path] | None = None) -> PluginRegistry:
        """Build a registry from the entry points installed in ``paths`` and on ``sys.path``.

        Each directory of ``paths`` is a separate install location (e.g. made
        with ``pip install --target``), so several versions of one artifact
        can be installed side by side; each is imported from its own
        directory. A name and version found in several places is taken from
        the first: ``paths`` in their order, then ``sys.path``. Nothing is
        imported here; plugins that fail to load later, and versions that
        are no artifact version, are described in ``load_errors``.
        """
        registry = cls()
        found: dict[tuple[str, ArtifactVersion], tuple[md.Distribution, Path, bool, list[Path]]] = {}
        bad_versions: set[tuple[str, str]] = set()

        def consider(dist: md.Distribution, location: Path, on_sys_path: bool) -> None:
            eps = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
            if not eps:
                return
            name = dist.metadata["Name"] or ""
            try:
                version = ArtifactVersion.parse(dist.version)
            except VersionSyntaxError as exc:
                if (_normalise(name), dist.version) not in bad_versions:
                    bad_versions.add((_normalise(name), dist.version))
                    for ep in eps:
                        registry.load_errors.append(
                            f"{name} {dist.version}: entry point '{ep.name}' failed to load: {exc.message}"
                        )
                return
            key = (_normalise(name), version)
            if key in found:
                if location != found[key][1] and location not in found[key][3]:
                    found[key][3].append(location)
                return
            found[key] = (dist, location, on_sys_path, [])

        for path in paths or ():
            for dist in md.distributions(path=[str(path)]):
                if _normalise(dist.metadata["Name"] or "") == CORE_DISTRIBUTION:
                    continue  # Flowport itself is never loaded from an artifact folder
                consider(dist, _location(dist), False)
        first_by_name: dict[str, Path] = {}
        private: set[tuple[str, str]] = set()
        for dist in md.distributions():
            name = _name_of(dist)
            location = _location(dist)
            if name not in first_by_name:
                first_by_name[name] = location
            elif location != first_by_name[name]:
                if name == CORE_DISTRIBUTION:
                    continue  # a stale copy of Flowport itself: never imported
                # Shadowed on sys.path: a plain import would give the first copy's code.
                private.add((name, str(location)))
            consider(dist, location, True)

        for (name, version), (dist, location, on_sys_path, shadowed) in found.items():
            dist_name = dist.metadata["Name"] or ""
            core = name == CORE_DISTRIBUTION
            artifact = ArtifactInfo(
                SYSTEM_ARTIFACT if core else dist_name, version, "SYSTEM" if core else "USER"
            )
            eps = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
            registry._distributions.append(
                InstalledDistribution(
                    artifact, location, on_sys_path, tuple(ep.name for ep in eps), tuple(shadowed)
                )
            )
            # Load from the directory this distribution lives in, not from the
            # first location holding a module of that name: with two versions
            # installed, that would be the wrong one.
            root = location if not on_sys_path or (name, str(location)) in private else None
            for ep in eps:
                load = partial(registry._load_entry_point, ep, dist, artifact, root)
                registry._pending.append(_Pending(ep.name, artifact, load))
        registry._distributions.sort(key=lambda d: (d.artifact.name, d.artifact.version))
        return registry

    def _load(self, name: str | None = None) -> None:
        """Import pending entry points: those called ``name``, or all of them."""
        with self._lock:
            if not self._pending:
                return
            todo = [item for item in self._pending if name is None or item.ep_name == name]
            self._import(todo)

    def _import(self, items: Sequence[_Pending]) -> None:
        with self._lock:
            self._pending = [item for item in self._pending if item not in items]
            for item in items:
                item.load()

    @property
    def _plugins(self) -> list[RegisteredPlugin]:
        with self._lock:
            self._load()
            return list(self._plugins_loaded)

    def _load_entry_point(
        self, ep: md.EntryPoint, dist: md.Distribution, artifact: ArtifactInfo, root: Path | None
    ) -> None:
        try:
            plugin_cls = _load_isolated(ep, root, _identity(dist) if root is not None else "")
            self.add(plugin_cls, artifact=artifact.name, version=str(artifact.version), scope=artifact.scope)
        except Exception as exc:  # a broken third-party plugin must not break Flowport
            message = f"{dist.metadata['Name']} {dist.version}: entry point '{ep.name}' failed to load: {exc}"
            self.load_errors.append(message)
            self._errors.setdefault((_normalise(artifact.name), artifact.version), []).append(message)

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
        with self._lock:
            self._plugins_loaded = [
                p
                for p in self._plugins_loaded
                if not (p.info.name == info.name and p.info.artifact == info.artifact)
            ]
            self._plugins_loaded.append(RegisteredPlugin(info, plugin_cls))

    # -- what is installed ------------------------------------------------
    def distributions(self) -> list[InstalledDistribution]:
        """The discovered distributions, each name and version once, without importing anything."""
        return list(self._distributions)

    def errors_of(self, artifact: ArtifactInfo) -> list[str]:
        """Why plugins of ``artifact`` failed to load (so far: plugins load when first needed)."""
        with self._lock:
            return list(self._errors.get((_normalise(artifact.name), artifact.version), []))

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
        with self._lock:
            while True:
                found = self._choose(ref)
                if not isinstance(found, list):
                    return found
                # Import only what the choice needs, then choose again: an import may
                # fail, or give a class of another name, and then the next best wins.
                self._import(found)

    def _choose(self, ref: PluginRef) -> RegisteredPlugin | Resolution | list[_Pending]:
        """The plugin ``ref`` means, or the pending entry points to import before knowing."""
        candidates: list[RegisteredPlugin | _Pending] = [
            p for p in self._plugins_loaded if p.info.name == ref.name
        ]
        candidates += [item for item in self._pending if item.ep_name == ref.name]
        if not candidates and self._pending:
            # An entry point named differently from its plugin: look everywhere.
            self._load()
            candidates = [p for p in self._plugins_loaded if p.info.name == ref.name]
        if not candidates:
            return Resolution(
                None, "PLUGIN_NOT_FOUND", f"No installed artifact provides the stage plugin '{ref.name}'"
            )
        art = ref.artifact
        if art is not None and art.name:
            named = [c for c in candidates if _normalise(_artifact(c).name) == _normalise(art.name)]
            if not named:
                if any(isinstance(c, _Pending) for c in candidates):
                    return [c for c in candidates if isinstance(c, _Pending)]
                have = ", ".join(sorted({_artifact(c).name for c in candidates}))
                return Resolution(
                    None,
                    "ARTIFACT_NOT_FOUND",
                    f"Artifact '{art.name}' is not installed; plugin '{ref.name}' is provided by: {have}",
                )
            candidates = named
        if art is not None and art.scope:
            scoped = [c for c in candidates if _artifact(c).scope == art.scope]
            if scoped:
                candidates = scoped
        try:
            spec = parse_version_spec(art.version if art is not None else None)
        except VersionSyntaxError as exc:
            return Resolution(None, "BAD_VERSION", exc.message)
        by_version: dict[ArtifactVersion, RegisteredPlugin | _Pending] = {}
        for candidate in candidates:
            version = _artifact(candidate).version
            # A class already imported beats an entry point of the same version.
            if version not in by_version or isinstance(by_version[version], _Pending):
                by_version[version] = candidate
        best = spec.best(by_version)
        if best is None:
            pending = [c for c in candidates if isinstance(c, _Pending)]
            if pending:
                # The message lists installed versions: only those that load are installed.
                return pending
            installed = ", ".join(str(v) for v in sorted(by_version))
            artifact_name = _artifact(candidates[0]).name
            return Resolution(
                None,
                "ARTIFACT_VERSION_NOT_FOUND",
                f"No installed version of artifact '{artifact_name}' matches {spec} for plugin '{ref.name}'; "
                f"installed: {installed}",
            )
        chosen = by_version[best]
        return [chosen] if isinstance(chosen, _Pending) else chosen


def _artifact(candidate: RegisteredPlugin | _Pending) -> ArtifactInfo:
    return candidate.artifact if isinstance(candidate, _Pending) else candidate.info.artifact


def _identity(dist: md.Distribution) -> str:
    """What tells two installs in one directory apart: the hashes of their files (``RECORD``)."""
    try:
        record = dist.read_text("RECORD") or ""
    except OSError:
        record = ""
    return hashlib.sha256(f"{dist.version}|{record}".encode()).hexdigest()


def _load_isolated(ep: md.EntryPoint, root: Path | None, identity: str = "") -> type[StagePlugin[Any]]:
    """Load an entry point; for a distribution with a ``root``, import it from that directory.

    Two versions of one plugin module cannot share ``sys.modules``, so a
    plugin with a root is imported from there under a private module name.
    """
    loaded = ep.load() if root is None else _load_from_root(ep, root, identity)
    if not isinstance(loaded, type) or not issubclass(loaded, StagePlugin):
        raise TypeError(f"'{ep.value}' is not a StagePlugin subclass")
    return loaded


def _load_from_root(ep: md.EntryPoint, root: Path, identity: str = "") -> Any:
    """Import ``ep`` from the distribution installed in ``root``, under a private top-level name.

    The whole top-level package is loaded privately (with its directory as
    search location), so relative imports inside the plugin package work.
    Absolute imports of the plugin's own package from within itself still go
    through ``sys.path``; plugins installed side by side should use relative
    imports. The private name depends on the directory and on ``identity``
    (the hashes of the installed files), so a copy reinstalled in the same
    directory with other code is imported afresh.
    """
    top, *rest = ep.module.split(".")
    digest = hashlib.sha256(f"{root}|{top}|{identity}".encode()).hexdigest()[:12]
    private = f"_flowport_plugin_{digest}_{top}"
    with _IMPORT_LOCK:
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
