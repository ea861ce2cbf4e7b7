"""The bodies of ``/v4/connections`` (and ``flowport connections add|update``).

Credentials are wrapped in ``SecretStr`` as soon as they are parsed, so that
a repr, a log line or a validation error of a body never shows a secret.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.alias_generators import to_camel

from flowport.connections.spec import PUBLIC_CREDENTIAL_KEYS, VENDORS
from flowport.services.schemas.common import NOT_BLANK, ReadModel, Ref, Timestamp, Unset

__all__ = ["VENDOR_ALIASES", "ConnectionCreate", "ConnectionRead", "ConnectionUpdate", "CredentialUser"]

# The stored user name is a 255-character column.
_MAX_USER = 255
# Other spellings people (and other tools' exports) use for our vendors.
VENDOR_ALIASES = {"postgres": "postgresql", "pg": "postgresql", "mariadb": "mysql", "file": "filesystem"}
# What the document lists for vendor and vendorName (any case; surrounding blanks are ignored).
_VENDOR_NAMES: dict[str, Any] = {"enum": [*VENDORS, *VENDOR_ALIASES]}
# What _credentials accepts, as the document states it: objects of scalar values.
_CREDENTIALS: dict[str, Any] = {
    "items": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]}}
}
# Parameter names that hold secrets: those belong in ``credentials``, where
# they are encrypted, not in ``params``, which is shown and exported.
_SECRET_PARAM_NAMES = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "apikey",
        "accesstoken",
        "secretkey",
        "privatekey",
        "clientsecret",
        "secretaccesskey",
    }
)


def _vendor(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    vendor = value.strip().lower()
    vendor = VENDOR_ALIASES.get(vendor, vendor)
    if vendor not in VENDORS:
        raise ValueError(f"unknown vendor '{value}'; expected one of {', '.join(VENDORS)}")
    return vendor


def _params(value: dict[str, Any]) -> dict[str, Any]:
    for key in value:
        if key.replace("_", "").replace("-", "").lower() in _SECRET_PARAM_NAMES:
            raise ValueError(f"'{key}' looks like a secret: put it in credentials, where it is encrypted")
    return value


def _credentials(value: Any) -> Any:
    # Wraps every secret in SecretStr as soon as it is parsed, so that a repr,
    # a log line or a validation error of the body never shows it.
    if not isinstance(value, list):
        return value
    items: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise ValueError(f"credentials[{index}] must be an object")
        clean: dict[str, Any] = {}
        for key, secret in item.items():
            if secret is None:
                continue
            if isinstance(secret, dict | list):
                raise ValueError(f"credentials[{index}].{key} must be a string")
            if key in PUBLIC_CREDENTIAL_KEYS:
                clean[str(key)] = str(secret)
            else:
                clean[str(key)] = secret if isinstance(secret, SecretStr) else SecretStr(str(secret))
        items.append(clean)
    return items


class _Body(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        str_strip_whitespace=True,
    )

    @field_validator("vendor", mode="before", check_fields=False)
    @classmethod
    def _check_vendor(cls, value: Any) -> Any:
        return _vendor(value)

    @field_validator("params", mode="after", check_fields=False)
    @classmethod
    def _check_params(cls, value: Any) -> Any:
        return _params(value) if isinstance(value, dict) else value

    @field_validator("credentials", mode="before", check_fields=False)
    @classmethod
    def _check_credentials(cls, value: Any) -> Any:
        return _credentials(value)

    @field_validator("credentials", mode="after", check_fields=False)
    @classmethod
    def _user_names_fit(cls, value: Any) -> Any:
        for index, item in enumerate(value or []):
            for key in ("user", "username"):
                text = item.get(key)
                if isinstance(text, str) and len(text) > _MAX_USER:
                    raise ValueError(f"credentials[{index}].{key} is longer than {_MAX_USER} characters")
        return value


class ConnectionCreate(_Body):
    """The body of ``POST /v4/connections`` (and ``flowport connections add``).

    ``vendorName`` and ``type`` are accepted as in the seed; ``vendorName``
    must agree with ``vendor``, ``type`` is derived from the vendor on output.
    """

    name: str = Field(min_length=1, max_length=255, pattern=NOT_BLANK)
    vendor: str = Field(json_schema_extra=_VENDOR_NAMES)
    vendor_name: str | None = Field(default=None, json_schema_extra=_VENDOR_NAMES)
    type: str | None = None
    uuid: _uuid.UUID | None = None
    description: str = ""
    host: str | None = Field(default=None, max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    params: dict[str, Any] = Field(default_factory=dict)
    ssl: bool = False
    credential_type: str = Field(default="basic", min_length=1, max_length=64, pattern=NOT_BLANK)
    credentials: list[dict[str, Any]] = Field(
        default_factory=list, repr=False, json_schema_extra=_CREDENTIALS
    )
    is_global: bool = False
    credentials_shared: bool = True
    disable_type_inference: bool = False


class ConnectionUpdate(_Body):
    """A partial update: only the fields given change.

    ``credentials``, when given, replace the stored user name and secrets as
    a whole (``[]`` removes them).
    """

    name: Annotated[str, Field(min_length=1, max_length=255, pattern=NOT_BLANK)] | Unset = None
    vendor: Annotated[str, Field(json_schema_extra=_VENDOR_NAMES)] | Unset = None
    vendor_name: str | None = Field(default=None, json_schema_extra=_VENDOR_NAMES)
    type: str | None = None
    description: str | Unset = None
    host: str | None = Field(default=None, max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    params: dict[str, Any] | Unset = None
    ssl: bool | Unset = None
    credential_type: Annotated[str, Field(min_length=1, max_length=64, pattern=NOT_BLANK)] | Unset = None
    credentials: list[dict[str, Any]] | None = Field(default=None, repr=False, json_schema_extra=_CREDENTIALS)
    is_global: bool | Unset = None


# -- what the services answer --------------------------------------------------------------


class CredentialUser(ReadModel):
    """The user name of a connection's credentials, as the seed shows it (``user`` and ``username``)."""

    user: str
    username: str


class ConnectionRead(ReadModel):
    """A connection in the seed's shape: the user name only, never a secret."""

    id: int
    uuid: str
    name: str
    description: str
    vendor: str
    vendor_name: str
    type: str
    host: str | None
    port: int | None
    params: dict[str, Any]
    ssl: bool
    credential_type: str
    credentials: list[CredentialUser]
    is_global: bool
    credentials_shared: bool
    disable_type_inference: bool
    workspace: Ref
    created_at: Timestamp
    updated_at: Timestamp
    creator: Ref | None
    updater: Ref | None
