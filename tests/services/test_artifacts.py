"""Artifacts installed into an instance side by side: each flow runs the code of the version it resolved."""

from __future__ import annotations

import io
import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from tests.plugins.plugin_builds import ARTIFACT, one_shot_gate, plugin_source, upper_flow, wheel

from flowport.errors import Conflict, Forbidden, NotFound, ValidationFailed
from flowport.model.document import flow_from_dict
from flowport.model.flow import ArtifactRef, PluginRef
from flowport.services import artifacts, flows
from flowport.services.auth import User
from flowport.services.settings import settings

RUN_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifact-builds")


def _ref(version: str) -> PluginRef:
    return PluginRef(name="uppercase", artifact=ArtifactRef(name=ARTIFACT, version=version, scope="USER"))


def _folder(version: str) -> Path:
    return settings().home / "artifacts" / ARTIFACT / version


def _mine(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if row["name"] == ARTIFACT]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_versions_installed_side_by_side_and_listed_once_each(builds: Path) -> None:
    assert not any(r["name"] == ARTIFACT for r in artifacts.list_artifacts())
    from_wheel = artifacts.install_artifact(wheel(builds, "1.2.0"))
    from_dir = artifacts.install_artifact(plugin_source(builds, "2.0.0"))
    assert (from_wheel["version"], from_wheel["path"]) == ("1.2.0", str(_folder("1.2.0")))
    assert (from_dir["version"], from_dir["path"]) == ("2.0.0", str(_folder("2.0.0")))
    assert from_wheel["entryPoints"] == ["uppercase"] and from_wheel["warnings"] == []
    for version in ("1.2.0", "2.0.0"):
        assert (_folder(version) / "flowport_test_plugin.py").is_file()
        assert (_folder(version) / f"flowport_test_plugin-{version}.dist-info").is_dir()
    # Nothing left behind but the two version folders.
    assert sorted(p.name for p in (settings().home / "artifacts").iterdir() if p.name != ".staging") == [
        ARTIFACT
    ]
    assert list((settings().home / "artifacts" / ".staging").iterdir()) == []

    rows = artifacts.list_artifacts()
    mine = _mine(rows)
    assert [(r["version"], r["scope"], r["source"], r["path"]) for r in mine] == [
        ("1.2.0", "USER", "instance", str(_folder("1.2.0"))),
        ("2.0.0", "USER", "instance", str(_folder("2.0.0"))),
    ]
    assert all(
        r["plugins"] == [{"name": "uppercase", "label": "Uppercase", "kind": "processor", "restrictions": []}]
        for r in mine
    )
    assert all(r["errors"] == [] and r["shadows"] == [] for r in mine)
    core = [r for r in rows if r["name"] == "flowport-core"]
    assert len(core) == 1 and (core[0]["scope"], core[0]["source"]) == ("SYSTEM", "system")
    assert len({(r["name"], r["version"]) for r in rows}) == len(rows)


def test_the_registry_sees_an_install_at_once_and_is_otherwise_reused(builds: Path) -> None:
    before = flows.plugin_registry()
    assert flows.plugin_registry() is before
    assert before.resolve(_ref("[1.0.0,2.0.0)")).code == "PLUGIN_NOT_FOUND"
    artifacts.install_artifact(wheel(builds, "1.2.0"))
    after = flows.plugin_registry()
    assert after is not before
    found = after.resolve(_ref("[1.0.0,2.0.0)")).plugin
    assert found is not None and str(found.artifact.version) == "1.2.0"
    assert flows.plugin_registry() is after


def test_each_flow_runs_the_code_of_the_version_it_resolved_concurrently(
    builds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifacts.install_artifact(wheel(builds, "1.2.0"))
    artifacts.install_artifact(wheel(builds, "2.0.0"))
    (tmp_path / "people.csv").write_text("name\nada\ngrace\n")
    registry = flows.plugin_registry()
    # Each version's first batch waits until the other run has one too: the runs overlap for sure.
    barrier = threading.Barrier(2, timeout=RUN_TIMEOUT)
    for spec, version in (("[1.0.0,2.0.0)", "1.2.0"), ("[2.0.0,3.0.0)", "2.0.0")):
        module = sys.modules[registry.plugin_class(_ref(spec)).__module__]
        assert module.__version__ == version
        assert Path(module.__file__ or "").parent == _folder(version)
        monkeypatch.setattr(module, "gate", one_shot_gate(barrier))
    runs = {
        version: flows.start_run(
            flow_from_dict(upper_flow(f"Upper {version}", spec, f"out/{version}.jsonl")), base_dir=tmp_path
        )
        for spec, version in (("[1.0.0,2.0.0)", "1.2.0"), ("[2.0.0,3.0.0)", "2.0.0"))
    }
    for version, run in runs.items():
        result = run.wait(RUN_TIMEOUT)
        assert result.status == "Complete", result.error
        assert _read_jsonl(tmp_path / "out" / f"{version}.jsonl") == [
            {"name": "ADA", "plugin_version": version},
            {"name": "GRACE", "plugin_version": version},
        ]
    assert not barrier.broken


def test_installing_an_installed_version_again_is_refused_unless_forced(builds: Path) -> None:
    artifacts.install_artifact(wheel(builds, "1.2.0"))
    inode = _folder("1.2.0").stat().st_ino
    with pytest.raises(Conflict, match=r"flowport-test-plugin 1\.2\.0 is already installed in this instance"):
        artifacts.install_artifact(wheel(builds, "1.2.0"))
    with pytest.raises(Conflict):
        artifacts.install_artifact(plugin_source(builds, "1.2.0", extra='FLAVOUR = "refused"'))
    assert _folder("1.2.0").stat().st_ino == inode
    module = sys.modules[flows.plugin_registry().plugin_class(_ref("1.2.0")).__module__]
    assert not hasattr(module, "FLAVOUR")

    # Forced: another build of 1.2.0 replaces it, and its code is what runs from now on.
    artifacts.install_artifact(wheel(builds, "1.2.0", extra='FLAVOUR = "rebuilt"'), force=True)
    module = sys.modules[flows.plugin_registry().plugin_class(_ref("1.2.0")).__module__]
    assert module.FLAVOUR == "rebuilt"
    assert [r["version"] for r in _mine(artifacts.list_artifacts())] == ["1.2.0"]


def test_a_distribution_without_stage_plugins_is_refused(builds: Path, tmp_path: Path) -> None:
    project = plugin_source(tmp_path, "1.5.0")
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text.replace('[project.entry-points."flowport.stages"]\nuppercase = ', "# "))
    assert "flowport.stages" not in pyproject.read_text()
    with pytest.raises(
        ValidationFailed, match=r"provides no stage plugins: it has no 'flowport\.stages' entry"
    ):
        artifacts.install_artifact(project)
    assert artifacts.artifact_folders() == []
    assert list((settings().home / "artifacts" / ".staging").iterdir()) == []


def test_flowport_itself_is_never_installed_as_an_artifact(tmp_path: Path) -> None:
    project = plugin_source(tmp_path, "9.0.0", name="flowport")
    with pytest.raises(ValidationFailed, match="Flowport's own SYSTEM artifact"):
        artifacts.install_artifact(project)
    assert artifacts.artifact_folders() == []


def test_what_is_neither_a_wheel_nor_a_project_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plugin.zip").write_bytes(b"PK")
    with pytest.raises(ValidationFailed, match="neither a wheel"):
        artifacts.install_artifact(tmp_path / "plugin.zip")
    (tmp_path / "fake-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    with pytest.raises(ValidationFailed, match="not a ZIP"):
        artifacts.install_artifact(tmp_path / "fake-1.0-py3-none-any.whl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValidationFailed, match=r"no pyproject\.toml"):
        artifacts.install_artifact(tmp_path / "empty")
    with pytest.raises(NotFound):
        artifacts.install_artifact(tmp_path / "missing.whl")


def test_an_uploaded_wheel_name_never_becomes_a_path(builds: Path) -> None:
    data = wheel(builds, "1.2.0").read_bytes()
    evil = f"../../../{wheel(builds, '1.2.0').name}"
    installed = artifacts.install_wheel(io.BytesIO(data), evil)
    assert installed["path"] == str(_folder("1.2.0"))
    assert sorted(p.name for p in settings().home.iterdir()) == ["artifacts"]
    with pytest.raises(ValidationFailed, match="Upload a wheel file"):
        artifacts.install_wheel(io.BytesIO(data), "plugin.zip")


def test_only_admins_install_or_remove(builds: Path) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    editor = User(id=2, name="ed", role="editor", created_at=now, updated_at=now)
    with pytest.raises(Forbidden):
        artifacts.install_artifact(wheel(builds, "1.2.0"), user=editor)
    assert artifacts.artifact_folders() == []
    artifacts.install_artifact(wheel(builds, "1.2.0"))
    with pytest.raises(Forbidden):
        artifacts.remove_artifact(ARTIFACT, "1.2.0", user=editor)
    assert _folder("1.2.0").is_dir()


def test_remove_an_installed_version(builds: Path) -> None:
    artifacts.install_artifact(wheel(builds, "1.2.0"))
    artifacts.install_artifact(wheel(builds, "2.0.0"))
    assert flows.plugin_registry().resolve(_ref("[1.0.0,2.0.0)")).plugin is not None
    removed = artifacts.remove_artifact("Flowport_Test_Plugin", "1.2")
    assert (removed["name"], removed["version"]) == (ARTIFACT, "1.2.0")
    assert not _folder("1.2.0").exists() and _folder("2.0.0").is_dir()
    assert flows.plugin_registry().resolve(_ref("[1.0.0,2.0.0)")).code == "ARTIFACT_VERSION_NOT_FOUND"
    assert [r["version"] for r in _mine(artifacts.list_artifacts())] == ["2.0.0"]
    with pytest.raises(NotFound, match="not installed in this instance"):
        artifacts.remove_artifact(ARTIFACT, "1.2.0")
    core = next(d for d in flows.plugin_registry().distributions() if d.artifact.name == "flowport-core")
    with pytest.raises(NotFound, match="Flowport's Python environment"):
        artifacts.remove_artifact("flowport-core", str(core.artifact.version))
    assert core.location.is_dir()
    with pytest.raises(ValidationFailed):
        artifacts.remove_artifact("../etc", "1.0")
