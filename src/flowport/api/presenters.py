"""How the API presents what the services answer.

The services answer in the v4 shape, checked against their read models
(:mod:`flowport.services.schemas`): the CLI's ``--json``, webhook payloads
and the API all show the same objects. What only the API adds lives here:
``projectId`` beside a flow's ``project``, and the answer each route
documents, so that the OpenAPI document describes every 2xx body.
"""

from __future__ import annotations

from typing import Any

from flowport.services.schemas.common import Page, ReadModel
from flowport.services.schemas.connections import ConnectionRead
from flowport.services.schemas.flows import FlowRead

__all__ = ["ConnectionCount", "ConnectionList", "FlowView", "answers", "flow_view", "page"]


class FlowView(FlowRead):
    """A flow as the API shows it: also ``projectId`` (the seed's flows carry it) beside ``project``."""

    project_id: int | None


def flow_view(flow: dict[str, Any]) -> dict[str, Any]:
    """A flow of the services as the API shows it."""
    project = flow.get("project")
    return {**flow, "projectId": project.get("id") if isinstance(project, dict) else None}


class ConnectionCount(ReadModel):
    """The seed's connection count: the caller's own, those shared with it, and all of them."""

    owned: int
    shared: int
    count: int


class ConnectionList(ReadModel):
    """``GET /v4/connections``: a page of connections with the seed's ``count`` object."""

    data: list[ConnectionRead]
    count: ConnectionCount


def page(model: type[ReadModel]) -> type[ReadModel]:
    """The list answer of ``model``: ``{"data": [model], "count": N}``."""
    return Page[model]  # type: ignore[valid-type]


def answers(
    model: type[ReadModel], status: int = 200, description: str = ""
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` documenting a route's 2xx body as ``model`` (errors come from the router)."""
    return {status: {"model": model, "description": description or model.__doc__ or "Success"}}
