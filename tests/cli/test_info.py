"""One instance, found the same way by everyone: ``flowport info`` and the instance folder rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flowport.cli.main import app

runner = CliRunner()


def _info() -> dict[str, Any]:
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder holding a ``.flowport`` instance (as ``make run`` leaves it), no FLOWPORT_HOME."""
    for name in ("FLOWPORT_HOME", "FLOWPORT_DATABASE_URL", "FLOWPORT_DATA_DIR", "FLOWPORT_FILE_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "repo" / ".flowport").mkdir(parents=True)
    (tmp_path / "repo" / "src" / "deep").mkdir(parents=True)
    return tmp_path / "repo"


def test_every_subfolder_finds_the_nearest_instance(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(checkout / "src" / "deep")
    report = _info()
    assert report["home"]["path"] == str((checkout / ".flowport").resolve())
    assert "nearest .flowport" in report["home"]["from"]
    assert report["store"]["url"] == f"sqlite:///{(checkout / '.flowport').resolve()}/flowport.db"
    assert report["instance"]["initialized"] is False
    assert runner.invoke(app, ["init"]).exit_code == 0
    initialized = _info()
    assert initialized["instance"]["initialized"] is True
    monkeypatch.chdir(checkout)
    assert _info()["instance"]["uuid"] == initialized["instance"]["uuid"]


def test_flowport_home_wins_and_the_settings_file_is_read(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    settings_text = (
        f'[files]\ndata_dir = "{tmp_path / "shared-data"}"\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "meta.db"}"\n'
    )
    (other / "flowport.toml").write_text(settings_text, encoding="utf-8")
    monkeypatch.chdir(checkout)
    monkeypatch.setenv("FLOWPORT_HOME", str(other))
    report = _info()
    assert report["home"] == {"path": str(other.resolve()), "from": "FLOWPORT_HOME"}
    assert report["dataDir"]["path"] == str((tmp_path / "shared-data").resolve())
    assert "[files] data_dir" in report["dataDir"]["from"]
    assert report["store"]["url"] == f"sqlite:///{tmp_path / 'meta.db'}"
    monkeypatch.setenv("FLOWPORT_DATA_DIR", str(tmp_path / "env-data"))
    assert _info()["dataDir"] == {"path": str((tmp_path / "env-data").resolve()), "from": "FLOWPORT_DATA_DIR"}


def test_info_never_shows_a_store_password(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(checkout)
    monkeypatch.setenv("FLOWPORT_DATABASE_URL", "postgresql://flowport:S3cret-pw@127.0.0.1:1/none")
    result = runner.invoke(app, ["info"])
    assert "S3cret-pw" not in result.output
    assert "***" in result.output
