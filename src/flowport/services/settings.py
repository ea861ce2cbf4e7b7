"""Instance settings: the environment, then the instance's settings file.

The instance folder is found by :mod:`flowport.home` (``FLOWPORT_HOME``,
else the nearest ``.flowport`` folder upward, else ``~/.flowport``). The
optional settings file ``$FLOWPORT_HOME/flowport.toml`` holds what an
operator sets once; an environment variable of the same setting wins::

    [store]
    url = "postgresql://flowport@db/flowport"          # FLOWPORT_DATABASE_URL

    [files]
    data_dir = "/srv/flowport/data"                     # FLOWPORT_DATA_DIR
    roots = ["/srv/flowport/data", "/mnt/exchange"]   # FLOWPORT_FILE_ROOTS (os.pathsep-separated)

    [jobs]
    workers = 4                                         # FLOWPORT_WORKERS

    [permissions]
    editor = ["read-filesystem", "write-filesystem", "execute-sql", "network"]
                                                       # FLOWPORT_EDITOR_PERMISSIONS (comma-separated)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowport.home import SETTINGS_FILE, InvalidSettings, home_setting, instance_home

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
    """Settings of the instance :func:`flowport.home.instance_home` finds."""
    return Settings(home=instance_home())


def file_setting(section: str, key: str) -> Any:
    """``[section] key`` of the instance's settings file, or None when the file or the key is absent."""
    return home_setting(section, key, settings().home)


def data_dir() -> Path:
    """Where relative paths of stored flows resolve: ``FLOWPORT_DATA_DIR`` or ``FLOWPORT_HOME/data``."""
    configured = os.environ.get(DATA_DIR_ENV, "").strip() or str(file_setting("files", "data_dir") or "")
    folder = Path(configured).expanduser() if configured.strip() else settings().home / "data"
    return folder.resolve()
