"""The instance's file roots and editor permissions, as the operator configures them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowport.errors import Forbidden
from flowport.model.document import flow_from_dict
from flowport.services import permissions
from flowport.services.auth import User
from flowport.services.file_roots import instance_roots, local_roots, protected_files
from flowport.services.settings import InvalidSettings
from flowport.store.tables import utcnow


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    for name in (
        "FLOWPORT_DATABASE_URL",
        "FLOWPORT_DATA_DIR",
        "FLOWPORT_FILE_ROOTS",
        "FLOWPORT_EDITOR_PERMISSIONS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLOWPORT_HOME", str(folder))
    return folder


def test_the_data_folder_is_the_default_root_and_is_created(home: Path) -> None:
    roots = instance_roots()
    assert roots.roots == ((home / "data").resolve(),)
    assert (home / "data").is_dir()
    assert (home / "secret.key").resolve() in roots.protected
    assert (home / "flowport.db").resolve() in roots.protected


def test_extra_roots_come_from_the_environment_or_the_settings_file(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = tmp_path / "exchange"
    extra.mkdir()
    (home / "flowport.toml").write_text(f'[files]\nroots = ["{extra}"]\n', encoding="utf-8")
    assert instance_roots().roots == (extra.resolve(),)
    monkeypatch.setenv("FLOWPORT_FILE_ROOTS", os.pathsep.join([str(extra), str(home / "data")]))
    assert instance_roots().roots == (extra.resolve(), (home / "data").resolve())


@pytest.mark.parametrize("which", ["home", "parent", "store-folder"])
def test_a_root_that_holds_the_instance_files_is_refused(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    if which == "home":
        root = home
    elif which == "parent":
        root = tmp_path
    else:
        store = tmp_path / "stores"
        store.mkdir()
        monkeypatch.setenv("FLOWPORT_DATABASE_URL", f"sqlite:///{store / 'meta.db'}")
        root = store
    monkeypatch.setenv("FLOWPORT_FILE_ROOTS", str(root))
    with pytest.raises(InvalidSettings) as caught:
        instance_roots()
    assert str(root) in caught.value.message
    assert "FLOWPORT_FILE_ROOTS" in caught.value.message


def test_a_missing_root_is_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWPORT_FILE_ROOTS", str(home.parent / "nope"))
    with pytest.raises(InvalidSettings, match="not an existing folder"):
        instance_roots()


def test_local_runs_are_unconfined_but_never_open_the_instance_files(home: Path) -> None:
    roots = local_roots()
    assert not roots.is_confined
    assert roots.allowed("/etc/hostname")
    assert not roots.allowed(home / "secret.key")
    assert set(protected_files()) == set(roots.protected)


def test_a_server_refuses_to_start_with_a_root_holding_its_secrets(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWPORT_")}
    env.update({"FLOWPORT_HOME": str(home), "FLOWPORT_FILE_ROOTS": str(home.parent)})
    done = subprocess.run(
        [sys.executable, "-m", "flowport.cli.main", "server", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "contains the instance folder" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def _user(role: str) -> User:
    return User(1, f"{role}1", role, utcnow(), utcnow())  # type: ignore[arg-type]


_SQL_FLOW = {
    "name": "sql",
    "stages": [
        {
            "name": "SQL_01",
            "plugin": {"name": "sql_executor"},
            "configuration": {"connection": "x", "statements": ["SELECT 1"]},
        }
    ],
}


def test_editor_permissions_follow_the_operator(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flow = flow_from_dict(_SQL_FLOW)
    permissions.require_flow_permissions(_user("editor"), flow, action="run")  # the default grants SQL
    monkeypatch.setenv("FLOWPORT_EDITOR_PERMISSIONS", "read-filesystem, write-filesystem")
    with pytest.raises(Forbidden) as caught:
        permissions.require_flow_permissions(_user("editor"), flow, action="run")
    assert "SQL_01" in caught.value.message and "'execute-sql', 'network'" in caught.value.message
    permissions.require_flow_permissions(_user("admin"), flow, action="run")
    with pytest.raises(Forbidden):
        permissions.require_flow_permissions(_user("viewer"), flow_from_dict({"name": "empty"}), action="run")


def test_unknown_permission_names_are_a_configuration_error(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWPORT_EDITOR_PERMISSIONS", "read-filesystem,execute-everything")
    with pytest.raises(InvalidSettings, match="execute-everything"):
        permissions.editor_permissions()
