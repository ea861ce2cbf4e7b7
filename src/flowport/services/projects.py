"""Projects: namespaces that own flows and parameter sets. The ``default`` project always exists."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flowport.errors import Conflict
from flowport.services.auth import User, require_role
from flowport.services.instance import page_bounds, ref, timestamp, transaction
from flowport.services.schemas.common import parse_body
from flowport.services.schemas.projects import ProjectCreate, ProjectRead, ProjectUpdate
from flowport.store import projects as _repo
from flowport.store.tables import Project

__all__ = [
    "DEFAULT_PROJECT",
    "ProjectCreate",
    "ProjectUpdate",
    "create_project",
    "default_project",
    "get_project",
    "list_projects",
    "project_dict",
    "update_project",
]

_log = logging.getLogger(__name__)

DEFAULT_PROJECT = _repo.DEFAULT_PROJECT


def project_dict(row: Project) -> dict[str, Any]:
    """A project as the API shows it."""
    return ProjectRead.shape(
        {
            "id": row.id,
            "name": row.name,
            "description": row.description,
            "createdAt": timestamp(row.created_at),
            "updatedAt": timestamp(row.updated_at),
            "creator": ref(row.creator_id),
            "updater": ref(row.updater_id),
        }
    )


def get_project(project: int | str) -> dict[str, Any]:
    """The project with this id or name; NotFound otherwise."""
    with transaction() as session:
        return project_dict(_repo.find(session, project))


def default_project() -> dict[str, Any]:
    """The ``default`` project (recreated should it have gone)."""
    with transaction() as session:
        return project_dict(_repo.ensure_default(session))


def list_projects(
    *, name: str | None = None, limit: int | None = None, offset: int = 0, no_limit: bool = False
) -> dict[str, Any]:
    """Projects in creation order as ``{"data": [...], "count": total}``; ``name`` is an exact name."""
    row_limit, row_offset = page_bounds(limit, offset, no_limit)
    with transaction() as session:
        rows = _repo.list_(session, name=name, limit=row_limit, offset=row_offset)
        return {"data": [project_dict(r) for r in rows], "count": _repo.count(session, name=name)}


def create_project(body: ProjectCreate | Mapping[str, Any], *, user: User | None = None) -> dict[str, Any]:
    """Create a project (editors and admins); Conflict when the name is taken."""
    require_role(user, "editor")
    data: ProjectCreate = parse_body(ProjectCreate, body, "project")
    with transaction() as session:
        row = _repo.create(
            session,
            name=data.name,
            description=data.description,
            creator_id=user.id if user else None,
        )
        result = project_dict(row)
    _log.info("Project '%s' created (id %s)", result["name"], result["id"])
    return result


def update_project(
    project: int | str, body: ProjectUpdate | Mapping[str, Any], *, user: User | None = None
) -> dict[str, Any]:
    """Rename a project or change its description (editors and admins); ``default`` keeps its name."""
    require_role(user, "editor")
    data: ProjectUpdate = parse_body(ProjectUpdate, body, "project")
    changes: dict[str, Any] = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
    if user is not None:
        changes["updater_id"] = user.id
    with transaction() as session:
        row = _repo.find(session, project)
        if row.name == DEFAULT_PROJECT and changes.get("name", DEFAULT_PROJECT) != DEFAULT_PROJECT:
            # The request is well formed; the project's state refuses it (409, not 422).
            raise Conflict(
                "The default project cannot be renamed: flows created without a project land in it"
            )
        return project_dict(_repo.update(session, row, changes))
