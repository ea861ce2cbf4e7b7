"""Real installs of a third-party plugin distribution, for entry-point discovery tests.

``tests/fixtures/flowport-test-plugin`` is copied, its version patched, and
each copy installed with ``pip install --target`` into its own directory,
exactly as an operator would install several versions side by side. The
build uses the venv's setuptools (no build isolation, no index), so it
never touches the network.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "flowport-test-plugin"


def _install(workdir: Path, version: str, *, broken: bool = False) -> Path:
    source = workdir / f"src-{version}"
    shutil.copytree(FIXTURE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pyproject = source / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "1.0.0"', f'version = "{version}"'))
    module = source / "flowport_test_plugin.py"
    text = module.read_text().replace('__version__ = "1.0.0"', f'__version__ = "{version}"')
    if broken:
        text += '\nraise RuntimeError("this copy of the plugin is broken on purpose")\n'
    module.write_text(text)
    target = workdir / f"site-{version}"
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--disable-pip-version-check",
        "--target",
        str(target),
        str(source),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        pytest.fail(f"installing the test plugin {version} failed:\n{done.stdout}\n{done.stderr}")
    return target


@pytest.fixture(scope="session")
def plugin_sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Install directories of flowport-test-plugin by version.

    9.9.9 fails to import; 1.3.0+build5 has a PEP 440 local version that is
    not an artifact version.
    """
    workdir = tmp_path_factory.mktemp("flowport-test-plugin")
    return {
        "1.0.0": _install(workdir, "1.0.0"),
        "1.2.0": _install(workdir, "1.2.0"),
        "9.9.9": _install(workdir, "9.9.9", broken=True),
        "1.3.0+build5": _install(workdir, "1.3.0+build5"),
    }
