"""Packages of stored flows: export them as a ZIP, import a ZIP into a project.

Exporting writes the flows' documents, the connections they refer to (by
``uuid``, ``name`` and ``vendor`` only) and the artifacts their stages use
(:func:`flowport.services.package_archive.build_package`). Credentials
travel only in an admin's explicit plain-text export, which the manifest
marks ``withPlainTextCredentials``.

Importing treats the upload as hostile
(:func:`~flowport.services.package_archive.read_package` checks it in
memory before anything is stored), then stores every flow of the package
in one transaction: a failure anywhere stores nothing. A package flow whose
uuid, or else whose name, is already in the target project is a conflict,
resolved by ``conflict_resolution``:

- ``skip``: the local flow stays as it is; the package's is not stored.
- ``replace``: the local flow keeps its id and gets the package's document
  (its uuid included, so later imports match it by uuid).
- ``rename``: the package's flow is stored as a new flow under the first
  free name ``"<name> (1)"``, ``"<name> (2)"``, ... with a new uuid.

The report also lists the connection references of the stored flows that
do not resolve on this instance (by uuid, then by name), with the stages
that use them, so an operator knows which connections to create.
"""

from __future__ import annotations

import logging
import uuid as _uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, cast

from sqlalchemy.orm import Session

from flowport.connections.spec import ConnectionSpec
from flowport.errors import NotFound, ValidationFailed
from flowport.model.flow import Flow
from flowport.model.package import CONNECTION_KEY, Package
from flowport.model.package_import import (
    Resolution,
    manifest_connection,
    place,
    plan_flows,
    retarget_pipeline,
)
from flowport.model.pipeline import pipeline_from_dict
from flowport.services import connections as _connections
from flowport.services.auth import User, require_role
from flowport.services.flow_records import flow_dict, insert_flow, load_stored_flow, replace_flow_document
from flowport.services.flows import plugin_registry
from flowport.services.instance import transaction
from flowport.services.package_archive import build_package, check_storable, read_package
from flowport.services.permissions import require_flow_permissions
from flowport.store import connections as _connections_repo
from flowport.store import flows as _flows_repo
from flowport.store import instance as _instance_repo
from flowport.store import projects as _projects_repo
from flowport.store.tables import Connection, FlowRecord

__all__ = [
    "CONFLICT_RESOLUTIONS",
    "MAX_EXPORT_FLOWS",
    "ConflictResolution",
    "export_flows",
    "import_package",
]

_log = logging.getLogger(__name__)

ConflictResolution = Literal["skip", "replace", "rename"]
CONFLICT_RESOLUTIONS: Final = ("skip", "replace", "rename")
# The archive reader refuses more than 1000 entries; one is the manifest.
MAX_EXPORT_FLOWS: Final = 999
_MAX_NAME: Final = 255


class _DryRunDone(Exception):
    """Raised inside the import transaction of a dry run so that it rolls back."""

    def __init__(self, report: dict[str, Any]) -> None:
        super().__init__("dry run")
        self.report = report


# -- export ----------------------------------------------------------------------


def _reference_matches(row: Connection, references: set[str]) -> bool:
    return str(row.uuid) in references or row.name in references


def _canonical(reference: str) -> str:
    try:
        return str(_uuid.UUID(reference))
    except ValueError:
        return reference


def export_flows(
    flow_ids: Sequence[int],
    *,
    user: User | None = None,
    plain_text_credentials: bool = False,
    pipelines: Sequence[Mapping[str, Any]] = (),
) -> bytes:
    """The package ZIP of the stored flows ``flow_ids`` (in that order; a repeated id counts once).

    The manifest names this instance (its uuid) and lists the connections
    the flows refer to by uuid, name and vendor. With
    ``plain_text_credentials`` (admins only) it also carries those
    connections' credentials in clear and says so.

    Raises:
        NotFound: an unknown flow id. ValidationFailed: no flows, too many,
        or two flows with the same uuid (from different projects).
        Forbidden: ``plain_text_credentials`` asked by someone not an admin.
    """
    if plain_text_credentials:
        require_role(user, "admin")
    wanted = list(dict.fromkeys(flow_ids))
    if not wanted and not pipelines:
        raise ValidationFailed("A package needs at least one flow: give the ids of the flows to export")
    if len(wanted) > MAX_EXPORT_FLOWS:
        raise ValidationFailed(f"A package holds at most {MAX_EXPORT_FLOWS} flows, got {len(wanted)}")
    with transaction() as session:
        flows = [load_stored_flow(session, flow_id).flow for flow_id in wanted]
        instance_uuid = _instance_repo.get(session).uuid
        references = set()
        for flow in flows:
            for stage_references in _stage_references(flow).values():
                references |= stage_references
        for document in pipelines:
            references |= set(_pipeline_connections(document))
        references |= {_canonical(ref) for ref in references}
        rows = [row for row in _connections_repo.list_(session) if _reference_matches(row, references)]
    if plain_text_credentials:
        # Decrypted only for this export, only the connections the flows use.
        specs = [_connections.connection_spec(row.id, confined=user is not None) for row in rows]
    else:
        # Identity only: build_package never sees a secret it could leak.
        specs = [ConnectionSpec(id=row.id, uuid=row.uuid, name=row.name, vendor=row.vendor) for row in rows]
    package = build_package(
        flows,
        specs,
        instance_uuid,
        plain_text_credentials=plain_text_credentials,
        catalog=plugin_registry(),
        pipelines=pipelines,
    )
    if plain_text_credentials:
        # An audit trail of who took credentials out of the instance (never the credentials).
        _log.warning(
            "Package of flow(s) %s exported WITH PLAIN-TEXT CREDENTIALS of %s connection(s) by '%s'",
            ", ".join(str(i) for i in wanted),
            len(specs),
            user.name if user else "a local operator",
        )
    else:
        _log.info("Package of flow(s) %s exported", ", ".join(str(i) for i in wanted))
    return package


def _pipeline_connections(document: Mapping[str, Any]) -> list[str]:
    from flowport.services.pipelines import connections_of

    return [ref for task in pipeline_from_dict(document).tasks for ref in connections_of(task)]


# -- import ----------------------------------------------------------------------


def _stage_references(flow: Flow) -> dict[str, set[str]]:
    """Connection references per stage name, the error stage included.

    The same rule as :func:`flowport.model.package.referenced_connections`
    (a non-empty string under ``connection`` at any depth), kept per stage
    because the report names the stages that use an unresolved connection.
    """
    found: dict[str, set[str]] = {}
    stages = [(stage.name, stage.configuration) for stage in flow.stages]
    stages.append((flow.error_stage.name, flow.error_stage.configuration))
    for name, configuration in stages:
        references: set[str] = set()
        pending: list[Any] = [configuration]
        while pending:
            value = pending.pop()
            if isinstance(value, Mapping):
                for key, item in value.items():
                    if key == CONNECTION_KEY and isinstance(item, str) and item.strip():
                        references.add(item)
                    else:
                        pending.append(item)
            elif isinstance(value, list | tuple):
                pending.extend(value)
        if references:
            found.setdefault(name, set()).update(references)
    return found


def _find_local(session: Session, project_id: int, flow: Flow) -> FlowRecord | None:
    """The project's flow this package flow conflicts with: same uuid, else same name."""
    try:
        return _flows_repo.get_by_uuid(session, project_id, flow.uuid)
    except NotFound:
        pass
    try:
        return _flows_repo.get_by_name(session, project_id, flow.name)
    except NotFound:
        return None


def _local_connection(session: Session, uuid: str | None, name: str | None) -> Connection | None:
    if uuid is not None:
        try:
            return _connections_repo.get_by_uuid(session, uuid)
        except NotFound:
            pass
    if name is not None:
        try:
            return _connections_repo.get_by_name(session, name)
        except NotFound:
            pass
    return None


def _unresolved_connections(session: Session, package: Package, stored: list[Flow]) -> list[dict[str, Any]]:
    """The connection references of ``stored`` that name no connection of this instance."""
    unresolved: dict[str, dict[str, Any]] = {}
    for flow in stored:
        for stage, references in _stage_references(flow).items():
            for reference in sorted(references):
                if "${" in reference:
                    continue  # a parameter: it resolves when the flow runs, not now
                listed = manifest_connection(reference, package.manifest.connections)
                uuid: str | None
                name: str | None
                vendor: str | None
                if listed is not None:
                    uuid, name, vendor = str(listed.uuid), listed.name, listed.vendor
                else:
                    # Not in the manifest: the reference itself is a uuid or a name.
                    uuid = _canonical(reference) if _is_uuid(reference) else None
                    name, vendor = (None if uuid else reference), None
                if _local_connection(session, uuid, name) is not None:
                    continue
                key = uuid or f"name:{name}"
                entry = unresolved.setdefault(
                    key, {"uuid": uuid, "name": name, "vendor": vendor, "stages": []}
                )
                use = {"flow": flow.name, "stage": stage}
                if use not in entry["stages"]:
                    entry["stages"].append(use)
    return list(unresolved.values())


def _is_uuid(text: str) -> bool:
    try:
        _uuid.UUID(text)
    except ValueError:
        return False
    return True


def _import(
    session: Session,
    package: Package,
    *,
    conflict_resolution: str,
    project: int | str | None,
    user: User | None,
    dry_run: bool,
) -> dict[str, Any]:
    project_id = _projects_repo.find(session, project).id
    user_id = user.id if user else None
    # The local flow each package flow conflicts with, found once: a replace writes over it.
    local: dict[_uuid.UUID, FlowRecord] = {}

    def conflicts(flow: Flow) -> bool:
        found = _find_local(session, project_id, flow)
        if found is not None:
            local[flow.uuid] = found
        return found is not None

    plan = plan_flows(
        (flow for _entry, flow in package.flows),
        cast(Resolution, conflict_resolution),
        conflicts=conflicts,
        taken=lambda name: bool(_flows_repo.count(session, project_id=project_id, name=name)),
        max_length=_MAX_NAME,
    )
    data: list[dict[str, Any]] = []
    for placement, flow in plan.stored:
        if placement.action == "replace":
            row = replace_flow_document(session, local[flow.uuid], flow, updater_id=user_id)
        else:
            row = insert_flow(session, flow, project_id=project_id, creator_id=user_id)
        shown = flow_dict(row)
        if dry_run and placement.action != "replace":
            # The row exists only in the transaction the dry run rolls back.
            shown["id"] = None
        data.append(shown)
    stored = [flow for _placement, flow in plan.stored]
    report: dict[str, Any] = {
        "data": data,
        "count": len(data),
        **plan.report(),
        "unresolvedConnections": _unresolved_connections(session, package, stored),
        "dryRun": dry_run,
    }
    if package.pipelines:  # the seed's answer shape otherwise
        report["pipelines"] = _import_pipelines(
            session, package, project_id, user, cast(Resolution, conflict_resolution), plan.renamed_flows
        )
    return report


def _pipeline_named(session: Session, project_id: int, name: str) -> bool:
    from flowport.store import pipelines as _pipelines_repo

    try:
        _pipelines_repo.get_by_name(session, project_id, name)
    except NotFound:
        return False
    return True


def _import_pipelines(
    session: Session,
    package: Package,
    project_id: int,
    user: User | None,
    conflict_resolution: Resolution,
    renamed_flows: Mapping[str, str],
) -> list[dict[str, Any]]:
    """Store the package's pipelines like its flows (skip, replace or rename on a name clash); a flow task
    naming a flow this import renamed names the copy. Each is validated as if created here."""
    from flowport.services import pipelines as _pipelines
    from flowport.store import pipelines as _pipelines_repo

    shown: list[dict[str, Any]] = []
    for _entry, original in package.pipelines:
        document = retarget_pipeline(original, renamed_flows)
        try:
            existing = _pipelines_repo.get_by_name(session, project_id, str(document["name"]))
        except NotFound:
            existing = None
        placement = place(
            str(document["name"]),
            conflict_resolution,
            conflicting=existing is not None,
            taken=lambda name: _pipeline_named(session, project_id, name),
        )
        if existing is not None and placement.action == "skip":
            shown.append({"id": existing.id, "name": existing.name, "action": "skipped"})
            continue
        document["name"] = placement.name
        row = _pipelines.store_document(
            session,
            document,
            project_id=project_id,
            user=user,
            existing=existing if placement.action == "replace" else None,
        )
        action = {"create": "created", "replace": "replaced", "rename": "renamed"}[placement.action]
        shown.append({"id": row.id, "name": row.name, "action": action})
    return shown


def import_package(
    data: bytes,
    *,
    conflict_resolution: str = "skip",
    project: int | str | None = None,
    user: User | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Import a package ZIP into ``project`` (id or name; the default project when None).

    Args:
        data: the ZIP, as uploaded (checked in memory; hostile archives are refused).
        conflict_resolution: ``skip``, ``replace`` or ``rename`` (see the module).
        dry_run: compute the same report, store nothing.

    Returns:
        ``{"data": [stored flow dicts], "count", "skipped": [names],
        "renamed": [{"from", "to"}], "replaced": [names],
        "unresolvedConnections": [{"uuid", "name", "vendor", "stages": [{"flow", "stage"}]}],
        "dryRun"}``. In a dry run, flows that would be new have ``id`` None.

    Raises:
        PackageInvalid (422): the archive is refused; nothing is stored.
        ValidationFailed: an unknown conflict resolution. NotFound: no such
        project. Conflict: a replaced flow's new name is taken by another
        flow of the project (nothing is stored). Forbidden: a viewer.
    """
    require_role(user, "editor")
    if conflict_resolution not in CONFLICT_RESOLUTIONS:
        raise ValidationFailed(
            f"Unknown conflict resolution '{conflict_resolution}'; expected one of "
            + ", ".join(CONFLICT_RESOLUTIONS)
        )
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValidationFailed("A package is the bytes of a ZIP file")
    package = read_package(bytes(data))
    for entry, flow in package.flows:
        check_storable(entry, flow)
    require_flow_permissions(user, [flow for _, flow in package.flows], action="import")
    try:
        with transaction() as session:
            report = _import(
                session,
                package,
                conflict_resolution=conflict_resolution,
                project=project,
                user=user,
                dry_run=dry_run,
            )
            if dry_run:
                raise _DryRunDone(report)
    except _DryRunDone as done:
        report = done.report
    _log.info(
        "Package from instance %s %s: %s stored, %s skipped, %s replaced, %s renamed, "
        "%s unresolved connection(s)",
        package.manifest.instance.uuid,
        "checked (dry run)" if dry_run else "imported",
        report["count"] - len(report["replaced"]),
        len(report["skipped"]),
        len(report["replaced"]),
        len(report["renamed"]),
        len(report["unresolvedConnections"]),
    )
    return report
