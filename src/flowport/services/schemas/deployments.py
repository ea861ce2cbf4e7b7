"""The bodies of ``/v4/deployments`` and ``/v4/releases``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool

from flowport.services.schemas.common import Name, ReadModel, Ref, Timestamp

__all__ = [
    "DeploymentCreate",
    "DeploymentRead",
    "DeploymentUpdate",
    "ReleasePage",
    "ReleaseRead",
    "ReleaseUpdate",
]


class DeploymentCreate(BaseModel):
    """The body of ``POST /v4/deployments``: ``{"name": "Production Orders"}``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name


class DeploymentUpdate(BaseModel):
    """The body of ``PATCH /v4/deployments/{id}``: only ``name`` can change."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name


class ReleaseUpdate(BaseModel):
    """The body of ``PATCH /v4/releases/{id}``: activate (a rollback when older) or deactivate."""

    model_config = ConfigDict(extra="forbid")

    active: StrictBool


# -- what the services answer --------------------------------------------------------------


class ReleaseRead(ReadModel):
    """A release: never the package bytes (``GET /v4/releases/{id}/package``)."""

    id: int
    notes: str
    package_uuid: str
    package_sha256: str
    active: bool
    deployment: Ref | None
    primary_flow: Ref | None
    flows: list[dict[str, Any]]
    pipelines: list[dict[str, Any]] | None = None
    import_rule_changes: dict[str, Any]
    package_stored: bool
    created_at: Timestamp
    updated_at: Timestamp
    creator: Ref | None
    updater: Ref | None


class ReleasePage(ReadModel):
    """A deployment's releases, embedded."""

    data: list[ReleaseRead]
    count: int


class DeploymentRead(ReadModel):
    """A deployment; ``releases`` when asked for (``embed=releases``)."""

    id: int
    name: str
    project: Ref | None
    active_release: Ref | None
    created_at: Timestamp
    updated_at: Timestamp
    creator: Ref | None
    updater: Ref | None
    releases: ReleasePage | None = None
