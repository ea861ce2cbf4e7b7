"""Parameter sets: named parameter values of a project that flows refer to as ``${set__parameter}``.

A flow lists the sets it uses by name (``parameter_sets`` in its
document); when the flow is validated, previewed or run those names
resolve to the sets of the flow's project, here. A set the project does
not have is a validation issue (``PARAMETER_SET_NOT_FOUND``), not a silent
gap. Values are text, like every flow parameter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from flowport.errors import ValidationFailed
from flowport.services.auth import User, require_role
from flowport.services.instance import page_bounds, ref, timestamp, transaction
from flowport.services.schemas.common import parse_body
from flowport.services.schemas.parameter_sets import ParameterSetCreate, ParameterSetRead, ParameterSetUpdate
from flowport.store import parameter_sets as _repo
from flowport.store import projects as _projects
from flowport.store.tables import ParameterSet

__all__ = [
    "ParameterSetCreate",
    "ParameterSetUpdate",
    "create_parameter_set",
    "delete_parameter_set",
    "get_parameter_set",
    "list_parameter_sets",
    "parameter_set_dict",
    "resolve_parameter_sets",
    "update_parameter_set",
]

_log = logging.getLogger(__name__)


def parameter_set_dict(row: ParameterSet) -> dict[str, Any]:
    """A parameter set as the API shows it."""
    return ParameterSetRead.shape(
        {
            "id": row.id,
            "name": row.name,
            "description": row.description,
            "parameters": dict(row.parameters or {}),
            "project": ref(row.project_id),
            "createdAt": timestamp(row.created_at),
            "updatedAt": timestamp(row.updated_at),
            "creator": ref(row.creator_id),
            "updater": ref(row.updater_id),
        }
    )


def create_parameter_set(
    body: ParameterSetCreate | Mapping[str, Any],
    *,
    project: int | str | None = None,
    user: User | None = None,
) -> dict[str, Any]:
    """Create a parameter set in ``project`` (id or name; default project when None).

    Raises:
        ValidationFailed: a bad body. Conflict: the name is taken in the project.
        NotFound: no such project. Forbidden: ``user`` is a viewer.
    """
    require_role(user, "editor")
    data: ParameterSetCreate = parse_body(ParameterSetCreate, body, "parameter set")
    with transaction() as session:
        project_row = _projects.find(session, project)
        row = _repo.create(
            session,
            project_id=project_row.id,
            name=data.name,
            description=data.description,
            parameters=data.parameters,
            creator_id=user.id if user else None,
        )
        result = parameter_set_dict(row)
    _log.info("Parameter set '%s' created (id %s)", result["name"], result["id"])
    return result


def get_parameter_set(parameter_set_id: int) -> dict[str, Any]:
    """The parameter set with this id; NotFound otherwise."""
    with transaction() as session:
        return parameter_set_dict(_repo.get_by_id(session, parameter_set_id))


def list_parameter_sets(
    *,
    project: int | str | None = None,
    name: str | None = None,
    limit: int | None = None,
    offset: int = 0,
    no_limit: bool = False,
) -> dict[str, Any]:
    """Parameter sets as ``{"data": [...], "count": total}``, of one project (id or name) or of all."""
    row_limit, row_offset = page_bounds(limit, offset, no_limit)
    with transaction() as session:
        project_id = _projects.find(session, project).id if project is not None else None
        rows = _repo.list_(session, project_id=project_id, name=name, limit=row_limit, offset=row_offset)
        total = _repo.count(session, project_id=project_id, name=name)
        return {"data": [parameter_set_dict(r) for r in rows], "count": total}


def update_parameter_set(
    parameter_set_id: int, body: ParameterSetUpdate | Mapping[str, Any], *, user: User | None = None
) -> dict[str, Any]:
    """Change the given fields of a parameter set; ``parameters`` replace the stored ones as a whole."""
    require_role(user, "editor")
    data: ParameterSetUpdate = parse_body(ParameterSetUpdate, body, "parameter set")
    changes = data.model_dump(exclude_unset=True)
    for key in ("name", "description", "parameters"):
        if key in changes and changes[key] is None:
            raise ValidationFailed(f"Invalid parameter set: {key} cannot be null")
    if user is not None:
        changes["updater_id"] = user.id
    with transaction() as session:
        result = parameter_set_dict(_repo.update(session, parameter_set_id, changes))
    _log.info("Parameter set '%s' (id %s) updated", result["name"], result["id"])
    return result


def delete_parameter_set(parameter_set_id: int, *, user: User | None = None) -> None:
    """Delete a parameter set; flows still naming it fail validation until they stop using it."""
    require_role(user, "editor")
    with transaction() as session:
        row = _repo.get_by_id(session, parameter_set_id)
        name = row.name
        _repo.delete(session, row)
    _log.info("Parameter set '%s' (id %s) deleted", name, parameter_set_id)


def resolve_parameter_sets(
    session: Session, project_id: int, names: Iterable[str]
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """The values of the sets ``names`` in a project, and the names the project has no set for.

    Used inside the caller's transaction (flow validation, preview, runs).
    """
    wanted = list(dict.fromkeys(names))
    values = _repo.values_by_name(session, project_id, wanted)
    return values, [name for name in wanted if name not in values]
