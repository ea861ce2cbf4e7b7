"""Flows stored in the instance: create, read, list, change, duplicate, delete, validate, preview.

A stored flow is its full ``flowport.flow/1`` document (see
:mod:`flowport.model.flow`) plus an id, a project and who changed it when.
The document's ``uuid`` is stable (packages and imports refer to it) and
unique within the project, like its ``name``. Relative paths in a stored
flow's stages resolve against the instance's data folder,
:func:`data_dir`. The parameter sets a flow names resolve to its
project's sets (:mod:`flowport.services.parameter_sets`).

Functions return plain dicts in the v4 API's JSON shape (camelCase,
``creator``/``updater`` as ``{"id"}``, lists as ``{"data", "count"}``).
"""

from __future__ import annotations

import logging
import re
import uuid as _uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from flowport import __version__
from flowport.errors import Conflict, FlowDocumentError, NotFound, ValidationFailed
from flowport.model.document import flow_from_dict, flow_to_dict
from flowport.model.flow import Flow
from flowport.model.json_values import jsonable
from flowport.model.package import stage_connection_references
from flowport.model.validation import ValidationIssue, ValidationResult
from flowport.services import flows as _flows
from flowport.services import read_cache
from flowport.services.auth import User, require_role
from flowport.services.file_roots import instance_roots
from flowport.services.instance import page_bounds, ref, store_url, timestamp, transaction
from flowport.services.parameter_sets import resolve_parameter_sets
from flowport.services.permissions import require_flow_permissions
from flowport.services.read_cache import GenerationCache
from flowport.services.schemas import PARAMETER_NAME
from flowport.services.schemas.flows import FlowRead, ResetOffsetsRead, ValidationRead
from flowport.services.settings import DATA_DIR_ENV, data_dir
from flowport.store import connections as _connections_repo
from flowport.store import flows as _repo
from flowport.store import projects as _projects
from flowport.store.tables import FLOW_TYPES, FlowRecord

__all__ = [
    "DATA_DIR_ENV",
    "StoredFlow",
    "check_overrides",
    "create_flow",
    "data_dir",
    "delete_flow",
    "duplicate_flow",
    "flow_dict",
    "get_flow",
    "get_flow_by_name",
    "get_flow_by_uuid",
    "get_flow_document",
    "insert_flow",
    "instance_connections",
    "list_flows",
    "load_stored_flow",
    "missing_connections",
    "preview_flow",
    "replace_flow_document",
    "reset_flow_offsets",
    "update_flow",
    "validate_flow",
    "validation_dict",
]

_log = logging.getLogger(__name__)
# Flow lists without documents, per store generation of the flows (GET /v4/flows, the UI's lists).
_listings: GenerationCache[tuple[list[dict[str, Any]], int]] = GenerationCache(256)

_MAX_NAME = 255
_PATCHABLE = frozenset({"name", "description"})
_PARAMETER_NAME = re.compile(PARAMETER_NAME)


# -- documents -------------------------------------------------------------------


def _parse_document(body: Flow | Mapping[str, Any], *, source: str = "flow") -> Flow:
    if isinstance(body, Flow):
        flow = body
    else:
        # flow_from_dict reports anything that is not an object as a document error.
        flow = flow_from_dict(dict(body) if isinstance(body, Mapping) else body, source=source)
    name = flow.name.strip()
    if not name:
        raise ValidationFailed("Invalid flow: name cannot be blank")
    if len(name) > _MAX_NAME:
        raise ValidationFailed(f"Invalid flow: name is longer than {_MAX_NAME} characters")
    if name != flow.name:
        flow = flow.model_copy(update={"name": name})
    return flow


def _document(row: FlowRecord) -> Flow:
    # Stored documents were valid when written; one that no longer parses
    # (written by a newer Flowport, edited in the database) says so clearly.
    return flow_from_dict(dict(row.document), source=f"stored flow {row.id}")


def flow_dict(row: FlowRecord, *, include_document: bool = True) -> dict[str, Any]:
    """A stored flow as the API shows it; ``document`` is the full flow document."""
    data: dict[str, Any] = {
        "id": row.id,
        "uuid": str(row.uuid),
        "name": row.name,
        "description": row.description,
        "type": row.type,
        "project": ref(row.project_id),
        # The seed's flows sit in a folder of a workspace: here the project, in the instance's one workspace.
        "folder": ref(row.project_id),
        "workspace": {"id": 1},
        # The engine that stores and runs the flow (the seed's flow.engine_version).
        "engineVersion": __version__,
        "createdAt": timestamp(row.created_at),
        "updatedAt": timestamp(row.updated_at),
        "creator": ref(row.creator_id),
        "updater": ref(row.updater_id),
    }
    if include_document:
        data["document"] = _document_dict(row)
    return FlowRead.shape(data)


def _document_dict(row: FlowRecord) -> dict[str, Any]:
    # Re-serialized through the model for the document's usual key order
    # (PostgreSQL's JSONB reorders object keys); as stored if it no longer parses.
    try:
        return flow_to_dict(_document(row))
    except FlowDocumentError:
        return dict(row.document)


class StoredFlow:
    """A stored flow ready to validate or run: the document, its project and its parameter set values."""

    def __init__(
        self,
        flow_id: int,
        project_id: int,
        flow: Flow,
        parameter_sets: dict[str, dict[str, str]],
        missing_sets: list[str],
        missing_connections: list[tuple[str, str]] | None = None,
    ) -> None:
        self.flow_id = flow_id
        self.project_id = project_id
        self.flow = flow
        self.parameter_sets = parameter_sets
        self.missing_sets = missing_sets
        # (stage name, reference) of each connection reference no connection of the instance answers.
        self.missing_connections = missing_connections or []

    def validate(self, overrides: Mapping[str, str] | None = None) -> ValidationResult:
        """Validate the flow with its parameter sets and ``overrides``.

        Unknown parameter sets are ``PARAMETER_SET_NOT_FOUND`` issues of the
        flow; a stage whose ``connection`` names no connection of this
        instance (a package imported without the object import rule it
        needed, a deleted connection) is a ``CONNECTION_NOT_FOUND`` issue of
        that stage.
        """
        # A stored flow runs for the instance's users: its paths must stay inside the file roots.
        result = _flows.validate(
            self.flow,
            overrides=overrides,
            parameter_sets=self.parameter_sets,
            file_roots=instance_roots(),
            base_dir=data_dir(),
        )
        if not self.missing_sets and not self.missing_connections:
            return result
        issues = [
            ValidationIssue(
                "flowIssues",
                None,
                "PARAMETER_SET_NOT_FOUND",
                f"The flow uses the parameter set '{name}', which its project does not have: "
                "create it or remove it from the flow's parameter sets",
            )
            for name in self.missing_sets
        ]
        issues += [
            ValidationIssue(
                "stageIssues",
                stage,
                "CONNECTION_NOT_FOUND",
                f"The stage uses the connection '{reference}', which this instance does not have: "
                "create the connection, or point the stage at one that exists (for a deployment, "
                "add an object import rule and import the package again)",
            )
            for stage, reference in self.missing_connections
        ]
        return ValidationResult(success=False, issues=issues + result.issues)

    def check(self, overrides: Mapping[str, str] | None = None) -> None:
        """Raise :class:`~flowport.services.flows.FlowInvalid` unless the flow is valid."""
        result = self.validate(overrides)
        if not result.success:
            raise _flows.FlowInvalid(result)


def load_stored_flow(session: Session, flow_id: int) -> StoredFlow:
    """A stored flow with its project's parameter sets resolved, inside the caller's transaction."""
    row = _repo.get_by_id(session, flow_id)
    flow = _document(row)
    values, missing = resolve_parameter_sets(session, row.project_id, flow.parameter_sets)
    return StoredFlow(row.id, row.project_id, flow, values, missing, missing_connections(session, flow))


def missing_connections(session: Session, flow: Flow) -> list[tuple[str, str]]:
    """``(stage name, reference)`` for each connection reference of ``flow`` this instance cannot resolve.

    A reference resolves as a run resolves it (an id, a uuid or a name; see
    :func:`flowport.store.connections.find`). ``${parameter}`` references
    resolve only when the flow runs and are left out.
    """
    missing: list[tuple[str, str]] = []
    for stage, references in stage_connection_references(flow).items():
        for reference in sorted(references):
            if "${" in reference:
                continue
            try:
                _connections_repo.find(session, reference)
            except NotFound:
                missing.append((stage, reference))
    return missing


def check_overrides(overrides: Mapping[str, Any] | None) -> dict[str, str]:
    """Parameter overrides for one run or preview as ``{name: text}``; ValidationFailed when malformed.

    Names are parameter names (``min_total``) or set parameters (``orders__min_total``);
    numbers and booleans become text, as parameters always are.
    """
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise ValidationFailed("Parameter overrides must be an object of name → value")
    checked: dict[str, str] = {}
    for name, value in overrides.items():
        if not isinstance(name, str) or not _PARAMETER_NAME.fullmatch(name):
            raise ValidationFailed(f"'{name}' is not a parameter name (letters, digits and _)")
        if isinstance(value, bool):
            checked[name] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            checked[name] = str(value)
        else:
            raise ValidationFailed(f"The value of parameter '{name}' must be text, a number or a boolean")
    return checked


# -- inside a caller's transaction ----------------------------------------------------


def insert_flow(
    session: Session, flow: Flow | Mapping[str, Any], *, project_id: int, creator_id: int | None = None
) -> FlowRecord:
    """Store a new flow inside the caller's transaction (imports writing several flows at once).

    Raises:
        ValidationFailed: not a valid document. Conflict: name or uuid taken in the project.
    """
    checked = _parse_document(flow)
    return _repo.create(
        session,
        project_id=project_id,
        uuid=checked.uuid,
        name=checked.name,
        description=checked.description,
        type=checked.type,
        document=flow_to_dict(checked),
        creator_id=creator_id,
    )


def replace_flow_document(
    session: Session, row: FlowRecord, flow: Flow | Mapping[str, Any], *, updater_id: int | None = None
) -> FlowRecord:
    """Replace a stored flow's whole document, its uuid included, inside the caller's transaction.

    For imports resolving a conflict with ``replace``; :func:`update_flow`
    is the interface's way and keeps the uuid fixed.
    """
    checked = _parse_document(flow)
    changes: dict[str, Any] = {
        "uuid": checked.uuid,
        "name": checked.name,
        "description": checked.description,
        "type": checked.type,
        "document": flow_to_dict(checked),
    }
    if updater_id is not None:
        changes["updater_id"] = updater_id
    return _repo.update(session, row, changes)


# -- create, read, list ------------------------------------------------------------


def create_flow(
    body: Flow | Mapping[str, Any],
    *,
    project: int | str | None = None,
    user: User | None = None,
) -> dict[str, Any]:
    """Store a new flow in ``project`` (id or name; the default project when None).

    Args:
        body: a flow document (a :class:`~flowport.model.flow.Flow` or its
            JSON), or just ``{"name", "description", "type"}`` for an empty flow.
            Unknown keys are refused.

    Raises:
        ValidationFailed: not a valid document. Conflict: the name or uuid
        is taken in the project. NotFound: no such project. Forbidden: a viewer.
    """
    require_role(user, "editor")
    flow = _parse_document(body)
    require_flow_permissions(user, flow, action="create")
    with transaction() as session:
        project_row = _projects.find(session, project)
        row = insert_flow(session, flow, project_id=project_row.id, creator_id=user.id if user else None)
        result = flow_dict(row)
    _log.info("Flow '%s' created (id %s, uuid %s)", result["name"], result["id"], result["uuid"])
    return result


def get_flow(flow_id: int, *, include_document: bool = True) -> dict[str, Any]:
    """The stored flow with this id (with its document unless told not to); NotFound otherwise."""
    with transaction() as session:
        return flow_dict(_repo.get_by_id(session, flow_id), include_document=include_document)


def get_flow_by_name(name: str, *, project: int | str | None = None) -> dict[str, Any]:
    """The flow called ``name`` in ``project`` (default project when None); NotFound otherwise."""
    with transaction() as session:
        project_row = _projects.find(session, project)
        return flow_dict(_repo.get_by_name(session, project_row.id, name))


def get_flow_by_uuid(flow_uuid: _uuid.UUID | str, *, project: int | str | None = None) -> dict[str, Any]:
    """The flow with this document uuid in ``project`` (default project when None); NotFound otherwise."""
    try:
        parsed = flow_uuid if isinstance(flow_uuid, _uuid.UUID) else _uuid.UUID(str(flow_uuid))
    except ValueError:
        raise NotFound(f"No flow with uuid '{flow_uuid}'") from None
    with transaction() as session:
        project_row = _projects.find(session, project)
        return flow_dict(_repo.get_by_uuid(session, project_row.id, parsed))


def get_flow_document(flow_id: int) -> Flow:
    """The document of a stored flow as a :class:`~flowport.model.flow.Flow`."""
    with transaction() as session:
        return _document(_repo.get_by_id(session, flow_id))


def list_flows(
    *,
    project: int | str | None = None,
    name: str | None = None,
    name_contains: str | None = None,
    flow_type: str | None = None,
    limit: int | None = None,
    offset: int = 0,
    no_limit: bool = False,
    include_document: bool = False,
) -> dict[str, Any]:
    """Stored flows in creation order as ``{"data": [...], "count": total}``.

    Args:
        project: id or name; every project when None.
        name: exact name. name_contains: part of the name, any case.
        flow_type: ``batch`` or ``streaming``.
        limit, offset, no_limit: paging; ``count`` is the total before paging
            (limit defaults to 25, ``no_limit`` returns everything).
        include_document: also return each flow's document.
    """
    if flow_type is not None and flow_type not in FLOW_TYPES:
        raise ValidationFailed(f"Unknown flow type '{flow_type}'; expected one of {', '.join(FLOW_TYPES)}")
    row_limit, row_offset = page_bounds(limit, offset, no_limit)
    url = store_url()

    def read() -> tuple[list[dict[str, Any]], int]:
        with transaction(url) as session:
            project_id = _projects.find(session, project).id if project is not None else None
            filters: dict[str, Any] = {
                "project_id": project_id,
                "name": name,
                "name_contains": name_contains,
                "flow_type": flow_type,
            }
            rows = _repo.list_(
                session, **filters, limit=row_limit, offset=row_offset, with_document=include_document
            )
            total = _repo.count(session, **filters)
            return [flow_dict(r, include_document=include_document) for r in rows], total

    if include_document:
        data, total = read()
    else:
        # Lists without documents are kept per store generation of the flows (read before the rows).
        key = (url, project, name, name_contains, flow_type, row_limit, row_offset)
        data, total = _listings.get(key, read_cache.generation(read_cache.FLOWS, url), read)
    # Each caller gets its own dicts (nested values are shared and never changed).
    return {"data": [dict(flow) for flow in data], "count": total}


# -- change, duplicate, delete -----------------------------------------------------


def _patch_fields(body: Mapping[str, Any]) -> dict[str, str]:
    changes: dict[str, str] = {}
    for key, value in body.items():
        if not isinstance(value, str):
            raise ValidationFailed(f"Invalid flow: {key} must be text")
        changes[key] = value.strip() if key == "name" else value
    if "name" in changes and not changes["name"]:
        raise ValidationFailed("Invalid flow: name cannot be blank")
    if len(changes.get("name", "")) > _MAX_NAME:
        raise ValidationFailed(f"Invalid flow: name is longer than {_MAX_NAME} characters")
    return changes


def update_flow(flow_id: int, body: Flow | Mapping[str, Any], *, user: User | None = None) -> dict[str, Any]:
    """Replace a stored flow's document, or change only its name and/or description.

    Args:
        body: a full flow document (Flow or JSON), or an object with only
            ``name`` and/or ``description``. A document without ``uuid``
            keeps the stored one; a different uuid is refused (it is what
            packages refer to).

    Raises:
        NotFound, ValidationFailed, Conflict (name taken), Forbidden (a viewer).
    """
    require_role(user, "editor")
    partial = isinstance(body, Mapping) and bool(body) and set(body) <= _PATCHABLE
    if isinstance(body, Mapping) and not body:
        raise ValidationFailed(
            "Invalid flow: the body is empty; send a flow document, a name or a description"
        )
    with transaction() as session:
        row = _repo.get_by_id(session, flow_id)
        if partial:
            assert isinstance(body, Mapping)
            changes: dict[str, Any] = dict(_patch_fields(body))
            document = dict(row.document)
            document.update(changes)
            changes["document"] = document
        else:
            if isinstance(body, Flow):
                given_uuid = "uuid" in body.model_fields_set
            else:
                given_uuid = isinstance(body, Mapping) and "uuid" in body
            flow = _parse_document(body)
            require_flow_permissions(user, flow, action="update")
            if not given_uuid:
                flow = flow.model_copy(update={"uuid": row.uuid})
            elif flow.uuid != row.uuid:
                raise ValidationFailed(
                    f"Invalid flow: its uuid is {row.uuid} and cannot change (packages refer to it); "
                    "create a new flow or duplicate this one instead"
                )
            changes = {
                "name": flow.name,
                "description": flow.description,
                "type": flow.type,
                "document": flow_to_dict(flow),
            }
        if user is not None:
            changes["updater_id"] = user.id
        result = flow_dict(_repo.update(session, row, changes))
    _log.info("Flow '%s' (id %s) updated", result["name"], result["id"])
    return result


def _free_name(session: Session, project_id: int, base: str) -> str:
    candidate = base[:_MAX_NAME]
    number = 1
    while _repo.count(session, project_id=project_id, name=candidate):
        number += 1
        suffix = f" ({number})"
        candidate = base[: _MAX_NAME - len(suffix)] + suffix
    return candidate


def duplicate_flow(
    flow_id: int,
    *,
    name: str | None = None,
    description: str | None = None,
    user: User | None = None,
) -> dict[str, Any]:
    """Copy a stored flow into the same project with a new uuid.

    Args:
        name: the copy's name; "<name> (copy)" (numbered if taken) when None.
            A given name that is taken is a Conflict.
        description: the copy's description; the original's when None.
    """
    require_role(user, "editor")
    with transaction() as session:
        row = _repo.get_by_id(session, flow_id)
        flow = _document(row)
        require_flow_permissions(user, flow, action="duplicate")
        if name is not None:
            new_name = _patch_fields({"name": name})["name"]
        else:
            new_name = _free_name(session, row.project_id, f"{row.name} (copy)")
        copy = flow.model_copy(
            update={
                "uuid": _uuid.uuid4(),
                "name": new_name,
                "description": flow.description if description is None else description,
            }
        )
        new_row = insert_flow(session, copy, project_id=row.project_id, creator_id=user.id if user else None)
        result = flow_dict(new_row)
    _log.info("Flow %s duplicated as '%s' (id %s)", flow_id, result["name"], result["id"])
    return result


def delete_flow(flow_id: int, *, user: User | None = None) -> None:
    """Delete a stored flow; its job history stays (with no flow)."""
    require_role(user, "editor")
    with transaction() as session:
        row = _repo.get_by_id(session, flow_id)
        name = row.name
        _repo.delete(session, row)
    _log.info("Flow '%s' (id %s) deleted", name, flow_id)


# -- validate and preview ------------------------------------------------------------


def validate_flow(flow_id: int, *, overrides: Mapping[str, Any] | None = None) -> ValidationResult:
    """Validate a stored flow against the installed plugins, with its project's parameter sets.

    A parameter set the project lacks is a ``PARAMETER_SET_NOT_FOUND`` issue;
    a stored document that no longer parses is ``FLOW_DOCUMENT_INVALID``.
    See :func:`validation_dict` for the API's shape.
    """
    values = check_overrides(overrides)
    with transaction() as session:
        try:
            stored = load_stored_flow(session, flow_id)
        except FlowDocumentError as exc:
            issue = ValidationIssue("flowIssues", None, "FLOW_DOCUMENT_INVALID", exc.message)
            return ValidationResult(False, [issue])
    return stored.validate(values)


def validation_dict(result: ValidationResult) -> dict[str, Any]:
    """A validation result in the SDK's shape: ``success``, ``message`` and camelCase ``issues``."""
    return ValidationRead.shape(
        {
            "success": result.success,
            "message": "Validation Succeeded" if result.success else "Validation Failed",
            "issues": [
                {
                    "type": issue.type,
                    "instanceName": issue.instance_name,
                    "code": issue.code,
                    "humanReadableMessage": issue.message,
                }
                for issue in result.issues
            ],
        }
    )


def preview_flow(
    flow_id: int, *, rows: int = 10, overrides: Mapping[str, Any] | None = None, user: User | None = None
) -> list[dict[str, Any]]:
    """Preview a stored flow on its first ``rows`` records; nothing is written.

    Preview is data access: it takes the permissions a run of the flow
    takes (viewers never preview), and its files stay inside the file roots.

    Returns:
        One ``{"instanceName", "input", "output", "errors"}`` per stage, JSON-safe.

    Raises:
        FlowInvalid (a ValidationFailed whose ``details`` is the validation
        result): the flow is not valid. ValidationFailed: ``rows`` out of 1..100000.
        Forbidden: a viewer, or a restricted stage the user has no permission for.
    """
    require_role(user, "editor")
    if not 1 <= rows <= 100_000:
        raise ValidationFailed(f"Preview takes 1 to 100000 rows, got {rows}")
    values = check_overrides(overrides)
    with transaction() as session:
        stored = load_stored_flow(session, flow_id)
    require_flow_permissions(user, stored.flow, action="preview")
    stored.check(values)
    folder = data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stages = _flows.preview(
        stored.flow,
        rows=rows,
        overrides=values,
        parameter_sets=stored.parameter_sets,
        base_dir=folder,
        file_roots=instance_roots(),
        connections=instance_connections(),
    )
    return [
        {
            "instanceName": stage.instance_name,
            "input": jsonable(stage.input),
            "output": jsonable(stage.output),
            "errors": jsonable(stage.errors),
        }
        for stage in stages
    ]


def reset_flow_offsets(
    flow_id: int, position: str, *, stages: list[str] | None = None, user: User | None = None
) -> dict[str, Any]:
    """Move the offsets of a stopped streaming flow's origins: ``earliest``, ``latest`` or a value.

    Returns ``{"flow": {"id"}, "position", "stages": [names reset]}``.

    Raises:
        Conflict: a job of the flow is running or waiting (stop it first).
        NotFound: no such flow, or a named stage is not a streaming origin of it.
        ValidationFailed: an empty position. Forbidden: a viewer, or a restricted stage.
        StageError: an origin refused the position.
    """
    require_role(user, "editor")
    position = position.strip()
    if not position or len(position) > 255:
        raise ValidationFailed("position: give earliest, latest or an offset value (at most 255 characters)")
    from flowport.store import jobs as _jobs_repo

    with transaction() as session:
        stored = load_stored_flow(session, flow_id)
        active = _jobs_repo.active_group_of_flow(session, flow_id)
    if active is not None:
        raise Conflict(
            f"Job group {active} of this flow is running or waiting: stop it before resetting offsets"
        )
    require_flow_permissions(user, stored.flow, action="run")
    stored.check({})
    from flowport.services.stage_state import StoreStageState

    folder = data_dir()
    reset = _flows.reset_offsets(
        stored.flow,
        position,
        stages=stages,
        parameter_sets=stored.parameter_sets,
        base_dir=folder,
        file_roots=instance_roots(),
        connections=instance_connections(),
        stage_state=StoreStageState(stored.flow.uuid, legacy_dir=folder),
    )
    _log.info("Flow %s: offsets of %s reset to %s", flow_id, ", ".join(reset) or "no origin", position)
    return ResetOffsetsRead.shape({"flow": ref(flow_id), "position": position, "stages": reset})


def instance_connections(*, url: str | None = None, home: Path | None = None) -> Any:
    """The store's connections for a run of a stored flow: confined to the file roots, never the store."""
    # Imported here: the connection service is the heavier module, and only runs need it.
    from flowport.services.connections import StoreConnectionLookup

    return StoreConnectionLookup(url, home=home, file_roots=instance_roots(), base_dir=data_dir())
