"""Instance settings: the environment, then the instance's settings file.

``FLOWPORT_HOME`` (default ``~/.flowport``) is the instance folder. The
optional settings file ``$FLOWPORT_HOME/flowport.toml`` holds what an
operator sets once; an environment variable of the same setting wins::

    [files]
    roots = ["/srv/flowport/data", "/mnt/exchange"]   # FLOWPORT_FILE_ROOTS (os.pathsep-separated)

    [permissions]
    editor = ["read-filesystem", "write-filesystem", "execute-sql", "network"]
                                                       # FLOWPORT_EDITOR_PERMISSIONS (comma-separated)
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from flowport.errors import ValidationFailed

__all__ = [
    "DATA_DIR_ENV",
    "FILE_ROOTS_ENV",
    "SETTINGS_FILE",
    "InvalidSettings",
    "Settings",
    "data_dir",
    "file_setting",
    "settings",
]

DATA_DIR_ENV = "FLOWPORT_DATA_DIR"
FILE_ROOTS_ENV = "FLOWPORT_FILE_ROOTS"
SETTINGS_FILE = "flowport.toml"


class InvalidSettings(ValidationFailed):
    """The instance's settings (environment or settings file) are malformed or unsafe."""


@dataclass(frozen=True)
class Settings:
    """Where this instance keeps its state."""

    home: Path

    @property
    def examples_dir(self) -> Path:
        """Where the shipped examples are unpacked and run."""
        return self.home / "examples"

    @property
    def settings_file(self) -> Path:
        """The instance's settings file (it need not exist)."""
        return self.home / SETTINGS_FILE


def settings() -> Settings:
    """Settings from ``FLOWPORT_HOME`` (default ``~/.flowport``)."""
    home = Path(os.environ.get("FLOWPORT_HOME") or Path.home() / ".flowport").expanduser().resolve()
    return Settings(home=home)


@lru_cache(maxsize=8)
def _read_settings_file(path: Path, mtime_ns: int) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidSettings(f"The settings file {path} is not valid TOML: {exc}") from None


def file_setting(section: str, key: str) -> Any:
    """``[section] key`` of the instance's settings file, or None when the file or the key is absent."""
    path = settings().settings_file
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    table = _read_settings_file(path, mtime).get(section)
    if table is None:
        return None
    if not isinstance(table, dict):
        raise InvalidSettings(f"The settings file {path}: [{section}] must be a table")
    return table.get(key)


def data_dir() -> Path:
    """Where relative paths of stored flows resolve: ``FLOWPORT_DATA_DIR`` or ``FLOWPORT_HOME/data``."""
    configured = os.environ.get(DATA_DIR_ENV, "").strip()
    folder = Path(configured).expanduser() if configured else settings().home / "data"
    return folder.resolve()
