"""``/v4/projects``: the namespaces that own flows and parameter sets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from flowport.api.deps import AuthenticatedRoute, CurrentUser, Editor, Id, PageQuery
from flowport.api.errors import ERROR_RESPONSES
from flowport.api.presenters import answers, page
from flowport.services import projects
from flowport.services.schemas.projects import ProjectCreate, ProjectRead, ProjectUpdate

__all__ = ["router"]

router = APIRouter(
    prefix="/v4/projects", tags=["projects"], route_class=AuthenticatedRoute, responses=ERROR_RESPONSES
)


@router.get("", responses=answers(page(ProjectRead)))
def list_projects(
    _user: CurrentUser, page: PageQuery, name: str | None = Query(None, max_length=255)
) -> dict[str, Any]:
    """Projects in creation order; ``name`` filters on the exact name."""
    return projects.list_projects(name=name, limit=page.limit, offset=page.offset, no_limit=page.no_limit)


@router.post("", status_code=201, responses=answers(ProjectRead, 201))
def create_project(user: Editor, body: ProjectCreate) -> dict[str, Any]:
    """Create a project (editors and admins)."""
    return projects.create_project(body, user=user)


@router.get("/{project_id}", responses=answers(ProjectRead))
def get_project(_user: CurrentUser, project_id: Id) -> dict[str, Any]:
    """The project with this id."""
    return projects.get_project(project_id)


@router.patch("/{project_id}", responses=answers(ProjectRead))
def update_project(user: Editor, project_id: Id, body: ProjectUpdate) -> dict[str, Any]:
    """Rename a project or change its description (``default`` keeps its name)."""
    return projects.update_project(project_id, body, user=user)
