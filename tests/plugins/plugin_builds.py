"""Builds of the test plugin distribution (tests/fixtures/flowport-test-plugin) at any version.

A copy of the fixture gets its version patched (in ``pyproject.toml`` and in
the module's ``__version__``) and, optionally, extra module code, so that a
test can tell which copy ran. Copies are built with the venv's setuptools
(no build isolation, no index): nothing touches the network.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "flowport-test-plugin"
ARTIFACT = "flowport-test-plugin"
_PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
_OFFLINE = ["--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
# Wheels built in this process, by (version, extra code): each is built once per test session.
_wheels: dict[tuple[str, str], Path] = {}


def plugin_source(workdir: Path, version: str, *, extra: str = "", first: str = "", name: str = "") -> Path:
    """A copy of the fixture project at ``version``: ``first`` starts its module, ``extra`` ends it."""
    source = Path(tempfile.mkdtemp(dir=workdir, prefix=f"src-{version}-")) / "project"
    shutil.copytree(FIXTURE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pyproject = source / "pyproject.toml"
    text = pyproject.read_text().replace('version = "1.0.0"', f'version = "{version}"')
    if name:
        text = text.replace(f'name = "{ARTIFACT}"', f'name = "{name}"')
    pyproject.write_text(text)
    module = source / "flowport_test_plugin.py"
    code = module.read_text().replace('__version__ = "1.0.0"', f'__version__ = "{version}"')
    if first:
        future = "from __future__ import annotations\n"
        code = code.replace(future, future + first + "\n", 1)
    module.write_text(code + ("\n" + extra + "\n" if extra else ""))
    return source


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        pytest.fail(f"{what} failed:\n{done.stdout}\n{done.stderr}")


def install_target(source: Path, target: Path) -> Path:
    """``pip install --target``: the project at ``source`` installed into its own directory."""
    _run([*_PIP, "install", *_OFFLINE, "--target", str(target), str(source)], f"installing {source}")
    return target


def wheel(workdir: Path, version: str, *, extra: str = "") -> Path:
    """A wheel of the test plugin at ``version`` (built once per session for each version and ``extra``)."""
    key = (version, extra)
    if key not in _wheels or not _wheels[key].is_file():
        source = plugin_source(workdir, version, extra=extra)
        out = source.parent / "wheel"
        _run([*_PIP, "wheel", *_OFFLINE, "--wheel-dir", str(out), str(source)], f"building {version}")
        (built,) = out.glob("*.whl")
        _wheels[key] = built
    return _wheels[key]


def upper_flow(name: str, version: str, out: str, *, source: str = "people.csv") -> dict[str, Any]:
    """A flow: CSV ``source`` → the test plugin's Uppercase pinned to ``version`` → JSON Lines ``out``.

    The Uppercase stage writes the version of the plugin code that ran into the column ``plugin_version``.
    """
    return {
        "name": name,
        "stages": [
            {"name": "People_01", "plugin": {"name": "csv_file_origin"}, "configuration": {"path": source}},
            {
                "name": "Upper_01",
                "plugin": {
                    "name": "uppercase",
                    "type": "processor",
                    "artifact": {"name": ARTIFACT, "version": version, "scope": "USER"},
                },
                "configuration": {"fields": ["name"], "version_field": "plugin_version"},
            },
            {
                "name": "Out_01",
                "plugin": {"name": "json_file_destination"},
                "configuration": {"path": out, "format": "jsonl"},
            },
        ],
        "edges": [{"from": "People_01", "to": "Upper_01"}, {"from": "Upper_01", "to": "Out_01"}],
    }


def one_shot_gate(barrier: threading.Barrier) -> Callable[[], None]:
    """A ``gate`` for one copy of the plugin: its first batch waits at ``barrier``, later ones pass."""
    passed = threading.Event()

    def gate() -> None:
        if not passed.is_set():
            passed.set()
            barrier.wait()

    return gate
