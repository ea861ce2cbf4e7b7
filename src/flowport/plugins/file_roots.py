"""File roots: the folders a stage may read and write, and the files it may never open.

An instance serves flows that editors hand it: every path such a flow
carries is an attack until confined. :class:`FileRoots` is the rule the
stages apply when they open a file (and validation applies before a run):

* ``roots`` — the folders every path must resolve into, after ``..``,
  absolute paths and symlinks, using the real path at the time of the check
  (so a symlink inside a root that points outside it is refused). ``None``
  means *unconfined*: a local ``flowport run FILE`` by the machine's own
  user, who can read those files anyway.
* ``protected`` — files that are never opened, whatever the roots: the
  metadata store and the secret key. They are compared by real path and by
  file identity (device and inode), so a hard link does not get around it.

Paths handed back by :meth:`FileRoots.check` are real paths: the stage
opens exactly what was checked.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from flowport.errors import PathNotAllowed

__all__ = ["FileRoots", "PathNotAllowed"]


def _real(path: Path) -> Path:
    # realpath also resolves the symlinks of a path that does not exist yet
    # (as far as its existing prefix goes): a destination's new file is
    # judged by the folder it will land in.
    return Path(os.path.realpath(path))


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


@dataclass(frozen=True)
class FileRoots:
    """Where a run's stages may read and write files (see the module's docstring)."""

    roots: tuple[Path, ...] | None = None
    protected: tuple[Path, ...] = field(default=())

    @classmethod
    def unconfined(cls, protected: Iterable[Path] = ()) -> FileRoots:
        """No roots (a local run by the machine's own user); ``protected`` files stay closed."""
        return cls(None, tuple(_real(Path(p)) for p in protected))

    @classmethod
    def confined(cls, roots: Iterable[Path], protected: Iterable[Path] = ()) -> FileRoots:
        """Paths must resolve inside ``roots`` (real paths), never to a ``protected`` file."""
        return cls(tuple(_real(Path(r)) for r in roots), tuple(_real(Path(p)) for p in protected))

    @property
    def is_confined(self) -> bool:
        """True when paths must resolve inside the roots."""
        return self.roots is not None

    def describe(self) -> str:
        """The roots for a message: ``/a, /b`` (or that nothing is allowed)."""
        if self.roots is None:
            return "(unconfined)"
        return ", ".join(str(r) for r in self.roots) or "(no file roots: file access is off)"

    def _protected_hit(self, real: Path) -> Path | None:
        identity = _identity(real)
        for item in self.protected:
            if real == item or (identity is not None and identity == _identity(item)):
                return item
        return None

    def check(self, path: str | Path, *, base_dir: Path | None = None, what: str = "the path") -> Path:
        """The real path of ``path`` when it may be opened; PathNotAllowed otherwise.

        Args:
            path: absolute, or relative to ``base_dir`` (the run's data folder).
            what: how the message names the path (``"setting 'path'"``).
        """
        candidate = Path(path).expanduser()
        if not candidate.is_absolute():
            candidate = (base_dir or Path.cwd()) / candidate
        real = _real(candidate)
        if self._protected_hit(real) is not None:
            raise PathNotAllowed(
                f"{what} '{path}' is a file of the instance itself (its metadata store or secret key), "
                "which no flow or connection may open",
                code="PATH_PROTECTED",
            )
        if self.roots is not None and not any(_inside(real, root) for root in self.roots):
            resolved = f" (it resolves to {real})" if str(real) != str(path) else ""
            raise PathNotAllowed(
                f"{what} '{path}'{resolved} is outside the instance's file roots ({self.describe()}): "
                "use a path inside a root, or ask the operator to add a root (FLOWPORT_FILE_ROOTS)"
            )
        return real

    def allowed(self, path: str | Path, *, base_dir: Path | None = None) -> bool:
        """Whether :meth:`check` would accept ``path``."""
        try:
            self.check(path, base_dir=base_dir)
        except PathNotAllowed:
            return False
        return True

    def sql_directories(self, base_dir: Path, extra: Sequence[Path] = ()) -> list[Path]:
        """The folders a sandboxed DuckDB may touch for a stage: the roots (or ``base_dir``) and ``extra``."""
        folders = list(self.roots) if self.roots is not None else [_real(base_dir)]
        return folders + [_real(p) for p in extra]
