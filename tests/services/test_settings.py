"""One Settings object: every instance setting from the environment or flowport.toml, precise messages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowport.cli.main import app
from flowport.services import file_roots, permissions
from flowport.services.instance import store_url
from flowport.services.settings import InvalidSettings, Settings, data_dir, settings

VARIABLES = (
    "FLOWPORT_DATABASE_URL",
    "FLOWPORT_DATA_DIR",
    "FLOWPORT_FILE_ROOTS",
    "FLOWPORT_WORKERS",
    "FLOWPORT_LAUNCHER",
    "FLOWPORT_EXECUTOR",
    "FLOWPORT_EDITOR_PERMISSIONS",
    "FLOWPORT_SECRET_KEY",
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLOWPORT_HOME", str(folder))
    return folder


def _toml(home: Path, text: str) -> Path:
    path = home / "flowport.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _problem(name: str) -> str:
    with pytest.raises(InvalidSettings) as caught:
        getattr(settings(), name)
    return caught.value.message


def test_defaults_gather_every_setting_of_the_instance(home: Path) -> None:
    current = settings()
    assert current.home == home.resolve()
    assert current.home_from == "FLOWPORT_HOME"
    assert current.database_url == f"sqlite:///{home.resolve() / 'flowport.db'}"
    assert current.data_dir == (home / "data").resolve()
    assert current.file_roots == (current.data_dir,)
    assert current.workers == 2
    assert current.launcher == "process"
    assert current.editor_permissions == permissions.DEFAULT_EDITOR_PERMISSIONS
    assert current.secret_key_location == str(home.resolve() / "secret.key")
    assert current.problems == {}
    assert current.check() is current
    assert current.origin("workers") == "the default (2)"


def test_the_environment_wins_over_the_settings_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _toml(
        home,
        '[store]\nurl = "sqlite:////srv/meta.db"\n'
        '[files]\ndata_dir = "/srv/data"\nroots = ["/srv/data", "/mnt/exchange"]\n'
        '[jobs]\nworkers = 3\nlauncher = "thread"\n'
        '[permissions]\neditor = ["read-filesystem"]\n',
    )
    current = settings()
    assert (current.database_url, current.data_dir) == ("sqlite:////srv/meta.db", Path("/srv/data"))
    assert current.file_roots == (Path("/srv/data"), Path("/mnt/exchange"))
    assert (current.workers, current.launcher) == (3, "thread")
    assert current.editor_permissions == {"read-filesystem"}
    assert current.origin("workers") == f"{path} [jobs] workers"

    monkeypatch.setenv("FLOWPORT_WORKERS", "5")
    monkeypatch.setenv("FLOWPORT_LAUNCHER", "inline")
    monkeypatch.setenv("FLOWPORT_FILE_ROOTS", os.pathsep.join(["/a", "/b"]))
    monkeypatch.setenv("FLOWPORT_EDITOR_PERMISSIONS", "")  # set but empty: nothing restricted for editors
    current = settings()
    assert (current.workers, current.launcher) == (5, "inline")
    assert current.file_roots == (Path("/a"), Path("/b"))
    assert current.editor_permissions == frozenset()
    assert current.origin("launcher") == "FLOWPORT_LAUNCHER"
    # The helpers read the same object.
    assert data_dir() == current.data_dir == Path("/srv/data")
    assert file_roots.configured_roots() == ([Path("/a"), Path("/b")], "FLOWPORT_FILE_ROOTS")
    assert permissions.editor_permissions() == frozenset()
    assert store_url() == "sqlite:////srv/meta.db"


def test_changes_between_calls_are_seen(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings().workers == 2
    monkeypatch.setenv("FLOWPORT_WORKERS", "7")
    assert settings().workers == 7
    monkeypatch.delenv("FLOWPORT_WORKERS")
    _toml(home, "[jobs]\nworkers = 4\n")
    assert settings().workers == 4
    _toml(home, "[jobs]\nworkers = 6\n# a longer file: another size, whatever the clock's resolution\n")
    assert settings().workers == 6
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("FLOWPORT_HOME", str(other))
    assert settings().home == other.resolve() and settings().workers == 2


def test_the_launchers_old_name_is_read_after_the_new_one(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWPORT_EXECUTOR", "thread")
    assert settings().launcher == "thread"
    assert settings().origin("launcher") == "FLOWPORT_EXECUTOR"
    monkeypatch.setenv("FLOWPORT_LAUNCHER", "inline")
    assert settings().launcher == "inline"


@pytest.mark.parametrize(
    ("variable", "value", "name", "expected"),
    [
        (
            "FLOWPORT_WORKERS",
            "none",
            "workers",
            "FLOWPORT_WORKERS 'none' is not valid for the number of job worker processes: it is not a whole "
            "number. Set FLOWPORT_WORKERS to a whole number of at least 1, e.g. 4, or unset it to use the "
            "default (2)",
        ),
        ("FLOWPORT_WORKERS", "0", "workers", "FLOWPORT_WORKERS '0' is not valid for the number of job"),
        (
            "FLOWPORT_LAUNCHER",
            "kubernetes",
            "launcher",
            "FLOWPORT_LAUNCHER 'kubernetes' is not valid for where jobs run: no launcher is called "
            "'kubernetes'. Set FLOWPORT_LAUNCHER to one of inline, thread, process, celery, or unset it to "
            "use the default (process)",
        ),
        (
            "FLOWPORT_LAUNCHER",
            "celery",
            "launcher",
            "FLOWPORT_LAUNCHER names the launcher 'celery', which needs a broker: set FLOWPORT_BROKER_URL",
        ),
        (
            "FLOWPORT_BROKER_URL",
            "http://user:pw@queue:80/",
            "broker_url",
            "FLOWPORT_BROKER_URL is not valid for the Celery broker URL: it is not a redis://, rediss:// or "
            "amqp:// URL",
        ),
        (
            "FLOWPORT_EXECUTOR",
            "pool",
            "launcher",
            "FLOWPORT_EXECUTOR (the old name of FLOWPORT_LAUNCHER) 'pool' is not valid for where jobs run",
        ),
        (
            "FLOWPORT_EDITOR_PERMISSIONS",
            "read-filesystem,execute-everything",
            "editor_permissions",
            "FLOWPORT_EDITOR_PERMISSIONS 'read-filesystem,execute-everything' is not valid for the "
            "permissions editors hold: it names unknown permission(s) execute-everything. Set "
            "FLOWPORT_EDITOR_PERMISSIONS to permission names among read-filesystem, write-filesystem, "
            "execute-code, execute-sql, network",
        ),
        (
            "FLOWPORT_FILE_ROOTS",
            os.pathsep,
            "file_roots",
            "FLOWPORT_FILE_ROOTS ':' is not valid for the file roots: it has an empty folder path",
        ),
    ],
)
def test_a_bad_variable_names_itself_and_the_fix(
    home: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, name: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert _problem(name).startswith(expected.replace("':'", repr(value)))
    # The other settings stay readable: a bad worker count does not stop anyone from opening the store.
    assert settings().home == home.resolve() and settings().database_url.startswith("sqlite:///")
    with pytest.raises(InvalidSettings, match=variable):
        settings().check()


def test_a_bad_database_url_is_named_without_repeating_it(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWPORT_DATABASE_URL", "postgresql://flowport:S3cret@db:notaport/x")
    message = _problem("database_url")
    assert message.startswith(
        "FLOWPORT_DATABASE_URL is not valid for the metadata database URL: it is not a valid URL. "
        "Set FLOWPORT_DATABASE_URL to a URL such as postgresql://user@host:5432/flowport"
    )
    assert "S3cret" not in message


@pytest.mark.parametrize(
    ("text", "name", "expected"),
    [
        (
            '[jobs]\nworkers = "many"\n',
            "workers",
            "[jobs] workers 'many' is not valid for the number of job worker processes: it is not a whole "
            "number. Change it to a whole number of at least 1, e.g. 4, or remove the key to use the "
            "default (2)",
        ),
        ("[jobs]\nworkers = true\n", "workers", "[jobs] workers True is not valid"),
        (
            '[jobs]\nlauncher = "kubernetes"\n',
            "launcher",
            "[jobs] launcher 'kubernetes' is not valid for where jobs run: no launcher is called "
            "'kubernetes'. Change it to one of inline, thread, process, celery",
        ),
        (
            '[files]\nroots = "/srv/data"\n',
            "file_roots",
            "[files] roots '/srv/data' is not valid for the file roots: it is not a list of folder paths. "
            "Change it to folder paths (FLOWPORT_FILE_ROOTS: separated by",
        ),
        ("[files]\ndata_dir = 3\n", "data_dir", "[files] data_dir 3 is not valid for the data folder"),
        (
            '[permissions]\neditor = ["execute-everything"]\n',
            "editor_permissions",
            "[permissions] editor ['execute-everything'] is not valid for the permissions editors hold: "
            "it names unknown permission(s) execute-everything",
        ),
        ("[store]\nurl = 5\n", "database_url", "[store] url is not valid for the metadata database URL"),
    ],
)
def test_a_bad_key_of_the_settings_file_names_the_file_the_key_and_the_fix(
    home: Path, text: str, name: str, expected: str
) -> None:
    path = _toml(home, text)
    assert _problem(name) == (message := _problem(name))
    assert message.startswith(f"The settings file {path}: {expected}"), message


def test_roots_by_default_are_never_empty_because_the_data_folder_is_invalid(home: Path) -> None:
    path = _toml(home, "[files]\ndata_dir = 3\n")
    assert _problem("file_roots") == _problem("data_dir")
    assert _problem("data_dir").startswith(f"The settings file {path}: [files] data_dir 3 is not valid")
    with pytest.raises(InvalidSettings):
        file_roots.instance_roots()


def test_a_settings_file_that_is_not_toml_or_has_a_bad_table(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _toml(home, "[jobs\nworkers = 2\n")
    assert _problem("workers").startswith(f"The settings file {path} is not valid TOML: ")
    # What the environment sets is not read from the file: it stays usable.
    monkeypatch.setenv("FLOWPORT_WORKERS", "3")
    assert settings().workers == 3
    assert settings().home == home.resolve()

    _toml(home, 'jobs = "four"\n')
    assert _problem("launcher") == (
        f"The settings file {path}: [jobs] must be a table (a [jobs] header followed by key = value lines)"
    )


def test_settings_reads_its_sources_when_built_directly(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pydantic-settings: explicit values, then the environment, then the instance's flowport.toml.
    _toml(home, '[jobs]\nworkers = 3\nlauncher = "thread"\n')
    monkeypatch.setenv("FLOWPORT_LAUNCHER", "inline")
    built = Settings(home=home)
    assert (built.workers, built.launcher) == (3, "inline")
    assert Settings(home=home, workers=9).workers == 9
    assert Settings().home == home.resolve() and Settings().workers == 3


def test_flowport_info_shows_the_launcher_and_reports_bad_settings(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    good = runner.invoke(app, ["info", "--json"])
    assert good.exit_code == 0, good.output
    assert '"launcher": "process"' in good.stdout and '"workers": 2' in good.stdout
    monkeypatch.setenv("FLOWPORT_WORKERS", "lots")
    bad = runner.invoke(app, ["info"])
    assert bad.exit_code == 1
    assert "Invalid setting: FLOWPORT_WORKERS 'lots' is not valid" in bad.stderr
    assert "Launcher" in bad.stdout and "process" in bad.stdout  # the rest is still shown
