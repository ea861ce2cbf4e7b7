"""A stored connection row made into the :class:`~flowport.connections.spec.ConnectionSpec` a driver opens."""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from flowport.connections.secrets import decrypt_secrets
from flowport.connections.spec import ConnectionSpec
from flowport.errors import SecretKeyError

__all__ = ["StoredRow", "spec_from_row"]


class StoredRow(Protocol):
    """What a stored connection row offers (the store's model, or a row read without it)."""

    @property
    def id(self) -> int: ...
    @property
    def uuid(self) -> _uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def vendor(self) -> str: ...
    @property
    def host(self) -> str | None: ...
    @property
    def port(self) -> int | None: ...
    @property
    def params(self) -> Mapping[str, Any] | None: ...
    @property
    def ssl(self) -> bool: ...
    @property
    def credential_type(self) -> str: ...
    @property
    def username(self) -> str | None: ...
    @property
    def secret(self) -> bytes | None: ...
    @property
    def is_global(self) -> bool: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


def spec_from_row(row: StoredRow, home: Path) -> ConnectionSpec:
    """The connection with its secrets decrypted with the key of the instance at ``home``.

    Raises:
        SecretKeyError: the key is not the one the secrets were encrypted with.
    """
    secrets = {}
    if row.secret is not None:
        try:
            secrets = decrypt_secrets(row.secret, home=home)
        except SecretKeyError as exc:
            raise SecretKeyError(f"Connection '{row.name}': {exc.message}") from None
    return ConnectionSpec(
        id=row.id,
        uuid=row.uuid,
        name=row.name,
        vendor=row.vendor,  # validated on the way in (pydantic checks it again)
        host=row.host,
        port=row.port,
        params=dict(row.params or {}),
        ssl=row.ssl,
        credential_type=row.credential_type,
        username=row.username,
        secrets=secrets,
        is_global=row.is_global,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
