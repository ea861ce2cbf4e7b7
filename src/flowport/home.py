"""Where the instance lives, found the same way by every command, server and worker.

One rule, in this order:

1. ``FLOWPORT_HOME`` when it is set;
2. the nearest ``.flowport`` folder from the working directory upward (so
   ``make run`` in a checkout and a bare ``flowport`` in any of its
   subfolders use the same instance);
3. ``~/.flowport``.

The instance's settings file, ``flowport.toml`` in that folder, holds what
an operator sets once; an environment variable of the same setting always
wins. This module sits below every layer (it only reads the environment and
files), so the store, the connections and the services share it.
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from flowport.errors import InvalidSettings

__all__ = [
    "HOME_ENV",
    "HOME_FOLDER",
    "SETTINGS_FILE",
    "InvalidSettings",
    "home_setting",
    "instance_home",
    "locate_home",
    "read_settings_file",
    "settings_file_stamp",
]

HOME_ENV = "FLOWPORT_HOME"
HOME_FOLDER = ".flowport"
SETTINGS_FILE = "flowport.toml"


# locate_home() answers, by what they depend on: FLOWPORT_HOME as set, the working
# directory (unless FLOWPORT_HOME is an absolute path) and $HOME. Services ask for
# the instance on every transaction: a server must not walk the file system per request.
_located: dict[tuple[str, str, str], tuple[Path, str]] = {}
_LOCATED_MAX = 64


def _locate(configured: str, cwd: Path | None) -> tuple[Path, str]:
    if configured:
        return Path(configured).expanduser().resolve(), f"{HOME_ENV}"
    start = (cwd or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        candidate = folder / HOME_FOLDER
        if candidate.is_dir():
            return candidate, f"the nearest {HOME_FOLDER} folder above {start}"
    return (Path.home() / HOME_FOLDER).resolve(), f"the default (~/{HOME_FOLDER})"


def locate_home(cwd: Path | None = None) -> tuple[Path, str]:
    """The instance folder and, in words, why it is that one.

    Found once per process for each value of ``FLOWPORT_HOME``, working
    directory and ``$HOME`` (a change to any of them is seen at once): a
    ``.flowport`` folder made later, nearer to the working directory, or a
    symbolic link changed along the way, is seen by the next process, never
    in the middle of a running one. ``cwd`` given: looked for from there, afresh.
    """
    configured = os.environ.get(HOME_ENV, "").strip()
    if cwd is not None:
        return _locate(configured, cwd)
    relative = not configured or not (configured.startswith("/") or os.path.isabs(configured))
    key = (configured, os.getcwd() if relative else "", os.environ.get("HOME", ""))
    found = _located.get(key)
    if found is None:
        found = _locate(configured, None)
        if len(_located) >= _LOCATED_MAX:
            _located.clear()
        _located[key] = found
    return found


def instance_home() -> Path:
    """The instance folder (see :func:`locate_home`)."""
    return locate_home()[0]


@lru_cache(maxsize=8)
def _read(path: Path, mtime_ns: int) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidSettings(f"The settings file {path} is not valid TOML: {exc}") from None


def settings_file_stamp(home: Path) -> tuple[int, int] | None:
    """``(mtime_ns, size)`` of the instance's ``flowport.toml``, None when there is none (a cache key)."""
    try:
        stat = (home / SETTINGS_FILE).stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def read_settings_file(home: Path | None = None) -> dict[str, Any]:
    """The whole ``flowport.toml`` of the instance (empty when absent); InvalidSettings when not TOML.

    Read again only when the file changed.
    """
    path = (home or instance_home()) / SETTINGS_FILE
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return {}
    return _read(path, mtime)


def home_setting(section: str, key: str, home: Path | None = None) -> Any:
    """``[section] key`` of the instance's ``flowport.toml``, or None when the file or the key is absent."""
    path = (home or instance_home()) / SETTINGS_FILE
    table = read_settings_file(home).get(section)
    if table is None:
        return None
    if not isinstance(table, dict):
        raise InvalidSettings(f"The settings file {path}: [{section}] must be a table")
    return table.get(key)
