"""``flowport init`` and ``flowport connections``: shapes, exit codes, and never a secret in output.

The planted passwords must not appear in stdout or stderr of any command
(with or without --json), nor in any log record at DEBUG.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from tests.connections.live_servers import PLANTED, WRONG, mariadb_account, require_postgres
from typer.testing import CliRunner

from flowport.cli.main import app
from flowport.connections.secrets import SECRET_KEY_ENV
from flowport.services.settings import settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("FLOWPORT_DATABASE_URL", raising=False)
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    caplog.set_level(logging.DEBUG)
    # SQLAlchemy keeps its loggers at WARNING unless told: its statements and
    # bound parameters (the stored token, never the password) are checked too.
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    yield
    for record in caplog.records:
        text = f"{record.getMessage()} {record.exc_text or ''}"
        assert PLANTED not in text and WRONG not in text, f"secret logged by {record.name}"


def invoke(*args: str, stdin: str | None = None) -> Result:
    result = runner.invoke(app, list(args), input=stdin)
    for secret in (PLANTED, WRONG):
        assert secret not in result.stdout and secret not in result.stderr, args
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            assert secret not in repr(result.exception)
    return result


def ok_json(*args: str, stdin: str | None = None) -> Any:
    result = invoke(*args, "--json", stdin=stdin)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def initialized() -> dict[str, Any]:
    return ok_json("init")


def test_init_prints_where_things_are_and_can_run_again() -> None:
    result = invoke("init")
    assert result.exit_code == 0, result.output
    home = settings().home
    assert (
        "is ready" in result.stdout
        and str(home / "secret.key") in result.stdout
        and "(created)" in result.stdout
    )
    again = ok_json("init")
    assert again["secretKey"] == {"source": "file", "path": str(home / "secret.key"), "created": False}
    assert again["revision"] and again["database"] == f"sqlite:///{home / 'flowport.db'}"


def test_commands_before_init_say_to_run_it() -> None:
    result = invoke("connections", "list")
    assert result.exit_code == 1
    assert "run `flowport init`" in result.stderr


def test_add_with_password_stdin_then_list_and_show(initialized: dict[str, Any]) -> None:
    result = invoke(
        "connections", "add", "Prod Redshift Conn", "--vendor", "redshift",
        "--host", "prod-redshift.example.com", "--port", "5439", "--database", "prodWrangleDB",
        "--user", "prodDBUser", "--password-stdin",
        "--param", "extraLoadParams=BLANKSASNULL EMPTYASNULL", "--description", "Prod orders",
        stdin=PLANTED + "\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Added connection Prod Redshift Conn (id 1" in result.stdout

    shown = ok_json("connections", "show", "Prod Redshift Conn")
    assert shown["credentials"] == [{"user": "prodDBUser", "username": "prodDBUser"}]
    assert shown["params"] == {
        "defaultDatabase": "prodWrangleDB",
        "extraLoadParams": "BLANKSASNULL EMPTYASNULL",
    }
    assert (shown["vendor"], shown["type"], shown["port"], shown["description"]) == (
        "redshift", "jdbc", 5439, "Prod orders",
    )  # fmt: skip
    listed = ok_json("connections", "list")
    assert listed["count"] == 1 and listed["data"] == [shown]

    human = invoke("connections", "show", shown["uuid"])
    assert human.exit_code == 0 and "prodDBUser" in human.stdout and "stored, encrypted" in human.stdout
    table = invoke("connections", "list")
    # Rich folds cells to the 80 columns of a non-terminal: check pieces only.
    assert table.exit_code == 0 and "Connections (1)" in table.stdout and "Prod" in table.stdout


def test_a_password_in_the_url_is_accepted_with_a_warning(initialized: dict[str, Any]) -> None:
    result = invoke(
        "connections", "add", "pg", "--url", f"postgresql://bob:{PLANTED}@db.example.com:6543/sales"
    )
    assert result.exit_code == 0, result.output
    assert "shell history" in result.stderr and "--password-stdin" in result.stderr
    shown = ok_json("connections", "show", "pg")
    assert (shown["vendor"], shown["host"], shown["port"]) == ("postgresql", "db.example.com", 6543)
    assert shown["params"] == {"defaultDatabase": "sales"}
    assert shown["credentials"] == [{"user": "bob", "username": "bob"}]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://root@127.0.0.1:3306/shop?sslmode=require", {"vendor": "mysql", "ssl": True}),
        ("mariadb://root@127.0.0.1/shop", {"vendor": "mysql", "params": {"defaultDatabase": "shop"}}),
        ("https://api.example.com/v2", {"vendor": "http", "host": "api.example.com", "ssl": True}),
        ("sqlite:///rel/orders.db", {"vendor": "sqlite"}),
        (
            "duckdb:////abs/warehouse.duckdb",
            {"vendor": "duckdb", "params": {"path": "/abs/warehouse.duckdb"}},
        ),
        ("file:///data/landing", {"vendor": "filesystem", "params": {"path": "/data/landing"}}),
    ],
)
def test_urls_of_every_vendor(initialized: dict[str, Any], url: str, expected: dict[str, Any]) -> None:
    shown = ok_json("connections", "add", "c", "--url", url)
    assert {k: shown[k] for k in expected} == expected
    if shown["vendor"] == "sqlite":
        assert shown["params"]["path"] == str(Path.cwd().resolve() / "rel" / "orders.db")
    if shown["vendor"] == "http":
        assert shown["params"]["baseUrl"] == "https://api.example.com/v2"


@pytest.mark.parametrize(
    "args",
    [
        ["c"],
        ["c", "--vendor", "postgresql", "--port", "0"],
        ["c", "--url", "oracle://x/y"],
        ["c", "--url", "postgresql://h/db", "--host", "other"],
        ["c", "--url", "mysql://h/db", "--vendor", "postgresql"],
        ["c", "--vendor", "postgresql", "--param", "no-equals"],
        ["c", "--vendor", "oracle"],
        ["c", "--vendor", "postgresql", "--param", f"password={PLANTED}"],
    ],
)
def test_usage_errors_exit_2(initialized: dict[str, Any], args: list[str]) -> None:
    assert invoke("connections", "add", *args).exit_code == 2


def test_duplicate_names_and_missing_connections_exit_1(initialized: dict[str, Any]) -> None:
    assert (
        invoke("connections", "add", "dup", "--vendor", "mysql", "--password-stdin", stdin=PLANTED).exit_code
        == 0
    )
    again = invoke(
        "connections", "add", "dup", "--vendor", "mysql", "--password-stdin", "--json", stdin=PLANTED
    )
    assert again.exit_code == 1 and "already exists" in json.loads(again.stdout)["error"]
    missing = invoke("connections", "show", "nope")
    assert missing.exit_code == 1 and "No connection with id, uuid or name 'nope'" in missing.stderr


def test_remove(initialized: dict[str, Any]) -> None:
    created = ok_json("connections", "add", "gone", "--vendor", "sqlite", "--database", "x.db")
    assert ok_json("connections", "remove", "gone")["deleted"]["uuid"] == created["uuid"]
    assert ok_json("connections", "list") == {"data": [], "count": 0}
    assert invoke("connections", "remove", "gone").exit_code == 1


def test_a_changed_key_is_reported_not_leaked(
    initialized: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.fernet import Fernet

    invoke("connections", "add", "k", "--vendor", "mysql", "--user", "u", "--password-stdin", stdin=PLANTED)
    monkeypatch.setenv(SECRET_KEY_ENV, Fernet.generate_key().decode())
    result = invoke("connections", "test", "k")
    assert result.exit_code == 1 and "the secret key changed" in result.stderr
    assert invoke("connections", "show", "k").exit_code == 0  # showing needs no secret


def test_test_against_postgresql(initialized: dict[str, Any]) -> None:
    require_postgres()
    url = "postgresql://postgres@127.0.0.1:5432/postgres"
    assert invoke("connections", "add", "pg", "--url", url, "--password-stdin", stdin=PLANTED).exit_code == 0
    human = invoke("connections", "test", "pg")
    assert human.exit_code == 0 and "Connected to postgresql 'pg'" in human.stdout
    body = ok_json("connections", "test", "pg")
    assert body["ok"] is True and body["connection"]["name"] == "pg"

    bad = "postgresql://flowport_no_such_role@127.0.0.1:5432/postgres"
    assert (
        invoke("connections", "add", "pg-bad", "--url", bad, "--password-stdin", stdin=WRONG).exit_code == 0
    )
    failed = invoke("connections", "test", "pg-bad", "--json")
    assert failed.exit_code == 1
    assert 'role "flowport_no_such_role" does not exist' in json.loads(failed.stdout)["message"]


def test_test_against_mariadb_with_right_and_wrong_password(initialized: dict[str, Any]) -> None:
    with mariadb_account(PLANTED) as user:
        for name, password in (("maria", PLANTED), ("maria-bad", WRONG)):
            added = invoke(
                "connections", "add", name, "--vendor", "mysql", "--host", "127.0.0.1", "--port", "3306",
                "--user", user, "--password-stdin", stdin=password + "\n",
            )  # fmt: skip
            assert added.exit_code == 0, added.output
        good = invoke("connections", "test", "maria")
        bad = invoke("connections", "test", "maria-bad")
        bad_json = invoke("connections", "test", "maria-bad", "--json")
    assert good.exit_code == 0, good.output
    assert bad.exit_code == 1 and "Access denied" in bad.stderr and user in bad.stderr
    assert bad_json.exit_code == 1 and json.loads(bad_json.stdout)["ok"] is False
    assert "Access denied" in json.loads(bad_json.stdout)["message"]
