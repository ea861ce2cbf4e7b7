"""Encrypting connection secrets at rest with the instance's secret key (Fernet).

The key comes from ``FLOWPORT_SECRET_KEY`` or, without it, from
``$FLOWPORT_HOME/secret.key`` (written by ``flowport init``, mode 0600).
``FLOWPORT_SECRET_KEY`` may list several keys separated by commas to rotate
keys: the first encrypts, every one of them is tried to decrypt.

Nothing here ever puts a key, a token or a secret into a message.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from flowport.errors import SecretKeyError
from flowport.home import instance_home

__all__ = [
    "KEY_FILE_NAME",
    "SECRET_KEY_ENV",
    "SecretKey",
    "SecretKeyError",
    "decrypt_secrets",
    "encrypt_secrets",
    "ensure_key",
    "key_path",
]

SECRET_KEY_ENV = "FLOWPORT_SECRET_KEY"
KEY_FILE_NAME = "secret.key"

_log = logging.getLogger(__name__)
_HOW_TO_GENERATE = "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"


@dataclass(frozen=True)
class SecretKey:
    """Where the instance's secret key comes from (never the key itself)."""

    source: Literal["env", "file"]
    path: Path | None
    created: bool = False

    def describe(self) -> str:
        """One line for people: the environment variable or the file."""
        if self.source == "env":
            return f"from {SECRET_KEY_ENV}"
        return f"{self.path}{' (created)' if self.created else ''}"


def _home() -> Path:
    return instance_home()


def key_path(home: Path | None = None) -> Path:
    """The key file of the instance at ``home`` (default ``FLOWPORT_HOME``)."""
    return (home or _home()) / KEY_FILE_NAME


def _fernet(raw: str, where: str) -> Fernet:
    try:
        return Fernet(raw.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        # The exception text could quote the key: say what is wrong instead.
        raise SecretKeyError(
            f"The secret key in {where} is not a valid key (32 url-safe base64-encoded bytes). "
            f"Generate one with: {_HOW_TO_GENERATE}"
        ) from None


def _keys(home: Path | None) -> MultiFernet:
    configured = os.environ.get(SECRET_KEY_ENV, "").strip()
    if configured:
        parts = [p for p in configured.split(",") if p.strip()]
        return MultiFernet([_fernet(p, SECRET_KEY_ENV) for p in parts])
    path = key_path(home)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise SecretKeyError(
            f"No secret key: run `flowport init` (creates {path}) or set {SECRET_KEY_ENV}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretKeyError(f"Cannot read the secret key file {path}: {type(exc).__name__}") from None
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        _log.warning("The secret key file %s can be read by other users: chmod 600 it", path)
    return MultiFernet([_fernet(text, str(path))])


def ensure_key(home: Path | None = None) -> SecretKey:
    """Make sure the instance has a secret key; create ``secret.key`` (mode 0600) if it has none.

    A key in ``FLOWPORT_SECRET_KEY`` wins and no file is written. An
    existing file is never replaced: that would make every stored secret
    unreadable.
    """
    if os.environ.get(SECRET_KEY_ENV, "").strip():
        _keys(home)  # fail now, not at the first connection, if it is malformed
        return SecretKey("env", None)
    path = key_path(home)
    if path.exists():
        _keys(home)
        return SecretKey("file", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            if hasattr(os, "fchmod"):  # POSIX: 0600 whatever the umask
                os.fchmod(file.fileno(), 0o600)
            file.write(Fernet.generate_key() + b"\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            # link() refuses to replace a key another process wrote meanwhile.
            os.link(tmp, path)
            created = True
        except FileExistsError:
            created = False
    finally:
        tmp.unlink(missing_ok=True)
    return SecretKey("file", path, created=created)


def encrypt_secrets(secrets: Mapping[str, str | SecretStr], *, home: Path | None = None) -> bytes:
    """The secrets (key → value) as one Fernet token, to store as is."""
    plain = {k: v.get_secret_value() if isinstance(v, SecretStr) else str(v) for k, v in secrets.items()}
    payload = json.dumps(plain, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return _keys(home).encrypt(payload)


def decrypt_secrets(token: bytes, *, home: Path | None = None) -> dict[str, SecretStr]:
    """The secrets a token from :func:`encrypt_secrets` holds, each as a ``SecretStr``.

    Raises:
        SecretKeyError: the key is not the one the token was encrypted with
            (the secret key changed), or the token is damaged.
    """
    try:
        payload = _keys(home).decrypt(bytes(token))
    except InvalidToken:
        where = SECRET_KEY_ENV if os.environ.get(SECRET_KEY_ENV, "").strip() else str(key_path(home))
        raise SecretKeyError(
            "Cannot decrypt stored credentials: the secret key changed since they were saved "
            f"(the key in {where} is not the one they were encrypted with). Restore the previous "
            f"key (or list it after the new one in {SECRET_KEY_ENV}), or enter the credentials again."
        ) from None
    try:
        values = json.loads(payload)
    except ValueError:
        raise SecretKeyError("Stored credentials are damaged: enter them again") from None
    if not isinstance(values, dict):
        raise SecretKeyError("Stored credentials are damaged: enter them again")
    return {str(k): SecretStr(str(v)) for k, v in values.items()}
