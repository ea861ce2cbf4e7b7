"""Repository functions for parameter sets. Functions only flush: the service owns the transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from flowport.errors import Conflict
from flowport.store import _lookup
from flowport.store._paging import count_of
from flowport.store.tables import ParameterSet, utcnow

__all__ = [
    "UPDATABLE_FIELDS",
    "count",
    "create",
    "delete",
    "get_by_id",
    "get_by_name",
    "list_",
    "update",
    "values_by_name",
]

UPDATABLE_FIELDS = frozenset({"name", "description", "parameters", "updater_id"})


def _check_unique(session: Session, project_id: int, name: str, exclude_id: int | None) -> None:
    condition = (ParameterSet.project_id == project_id) & (ParameterSet.name == name)
    clash = _lookup.clash_id(session, ParameterSet, condition, exclude_id)
    if clash is not None:
        raise Conflict(f"A parameter set named '{name}' already exists in this project (id {clash})")


def _flush(session: Session, name: str) -> None:
    _lookup.flush_or_conflict(session, f"A parameter set named '{name}' already exists in this project")


def create(
    session: Session,
    *,
    project_id: int,
    name: str,
    parameters: Mapping[str, str],
    description: str = "",
    creator_id: int | None = None,
) -> ParameterSet:
    """Insert a parameter set; Conflict when the name is taken in the project."""
    _check_unique(session, project_id, name, None)
    now = utcnow()
    row = ParameterSet(
        project_id=project_id,
        name=name,
        description=description,
        parameters=dict(parameters),
        **_lookup.stamps(now, creator_id),
    )
    session.add(row)
    _flush(session, name)
    return row


def get_by_id(session: Session, parameter_set_id: int) -> ParameterSet:
    """The parameter set with this id; NotFound otherwise."""
    return _lookup.get_or_404(session, ParameterSet, parameter_set_id, "parameter set")


def get_by_name(session: Session, project_id: int, name: str) -> ParameterSet:
    """The project's parameter set with this name; NotFound otherwise."""
    query = select(ParameterSet).where(ParameterSet.project_id == project_id, ParameterSet.name == name)
    return _lookup.one_or_404(session, query, f"No parameter set named '{name}' in this project")


def _filtered(query: Select[Any], project_id: int | None, name: str | None) -> Select[Any]:
    if project_id is not None:
        query = query.where(ParameterSet.project_id == project_id)
    if name is not None:
        query = query.where(ParameterSet.name == name)
    return query


def list_(
    session: Session,
    *,
    project_id: int | None = None,
    name: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Sequence[ParameterSet]:
    """Parameter sets in id order, of one project (or all) and with an exact name (or any)."""
    query = _filtered(select(ParameterSet), project_id, name).order_by(ParameterSet.id)
    return _lookup.listed(session, query, limit=limit, offset=offset)


def count(session: Session, *, project_id: int | None = None, name: str | None = None) -> int:
    """How many parameter sets :func:`list_` would return without paging."""
    return count_of(session, _filtered(select(ParameterSet.id), project_id, name))


def values_by_name(session: Session, project_id: int, names: Iterable[str]) -> dict[str, dict[str, str]]:
    """``{set name: parameters}`` for those of ``names`` the project has (missing names are left out)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = session.scalars(
        select(ParameterSet).where(ParameterSet.project_id == project_id, ParameterSet.name.in_(wanted))
    ).all()
    return {row.name: {str(k): str(v) for k, v in (row.parameters or {}).items()} for row in rows}


def update(session: Session, row: ParameterSet | int, changes: Mapping[str, Any]) -> ParameterSet:
    """Apply ``changes`` (name, description, parameters, updater_id); Conflict on a taken name."""
    _lookup.check_fields(changes, UPDATABLE_FIELDS, "parameter set")
    if isinstance(row, int):
        row = get_by_id(session, row)
    if "name" in changes and changes["name"] != row.name:
        _check_unique(session, row.project_id, changes["name"], row.id)
    _lookup.apply_changes(row, changes, copied="parameters")
    _flush(session, row.name)
    return row


def delete(session: Session, row: ParameterSet | int) -> None:
    """Delete a parameter set (flows naming it then fail validation with PARAMETER_SET_NOT_FOUND)."""
    if isinstance(row, int):
        row = get_by_id(session, row)
    _lookup.delete_row(session, row)
