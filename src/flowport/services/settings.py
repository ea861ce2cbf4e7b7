"""Instance settings read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings", "settings"]


@dataclass(frozen=True)
class Settings:
    """Where this instance keeps its state."""

    home: Path

    @property
    def examples_dir(self) -> Path:
        """Where the shipped examples are unpacked and run."""
        return self.home / "examples"


def settings() -> Settings:
    """Settings from ``FLOWPORT_HOME`` (default ``~/.flowport``)."""
    home = Path(os.environ.get("FLOWPORT_HOME") or Path.home() / ".flowport").expanduser().resolve()
    return Settings(home=home)
