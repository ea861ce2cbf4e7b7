"""The bodies of ``/v4/users`` and ``/v4/apiTokens``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from flowport.services.schemas.common import ReadModel, Ref, Timestamp

# A user name, as the auth service checks it and the OpenAPI document states it.
USER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}$"

__all__ = ["USER_NAME_PATTERN", "TokenCreate", "TokenRead", "UserCreate", "UserRead"]


class UserCreate(BaseModel):
    """The body of ``POST /v4/users``."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    name: str = Field(min_length=1, max_length=255, json_schema_extra={"pattern": USER_NAME_PATTERN})
    password: Annotated[str, Field(min_length=8, max_length=1024, repr=False)]
    role: Literal["admin", "editor", "viewer"] = "viewer"


class TokenCreate(BaseModel):
    """The body of ``POST /v4/apiTokens``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)


# -- what the services answer --------------------------------------------------------------


class UserRead(ReadModel):
    """A user: never the password or its hash."""

    id: int
    name: str
    role: str
    created_at: Timestamp
    updated_at: Timestamp


class TokenRead(ReadModel):
    """An API token record: its display prefix, never the token or its hash."""

    id: int
    name: str
    prefix: str
    user: Ref | None
    created_at: Timestamp
    last_used_at: Timestamp
    revoked_at: Timestamp
    revoked: bool
