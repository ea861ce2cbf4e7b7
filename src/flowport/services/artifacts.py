"""Artifacts: plugin distributions installed into the instance, side by side, one folder per version.

An instance keeps USER artifacts under ``$FLOWPORT_HOME/artifacts``::

    artifacts/<name>/<version>/            e.g. artifacts/acme-stages/1.2.0/
        acme_stages/...                    the distribution, as `pip install --target` lays it out
        acme_stages-1.2.0.dist-info/

:func:`install_artifact` installs a wheel or a source directory with
``pip install --no-deps --target`` into a private staging folder, reads the
name and version from the installed ``.dist-info`` (never from a file name
or other text of the caller), checks that it provides ``flowport.stages``
entry points, and moves the folder into place with one rename. An installed
name and version is never overwritten unless asked (``force``).

:func:`instance_registry` is the plugin registry of the instance: the
plugins of Flowport's Python environment (``sys.path``) plus every artifact
folder. Each version in a folder is imported from that folder under a
private module name when a flow first resolves to it, so a job imports
exactly the versions its flow resolved, and flows using different versions
of one artifact run side by side in one process, each with its own code.

- **Which copy wins.** When one name and version is both in an artifact
  folder and on ``sys.path``, the artifact folder wins: it is what the
  operator installed into this instance (and what ``--force`` replaces).
  The environment's copy is listed as shadowed.
- **When installs are seen.** Every call of :func:`instance_registry` (it is
  behind :func:`flowport.services.flows.plugin_registry`) compares the
  artifact folders with those its cached registry was built from (names,
  versions, inode and modification time of each version folder), and
  discovers again when they changed. So an install or removal is seen by
  the process that made it at once, and by every other process of the
  instance (``flowport server``, its job worker processes, ``flowport run``)
  the next time it needs the registry; a run that has started keeps the
  code it started with.

Dependencies of an artifact are not installed (``--no-deps``): they must be
in Flowport's environment; :func:`install_artifact` warns about those that
are not. Plugins installed side by side should import their own modules
relatively (``from . import util``): an absolute import of the plugin's own
package goes through ``sys.path``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Final

from flowport.errors import Conflict, NotFound, ValidationFailed, VersionSyntaxError
from flowport.home import instance_home
from flowport.model.versions import ArtifactVersion
from flowport.plugins.registry import (
    CORE_DISTRIBUTION,
    ENTRY_POINT_GROUP,
    SYSTEM_ARTIFACT,
    InstalledDistribution,
    PluginRegistry,
)

if TYPE_CHECKING:
    from flowport.services.auth import User

__all__ = [
    "ARTIFACTS_DIR",
    "NAME_PATTERN",
    "artifact_folders",
    "artifacts_dir",
    "install_artifact",
    "install_wheel",
    "instance_registry",
    "invalidate_registry",
    "list_artifacts",
    "remove_artifact",
]

_log = logging.getLogger(__name__)

#: The folder of ``FLOWPORT_HOME`` that holds installed artifacts.
ARTIFACTS_DIR: Final = "artifacts"
# Folders of artifacts/ that are no artifact: installs in progress, replaced copies being deleted.
_STAGING: Final = ".staging"
_TRASH: Final = ".trash"
# Folder names, after normalising (PEP 503 names; artifact versions as Flowport parses them).
_NAME: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?")
#: An artifact name as given (before its PEP 503 normal form), as the OpenAPI document states it.
NAME_PATTERN: Final = r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$"
_VERSION_TEXT: Final = re.compile(r"[0-9][A-Za-z0-9._-]{0,99}")
_WHEEL_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+!-]{0,200}\.whl")
_PIP_TIMEOUT: Final = 600.0

_cache_lock = threading.Lock()
_cached: tuple[tuple[Any, ...], PluginRegistry] | None = None


# -- where artifacts live ------------------------------------------------------------------


def artifacts_dir() -> Path:
    """``$FLOWPORT_HOME/artifacts``: one folder per artifact name, one sub-folder per version.

    Only the instance folder is needed (the settings' ``home``, found the same way), so a run
    that looks plugins up does not build, or import, the instance's settings.
    """
    return instance_home() / ARTIFACTS_DIR


def _folder_name(name: str) -> str:
    """The folder of an artifact name: its PEP 503 normal form (``Acme_Stages`` → ``acme-stages``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _check_name(name: str) -> str:
    folder = _folder_name(name)
    if not _NAME.fullmatch(folder):
        raise ValidationFailed(
            f"'{name[:100]}' is not an artifact name: letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit"
        )
    return folder


def _check_version(text: str) -> ArtifactVersion:
    try:
        version = ArtifactVersion.parse(text)
    except VersionSyntaxError as exc:
        raise ValidationFailed(exc.message) from None
    if not _VERSION_TEXT.fullmatch(str(version)):
        raise ValidationFailed(f"'{text[:100]}' is not a version Flowport can keep in a folder name")
    return version


def artifact_folders(root: Path | None = None) -> list[Path]:
    """The installed version folders (``artifacts/<name>/<version>``), sorted; anything else is ignored."""
    base = artifacts_dir() if root is None else root
    folders: list[Path] = []
    try:
        names = sorted(os.scandir(base), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    for name in names:
        if not _NAME.fullmatch(name.name) or not name.is_dir(follow_symlinks=False):
            continue
        try:
            versions = sorted(os.scandir(name.path), key=lambda e: e.name)
        except OSError:
            continue
        for version in versions:
            if _VERSION_TEXT.fullmatch(version.name) and version.is_dir(follow_symlinks=False):
                folders.append(Path(version.path))
    return folders


# -- the instance's registry --------------------------------------------------------------


def _state(folders: Sequence[Path]) -> tuple[Any, ...]:
    state: list[tuple[str, int, int, int]] = []
    for folder in folders:
        try:
            info = folder.stat()
        except OSError:
            continue
        state.append((str(folder), info.st_dev, info.st_ino, info.st_mtime_ns))
    return tuple(state)


def instance_registry() -> PluginRegistry:
    """The plugins of this instance: Flowport's environment plus its artifact folders.

    Discovered again only when the artifact folders changed since the last
    call (see the module's documentation); otherwise the same registry.
    """
    global _cached
    folders = artifact_folders()
    key = _state(folders)
    with _cache_lock:
        if _cached is not None and _cached[0] == key:
            return _cached[1]
        registry = PluginRegistry.discover(paths=[Path(state[0]) for state in key])
        _cached = (key, registry)
        for problem in registry.load_errors:
            _log.warning("Plugin artifacts: %s", problem)
        return registry


def invalidate_registry() -> None:
    """Forget the cached registry: the next :func:`instance_registry` discovers again."""
    global _cached
    with _cache_lock:
        _cached = None


# -- listing -----------------------------------------------------------------------------


def _source(dist: InstalledDistribution, root: Path) -> str:
    if dist.artifact.scope == "SYSTEM":
        return "system"
    if not dist.on_sys_path and dist.location.parent.parent == root:
        return "instance"
    return "environment"


def _describe(dist: InstalledDistribution, root: Path) -> dict[str, Any]:
    return {
        **dist.artifact.as_ref(),
        # system: Flowport itself; environment: on Flowport's sys.path; instance: artifacts/<name>/<version>.
        "source": _source(dist, root),
        "path": str(dist.location),
        "shadows": [str(path) for path in dist.shadowed],
        "entryPoints": list(dist.entry_points),
    }


def list_artifacts(*, registry: PluginRegistry | None = None) -> list[dict[str, Any]]:
    """Installed artifacts, each name and version once, by name and version.

    Each has ``name``, ``version``, ``scope``, ``source`` (``system``,
    ``environment`` or ``instance``), ``path`` (its install location),
    ``shadows`` (other copies of the same version, not used),
    ``entryPoints``, ``plugins`` (those that load) and ``errors`` (why
    others do not). Listing imports every plugin of every version, to
    describe them.
    """
    reg = registry or instance_registry()
    root = artifacts_dir().resolve()
    plugins = reg.plugins
    result = []
    for dist in reg.distributions():
        infos = sorted(
            (p.info for p in plugins if p.info.artifact == dist.artifact),
            key=lambda i: (i.kind.value, i.name),
        )
        result.append(
            {
                **_describe(dist, root),
                "plugins": [
                    {
                        "name": info.name,
                        "label": info.label,
                        "kind": info.kind.value,
                        "restrictions": sorted(info.restrictions),
                    }
                    for info in infos
                ],
                "errors": reg.errors_of(dist.artifact),
            }
        )
    return result


# -- installing ----------------------------------------------------------------------------


def _require_admin(user: User | None) -> None:
    # Imported here: the registry must not pull the metadata store into `flowport run`.
    from flowport.services.auth import require_role

    require_role(user, "admin")


def _pip(args: Sequence[str]) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        "--no-input",
        "--disable-pip-version-check",
        *args,
    ]
    env = {**os.environ, "PIP_NO_INPUT": "1", "PIP_CONFIG_FILE": os.devnull}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_PIP_TIMEOUT, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        raise ValidationFailed(f"Installing took longer than {_PIP_TIMEOUT:.0f} seconds: stopped") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        reason = "\n".join(lines[-15:]) or f"pip exited with status {done.returncode}"
        raise ValidationFailed(f"pip could not install the artifact:\n{reason}")


def _installed_distribution(site: Path) -> md.Distribution:
    dists = list(md.distributions(path=[str(site)]))
    if len(dists) != 1:
        names = ", ".join(sorted(d.metadata["Name"] or "?" for d in dists)) or "none"
        raise ValidationFailed(f"An artifact is exactly one distribution; this installed: {names}")
    return dists[0]


def _check_distribution(dist: md.Distribution, site: Path) -> tuple[str, str, ArtifactVersion]:
    """Name, folder name and version of an installed distribution; ValidationFailed if it is no artifact."""
    name = dist.metadata["Name"] or ""
    folder = _check_name(name)
    if folder in (CORE_DISTRIBUTION, SYSTEM_ARTIFACT):
        raise ValidationFailed(
            f"'{name}' is Flowport's own SYSTEM artifact: it is upgraded with Flowport, not installed"
        )
    version = _check_version(dist.version)
    eps = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
    if not eps:
        raise ValidationFailed(
            f"{name} {dist.version} provides no stage plugins: it has no '{ENTRY_POINT_GROUP}' entry points"
        )
    for ep in eps:
        top = ep.module.split(".")[0]
        if not ((site / top / "__init__.py").is_file() or (site / f"{top}.py").is_file()):
            raise ValidationFailed(
                f"{name} {dist.version}: entry point '{ep.name}' names module '{ep.module}', which is not "
                "a Python source module or package of the distribution (artifacts are imported from source)"
            )
    return name, folder, version


def _missing_requirements(dist: md.Distribution) -> list[str]:
    missing = []
    for requirement in dist.requires or []:
        if "extra" in requirement.partition(";")[2]:
            continue  # an optional feature
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        if match is None:
            continue
        try:
            md.distribution(match.group(1))
        except md.PackageNotFoundError:
            missing.append(requirement.strip())
    return missing


def _move_into_place(site: Path, target: Path, *, force: bool, trash: Path, label: str) -> None:
    """Rename ``site`` to ``target``; with ``force``, first move an installed ``target`` into ``trash``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        if not force:
            raise Conflict(
                f"{label} is already installed in this instance ({target}); "
                "remove it first, or install with force to replace it"
            )
        with contextlib.suppress(FileNotFoundError):  # removed meanwhile
            target.rename(trash / "replaced")
    try:
        # One rename: the version folder is complete or absent, never half-written.
        site.rename(target)
    except OSError:
        raise Conflict(f"{label} was installed by someone else at the same time ({target})") from None


def install_artifact(source: str | Path, *, force: bool = False, user: User | None = None) -> dict[str, Any]:
    """Install a wheel (``.whl``) or a project directory (``pyproject.toml``) as an artifact of the instance.

    The distribution is installed with the Python that runs Flowport
    (``pip install --no-deps --no-index --target``; a directory also with
    ``--no-build-isolation``, so it builds offline with the environment's
    build backend), then moved into ``artifacts/<name>/<version>``. Installing
    runs the distribution's build (for a directory) and, when a flow uses it,
    its code: it takes an admin.

    Returns:
        The artifact as :func:`list_artifacts` describes it, plus ``warnings``
        (requirements missing from Flowport's environment).

    Raises:
        Forbidden: ``user`` is no admin. NotFound: no such file or directory.
        ValidationFailed: not a wheel or a project directory, pip failed, not
        exactly one distribution, no ``flowport.stages`` entry points, a name
        or version Flowport cannot use, or Flowport itself. Conflict: that
        name and version is installed already (without ``force``).
    """
    _require_admin(user)
    path = Path(source).expanduser()
    if not path.exists():
        raise NotFound(f"'{source}' does not exist")
    path = path.resolve()
    if path.is_dir():
        if not ((path / "pyproject.toml").is_file() or (path / "setup.py").is_file()):
            raise ValidationFailed(f"{path} is no Python project: it has no pyproject.toml")
        args = ["--no-build-isolation", str(path)]
    elif path.is_file() and path.suffix == ".whl":
        if not zipfile.is_zipfile(path):
            raise ValidationFailed(f"{path.name} is not a wheel: it is not a ZIP archive")
        args = [str(path)]
    else:
        raise ValidationFailed(f"'{source}' is neither a wheel (.whl) nor a project directory")
    root = artifacts_dir()
    # Staged inside artifacts/ (one file system), so that moving into place is one rename.
    staging = _private_folder(root / _STAGING)
    try:
        site = staging / "site"
        _pip(["--no-cache-dir", "--target", str(site), *args])
        dist = _installed_distribution(site)
        name, folder, version = _check_distribution(dist, site)
        warnings = [
            f"{name} {version} requires {requirement}, which is not installed in Flowport's environment"
            for requirement in _missing_requirements(dist)
        ]
        target = root / folder / str(version)
        _move_into_place(site, target, force=force, trash=staging, label=f"{name} {version}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    invalidate_registry()
    _log.info("Installed artifact %s %s into %s", name, version, target)
    registry = instance_registry()
    for found in registry.distributions():
        if found.location == target:
            return {**_describe(found, root.resolve()), "warnings": warnings}
    raise ValidationFailed(f"{name} {version} was installed into {target} but is not discovered there")


def _private_folder(parent: Path) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=parent))


def install_wheel(
    data: IO[bytes], filename: str | None, *, force: bool = False, user: User | None = None
) -> dict[str, Any]:
    """Install an uploaded wheel (see :func:`install_artifact`).

    ``filename`` is only checked to look like a wheel's (pip needs one);
    the artifact's name and version come from the installed metadata.
    """
    _require_admin(user)
    base = PurePosixPath((filename or "").replace("\\", "/")).name
    if not _WHEEL_NAME.fullmatch(base) or base.count("-") < 4:
        raise ValidationFailed(
            "Upload a wheel file named as pip builds it: <name>-<version>-<python>-<abi>-<platform>.whl"
        )
    upload = _private_folder(artifacts_dir() / _STAGING)
    try:
        wheel = upload / base
        with wheel.open("wb") as out:
            shutil.copyfileobj(data, out, 1024 * 1024)
        return install_artifact(wheel, force=force, user=user)
    finally:
        shutil.rmtree(upload, ignore_errors=True)


def remove_artifact(name: str, version: str, *, user: User | None = None) -> dict[str, Any]:
    """Remove an artifact version installed in the instance; returns what was removed.

    Flows pinned to it no longer validate unless another installed version
    matches. A job running it keeps running with the code it imported.

    Raises:
        Forbidden: ``user`` is no admin. ValidationFailed: not a name or a
        version. NotFound: not installed in this instance (an artifact of
        Flowport's environment is removed with pip, not here).
    """
    _require_admin(user)
    folder = _check_name(name)
    wanted = _check_version(version)
    root = artifacts_dir()
    for path in artifact_folders(root):
        if path.parent.name != folder or _parsed(path.name) != wanted:
            continue
        described = next((d for d in instance_registry().distributions() if d.location == path), None)
        removed: dict[str, Any] = {"name": name, "version": path.name, "scope": "USER"}
        if described is not None:
            removed = {**removed, **_describe(described, root.resolve())}
        trash = _private_folder(root / _TRASH)
        try:
            path.rename(trash / "removed")
        except FileNotFoundError:
            break  # removed meanwhile
        finally:
            shutil.rmtree(trash, ignore_errors=True)
            invalidate_registry()
        _log.info("Removed artifact %s %s from %s", name, path.name, path)
        return removed
    elsewhere = [
        d
        for d in instance_registry().distributions()
        if _folder_name(d.artifact.name) == folder and d.artifact.version == wanted
    ]
    if elsewhere:
        raise NotFound(
            f"Artifact '{name}' version {version} is not installed in this instance: it is part of "
            f"Flowport's Python environment ({elsewhere[0].location}), where pip manages it"
        )
    raise NotFound(f"Artifact '{name}' version {version} is not installed in this instance")


def _parsed(text: str) -> ArtifactVersion | None:
    try:
        return ArtifactVersion.parse(text)
    except VersionSyntaxError:
        return None
