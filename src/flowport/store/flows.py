"""Repository functions for stored flows.

A flow row keeps the full ``flowport.flow/1`` document as JSON and repeats
its uuid, name, description and type in columns (lists filter on them).
The service keeps both in agreement; this module stores what it is given.
Functions only flush: the service owns the transaction.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, defer

from flowport.errors import Conflict
from flowport.store import _lookup
from flowport.store._paging import count_of
from flowport.store.tables import FlowRecord, utcnow

__all__ = [
    "UPDATABLE_FIELDS",
    "count",
    "create",
    "delete",
    "get_by_id",
    "get_by_name",
    "get_by_uuid",
    "list_",
    "update",
]

# The project and the creation time are fixed for life.
UPDATABLE_FIELDS = frozenset({"uuid", "name", "description", "type", "document", "updater_id"})


def _check_unique(
    session: Session,
    project_id: int,
    *,
    name: str | None,
    uuid: _uuid.UUID | None,
    exclude_id: int | None,
) -> None:
    # Checked first for a message naming the clash; the unique constraints
    # still catch a concurrent writer (see _flush).
    checks: list[tuple[str, Any, str]] = []
    if name is not None:
        checks.append(("name", FlowRecord.name == name, f"A flow named '{name}'"))
    if uuid is not None:
        checks.append(("uuid", FlowRecord.uuid == uuid, f"A flow with uuid {uuid}"))
    for _field, condition, what in checks:
        clash = _lookup.clash_id(
            session, FlowRecord, (FlowRecord.project_id == project_id) & condition, exclude_id
        )
        if clash is not None:
            raise Conflict(f"{what} already exists in this project (id {clash})", details={"id": clash})


def _flush(session: Session, name: str) -> None:
    _lookup.flush_or_conflict(
        session, f"Flow '{name}' conflicts with an existing flow of the project (same name or uuid)"
    )


def create(
    session: Session,
    *,
    project_id: int,
    uuid: _uuid.UUID,
    name: str,
    document: Mapping[str, Any],
    description: str = "",
    type: str = "batch",
    creator_id: int | None = None,
) -> FlowRecord:
    """Insert a flow; Conflict when its name or uuid is taken in the project."""
    _check_unique(session, project_id, name=name, uuid=uuid, exclude_id=None)
    now = utcnow()
    row = FlowRecord(
        project_id=project_id,
        uuid=uuid,
        name=name,
        description=description,
        type=type,
        document=dict(document),
        **_lookup.stamps(now, creator_id),
    )
    session.add(row)
    _flush(session, name)
    return row


def get_by_id(session: Session, flow_id: int) -> FlowRecord:
    """The flow with this id; NotFound otherwise."""
    return _lookup.get_or_404(session, FlowRecord, flow_id, "flow")


def get_by_name(session: Session, project_id: int, name: str) -> FlowRecord:
    """The project's flow with this exact name; NotFound otherwise."""
    query = select(FlowRecord).where(FlowRecord.project_id == project_id, FlowRecord.name == name)
    return _lookup.one_or_404(session, query, f"No flow named '{name}' in this project")


def get_by_uuid(session: Session, project_id: int, uuid: _uuid.UUID) -> FlowRecord:
    """The project's flow with this uuid; NotFound otherwise."""
    query = select(FlowRecord).where(FlowRecord.project_id == project_id, FlowRecord.uuid == uuid)
    return _lookup.one_or_404(session, query, f"No flow with uuid {uuid} in this project")


def _filtered(
    query: Select[Any],
    project_id: int | None,
    name: str | None,
    name_contains: str | None,
    flow_type: str | None,
) -> Select[Any]:
    if project_id is not None:
        query = query.where(FlowRecord.project_id == project_id)
    if name is not None:
        query = query.where(FlowRecord.name == name)
    if name_contains:
        query = query.where(func.lower(FlowRecord.name).contains(name_contains.lower(), autoescape=True))
    if flow_type is not None:
        query = query.where(FlowRecord.type == flow_type)
    return query


def list_(
    session: Session,
    *,
    project_id: int | None = None,
    name: str | None = None,
    name_contains: str | None = None,
    flow_type: str | None = None,
    limit: int | None = None,
    offset: int = 0,
    with_document: bool = True,
) -> Sequence[FlowRecord]:
    """Flows in id order, filtered by project, exact name, name substring (any case) and type.

    ``with_document=False`` leaves each flow's document unread (a listing that does not show it):
    the rows must then not be asked for it once the session has ended.
    """
    query = _filtered(select(FlowRecord), project_id, name, name_contains, flow_type)
    if not with_document:
        query = query.options(defer(FlowRecord.document, raiseload=True))
    return _lookup.listed(session, query.order_by(FlowRecord.id), limit=limit, offset=offset)


def count(
    session: Session,
    *,
    project_id: int | None = None,
    name: str | None = None,
    name_contains: str | None = None,
    flow_type: str | None = None,
) -> int:
    """How many flows :func:`list_` would return with these filters and no paging."""
    return count_of(session, _filtered(select(FlowRecord.id), project_id, name, name_contains, flow_type))


def update(session: Session, row: FlowRecord | int, changes: Mapping[str, Any]) -> FlowRecord:
    """Apply ``changes`` (column → value); Conflict on a name or uuid taken in the project."""
    _lookup.check_fields(changes, UPDATABLE_FIELDS, "flow")
    if isinstance(row, int):
        row = get_by_id(session, row)
    name = changes.get("name")
    uuid = changes.get("uuid")
    _check_unique(
        session,
        row.project_id,
        name=name if name is not None and name != row.name else None,
        uuid=uuid if uuid is not None and uuid != row.uuid else None,
        exclude_id=row.id,
    )
    _lookup.apply_changes(row, changes, copied="document")
    _flush(session, row.name)
    return row


def delete(session: Session, row: FlowRecord | int) -> None:
    """Delete a flow; its job groups and jobs stay, with ``flow_id`` set to NULL."""
    if isinstance(row, int):
        row = get_by_id(session, row)
    _lookup.delete_row(session, row)
