"""The instance's file roots: where the flows it serves may read and write files.

Everything a server runs for its users (API, scheduled runs, workers) is
confined to the roots: the data folder by default, more folders only by
the operator (``FLOWPORT_FILE_ROOTS``, ``os.pathsep``-separated, or
``[files] roots`` in ``flowport.toml``). The instance's own files — the
metadata store, the secret key, the initial admin password, the settings
file — are never inside a root: a root that holds any of them, or the
instance folder itself, is refused with a message saying which and why.

A local ``flowport run|preview|validate FILE`` by the machine's own user is
not confined (:func:`local_roots`): that user can read those files anyway.
The instance's own files stay closed to it too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url

from flowport.model.catalog import PathUse
from flowport.plugins.file_roots import FileRoots, PathNotAllowed
from flowport.services.settings import FILE_ROOTS_ENV, InvalidSettings, data_dir, settings

__all__ = ["PathCheck", "configured_roots", "instance_roots", "local_roots", "path_check", "protected_files"]

# Paths with these characters are globs: validation checks the folder before the first one.
_GLOB = re.compile(r"[*?\[]")
# Files the initial admin password and the settings live in (beside the store and the key).
_INSTANCE_FILES = ("initial-admin-password", "flowport.toml", "logs/flowport.log", "cli-credentials.json")

PathCheck = Callable[[str, PathUse], tuple[str, str] | None]


def protected_files() -> list[Path]:
    """The instance's own files, which no flow or connection may open."""
    current = settings()
    home = current.home
    files = [current.secret_key_file, *(home / name for name in _INSTANCE_FILES)]
    url = make_url(current.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        store = Path(url.database).expanduser()
        files += [store, store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")]
    return [Path(os.path.realpath(f)) for f in files]


def configured_roots() -> tuple[list[Path], str]:
    """The roots as configured, and where they came from (for ``flowport info`` and messages)."""
    current = settings()
    return list(current.file_roots), current.origin("file_roots")


def instance_roots() -> FileRoots:
    """The confined roots of this instance, checked; InvalidSettings when a root is unsafe.

    The data folder is created when it is a root and missing. A root that
    does not exist is refused (a typo would otherwise confine to nothing and
    fail every run with a confusing message).
    """
    roots, source = configured_roots()
    home = Path(os.path.realpath(settings().home))
    protected = protected_files()
    checked: list[Path] = []
    for root in roots:
        if root == data_dir():
            root.mkdir(parents=True, exist_ok=True)
        real = Path(os.path.realpath(root))
        if not real.is_dir():
            raise InvalidSettings(
                f"File root '{root}' (from {source}) is not an existing folder: "
                f"create it or fix {FILE_ROOTS_ENV}"
            )
        if real == home or real in home.parents:
            raise InvalidSettings(
                f"File root '{root}' (from {source}) contains the instance folder {home} with its metadata "
                "store and secret key: flows would be able to read them. Choose a folder that does not "
                f"contain {home} (the default is {data_dir()})"
            )
        inside = [p for p in protected if real in p.parents]
        if inside:
            raise InvalidSettings(
                f"File root '{root}' (from {source}) contains {inside[0]}, a file of the instance itself: "
                "flows would be able to read it. Choose a folder that does not contain it"
            )
        checked.append(real)
    return FileRoots.confined(checked, protected)


def local_roots() -> FileRoots:
    """Unconfined roots for a local run by the machine's own user; the instance's own files stay closed."""
    return FileRoots.unconfined(protected_files())


def path_check(roots: FileRoots, base_dir: Path) -> PathCheck:
    """A validation callback: ``(code, message)`` for a path setting the roots refuse, else None.

    A glob is judged by the folder before its first wildcard; the run
    checks every file it matches again when it opens it.
    """

    def check(value: str, use: PathUse) -> tuple[str, str] | None:
        path = value
        if use == "read" and _GLOB.search(value):
            head = _GLOB.split(value, maxsplit=1)[0]
            path = head.rsplit("/", 1)[0] if "/" in head else "."
            path = path or "/"
        try:
            roots.check(path, base_dir=base_dir, what="the path")
        except PathNotAllowed as exc:
            message = exc.message.replace("the path '" + path + "'", f"the path '{value}'", 1)
            return exc.code, message
        return None

    return check
