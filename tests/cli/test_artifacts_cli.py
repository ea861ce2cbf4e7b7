"""``flowport artifacts``: install versions side by side into the instance, list them, run each one's code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from tests.plugins.plugin_builds import ARTIFACT, plugin_source, upper_flow, wheel
from typer.testing import CliRunner

from flowport.cli.main import app
from flowport.services.settings import settings

runner = CliRunner()


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifact-builds")


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


def ok_json(*args: str) -> Any:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _folder(version: str) -> Path:
    return settings().home / "artifacts" / ARTIFACT / version


def test_install_list_run_and_remove(builds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = ok_json("artifacts", "install", str(wheel(builds, "1.2.0")))
    assert (installed["name"], installed["version"], installed["path"]) == (
        ARTIFACT,
        "1.2.0",
        str(_folder("1.2.0")),
    )
    text = invoke("artifacts", "install", str(plugin_source(builds, "2.0.0")))
    assert text.exit_code == 0, text.output
    assert f"Installed {ARTIFACT} 2.0.0 into {_folder('2.0.0')}" in " ".join(text.stdout.split())

    listed = ok_json("artifacts", "list")
    assert listed["count"] == len(listed["data"])
    mine = [(a["version"], a["source"], a["path"]) for a in listed["data"] if a["name"] == ARTIFACT]
    assert mine == [
        ("1.2.0", "instance", str(_folder("1.2.0"))),
        ("2.0.0", "instance", str(_folder("2.0.0"))),
    ]
    assert [a["source"] for a in listed["data"] if a["name"] == "flowport-core"] == ["system"]
    table = invoke("artifacts", "list")
    assert table.exit_code == 0 and "1.2.0" in table.stdout and "2.0.0" in table.stdout

    # `flowport run` in this process: each flow gets the code of the version it is pinned to.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "people.csv").write_text("name\nada\n")
    for spec, version in (("[1.0.0,2.0.0)", "1.2.0"), ("[2.0.0,3.0.0)", "2.0.0")):
        (tmp_path / f"{version}.json").write_text(
            json.dumps(upper_flow("Upper", spec, f"out/{version}.jsonl"))
        )
        run = invoke("run", f"{version}.json")
        assert run.exit_code == 0, run.output
        lines = (tmp_path / "out" / f"{version}.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in lines] == [{"name": "ADA", "plugin_version": version}]

    removed = ok_json("artifacts", "remove", ARTIFACT, "1.2.0")
    assert (removed["name"], removed["version"]) == (ARTIFACT, "1.2.0")
    assert not _folder("1.2.0").exists()
    run = invoke("run", "1.2.0.json")
    assert run.exit_code != 0 and "ARTIFACT_VERSION_NOT_FOUND" in run.output
    again = invoke("artifacts", "remove", ARTIFACT, "1.2.0")
    assert again.exit_code == 1 and "not installed in this instance" in again.output


def test_installing_an_installed_version_is_refused_unless_forced(builds: Path) -> None:
    package = str(wheel(builds, "1.2.0"))
    ok_json("artifacts", "install", package)
    inode = _folder("1.2.0").stat().st_ino
    again = invoke("artifacts", "install", package)
    assert again.exit_code == 1
    assert f"{ARTIFACT} 1.2.0 is already installed in this instance" in " ".join(again.output.split())
    assert _folder("1.2.0").stat().st_ino == inode
    forced = ok_json("artifacts", "install", package, "--force")
    assert forced["version"] == "1.2.0" and _folder("1.2.0").stat().st_ino != inode


def test_a_path_that_is_no_artifact_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    result = invoke("artifacts", "install", str(tmp_path / "notes.txt"), "--json")
    assert result.exit_code == 2
    assert "neither a wheel" in json.loads(result.stdout)["error"]
    assert not (settings().home / "artifacts" / ARTIFACT).exists()
