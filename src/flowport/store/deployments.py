"""Repository functions for deployments, their releases and their import rules.

Functions only flush: the service owns the transaction. A release is
immutable once created except for ``active`` (and who changed it when);
:func:`activate` is the one way to change it and keeps at most one release
of a deployment active.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy import delete as _delete
from sqlalchemy import update as _update
from sqlalchemy.orm import Session

from flowport.errors import Conflict, ValidationFailed
from flowport.store import _lookup
from flowport.store._paging import count_of
from flowport.store.tables import (
    IMPORT_RULE_KINDS,
    Deployment,
    FlowRecord,
    ImportRuleRecord,
    ParameterSet,
    Project,
    Release,
    utcnow,
)

__all__ = [
    "UPDATABLE_FIELDS",
    "activate",
    "active_release",
    "count",
    "count_releases",
    "create",
    "create_release",
    "deactivate",
    "delete",
    "delete_release",
    "get_by_id",
    "get_by_name",
    "get_release",
    "list_",
    "list_releases",
    "lock",
    "replace_rules",
    "rules",
    "update",
]

# The project and the creation time are fixed for life.
UPDATABLE_FIELDS = frozenset({"name", "updater_id"})


def _check_unique(session: Session, name: str, exclude_id: int | None) -> None:
    # Checked first for a message naming the clash; the unique constraint
    # still catches a concurrent writer (see _flush).
    clash = _lookup.clash_id(session, Deployment, Deployment.name == name, exclude_id)
    if clash is not None:
        raise Conflict(f"A deployment named '{name}' already exists (id {clash})", details={"id": clash})


def _flush(session: Session, name: str) -> None:
    _lookup.flush_or_conflict(session, f"A deployment named '{name}' already exists")


# -- deployments -------------------------------------------------------------------


def create(session: Session, *, name: str, project_id: int, creator_id: int | None = None) -> Deployment:
    """Insert a deployment owning ``project_id``; Conflict when the name is taken."""
    _check_unique(session, name, None)
    now = utcnow()
    row = Deployment(
        name=name,
        project_id=project_id,
        **_lookup.stamps(now, creator_id),
    )
    session.add(row)
    _flush(session, name)
    return row


def get_by_id(session: Session, deployment_id: int) -> Deployment:
    """The deployment with this id; NotFound otherwise."""
    return _lookup.get_or_404(session, Deployment, deployment_id, "deployment")


def lock(session: Session, deployment_id: int) -> Deployment:
    """The deployment, locked for the rest of the transaction (``SELECT ... FOR UPDATE``).

    Taken before changing which release is active, so that two concurrent
    imports or activations of one deployment cannot both leave theirs
    active. SQLite has no row locks; it lets one writer at a time anyway.
    """
    query = select(Deployment).where(Deployment.id == deployment_id).with_for_update()
    return _lookup.one_or_404(session, query, f"No deployment with id {deployment_id}")


def get_by_name(session: Session, name: str) -> Deployment:
    """The deployment with this exact name; NotFound otherwise."""
    return _lookup.one_or_404(
        session, select(Deployment).where(Deployment.name == name), f"No deployment named '{name}'"
    )


def _filtered(query: Select[Any], name: str | None) -> Select[Any]:
    return query.where(Deployment.name == name) if name is not None else query


def list_(
    session: Session, *, name: str | None = None, limit: int | None = None, offset: int = 0
) -> Sequence[Deployment]:
    """Deployments in creation order, optionally with this exact name."""
    query = _filtered(select(Deployment), name).order_by(Deployment.id)
    return _lookup.listed(session, query, limit=limit, offset=offset)


def count(session: Session, *, name: str | None = None) -> int:
    """How many deployments :func:`list_` would return with no paging."""
    return count_of(session, _filtered(select(Deployment.id), name))


def update(session: Session, row: Deployment, changes: Mapping[str, Any]) -> Deployment:
    """Apply ``changes`` (``name``, ``updater_id``); Conflict on a taken name."""
    _lookup.check_fields(changes, UPDATABLE_FIELDS, "deployment")
    name = changes.get("name")
    if name is not None and name != row.name:
        _check_unique(session, name, row.id)
    _lookup.apply_changes(row, changes)
    _flush(session, row.name)
    return row


def delete(session: Session, row: Deployment) -> None:
    """Delete a deployment with its releases, rules and project (flows and parameter sets included).

    Job groups that ran its flows stay in the history, their ``flow_id``
    set to NULL by the foreign keys.
    """
    project_id = row.project_id
    # Spelled out rather than left to ON DELETE CASCADE, which the ORM's
    # identity map would not see.
    session.execute(_delete(ImportRuleRecord).where(ImportRuleRecord.deployment_id == row.id))
    session.execute(_delete(Release).where(Release.deployment_id == row.id))
    session.delete(row)
    session.flush()
    session.execute(_delete(FlowRecord).where(FlowRecord.project_id == project_id))
    session.execute(_delete(ParameterSet).where(ParameterSet.project_id == project_id))
    session.execute(_delete(Project).where(Project.id == project_id))
    session.flush()


# -- releases ---------------------------------------------------------------------


def create_release(
    session: Session,
    *,
    deployment_id: int,
    package: bytes,
    package_uuid: _uuid.UUID,
    package_sha256: str,
    notes: str = "",
    creator_id: int | None = None,
) -> Release:
    """Insert an inactive release with no flows yet (the import adds them, then :func:`activate`)."""
    now = utcnow()
    row = Release(
        deployment_id=deployment_id,
        notes=notes,
        package_uuid=package_uuid,
        package_sha256=package_sha256,
        active=False,
        primary_flow_id=None,
        flows=[],
        report={},
        package=package,
        **_lookup.stamps(now, creator_id),
    )
    session.add(row)
    session.flush()
    return row


def get_release(session: Session, release_id: int) -> Release:
    """The release with this id; NotFound otherwise."""
    return _lookup.get_or_404(session, Release, release_id, "release")


def _releases(query: Select[Any], deployment_id: int | None) -> Select[Any]:
    return query.where(Release.deployment_id == deployment_id) if deployment_id is not None else query


def list_releases(
    session: Session, *, deployment_id: int | None = None, limit: int | None = None, offset: int = 0
) -> Sequence[Release]:
    """Releases in creation order, of one deployment or of all."""
    query = _releases(select(Release), deployment_id).order_by(Release.id)
    return _lookup.listed(session, query, limit=limit, offset=offset)


def count_releases(session: Session, *, deployment_id: int | None = None) -> int:
    """How many releases :func:`list_releases` would return with no paging."""
    return count_of(session, _releases(select(Release.id), deployment_id))


def active_release(session: Session, deployment_id: int) -> Release | None:
    """The deployment's active release, or None."""
    return session.scalar(
        select(Release)
        .where(Release.deployment_id == deployment_id, Release.active.is_(True))
        .order_by(Release.id.desc())
    )


def activate(session: Session, row: Release, *, updater_id: int | None = None) -> Release:
    """Make ``row`` its deployment's only active release.

    The caller holds :func:`lock` on the deployment, so that two
    activations cannot interleave.
    """
    now = utcnow()
    session.execute(
        _update(Release)
        .where(Release.deployment_id == row.deployment_id, Release.id != row.id, Release.active.is_(True))
        .values(active=False, updated_at=now, updater_id=updater_id)
        .execution_options(synchronize_session="fetch")
    )
    row.active = True
    row.updated_at = now
    row.updater_id = updater_id
    session.flush()
    return row


def deactivate(session: Session, row: Release, *, updater_id: int | None = None) -> Release:
    """Make ``row`` inactive (its deployment then has no active release)."""
    row.active = False
    row.updated_at = utcnow()
    row.updater_id = updater_id
    session.flush()
    return row


def delete_release(session: Session, row: Release) -> None:
    """Delete a release and the flows it created (their job history stays, with no flow)."""
    flow_ids = [entry["id"] for entry in row.flows or [] if isinstance(entry.get("id"), int)]
    project_id = get_by_id(session, row.deployment_id).project_id
    session.delete(row)
    session.flush()
    if flow_ids:
        # Only the deployment's project: a flow id moved elsewhere is not this release's any more.
        session.execute(
            _delete(FlowRecord).where(FlowRecord.id.in_(flow_ids), FlowRecord.project_id == project_id)
        )
        session.flush()


# -- import rules --------------------------------------------------------------------


def _check_kind(kind: str) -> None:
    if kind not in IMPORT_RULE_KINDS:
        raise ValidationFailed(
            f"Unknown import rule kind '{kind}'; expected one of {', '.join(IMPORT_RULE_KINDS)}"
        )


def rules(session: Session, deployment_id: int, kind: str) -> list[dict[str, Any]]:
    """The deployment's rules of ``kind`` (``object`` or ``value``), in their order, as stored."""
    _check_kind(kind)
    rows = session.scalars(
        select(ImportRuleRecord)
        .where(ImportRuleRecord.deployment_id == deployment_id, ImportRuleRecord.kind == kind)
        .order_by(ImportRuleRecord.position)
    ).all()
    return [dict(row.rule) for row in rows]


def replace_rules(
    session: Session,
    deployment_id: int,
    kind: str,
    new_rules: Sequence[Mapping[str, Any]],
    *,
    creator_id: int | None = None,
) -> list[dict[str, Any]]:
    """Replace the deployment's rules of ``kind`` by ``new_rules`` (in order); returns the previous ones."""
    previous = rules(session, deployment_id, kind)
    session.execute(
        _delete(ImportRuleRecord).where(
            ImportRuleRecord.deployment_id == deployment_id, ImportRuleRecord.kind == kind
        )
    )
    now = utcnow()
    session.add_all(
        ImportRuleRecord(
            deployment_id=deployment_id,
            kind=kind,
            position=position,
            rule=dict(rule),
            created_at=now,
            creator_id=creator_id,
        )
        for position, rule in enumerate(new_rules)
    )
    session.flush()
    return previous
