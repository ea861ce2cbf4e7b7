"""``flowport users`` and ``flowport tokens``: passwords never printed, a token printed once."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from flowport.cli.main import app
from flowport.services import auth, projects

runner = CliRunner()
PASSWORD = "Cl1-password-value"


@pytest.fixture(autouse=True)
def _initialized(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("FLOWPORT_DATABASE_URL", raising=False)
    caplog.set_level(logging.DEBUG)
    assert runner.invoke(app, ["init"]).exit_code == 0
    yield
    for record in caplog.records:
        assert PASSWORD not in record.getMessage()


def invoke(*args: str, stdin: str | None = None) -> Result:
    result = runner.invoke(app, list(args), input=stdin)
    assert PASSWORD not in result.stdout and PASSWORD not in result.stderr, args
    return result


def ok_json(*args: str, stdin: str | None = None) -> Any:
    result = invoke(*args, "--json", stdin=stdin)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_init_creates_the_default_project() -> None:
    assert projects.default_project()["name"] == "default"


def test_create_users_from_stdin_or_option_and_list_them() -> None:
    created = ok_json("users", "create", "ann", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    assert (created["name"], created["role"]) == ("ann", "admin")
    assert auth.authenticate_basic("ann", PASSWORD).id == created["id"]
    result = invoke("users", "create", "bob", "--password", PASSWORD)
    assert result.exit_code == 0 and "Created user bob" in result.stdout and "role viewer" in result.stdout
    listed = ok_json("users", "list")
    assert [u["name"] for u in listed["data"]] == ["ann", "bob"] and listed["count"] == 2
    table = invoke("users", "list")
    assert "ann" in table.stdout and "admin" in table.stdout


def test_bad_users_are_usage_errors_without_echoing_the_password() -> None:
    invoke("users", "create", "ann", "--password", PASSWORD)
    duplicate = invoke("users", "create", "ann", "--password", PASSWORD)
    assert duplicate.exit_code == 1 and "already exists" in duplicate.stderr
    short = invoke("users", "create", "cid", "--password-stdin", stdin="short\n")
    assert short.exit_code == 2 and "8 to 1024 characters" in short.stderr
    role = invoke("users", "create", "dan", "--password", PASSWORD, "--role", "root")
    assert role.exit_code == 2 and "Unknown role" in role.stderr
    both = invoke("users", "create", "eve", "--password", PASSWORD, "--password-stdin", stdin=PASSWORD)
    assert both.exit_code == 2


def test_a_token_is_printed_once_and_can_be_listed_and_revoked() -> None:
    invoke("users", "create", "ann", "--password", PASSWORD, "--role", "editor")
    created = invoke("tokens", "create", "--user", "ann", "--name", "ci-deploy")
    assert created.exit_code == 0
    token = created.stdout.strip()
    assert token.startswith(auth.TOKEN_PREFIX) and "not be shown again" in created.stderr
    assert auth.authenticate_token(token).name == "ann"

    listed = ok_json("tokens", "list")
    assert listed["count"] == 1 and token not in json.dumps(listed)
    assert listed["data"][0]["name"] == "ci-deploy" and token.startswith(listed["data"][0]["prefix"])
    table = invoke("tokens", "list", "--user", "ann")
    assert "ci-deploy" in table.stdout and "ann" in table.stdout and token not in table.stdout

    revoked = ok_json("tokens", "revoke", str(listed["data"][0]["id"]))
    assert revoked["revoked"] is True and token not in json.dumps(revoked)
    with pytest.raises(Exception, match="Invalid or revoked"):
        auth.authenticate_token(token)
    assert invoke("tokens", "revoke", "999").exit_code == 1

    as_json = ok_json("tokens", "create", "--user", "ann", "--name", "second")
    assert as_json["token"].startswith(auth.TOKEN_PREFIX) and as_json["name"] == "second"
    assert invoke("tokens", "create", "--user", "nobody", "--name", "x").exit_code == 1
