"""Repository functions for projects. Functions only flush: the service owns the transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from flowport.errors import Conflict, NotFound
from flowport.store import _lookup
from flowport.store._paging import count_of
from flowport.store.tables import Project, utcnow

__all__ = [
    "DEFAULT_PROJECT",
    "UPDATABLE_FIELDS",
    "count",
    "create",
    "ensure_default",
    "find",
    "get_by_id",
    "get_by_name",
    "list_",
    "update",
]

DEFAULT_PROJECT = "default"
UPDATABLE_FIELDS = frozenset({"name", "description", "updater_id"})


def _check_unique(session: Session, name: str, exclude_id: int | None) -> None:
    clash = _lookup.clash_id(session, Project, Project.name == name, exclude_id)
    if clash is not None:
        raise Conflict(f"A project named '{name}' already exists (id {clash})")


def _flush(session: Session, name: str) -> None:
    _lookup.flush_or_conflict(session, f"A project named '{name}' already exists")


def create(session: Session, *, name: str, description: str = "", creator_id: int | None = None) -> Project:
    """Insert a project; Conflict when the name is taken."""
    _check_unique(session, name, None)
    now = utcnow()
    row = Project(
        name=name,
        description=description,
        **_lookup.stamps(now, creator_id),
    )
    session.add(row)
    _flush(session, name)
    return row


def get_by_id(session: Session, project_id: int) -> Project:
    """The project with this id; NotFound otherwise."""
    return _lookup.get_or_404(session, Project, project_id, "project")


def get_by_name(session: Session, name: str) -> Project:
    """The project with this exact name; NotFound otherwise."""
    return _lookup.one_or_404(
        session, select(Project).where(Project.name == name), f"No project named '{name}'"
    )


def find(session: Session, ref: int | str | None) -> Project:
    """The project ``ref`` designates (an id or a name); the default project when ``ref`` is None."""
    if ref is None:
        return ensure_default(session)
    if isinstance(ref, int):
        return get_by_id(session, ref)
    text = ref.strip()
    row = session.get(Project, int(text)) if text.isdigit() else None
    if row is None:
        row = session.scalar(select(Project).where(Project.name == ref))
    if row is None:
        raise NotFound(f"No project with id or name '{ref}'")
    return row


def ensure_default(session: Session) -> Project:
    """The ``default`` project, created if missing (the migration creates it; this repairs a deletion)."""
    row = session.scalar(select(Project).where(Project.name == DEFAULT_PROJECT))
    if row is None:
        row = create(session, name=DEFAULT_PROJECT, description="The default project")
    return row


def list_(
    session: Session, *, name: str | None = None, limit: int | None = None, offset: int = 0
) -> Sequence[Project]:
    """Projects in id order (of this exact name, if given), ``limit`` (all when None) from ``offset``."""
    query = select(Project).order_by(Project.id)
    if name is not None:
        query = query.where(Project.name == name)
    return _lookup.listed(session, query, limit=limit, offset=offset)


def count(session: Session, *, name: str | None = None) -> int:
    """How many projects :func:`list_` would return without paging."""
    query = select(Project.id)
    if name is not None:
        query = query.where(Project.name == name)
    return count_of(session, query)


def update(session: Session, row: Project | int, changes: Mapping[str, Any]) -> Project:
    """Apply ``changes`` (name, description, updater_id); Conflict on a taken name."""
    _lookup.check_fields(changes, UPDATABLE_FIELDS, "project")
    if isinstance(row, int):
        row = get_by_id(session, row)
    if "name" in changes and changes["name"] != row.name:
        _check_unique(session, changes["name"], row.id)
    _lookup.apply_changes(row, changes)
    _flush(session, row.name)
    return row
