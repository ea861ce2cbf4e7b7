"""The bodies of ``/v4/projects``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from flowport.services.schemas.common import Name, ReadModel, Ref, Timestamp, Unset

__all__ = ["ProjectCreate", "ProjectRead", "ProjectUpdate"]


class ProjectCreate(BaseModel):
    """The body of ``POST /v4/projects``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name
    description: str = ""


class ProjectUpdate(BaseModel):
    """The body of ``PATCH /v4/projects/{id}``: only the fields given change."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name | Unset = None
    description: str | Unset = None


# -- what the services answer --------------------------------------------------------------


class ProjectRead(ReadModel):
    """A project."""

    id: int
    name: str
    description: str
    created_at: Timestamp
    updated_at: Timestamp
    creator: Ref | None
    updater: Ref | None
