"""Flowport: an open-source data flow platform."""

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    # Looked up on first use: reading the installed distribution's metadata costs start-up time
    # that `flowport --help` need not pay.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("flowport")
        except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
            found = "0.0.0"
        globals()["__version__"] = found
        return found
    raise AttributeError(f"module 'flowport' has no attribute {name!r}")
