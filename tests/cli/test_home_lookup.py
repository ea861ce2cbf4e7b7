"""The instance folder is found once per FLOWPORT_HOME, working directory and $HOME, not on every call.

Services ask for the instance on every transaction; a server answering many
requests must not walk the file system (resolve FLOWPORT_HOME, look for
``.flowport`` upward) for each. A change of what the answer depends on is
still seen at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flowport import home


def _count_walks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    walks: list[str] = []
    locate = home._locate

    def counting(configured: str, cwd: Path | None) -> tuple[Path, str]:
        walks.append(configured)
        return locate(configured, cwd)

    monkeypatch.setattr(home, "_locate", counting)
    return walks


def test_the_nearest_folder_is_looked_for_once_per_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(home.HOME_ENV, raising=False)
    (tmp_path / "a" / ".flowport").mkdir(parents=True)
    (tmp_path / "a" / "deep").mkdir()
    (tmp_path / "b" / ".flowport").mkdir(parents=True)
    walks = _count_walks(monkeypatch)
    monkeypatch.chdir(tmp_path / "a" / "deep")
    first = home.locate_home()
    assert home.locate_home() == first and first[0] == (tmp_path / "a" / ".flowport").resolve()
    assert len(walks) == 1
    monkeypatch.chdir(tmp_path / "b")
    assert home.locate_home()[0] == (tmp_path / "b" / ".flowport").resolve()
    assert len(walks) == 2


def test_a_changed_flowport_home_is_seen_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    walks = _count_walks(monkeypatch)
    monkeypatch.setenv(home.HOME_ENV, str(tmp_path / "one"))
    assert home.instance_home() == (tmp_path / "one").resolve()
    assert home.instance_home() == (tmp_path / "one").resolve()
    monkeypatch.setenv(home.HOME_ENV, str(tmp_path / "two"))
    assert home.instance_home() == (tmp_path / "two").resolve()
    assert len(walks) == 2
    # Relative: against the working directory, which is part of what the answer depends on.
    monkeypatch.setenv(home.HOME_ENV, "inst")
    monkeypatch.chdir(tmp_path)
    assert home.instance_home() == (tmp_path / "inst").resolve()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert home.instance_home() == (tmp_path / "elsewhere" / "inst").resolve()


def test_a_folder_given_explicitly_is_looked_at_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(home.HOME_ENV, raising=False)
    assert home.locate_home(tmp_path)[0] != (tmp_path / ".flowport").resolve()
    (tmp_path / ".flowport").mkdir()
    assert home.locate_home(tmp_path)[0] == (tmp_path / ".flowport").resolve()
