"""A connection as the drivers and stages see it (credentials decrypted, in memory only).

The stored and API shapes follow the seed's connection object (``id``,
``uuid``, ``name``, ``vendor``, ``host``, ``port``, ``params``, ``ssl``,
``credentialType``, ``credentials``, ``isGlobal``). ``credentials`` is a
list of objects as in the seed; only the keys in :data:`PUBLIC_CREDENTIAL_KEYS`
(the user name) are ever shown; every other key is a secret.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = [
    "PUBLIC_CREDENTIAL_KEYS",
    "VENDORS",
    "ConnectionLookup",
    "ConnectionSpec",
    "Vendor",
]

Vendor = Literal[
    "postgresql",
    "redshift",
    "mysql",
    "sqlite",
    "duckdb",
    "http",
    "filesystem",
    "redis",
    "nats",
    "rabbitmq",
    "mqtt",
]
VENDORS: tuple[str, ...] = get_args(Vendor)
#: The vendors whose connection opens a local file (checked against the file roots).
LOCAL_FILE_VENDORS = ("sqlite", "duckdb")
PUBLIC_CREDENTIAL_KEYS = frozenset({"user", "username"})
DEFAULT_PORTS: dict[str, int] = {
    "postgresql": 5432,
    "redshift": 5439,
    "mysql": 3306,
    "redis": 6379,
    "nats": 4222,
    "rabbitmq": 5672,
    "mqtt": 1883,
}


class ConnectionSpec(BaseModel):
    """One connection with its secrets, ready for a driver.

    Secrets are ``SecretStr`` so that ``repr``, ``str`` and logging show
    ``**********`` instead of the value.
    """

    model_config = ConfigDict(frozen=True)

    id: int | None = None
    uuid: _uuid.UUID = Field(default_factory=_uuid.uuid4)
    name: str
    vendor: Vendor
    host: str | None = None
    port: int | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    ssl: bool = False
    credential_type: str = "basic"
    username: str | None = None
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    is_global: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def database(self) -> str | None:
        """The default database (``params.defaultDatabase``), or the file for sqlite/duckdb."""
        value = self.params.get("defaultDatabase") or self.params.get("database") or self.params.get("path")
        return str(value) if value is not None else None

    @property
    def password(self) -> str | None:
        """The password in clear, for a driver only."""
        secret = self.secrets.get("password")
        return secret.get_secret_value() if secret is not None else None

    def secret(self, key: str) -> str | None:
        """Any secret credential in clear (token, key, ...), for a driver only."""
        value = self.secrets.get(key)
        return value.get_secret_value() if value is not None else None

    def effective_port(self) -> int | None:
        """The configured port or the vendor's default."""
        return self.port or DEFAULT_PORTS.get(self.vendor)

    def secret_values(self) -> list[str]:
        """Every secret in clear: used to scrub messages before they are shown or logged."""
        return [s.get_secret_value() for s in self.secrets.values() if s.get_secret_value()]

    def scrub(self, text: str) -> str:
        """``text`` with every secret of this connection replaced by ``***``."""
        for value in sorted(self.secret_values(), key=len, reverse=True):
            text = text.replace(value, "***")
        return text

    @staticmethod
    def split_credentials(
        credentials: Sequence[Mapping[str, Any]] | None,
    ) -> tuple[str | None, dict[str, str]]:
        """The seed's ``credentials`` list as (username, {secret key: value})."""
        username: str | None = None
        secrets: dict[str, str] = {}
        for item in credentials or []:
            for key, value in item.items():
                if value is None:
                    continue
                # str() of a SecretStr is its mask, not its value.
                text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
                if key in PUBLIC_CREDENTIAL_KEYS:
                    username = text
                else:
                    secrets[key] = text
        return username, secrets


class ConnectionLookup(Protocol):
    """Finds a connection by uuid or name; handed to stages in ``StageContext.resources['connections']``."""

    def get(self, ref: str) -> ConnectionSpec:
        """The connection whose uuid or name is ``ref``; flowport.errors.NotFound otherwise."""
        ...
