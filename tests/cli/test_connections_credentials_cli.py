"""``flowport connections add|update`` with every credential type, and never a secret in output or logs.

The planted secrets (password, token, API key, Hawk id and key, IAM role
ARN) must not appear in stdout or stderr of any command (with or without
--json), nor in any log record at DEBUG; the stored connection is read
back through the service, as the stages read it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import Result
from tests.connections.live_servers import PLANTED, WRONG
from typer.testing import CliRunner

from flowport.cli.main import app
from flowport.connections.secrets import SECRET_KEY_ENV
from flowport.services.connections import connection_spec

runner = CliRunner()

TOKEN = "T0ken-planted-4f1c"
API_KEY = "Ap1-key-planted-9e2d"
HAWK_ID = "hawk-id-planted-77aa"
HAWK_KEY = "Hawk-key-planted-31bb"
ROLE_ARN = "arn:aws:iam::123456789012:role/planted-loader"
SECRETS = (PLANTED, WRONG, TOKEN, API_KEY, HAWK_ID, HAWK_KEY, ROLE_ARN)


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("FLOWPORT_DATABASE_URL", raising=False)
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    yield
    for record in caplog.records:
        text = f"{record.getMessage()} {record.exc_text or ''}"
        for secret in SECRETS:
            assert secret not in text, f"secret logged by {record.name}"


def invoke(*args: str, stdin: str | None = None) -> Result:
    result = runner.invoke(app, list(args), input=stdin)
    for secret in SECRETS:
        assert secret not in result.stdout and secret not in result.stderr, args
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            assert secret not in repr(result.exception)
    return result


def ok_json(*args: str, stdin: str | None = None) -> Any:
    result = invoke(*args, "--json", stdin=stdin)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def stored(ref: str) -> tuple[str, str | None, dict[str, str], dict[str, Any]]:
    """(credential type, user name, secrets in clear, params) as a driver or stage gets them."""
    spec = connection_spec(ref, confined=False)
    secrets = {key: value.get_secret_value() for key, value in spec.secrets.items()}
    return spec.credential_type, spec.username, secrets, spec.params


@pytest.fixture(autouse=True)
def initialized() -> None:
    assert invoke("init").exit_code == 0


HTTP = ("--url", "https://api.example.com/v1")


# -- add: each credential type ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "stdin", "kind", "user", "secrets", "params"),
    [
        (
            ["--vendor", "mysql", "--user", "loader", "--password-stdin"],
            PLANTED + "\n",
            "basic",
            "loader",
            {"password": PLANTED},
            {},
        ),
        ([*HTTP, "--token-stdin"], TOKEN + "\n", "bearer", None, {"token": TOKEN}, {}),
        (
            [*HTTP, "--api-key-stdin", "--api-key-header", "X-Api-Token"],
            API_KEY,
            "api_key",
            None,
            {"api_key": API_KEY},
            {"apiKeyHeader": "X-Api-Token"},
        ),
        (
            [*HTTP, "--hawk-id", HAWK_ID, "--hawk-key-stdin", "--hawk-algorithm", "sha256"],
            HAWK_KEY + "\n",
            "hawk",
            None,
            {"hawk_id": HAWK_ID, "hawk_key": HAWK_KEY},
            {"hawkAlgorithm": "sha256"},
        ),
        (
            [
                *("--vendor", "redshift", "--host", "h", "--user", "prodDBUser", "--password-stdin"),
                "--iam-role-arn",
                ROLE_ARN,
            ],
            PLANTED + "\n",
            "iamRoleArn",
            "prodDBUser",
            {"password": PLANTED, "iamRoleArn": ROLE_ARN},
            {},
        ),
    ],
    ids=["basic", "bearer", "api_key", "hawk", "iamRoleArn"],
)
def test_add_each_credential_type(
    options: list[str],
    stdin: str,
    kind: str,
    user: str | None,
    secrets: dict[str, str],
    params: dict[str, str],
) -> None:
    shown = ok_json("connections", "add", "c", *options, stdin=stdin)
    assert shown["credentialType"] == kind
    assert shown["credentials"] == ([{"user": user, "username": user}] if user else [])
    assert {k: v for k, v in shown["params"].items() if k in params} == params
    assert stored("c")[:3] == (kind, user, secrets)
    # `show` and `list` say which type, never what the secret is.
    human = invoke("connections", "show", "c")
    assert human.exit_code == 0 and kind in human.stdout and "stored, encrypted" in human.stdout
    assert ok_json("connections", "list")["data"] == [shown]


def test_the_http_stage_reads_the_keys_the_cli_stores() -> None:
    from flowport.stages.http._auth import ApiKeyAuth, BearerAuth, HawkAuth, auth_for

    ok_json("connections", "add", "b", *HTTP, "--token-stdin", stdin=TOKEN)
    ok_json("connections", "add", "k", *HTTP, "--api-key-stdin", stdin=API_KEY)
    ok_json("connections", "add", "h", *HTTP, "--hawk-id", HAWK_ID, "--hawk-key-stdin", stdin=HAWK_KEY)
    for name, kind, cls in (
        ("b", "bearer", BearerAuth),
        ("k", "api_key", ApiKeyAuth),
        ("h", "hawk", HawkAuth),
    ):
        auth = auth_for(connection_spec(name, confined=False))
        assert auth.kind == kind and isinstance(auth.auth, cls)


@pytest.mark.parametrize(
    ("option", "key", "extra", "secret"),
    [
        ("--password-stdin", "password", ["--vendor", "postgresql", "--user", "u"], PLANTED),
        ("--token-stdin", "token", list(HTTP), TOKEN),
        ("--api-key-stdin", "api_key", list(HTTP), API_KEY),
        ("--hawk-id-stdin", "hawk_id", [*HTTP, "--hawk-key", HAWK_KEY], HAWK_ID),
        ("--hawk-key-stdin", "hawk_key", [*HTTP, "--hawk-id", HAWK_ID], HAWK_KEY),
        ("--iam-role-arn-stdin", "iamRoleArn", ["--vendor", "redshift", "--user", "u"], ROLE_ARN),
    ],
)
def test_every_stdin_variant_reads_one_line_and_keeps_spaces(
    option: str, key: str, extra: list[str], secret: str
) -> None:
    value = f" {secret} "  # spaces may be part of a secret: only the line end is dropped
    result = invoke("connections", "add", "c", *extra, option, stdin=value + "\n")
    assert result.exit_code == 0, result.output
    assert stored("c")[2][key] == value


def test_a_secret_given_as_an_option_value_warns_about_the_shell_history() -> None:
    result = invoke("connections", "add", "c", *HTTP, "--token", TOKEN)
    assert result.exit_code == 0, result.output
    assert "shell history" in result.stderr and "--token-stdin" in result.stderr
    assert stored("c")[2] == {"token": TOKEN}
    # An id is not a password: no warning.
    quiet = invoke("connections", "add", "r", "--vendor", "redshift", "--iam-role-arn", ROLE_ARN)
    assert quiet.exit_code == 0 and "shell history" not in quiet.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "says"),
    [
        ([*HTTP, "--token-stdin", "--api-key-stdin"], TOKEN, "standard input gives one secret"),
        ([*HTTP, "--token", TOKEN, "--token-stdin"], TOKEN, "not both"),
        ([*HTTP, "--token", TOKEN, "--api-key", API_KEY], None, "different credential types"),
        (["--vendor", "http", "--token-stdin", "--user", "bob"], TOKEN, "--user cannot be used with bearer"),
        ([*HTTP, "--hawk-key-stdin"], HAWK_KEY, "hawk credentials need --hawk-id"),
        ([*HTTP, "--api-key-header", "X-Key"], None, "api_key credentials need --api-key"),
        ([*HTTP, "--hawk-id", HAWK_ID, "--hawk-key", HAWK_KEY, "--hawk-algorithm", "md5"], None, "sha256"),
        ([*HTTP, "--token-stdin"], "", "standard input held no token"),
        ([*HTTP, "--api-key", ""], None, "empty"),
        (["--url", f"postgresql://u:{PLANTED}@h/db", "--password-stdin"], WRONG, "already has a password"),
        (["--vendor", "redshift", "--iam-role-arn", ROLE_ARN, "--token", TOKEN], None, "different"),
    ],
)
def test_credential_usage_errors_exit_2_and_store_nothing(
    args: list[str], stdin: str | None, says: str
) -> None:
    result = invoke("connections", "add", "c", *args, stdin=stdin)
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.stderr.replace("│", " ").split())
    assert ok_json("connections", "list")["count"] == 0


def test_a_service_error_never_quotes_a_secret() -> None:
    ok_json("connections", "add", "dup", *HTTP, "--token-stdin", stdin=TOKEN)
    again = invoke("connections", "add", "dup", *HTTP, "--token-stdin", "--json", stdin=TOKEN)
    assert again.exit_code == 1 and "already exists" in json.loads(again.stdout)["error"]


# -- update -------------------------------------------------------------------------------------


@pytest.fixture
def warehouse() -> dict[str, Any]:
    return ok_json(
        "connections", "add", "warehouse", "--vendor", "postgresql", "--host", "db1", "--port", "5432",
        "--database", "sales", "--user", "loader", "--password-stdin",
        "--param", "connect_timeout=10", "--param", "application_name=flowport",
        stdin=PLANTED,
    )  # fmt: skip


def test_update_fields_and_params_keeps_the_rest(warehouse: dict[str, Any]) -> None:
    updated = ok_json(
        "connections", "update", "warehouse", "--host", "db2", "--port", "6432", "--database", "sales2",
        "--param", "connect_timeout=30", "--remove-param", "application_name", "--ssl",
        "--description", "moved",
    )  # fmt: skip
    assert (updated["id"], updated["uuid"], updated["name"]) == (
        warehouse["id"],
        warehouse["uuid"],
        "warehouse",
    )
    assert (updated["host"], updated["port"], updated["ssl"], updated["description"]) == (
        "db2",
        6432,
        True,
        "moved",
    )
    assert updated["params"] == {"defaultDatabase": "sales2", "connect_timeout": "30"}
    assert updated["credentials"] == warehouse["credentials"] and updated["credentialType"] == "basic"
    assert stored("warehouse")[:3] == ("basic", "loader", {"password": PLANTED})
    assert ok_json("connections", "update", str(warehouse["id"]), "--no-ssl")["ssl"] is False
    human = invoke("connections", "update", warehouse["uuid"], "--name", "dw")
    assert human.exit_code == 0 and "Updated connection dw" in human.stdout and "name" in human.stdout


def test_update_a_password_keeps_the_user(warehouse: dict[str, Any]) -> None:
    result = invoke("connections", "update", "warehouse", "--password-stdin", stdin=WRONG + "\n")
    assert result.exit_code == 0, result.output
    assert stored("warehouse")[:3] == ("basic", "loader", {"password": WRONG})


def test_update_to_another_type_drops_the_old_secrets(warehouse: dict[str, Any]) -> None:
    updated = ok_json("connections", "update", "warehouse", "--token-stdin", stdin=TOKEN)
    assert updated["credentialType"] == "bearer" and updated["credentials"] == []
    assert stored("warehouse")[:3] == ("bearer", None, {"token": TOKEN})


def test_update_basic_to_iam_role_keeps_user_and_password(warehouse: dict[str, Any]) -> None:
    updated = ok_json("connections", "update", "warehouse", "--iam-role-arn-stdin", stdin=ROLE_ARN)
    assert updated["credentialType"] == "iamRoleArn"
    assert stored("warehouse")[:3] == ("iamRoleArn", "loader", {"password": PLANTED, "iamRoleArn": ROLE_ARN})


def test_update_one_hawk_secret_keeps_the_other() -> None:
    ok_json("connections", "add", "h", *HTTP, "--hawk-id", HAWK_ID, "--hawk-key-stdin", stdin=WRONG)
    ok_json("connections", "update", "h", "--hawk-key-stdin", "--hawk-algorithm", "sha1", stdin=HAWK_KEY)
    kind, user, secrets, params = stored("h")
    assert (kind, user, secrets) == ("hawk", None, {"hawk_id": HAWK_ID, "hawk_key": HAWK_KEY})
    assert params["hawkAlgorithm"] == "sha1"


def test_update_the_api_key_header_alone_keeps_the_key() -> None:
    ok_json("connections", "add", "k", *HTTP, "--api-key-stdin", stdin=API_KEY)
    updated = ok_json("connections", "update", "k", "--api-key-header", "X-Other")
    assert updated["params"]["apiKeyHeader"] == "X-Other" and updated["credentialType"] == "api_key"
    assert stored("k")[2] == {"api_key": API_KEY}


def test_update_no_credentials_removes_them(warehouse: dict[str, Any]) -> None:
    updated = ok_json("connections", "update", "warehouse", "--no-credentials")
    assert updated["credentials"] == [] and updated["credentialType"] == "basic"
    assert stored("warehouse")[1:3] == (None, {})
    shown = invoke("connections", "show", "warehouse")
    assert shown.exit_code == 0 and "stored, encrypted" not in shown.stdout


@pytest.mark.parametrize(
    ("args", "stdin", "code"),
    [
        ([], None, 2),  # nothing to change
        (["--remove-param", "nope"], None, 2),
        (["--param", f"password={PLANTED}"], None, 2),  # a secret belongs in credentials
        (["--no-credentials", "--token-stdin"], TOKEN, 2),
        (["--hawk-key-stdin"], HAWK_KEY, 2),  # hawk needs an id too
        (["--name", "other"], None, 1),  # taken
    ],
)
def test_update_errors(warehouse: dict[str, Any], args: list[str], stdin: str | None, code: int) -> None:
    ok_json("connections", "add", "other", "--vendor", "sqlite", "--database", "x.db")
    result = invoke("connections", "update", "warehouse", *args, stdin=stdin)
    assert result.exit_code == code, result.output
    assert stored("warehouse")[:3] == ("basic", "loader", {"password": PLANTED})


def test_update_of_a_missing_connection_exits_1() -> None:
    result = invoke("connections", "update", "nope", "--host", "h", "--json")
    assert result.exit_code == 1 and "No connection with id, uuid or name 'nope'" in result.stdout


def test_update_after_the_key_changed_needs_every_credential(
    warehouse: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.fernet import Fernet

    monkeypatch.setenv(SECRET_KEY_ENV, Fernet.generate_key().decode())
    partial = invoke("connections", "update", "warehouse", "--iam-role-arn", ROLE_ARN)
    assert partial.exit_code == 1 and "give every iamRoleArn credential" in " ".join(partial.stderr.split())
    # A new user name and password need nothing of the old secrets.
    full = invoke("connections", "update", "warehouse", "--user", "u2", "--password-stdin", stdin=WRONG)
    assert full.exit_code == 0, full.output
    assert stored("warehouse")[:3] == ("basic", "u2", {"password": WRONG})


# -- help ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["add", "update", "list", "show", "test", "remove"])
def test_every_connections_help_has_an_example(command: str) -> None:
    result = runner.invoke(app, ["connections", command, "--help"], terminal_width=200)
    assert result.exit_code == 0 and "Example:" in result.stdout
    assert "flowport connections " + command in result.stdout
