"""ConnectionSpec: credentials split into a public user name and secrets, and scrubbing."""

from __future__ import annotations

from pydantic import SecretStr
from tests.connections.live_servers import PLANTED

from flowport.connections.spec import ConnectionSpec


def test_split_credentials_of_the_seed_body() -> None:
    username, secrets = ConnectionSpec.split_credentials(
        [{"username": "prodDBUser", "password": PLANTED, "iamRoleArn": "iam:aws:12345"}]
    )
    assert username == "prodDBUser"
    assert secrets == {"password": PLANTED, "iamRoleArn": "iam:aws:12345"}


def test_split_credentials_unwraps_secret_strings() -> None:
    # str(SecretStr) is the mask: storing it would lose the password.
    _, secrets = ConnectionSpec.split_credentials([{"user": "u", "password": SecretStr(PLANTED)}])
    assert secrets == {"password": PLANTED}


def test_secrets_are_masked_and_scrubbed() -> None:
    spec = ConnectionSpec(name="c", vendor="mysql", secrets={"password": PLANTED})
    assert PLANTED not in repr(spec) and PLANTED not in str(spec)
    assert spec.password == PLANTED
    assert spec.scrub(f"login failed with {PLANTED}") == "login failed with ***"
