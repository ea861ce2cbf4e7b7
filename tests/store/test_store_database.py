"""Where the metadata database is and how its URL is read."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.connections.live_servers import exception_text

from flowport.errors import ValidationFailed
from flowport.store.database import database_url, display_url, parse_url
from flowport.store.schema import StoreNotReady, current_revision


def test_default_is_sqlite_under_flowport_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FLOWPORT_DATABASE_URL", raising=False)
    monkeypatch.setenv("FLOWPORT_HOME", str(tmp_path))
    assert database_url() == f"sqlite:///{tmp_path.resolve() / 'flowport.db'}"
    assert database_url(tmp_path / "other") == f"sqlite:///{tmp_path / 'other' / 'flowport.db'}"


def test_flowport_database_url_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLOWPORT_DATABASE_URL", "postgresql://flowport@db:5432/flowport")
    assert database_url(tmp_path) == "postgresql://flowport@db:5432/flowport"


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("mysql://u@h/db", "mysql+pymysql"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_bare_schemes_get_the_shipped_drivers(url: str, driver: str) -> None:
    assert parse_url(url).drivername == driver


def test_passwords_are_masked_and_never_echoed() -> None:
    assert "Sup3r" not in display_url("postgresql://u:Sup3r-S3cret-pw!@h/db")
    with pytest.raises(ValidationFailed) as info:
        parse_url("::Sup3r-S3cret-pw!::")
    assert "Sup3r" not in exception_text(info.value)


def test_an_unreachable_database_is_a_clear_error_without_its_password() -> None:
    # Port 1 on localhost refuses connections at once.
    url = "postgresql://flowport:Sup3r-S3cret-pw!@127.0.0.1:1/flowport"
    with pytest.raises(StoreNotReady, match=r"Cannot open the metadata database .*127\.0\.0\.1:1") as info:
        current_revision(url)
    assert "Sup3r" not in str(info.value)
