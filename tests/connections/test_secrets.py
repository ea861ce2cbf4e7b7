"""The secret key and encryption of connection secrets at rest."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from tests.connections.live_servers import PLANTED

from flowport.connections.secrets import (
    SECRET_KEY_ENV,
    SecretKeyError,
    decrypt_secrets,
    encrypt_secrets,
    ensure_key,
    key_path,
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    monkeypatch.setenv("FLOWPORT_HOME", str(tmp_path))
    return tmp_path


def _plain(values: dict[str, SecretStr]) -> dict[str, str]:
    return {k: v.get_secret_value() for k, v in values.items()}


def test_the_key_file_is_created_once_with_mode_0600(home: Path) -> None:
    first = ensure_key()
    assert first.created and first.source == "file" and first.path == key_path() == home / "secret.key"
    assert stat.S_IMODE(os.stat(home / "secret.key").st_mode) == 0o600
    content = (home / "secret.key").read_bytes()
    second = ensure_key()
    assert not second.created and (home / "secret.key").read_bytes() == content
    assert [p.name for p in home.iterdir()] == ["secret.key"]  # no temporary file left


def test_round_trip_and_the_token_holds_no_plaintext(home: Path) -> None:
    ensure_key()
    token = encrypt_secrets({"password": PLANTED, "iamRoleArn": SecretStr("iam:aws:12345")})
    assert isinstance(token, bytes)
    assert PLANTED.encode() not in token and b"iam:aws" not in token
    assert encrypt_secrets({"password": PLANTED}) != encrypt_secrets({"password": PLANTED})  # random IV
    secrets = decrypt_secrets(token)
    assert all(isinstance(v, SecretStr) for v in secrets.values())
    assert _plain(secrets) == {"password": PLANTED, "iamRoleArn": "iam:aws:12345"}
    assert PLANTED not in repr(secrets)


def test_a_changed_key_gives_a_clear_error_without_secrets(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_key()
    token = encrypt_secrets({"password": PLANTED})
    (home / "secret.key").write_bytes(Fernet.generate_key())
    with pytest.raises(SecretKeyError, match="the secret key changed") as info:
        decrypt_secrets(token)
    message = str(info.value)
    assert str(home / "secret.key") in message
    assert PLANTED not in message and token.decode() not in message and token.decode()[:20] not in message
    assert info.value.__suppress_context__

    monkeypatch.setenv(SECRET_KEY_ENV, Fernet.generate_key().decode())
    with pytest.raises(SecretKeyError, match=f"the secret key changed .*{SECRET_KEY_ENV}"):
        decrypt_secrets(token)


def test_the_environment_key_wins_and_no_file_is_written(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_KEY_ENV, Fernet.generate_key().decode())
    key = ensure_key()
    assert (key.source, key.path, key.created) == ("env", None, False)
    assert not (home / "secret.key").exists()
    assert _plain(decrypt_secrets(encrypt_secrets({"token": "t"}))) == {"token": "t"}


def test_key_rotation_with_a_list_of_keys(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv(SECRET_KEY_ENV, old)
    token = encrypt_secrets({"password": PLANTED})
    monkeypatch.setenv(SECRET_KEY_ENV, f"{new},{old}")
    assert _plain(decrypt_secrets(token)) == {"password": PLANTED}
    monkeypatch.setenv(SECRET_KEY_ENV, new)
    assert _plain(decrypt_secrets(encrypt_secrets({"password": PLANTED}))) == {"password": PLANTED}


def test_a_malformed_key_is_refused_without_echoing_it(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_KEY_ENV, PLANTED)
    with pytest.raises(SecretKeyError, match="not a valid key") as info:
        ensure_key()
    assert PLANTED not in str(info.value)


def test_without_a_key_the_error_says_to_run_init(home: Path) -> None:
    with pytest.raises(SecretKeyError, match="run `flowport init`"):
        encrypt_secrets({"password": PLANTED})


def test_a_damaged_token_is_reported_as_such(home: Path) -> None:
    ensure_key()
    with pytest.raises(SecretKeyError, match="secret key changed"):
        decrypt_secrets(b"garbage")


def test_a_key_file_readable_by_others_is_warned_about(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    ensure_key()
    os.chmod(home / "secret.key", 0o644)
    with caplog.at_level(logging.WARNING):
        encrypt_secrets({"password": PLANTED})
    assert "can be read by other users" in caplog.text
    assert PLANTED not in caplog.text
