"""Real installs of a third-party plugin distribution, for entry-point discovery tests.

``tests/fixtures/flowport-test-plugin`` is copied, its version patched, and
each copy installed with ``pip install --target`` into its own directory,
exactly as an operator would install several versions side by side
(:mod:`tests.plugins.plugin_builds`). The build uses the venv's setuptools
(no build isolation, no index), so it never touches the network.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.plugins.plugin_builds import install_target, plugin_source

BROKEN = '\nraise RuntimeError("this copy of the plugin is broken on purpose")\n'


def _install(
    workdir: Path, version: str, *, broken: bool = False, extra: str = "", first: str = "", label: str = ""
) -> Path:
    source = plugin_source(workdir, version, extra=BROKEN if broken else extra, first=first)
    return install_target(source, workdir / f"site-{version}{label}")


@pytest.fixture(scope="session")
def plugin_sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Install directories of flowport-test-plugin by version.

    9.9.9 fails to import; 1.3.0+build5 has a PEP 440 local version that is
    not an artifact version; 2.0.0 is for the issue's case (two versions on
    ``sys.path``, the higher one first); ``1.0.0-other`` is another build of
    1.0.0 whose module has ``FLAVOUR = "other"``.
    """
    workdir = tmp_path_factory.mktemp("flowport-test-plugin")
    return {
        "1.0.0": _install(workdir, "1.0.0"),
        "1.2.0": _install(workdir, "1.2.0"),
        "2.0.0": _install(workdir, "2.0.0"),
        "9.9.9": _install(workdir, "9.9.9", broken=True),
        "1.3.0+build5": _install(workdir, "1.3.0+build5"),
        "1.0.0-other": _install(workdir, "1.0.0", extra='FLAVOUR = "other"', label="-other"),
    }


@pytest.fixture(scope="session")
def slow_import_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """flowport-test-plugin 3.0.0 whose module sleeps before defining anything (for races on first use)."""
    workdir = tmp_path_factory.mktemp("flowport-test-plugin-slow")
    return _install(workdir, "3.0.0", first="import time\ntime.sleep(0.5)")
