"""Deployments: promote flows from a Dev instance to this one through packages, releases and import rules.

A **deployment** is a named container. It owns a project of its own (named
``deployment:<id>``, created and deleted with it) where the flows of every
release are stored, so that Flow View shows them, parameter sets created
in that project apply to every release, and ``GET /v4/flows/{id}/validate``
reports their problems. Its **import rules** rewrite a package's flows
while it is imported, and only then (never what is already stored):

1. object rules point stages at local connections: ``{"tableName":
   "connections", "onCondition": {"uuid": DEV_UUID}, "withCondition":
   {"id": LOCAL_ID}}`` (:class:`~flowport.model.import_rules.ObjectImportRule`);
2. value rules then rewrite paths, buckets, table names and parameters, in
   order (:class:`~flowport.model.import_rules.ValueImportRule`).

A **release** is one imported package: the flows the import stored (the
first of the package is the primary flow), the package ZIP itself (for
audit and re-import) and what the import reported. Releases are immutable
except ``active``; importing makes the new release the deployment's only
active one, and activating an older one is a rollback. Running a
deployment runs the primary flow of its active release.

Because a flow's name and uuid are unique within a project and several
releases of one package live side by side, a release stores each flow
under the name ``"<name> (release <id>)"`` and the uuid
``uuid5(<package flow uuid>, "release:<id>")``; the release lists the
package's own uuid and name beside each stored flow.

Every function owns its transaction and returns plain dicts in the v4
API's shape (camelCase, ``{"id"}`` references, lists as ``{"data", "count"}``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid as _uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from flowport.errors import Conflict, NotFound, ValidationFailed
from flowport.model.document import describe_validation_error, flow_from_dict
from flowport.model.flow import Flow, PluginRef
from flowport.model.import_rules import (
    ObjectImportRule,
    ValueImportRule,
    apply_object_rules,
    apply_value_rules,
)
from flowport.model.package import (
    Package,
    PackageConnection,
    referenced_connections,
    replace_connections,
)
from flowport.model.package_import import manifest_connection, retarget_pipeline
from flowport.model.release_diff import ReleaseSide, diff_releases
from flowport.plugins.registry import PluginRegistry
from flowport.services.auth import User, require_role
from flowport.services.flow_records import insert_flow, missing_connections
from flowport.services.flows import plugin_registry
from flowport.services.instance import page_bounds, ref, timestamp, transaction
from flowport.services.package_archive import check_storable, read_package
from flowport.services.permissions import require_flow_permissions
from flowport.services.schemas.common import MAX_ID, parse_body
from flowport.services.schemas.deployments import (
    DeploymentCreate,
    DeploymentRead,
    DeploymentUpdate,
    ReleaseRead,
    ReleaseUpdate,
)
from flowport.store import connections as _connections_repo
from flowport.store import deployments as _repo
from flowport.store import flows as _flows_repo
from flowport.store import projects as _projects_repo
from flowport.store.tables import Deployment, JobTrigger, Release

__all__ = [
    "MAX_RULES",
    "PACKAGE_NAMESPACE",
    "DeploymentCreate",
    "DeploymentUpdate",
    "ReleaseUpdate",
    "create_deployment",
    "delete_deployment",
    "delete_release",
    "deployment_dict",
    "deployment_flow",
    "deployment_pipeline",
    "get_deployment",
    "get_object_import_rules",
    "get_release",
    "get_release_package",
    "get_value_import_rules",
    "import_release",
    "list_deployments",
    "list_releases",
    "package_uuid",
    "patch_deployment",
    "patch_release",
    "release_dict",
    "release_diff",
    "run_deployment",
    "set_object_import_rules",
    "set_value_import_rules",
]

_log = logging.getLogger(__name__)

# Namespace of the uuid5 that names a package by the sha256 of its bytes:
# the same ZIP gets the same uuid on every instance.
PACKAGE_NAMESPACE: Final = _uuid.UUID("3f1b8a52-6c1e-5d7a-9b0e-8c2f4e6a1d90")
# More rules than this is a mistake (or an attack), not a configuration.
MAX_RULES: Final = 1000
_MAX_NAME: Final = 255
_MAX_NOTES: Final = 10_000
_PROJECT_PREFIX: Final = "deployment:"


class _DryRunDone(Exception):
    """Raised inside the import transaction of a dry run so that it rolls back."""

    def __init__(self, report: dict[str, Any]) -> None:
        super().__init__("dry run")
        self.report = report


def _check_text(value: str, what: str) -> None:
    # What PostgreSQL cannot store must be refused here, not by the database.
    if "\x00" in value:
        raise ValidationFailed(f"Invalid {what}: it contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationFailed(f"Invalid {what}: it contains an unpaired UTF-16 surrogate") from None


def package_uuid(sha256: str) -> _uuid.UUID:
    """The uuid of a package: uuid5 of the sha256 of its ZIP, the same on every instance."""
    return _uuid.uuid5(PACKAGE_NAMESPACE, sha256)


# -- what the API shows ------------------------------------------------------------


def release_dict(row: Release) -> dict[str, Any]:
    """A release as the API shows it (never the package bytes: ``GET /v4/releases/{id}/package``)."""
    report = dict(row.report or {})
    return ReleaseRead.shape(
        {
            "id": row.id,
            "notes": row.notes,
            "packageUuid": str(row.package_uuid),
            "packageSha256": row.package_sha256,
            "active": row.active,
            "deployment": ref(row.deployment_id),
            "primaryFlow": ref(row.primary_flow_id),
            "flows": list(row.flows or []),
            **({"pipelines": report["pipelines"]} if report.get("pipelines") else {}),
            "importRuleChanges": report.get("importRuleChanges", {"object": [], "value": []}),
            "packageStored": bool(row.package),
            "createdAt": timestamp(row.created_at),
            "updatedAt": timestamp(row.updated_at),
            "creator": ref(row.creator_id),
            "updater": ref(row.updater_id),
        }
    )


def deployment_dict(session: Session, row: Deployment, *, embed_releases: bool = False) -> dict[str, Any]:
    """A deployment as the API shows it; ``embed_releases`` adds ``releases: {data, count}``."""
    active = _repo.active_release(session, row.id)
    data: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "project": ref(row.project_id),
        "activeRelease": ref(active.id if active is not None else None),
        "createdAt": timestamp(row.created_at),
        "updatedAt": timestamp(row.updated_at),
        "creator": ref(row.creator_id),
        "updater": ref(row.updater_id),
    }
    if embed_releases:
        releases = _repo.list_releases(session, deployment_id=row.id)
        data["releases"] = {"data": [release_dict(r) for r in releases], "count": len(releases)}
    return DeploymentRead.shape(data)


# -- deployments ---------------------------------------------------------------------


def _project_name(session: Session, deployment_id: int) -> str:
    # A user may already have a project called deployment:<id>: take the next free name.
    base = f"{_PROJECT_PREFIX}{deployment_id}"
    candidate, number = base, 1
    while _projects_repo.count(session, name=candidate):
        number += 1
        candidate = f"{base} ({number})"
    return candidate


def create_deployment(
    body: DeploymentCreate | Mapping[str, Any], *, user: User | None = None
) -> dict[str, Any]:
    """Create a deployment and its project (editors and admins); Conflict when the name is taken."""
    require_role(user, "editor")
    data: DeploymentCreate = parse_body(DeploymentCreate, body, "deployment")
    _check_text(data.name, "deployment name")
    user_id = user.id if user else None
    with transaction() as session:
        # The project is named after the deployment's id, which exists only
        # once the deployment does: a placeholder name first, renamed below.
        project = _projects_repo.create(session, name=f"{_PROJECT_PREFIX}{_uuid.uuid4()}", creator_id=user_id)
        row = _repo.create(session, name=data.name, project_id=project.id, creator_id=user_id)
        _projects_repo.update(
            session,
            project,
            {
                "name": _project_name(session, row.id),
                "description": f"The flows of the releases of deployment {row.id}; "
                "managed by the deployment (deleted with it)",
            },
        )
        result = deployment_dict(session, row)
    _log.info("Deployment '%s' created (id %s, project %s)", result["name"], result["id"], project.id)
    return result


def get_deployment(deployment_id: int, *, embed_releases: bool = False) -> dict[str, Any]:
    """The deployment with this id (``embed_releases``: with its releases); NotFound otherwise."""
    with transaction() as session:
        return deployment_dict(
            session, _repo.get_by_id(session, deployment_id), embed_releases=embed_releases
        )


def list_deployments(
    *,
    name: str | None = None,
    limit: int | None = None,
    offset: int = 0,
    no_limit: bool = False,
    embed_releases: bool = False,
) -> dict[str, Any]:
    """Deployments in creation order as ``{"data": [...], "count": total}``; ``name`` is an exact name."""
    row_limit, row_offset = page_bounds(limit, offset, no_limit)
    with transaction() as session:
        rows = _repo.list_(session, name=name, limit=row_limit, offset=row_offset)
        return {
            "data": [deployment_dict(session, r, embed_releases=embed_releases) for r in rows],
            "count": _repo.count(session, name=name),
        }


def patch_deployment(
    deployment_id: int, body: DeploymentUpdate | Mapping[str, Any], *, user: User | None = None
) -> dict[str, Any]:
    """Rename a deployment (editors and admins); Conflict when the name is taken."""
    require_role(user, "editor")
    data: DeploymentUpdate = parse_body(DeploymentUpdate, body, "deployment")
    _check_text(data.name, "deployment name")
    changes: dict[str, Any] = {"name": data.name}
    if user is not None:
        changes["updater_id"] = user.id
    with transaction() as session:
        row = _repo.update(session, _repo.get_by_id(session, deployment_id), changes)
        return deployment_dict(session, row)


def delete_deployment(deployment_id: int, *, user: User | None = None) -> None:
    """Delete a deployment: its releases, import rules and project (flows, parameter sets) go too.

    Job groups that ran its flows stay in the history (with no flow).
    """
    require_role(user, "editor")
    with transaction() as session:
        row = _repo.lock(session, deployment_id)
        name = row.name
        _repo.delete(session, row)
    _log.info("Deployment '%s' (id %s) deleted", name, deployment_id)


# -- import rules ---------------------------------------------------------------------


def _rules_body(rules: Any, model: type[BaseModel], what: str) -> list[dict[str, Any]]:
    if not isinstance(rules, Sequence) or isinstance(rules, str | bytes):
        raise ValidationFailed(f"Invalid {what}: the body must be a JSON array of rules (possibly empty)")
    if len(rules) > MAX_RULES:
        raise ValidationFailed(f"Invalid {what}: at most {MAX_RULES} rules, got {len(rules)}")
    checked: list[dict[str, Any]] = []
    problems: list[str] = []
    for index, rule in enumerate(rules):
        try:
            parsed = rule if isinstance(rule, model) else model.model_validate(rule)
        except ValidationError as exc:
            problems += describe_validation_error(exc, prefix=f"[{index}]")
            continue
        data = parsed.model_dump(by_alias=True)
        for value in _strings(data):
            try:
                _check_text(value, f"{what} [{index}]")
            except ValidationFailed as exc:
                problems.append(exc.message)
        checked.append(data)
    if problems:
        raise ValidationFailed(f"Invalid {what}: " + "; ".join(problems), details=problems)
    return checked


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for k, v in value.items() for s in _strings(k) + _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _canonical_uuid(text: str) -> str:
    try:
        return str(_uuid.UUID(text))
    except ValueError:
        return text


def _object_rules_body(rules: Any) -> list[dict[str, Any]]:
    checked = _rules_body(rules, ObjectImportRule, "object import rules")
    problems = [
        f"[{index}].withCondition.id: {rule['withCondition']['id']} cannot be a connection id "
        f"(ids are 1 to {MAX_ID})"
        for index, rule in enumerate(checked)
        if not 1 <= rule["withCondition"]["id"] <= MAX_ID
    ]
    if problems:
        raise ValidationFailed("Invalid object import rules: " + "; ".join(problems), details=problems)
    for rule in checked:
        # Stage configurations hold uuids in their canonical form (lowercase,
        # with dashes); a rule written otherwise would silently never match.
        rule["onCondition"]["uuid"] = _canonical_uuid(rule["onCondition"]["uuid"].strip())
    return checked


def _value_rules_body(rules: Any) -> list[dict[str, Any]]:
    checked = _rules_body(rules, ValueImportRule, "value import rules")
    problems = []
    for index, rule in enumerate(checked):
        on = rule["on"]
        if len(on) >= 2 and on.startswith("/") and on.endswith("/"):
            # The replacement's group references are checked now, not at the
            # first import the rule would break.
            try:
                re.sub(on[1:-1], rule["with"], "")
            except re.error as exc:
                problems.append(
                    f"[{index}].with: '{rule['with']}' is not a valid replacement for {on}: {exc}"
                )
    if problems:
        raise ValidationFailed("Invalid value import rules: " + "; ".join(problems), details=problems)
    return checked


def _set_rules(
    deployment_id: int, kind: str, rules: list[dict[str, Any]], user: User | None
) -> dict[str, Any]:
    with transaction() as session:
        _repo.lock(session, deployment_id)
        previous = _repo.replace_rules(
            session, deployment_id, kind, rules, creator_id=user.id if user else None
        )
    _log.info(
        "Deployment %s: %s %s import rule(s) replaced by %s", deployment_id, len(previous), kind, len(rules)
    )
    return {"deleted": previous}


def set_object_import_rules(deployment_id: int, rules: Any, *, user: User | None = None) -> dict[str, Any]:
    """Replace the deployment's object import rules; returns ``{"deleted": [the previous rules]}``.

    Args:
        rules: ``[{"tableName": "connections", "onCondition": {"uuid": ...},
            "withCondition": {"id": ...}}]``; an empty list removes them all.
            Every local connection id must exist on this instance.

    Raises:
        ValidationFailed: not a list of valid rules, or a rule names a
        connection id this instance does not have (``details.connectionId``).
        NotFound: no such deployment. Forbidden: a viewer.
    """
    require_role(user, "editor")
    body = _object_rules_body(rules)
    with transaction() as session:
        for index, rule in enumerate(body):
            local_id = rule["withCondition"]["id"]
            try:
                _connections_repo.get_by_id(session, local_id)
            except NotFound:
                raise ValidationFailed(
                    f"Object import rule {index + 1} maps to connection id {local_id}, which this instance "
                    "does not have: create the connection first (POST /v4/connections) and use its id",
                    details={"rule": index, "connectionId": local_id},
                ) from None
    return _set_rules(deployment_id, "object", body, user)


def set_value_import_rules(deployment_id: int, rules: Any, *, user: User | None = None) -> dict[str, Any]:
    """Replace the deployment's value import rules (applied in this order); returns ``{"deleted": [...]}``.

    Args:
        rules: ``[{"type": "fileLocation" | "s3Bucket" | "tableName" |
            "parameter", "on": LITERAL or "/REGEX/", "with": REPLACEMENT}]``.

    Raises:
        ValidationFailed: not a list of valid rules (a bad regular
        expression or replacement included). NotFound, Forbidden.
    """
    require_role(user, "editor")
    return _set_rules(deployment_id, "value", _value_rules_body(rules), user)


def _get_rules(deployment_id: int, kind: str) -> dict[str, Any]:
    with transaction() as session:
        _repo.get_by_id(session, deployment_id)
        rules = _repo.rules(session, deployment_id, kind)
    return {"data": rules, "count": len(rules)}


def get_object_import_rules(deployment_id: int) -> dict[str, Any]:
    """The deployment's object import rules as ``{"data": [...], "count"}``."""
    return _get_rules(deployment_id, "object")


def get_value_import_rules(deployment_id: int) -> dict[str, Any]:
    """The deployment's value import rules, in the order they apply, as ``{"data": [...], "count"}``."""
    return _get_rules(deployment_id, "value")


# -- importing a package ----------------------------------------------------------------


def _canonical_references(flow: Flow, listed: Sequence[PackageConnection], targets: set[str]) -> Flow:
    """``flow`` with each reference to a connection an object rule targets written as its canonical uuid.

    A Dev stage may name its connection by name, or by its uuid in another
    case; the manifest says which uuid that is, so the rule written for the
    uuid applies to it too.
    """
    by_name = {c.name: str(c.uuid) for c in listed}
    mapping: dict[str, str] = {}
    for reference in referenced_connections(flow):
        canonical = _canonical_uuid(reference)
        if canonical not in targets:
            canonical = by_name.get(reference, canonical)
        if canonical in targets and canonical != reference:
            mapping[reference] = canonical
    return replace_connections(flow, mapping) if mapping else flow


def _installed_versions(registry: PluginRegistry, plugin: PluginRef) -> list[str]:
    artifact = plugin.artifact.name if plugin.artifact is not None else None
    versions = {
        p.info.artifact.version
        for p in registry.plugins
        if p.info.name == plugin.name and (artifact is None or p.info.artifact.name == artifact)
    }
    return [str(v) for v in sorted(versions)]


def _check_artifacts(flows: Sequence[Flow], registry: PluginRegistry) -> list[dict[str, Any]]:
    """Resolve every stage's plugin; ValidationFailed listing each stage that cannot resolve.

    Returns what each range pin resolved to. An exact pin must be
    installed as such: a package from an instance with other versions
    needs ranges (``flowport packages upgrade``).
    """
    problems: list[dict[str, Any]] = []
    resolved: list[dict[str, Any]] = []
    for flow in flows:
        stages = [(s.name, s.plugin) for s in flow.stages] + [
            (flow.error_stage.name, flow.error_stage.plugin)
        ]
        for stage, plugin in stages:
            resolution = registry.resolve(plugin)
            pin = plugin.artifact
            requested = pin.version if pin is not None else None
            if resolution.plugin is None:
                problems.append(
                    {
                        "flow": flow.name,
                        "stage": stage,
                        "plugin": plugin.name,
                        "artifact": pin.name if pin is not None else None,
                        "version": requested,
                        "installed": _installed_versions(registry, plugin),
                        "code": resolution.code,
                        "message": resolution.message,
                    }
                )
            elif requested and requested.strip()[:1] in ("[", "("):
                resolved.append(
                    {
                        "flow": flow.name,
                        "stage": stage,
                        "artifact": resolution.plugin.artifact.name,
                        "requested": requested,
                        "resolved": str(resolution.plugin.artifact.version),
                    }
                )
    if problems:
        lines = []
        for p in problems:
            installed = ", ".join(p["installed"]) or "none"
            pinned = f"{p['artifact'] or 'its artifact'} {p['version']}" if p["version"] else "its plugin"
            lines.append(
                f"flow '{p['flow']}', stage '{p['stage']}' ({p['plugin']}): {pinned} cannot be resolved "
                f"({p['message']}); installed versions: {installed}"
            )
        raise ValidationFailed(
            "Cannot import the package: "
            + ("a stage needs" if len(lines) == 1 else f"{len(lines)} stages need")
            + " an artifact this instance does not have:\n  "
            + "\n  ".join(lines)
            + "\nWiden exact pins into ranges (flowport packages upgrade PACKAGE.zip) or install the "
            "artifact versions, then import again",
            details={"problems": problems},
        )
    return resolved


def _release_side(session: Session, release: Release | None, label: str | None = None) -> ReleaseSide:
    """A stored release's flows under the uuid and name they had in the package, and its report."""
    if release is None:
        return ReleaseSide(label or "nothing", [])
    flows: list[tuple[str, Flow]] = []
    for entry in release.flows or []:
        package_flow = entry.get("packageFlow") or {}
        try:
            flow = _document(session, int(entry["id"]))
        except (NotFound, KeyError, TypeError, ValueError):
            continue  # a flow of the release deleted by hand: it cannot be compared
        name = str(package_flow.get("name") or flow.name)
        flows.append((str(package_flow.get("uuid") or flow.uuid), flow.model_copy(update={"name": name})))
    report = release.report or {}
    return ReleaseSide(
        label or f"release {release.id}",
        flows,
        list(report.get("resolvedArtifacts") or []),
        report.get("importRuleChanges"),
    )


def release_diff(release_id: int, against: int | str = "active") -> dict[str, Any]:
    """What release ``release_id`` changes compared with release ``against`` (an id, or ``active``).

    See :func:`flowport.model.release_diff.diff_releases` for the shape;
    secrets in configurations are never shown.

    Raises:
        NotFound: no such release (or no release of that id to compare with).
        ValidationFailed: ``against`` is neither an id nor ``active``.
    """
    with transaction() as session:
        release = _repo.get_release(session, release_id)
        if against == "active":
            other = _repo.active_release(session, release.deployment_id)
            before = _release_side(session, other, None if other else "no active release")
        else:
            try:
                other_id = int(against)
            except (TypeError, ValueError):
                raise ValidationFailed(f"against must be a release id or 'active', not '{against}'") from None
            before = _release_side(session, _repo.get_release(session, other_id))
        return diff_releases(before, _release_side(session, release))


def _release_flow(flow: Flow, release_id: int) -> Flow:
    suffix = f" (release {release_id})"
    return flow.model_copy(
        update={
            "uuid": _uuid.uuid5(flow.uuid, f"release:{release_id}"),
            "name": flow.name[: _MAX_NAME - len(suffix)] + suffix,
        }
    )


def _unresolved(
    session: Session, flows: Sequence[Flow], listed: Sequence[PackageConnection]
) -> list[dict[str, Any]]:
    by_uuid = {str(c.uuid): c for c in listed}
    by_name = {c.name: c for c in listed}
    found = []
    for flow in flows:
        for stage, reference in missing_connections(session, flow):
            known = by_uuid.get(_canonical_uuid(reference)) or by_name.get(reference)
            found.append(
                {
                    "flow": flow.name,
                    "stage": stage,
                    "connection": reference,
                    "name": known.name if known is not None else None,
                    "vendor": known.vendor if known is not None else None,
                }
            )
    return found


def _import(
    session: Session,
    package: Package,
    data: bytes,
    *,
    deployment_id: int,
    notes: str,
    user: User | None,
    dry_run: bool,
    activate: str = "auto",
) -> dict[str, Any]:
    deployment = _repo.lock(session, deployment_id)
    object_rules = [ObjectImportRule.model_validate(r) for r in _repo.rules(session, deployment_id, "object")]
    value_rules = [ValueImportRule.model_validate(r) for r in _repo.rules(session, deployment_id, "value")]
    local: dict[int, str] = {}
    for rule in object_rules:
        local_id = rule.with_condition["id"]
        # Only the ids rules name; a missing one is apply_object_rules' clear error.
        if 1 <= local_id <= MAX_ID:
            with contextlib.suppress(NotFound):
                local[local_id] = str(_connections_repo.get_by_id(session, local_id).uuid)

    targets = {rule.on_condition["uuid"] for rule in object_rules}
    listed = package.manifest.connections
    flows: list[Flow] = []
    object_applied: dict[int, dict[str, Any]] = {}
    value_applied: dict[int, dict[str, Any]] = {}
    value_changes: list[dict[str, Any]] = []
    for entry, original in package.flows:
        flow = _canonical_references(original, listed, targets)
        flow, applied = apply_object_rules(flow, object_rules, local)
        for rule in applied:
            object_applied.setdefault(object_rules.index(rule), rule.to_dict())
        try:
            flow, changes = apply_value_rules(flow, value_rules)
        except re.error as exc:  # the rules were checked when set; stored ones edited by hand may not be
            raise ValidationFailed(f"A value import rule cannot be applied: {exc}") from None
        for change in changes:
            value_applied.setdefault(change.rule, value_rules[change.rule].to_dict())
            value_changes.append(change.to_dict())
        check_storable(entry, flow)
        flows.append(flow)
    resolved_artifacts = _check_artifacts(flows, plugin_registry())

    user_id = user.id if user else None
    credentials = package.manifest.with_plain_text_credentials
    release = _repo.create_release(
        session,
        deployment_id=deployment.id,
        # Plain-text credentials must not sit unencrypted in the metadata
        # store: such a package is imported but its bytes are not kept.
        package=b"" if credentials else data,
        package_uuid=package_uuid(package.archive_sha256),
        package_sha256=package.archive_sha256,
        notes=notes,
        creator_id=user_id,
    )
    stored: list[dict[str, Any]] = []
    flow_ids: list[int] = []
    for flow in flows:
        row = insert_flow(
            session, _release_flow(flow, release.id), project_id=deployment.project_id, creator_id=user_id
        )
        flow_ids.append(row.id)
        stored.append(
            {"id": row.id, "name": row.name, "packageFlow": {"uuid": str(flow.uuid), "name": flow.name}}
        )
    changes_report = {
        "object": [object_applied[i] for i in sorted(object_applied)],
        "value": [value_applied[i] for i in sorted(value_applied)],
    }
    stored_names = {
        original.name: entry["name"] for (_, original), entry in zip(package.flows, stored, strict=True)
    }
    pipelines = _release_pipelines(
        session, package, release.id, deployment.project_id, stored_names, object_rules, local, user
    )
    release.flows = stored
    release.primary_flow_id = flow_ids[0] if flow_ids else None
    release.report = {
        "pipelines": pipelines,
        "importRuleChanges": changes_report,
        "valueChanges": value_changes,
        "resolvedArtifacts": resolved_artifacts,
        "connections": [c.model_dump(mode="json", exclude={"credentials"}) for c in listed],
        "withPlainTextCredentials": credentials,
    }
    unresolved = _unresolved(session, flows, listed)
    # What this release changes compared with the one running now, computed before any activation.
    previous = _repo.active_release(session, deployment.id)
    diff = diff_releases(
        _release_side(session, previous, None if previous else "no active release"),
        ReleaseSide(
            "this import" if dry_run else f"release {release.id}",
            [(str(original.uuid), flow) for (_, original), flow in zip(package.flows, flows, strict=True)],
            resolved_artifacts,
            changes_report,
        ),
    )
    # A working deployment is never replaced by a release that cannot run.
    activated = not unresolved or activate == "force"
    if activated:
        _repo.activate(session, release, updater_id=user_id)
    if not unresolved:
        message = "The release is active."
    elif activated:
        message = "The release is active although some of its stages use connections this instance lacks."
    else:
        active = _repo.active_release(session, deployment.id)
        kept = f"release {active.id} stays active" if active is not None else "no release is active"
        message = (
            f"The release was stored but not activated ({kept}): {len(unresolved)} stage(s) use "
            "connections this instance lacks. Add object import rules for them and import again, or "
            "activate it anyway with activate=force."
        )
    return {
        "activated": activated and not dry_run,
        "message": message,
        "importRuleChanges": changes_report,
        "flowName": flows[0].name if flows else str(package.pipelines[0][1]["name"]),
        "primaryFlowIds": [] if dry_run else flow_ids[:1],
        "pipelines": [] if dry_run else pipelines,
        "valueChanges": value_changes,
        "resolvedArtifacts": resolved_artifacts,
        "unresolvedConnections": unresolved,
        "release": None if dry_run else release_dict(release),
        "diff": diff,
        "dryRun": dry_run,
    }


def import_release(
    deployment_id: int,
    data: bytes,
    *,
    user: User | None = None,
    dry_run: bool = False,
    notes: str = "",
    activate: str = "auto",
) -> dict[str, Any]:
    """Import a package ZIP into a deployment as a new release, which becomes its only active one.

    ``activate="auto"`` (the default) activates the release only when every
    stage's connection resolves on this instance: otherwise the release is
    stored, the previous active release keeps running, and the answer says
    so (``activated: false``, ``message``, ``unresolvedConnections``).
    ``activate="force"`` activates it anyway.

    The upload is checked as hostile first (:func:`read_package`). Each flow
    then gets the deployment's object rules, then its value rules in order;
    every stage's artifact must resolve on this instance (an exact pin that
    is not installed, or a range nothing installed matches, refuses the
    import and lists the installed versions). The flows, the release and the
    activation are written in one transaction: a failure stores nothing.

    Returns:
        ``{"importRuleChanges": {"object": [rules that applied], "value":
        [rules that applied]}, "flowName": the primary flow's name in the
        package, "primaryFlowIds": [id of its stored copy], "valueChanges":
        [{"rule", "flow", "stage", "key", "from", "to"}], "resolvedArtifacts":
        [{"flow", "stage", "artifact", "requested", "resolved"}],
        "unresolvedConnections": [{"flow", "stage", "connection", "name",
        "vendor"}] (the stages Flow View shows invalid until they are fixed),
        "release": the release, "dryRun"}``. A dry run answers the same
        (with no ids and no release) and stores nothing.

    Raises:
        PackageInvalid (422): the archive is refused. ValidationFailed: an
        artifact does not resolve, an object rule names a connection id
        this instance does not have, bad notes. NotFound: no such
        deployment. Forbidden: a viewer.
    """
    require_role(user, "editor")
    if activate not in ("auto", "force"):
        raise ValidationFailed(f"activate must be 'auto' or 'force', not '{activate}'")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValidationFailed("A package is the bytes of a ZIP file")
    if not isinstance(notes, str) or len(notes) > _MAX_NOTES:
        raise ValidationFailed(f"Release notes must be text of at most {_MAX_NOTES} characters")
    _check_text(notes, "release notes")
    raw = bytes(data)
    package = read_package(raw)
    require_flow_permissions(user, [flow for _, flow in package.flows], action="import")
    try:
        with transaction() as session:
            report = _import(
                session,
                package,
                raw,
                deployment_id=deployment_id,
                notes=notes,
                user=user,
                dry_run=dry_run,
                activate=activate,
            )
            if dry_run:
                raise _DryRunDone(report)
    except _DryRunDone as done:
        report = done.report
    _log.info(
        "Package %s %s deployment %s: %s flow(s), %s object and %s value rule(s) applied%s",
        package.archive_sha256[:12],
        "checked (dry run) for" if dry_run else "imported into",
        deployment_id,
        len(package.flows),
        len(report["importRuleChanges"]["object"]),
        len(report["importRuleChanges"]["value"]),
        ""
        if dry_run
        else f", release {report['release']['id']}{' active' if report['activated'] else ' not activated'}",
    )
    return report


# -- releases ---------------------------------------------------------------------------


def list_releases(
    *, deployment_id: int | None = None, limit: int | None = None, offset: int = 0, no_limit: bool = False
) -> dict[str, Any]:
    """Releases in creation order as ``{"data": [...], "count"}``, of one deployment or of all.

    Raises:
        NotFound: ``deployment_id`` names no deployment.
    """
    row_limit, row_offset = page_bounds(limit, offset, no_limit)
    with transaction() as session:
        if deployment_id is not None:
            _repo.get_by_id(session, deployment_id)
        rows = _repo.list_releases(session, deployment_id=deployment_id, limit=row_limit, offset=row_offset)
        total = _repo.count_releases(session, deployment_id=deployment_id)
        return {"data": [release_dict(r) for r in rows], "count": total}


def get_release(release_id: int) -> dict[str, Any]:
    """The release with this id; NotFound otherwise."""
    with transaction() as session:
        return release_dict(_repo.get_release(session, release_id))


def get_release_package(release_id: int) -> bytes:
    """The package ZIP the release was imported from, byte for byte.

    Raises:
        NotFound: no such release, or its package was not kept (it carried
        plain-text credentials).
    """
    with transaction() as session:
        row = _repo.get_release(session, release_id)
        if not row.package:
            raise NotFound(
                f"Release {release_id}'s package was not kept: it carried plain-text credentials, "
                "which are never stored unencrypted"
            )
        return bytes(row.package)


def patch_release(release_id: int, body: Mapping[str, Any], *, user: User | None = None) -> dict[str, Any]:
    """``{"active": true}`` makes the release its deployment's only active one (a rollback when older).

    ``{"active": false}`` deactivates it, leaving the deployment with no
    active release. Releases are otherwise immutable.

    Raises:
        ValidationFailed: any other field, or ``active`` not a boolean.
        NotFound: no such release. Forbidden: a viewer.
    """
    require_role(user, "editor")
    if isinstance(body, Mapping):
        fixed = sorted(str(key) for key in body if key != "active")
        if fixed:
            raise ValidationFailed(
                f"Releases are immutable: only 'active' can change, not {', '.join(fixed)}; "
                "import a new package to change anything else",
                details={"fields": fixed},
            )
    data: ReleaseUpdate = parse_body(ReleaseUpdate, body, "release")
    user_id = user.id if user else None
    with transaction() as session:
        row = _repo.get_release(session, release_id)
        _repo.lock(session, row.deployment_id)
        if data.active:
            _repo.activate(session, row, updater_id=user_id)
        elif row.active:
            _repo.deactivate(session, row, updater_id=user_id)
        result = release_dict(row)
    _log.info(
        "Release %s of deployment %s %s",
        release_id,
        result["deployment"]["id"],
        "activated" if data.active else "deactivated",
    )
    return result


def delete_release(release_id: int, *, user: User | None = None) -> None:
    """Delete a release and the flows it stored; deleting the active one leaves none active."""
    require_role(user, "editor")
    with transaction() as session:
        row = _repo.get_release(session, release_id)
        _repo.lock(session, row.deployment_id)
        deployment_id = row.deployment_id
        _repo.delete_release(session, row)
    _log.info("Release %s of deployment %s deleted", release_id, deployment_id)


# -- running -------------------------------------------------------------------------------


def _connection_label(reference: str, listed: Sequence[Mapping[str, Any]]) -> str:
    canonical = _canonical_uuid(reference)
    for item in listed:
        if item.get("uuid") == canonical or item.get("name") == reference:
            return f"'{reference}' ({item.get('name')}, {item.get('vendor')})"
    return f"'{reference}'"


def _release_pipelines(
    session: Session,
    package: Package,
    release_id: int,
    project_id: int,
    flow_names: Mapping[str, str],
    object_rules: Sequence[ObjectImportRule],
    local: Mapping[int, str],
    user: User | None,
) -> list[dict[str, Any]]:
    """Store the package's pipelines in the deployment's project as ``"<name> (release N)"``: their flow
    tasks name the release's copies of the flows, their connections go through the object import rules.
    The first is what running the deployment runs. Validated as if created here (refused whole else)."""
    from flowport.services.pipelines import store_document

    stored: list[dict[str, Any]] = []
    rules = {rule.on_condition["uuid"]: local.get(rule.with_condition["id"]) for rule in object_rules}
    listed = package.manifest.connections
    suffix = f" (release {release_id})"

    def connection(reference: str) -> str:
        entry = manifest_connection(reference, listed)
        mapped = rules.get(str(entry.uuid)) if entry is not None else rules.get(reference)
        return mapped or reference

    for _entry, original in package.pipelines:
        document = retarget_pipeline(original, flow_names, connection)
        document["name"] = str(original["name"])[: _MAX_NAME - len(suffix)] + suffix
        row = store_document(session, document, project_id=project_id, user=user)
        stored.append({"id": row.id, "name": row.name, "packagePipeline": {"name": str(original["name"])}})
    return stored


def deployment_pipeline(deployment_id: int) -> int | None:
    """The pipeline a run of the deployment runs (its active release's first pipeline), if it has one."""
    with transaction() as session:
        release = _repo.active_release(session, deployment_id)
        pipelines = list(((release.report or {}).get("pipelines") or []) if release is not None else [])
    return int(pipelines[0]["id"]) if pipelines else None


def deployment_flow(deployment_id: int) -> int:
    """The flow a run of the deployment runs: the primary flow of its active release, checked.

    Raises:
        Conflict: no active release, or its primary flow was deleted.
        ValidationFailed: the flow's stages use connections this instance
        does not have (``details.missingConnections`` names each stage and
        connection). NotFound: no such deployment.
    """
    with transaction() as session:
        deployment = _repo.get_by_id(session, deployment_id)
        release = _repo.active_release(session, deployment_id)
        if release is None:
            raise Conflict(
                f"Deployment '{deployment.name}' (id {deployment_id}) has no active release: import a "
                f"package (POST /v4/deployments/{deployment_id}/releases) or activate a release "
                '(PATCH /v4/releases/{id} with {"active": true})',
                details={"deployment": ref(deployment_id)},
            )
        flow_id = release.primary_flow_id
        if flow_id is None:
            raise Conflict(
                f"The primary flow of release {release.id} (deployment '{deployment.name}') was deleted: "
                "import the package again or activate another release",
                details={"release": ref(release.id)},
            )
        flow = _document(session, flow_id)
        missing = missing_connections(session, flow)
        listed = list((release.report or {}).get("connections", []))
        name = flow.name
    if missing:
        lines = [f"stage '{stage}' uses connection {_connection_label(r, listed)}" for stage, r in missing]
        raise ValidationFailed(
            f"Cannot run deployment '{deployment.name}': flow '{name}' of release {release.id} uses "
            "connections this instance does not have:\n  "
            + "\n  ".join(lines)
            + "\nCreate the connections, add object import rules that map them "
            f"(PATCH /v4/deployments/{deployment_id}/objectImportRules), and import the package again",
            details={
                "release": ref(release.id),
                "flow": ref(flow_id),
                "missingConnections": [{"stage": stage, "connection": r} for stage, r in missing],
            },
        )
    _log.info(
        "Deployment '%s' (id %s) runs flow %s of release %s",
        deployment.name,
        deployment_id,
        flow_id,
        release.id,
    )
    return flow_id


def run_deployment(
    deployment_id: int,
    overrides: Mapping[str, Any] | None = None,
    *,
    user: User | None = None,
    trigger: JobTrigger = "manual",
) -> dict[str, Any]:
    """Run the primary flow of the deployment's active release; answers the seed's ``JobStarted`` shape.

    Returns:
        ``{"data": [{"reason": "JobStarted", "sessionId": ..., "id": JOB_GROUP_ID}]}``;
        poll ``GET /v4/jobGroups/{id}``.

    Raises:
        See :func:`deployment_flow` and :func:`flowport.services.runs.start`
        (FlowInvalid, malformed overrides, Forbidden for a viewer).
    """
    # runs builds on this module (it resolves deployments through deployment_flow).
    from flowport.services import runs

    group = runs.start(runs.DeploymentTarget(deployment_id), trigger, user, overrides=overrides)
    return {"data": [{"reason": "JobStarted", "sessionId": group["sessionId"], "id": group["id"]}]}


def _document(session: Session, flow_id: int) -> Flow:
    row = _flows_repo.get_by_id(session, flow_id)
    return flow_from_dict(dict(row.document), source=f"stored flow {row.id}")
