"""Deployments: promote a flow exported from a Dev instance into this server, and run it.

>>> deployment = client.deployments.create('Production Orders')
>>> deployment.set_object_import_rules(
...     [{'tableName': 'connections', 'onCondition': {'uuid': DEV_UUID}, 'withCondition': {'id': 12}}]
... )
[]
>>> result = deployment.import_package('flow-WrangleOrders.zip')
>>> result.release
Release(id=5, active=True)
>>> deployment.run().wait().status
'Complete'
>>> older.activate()  # a rollback
Release(id=4, active=True)

A deployment holds import rules and releases; importing a package creates a
release that becomes the active one; running the deployment runs the
primary flow of the active release. Errors are the server's typed
exceptions (:class:`~flowport.errors.NotFound`, :class:`~flowport.errors.Conflict`,
:class:`~flowport.errors.ValidationFailed`, ...).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from flowport.errors import NotFound
from flowport.sdk._listing import Listing
from flowport.sdk.jobs import Job

if TYPE_CHECKING:
    from flowport.sdk.client import Client

__all__ = [
    "Deployment",
    "DeploymentList",
    "Deployments",
    "ImportResult",
    "Release",
    "ReleaseList",
]


def _ref_id(value: Any) -> int | None:
    """The id of a ``{"id": N}`` reference (None for a null reference)."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return int(value) if value is not None else None


class Release:
    """One package imported into a deployment: immutable except for being the active one."""

    def __init__(self, client: Client, record: Mapping[str, Any]) -> None:
        self._client = client
        self._record = dict(record)

    def __repr__(self) -> str:
        return f"Release(id={self.release_id!r}, active={self.active!r})"

    @property
    def release_id(self) -> int:
        """The release's id on the server."""
        return int(self._record["id"])

    @property
    def active(self) -> bool:
        """Whether this is its deployment's active release (as last fetched)."""
        return bool(self._record.get("active"))

    @property
    def notes(self) -> str:
        """The release notes given at import."""
        return str(self._record.get("notes") or "")

    @property
    def package_uuid(self) -> str:
        """The package's uuid: the same for the same ZIP on every instance."""
        return str(self._record.get("packageUuid"))

    @property
    def deployment_id(self) -> int | None:
        """The id of the deployment the release belongs to."""
        return _ref_id(self._record.get("deployment"))

    @property
    def primary_flow_id(self) -> int | None:
        """The id of the stored copy of the package's primary flow (what a run runs)."""
        return _ref_id(self._record.get("primaryFlow"))

    @property
    def flows(self) -> list[dict[str, Any]]:
        """The flows the release stored: ``{id, name, packageFlow: {uuid, name}}``."""
        return list(self._record.get("flows") or [])

    @property
    def import_rule_changes(self) -> dict[str, Any]:
        """The import rules that applied: ``{"object": [...], "value": [...]}``."""
        return dict(self._record.get("importRuleChanges") or {"object": [], "value": []})

    @property
    def created_at(self) -> str | None:
        """When the release was imported (ISO 8601)."""
        value = self._record.get("createdAt")
        return str(value) if value is not None else None

    @property
    def record(self) -> dict[str, Any]:
        """The release as the API last returned it."""
        return dict(self._record)

    def refresh(self) -> Release:
        """Fetch the release again (e.g. to see whether it is still active)."""
        self._record = dict(self._client.get_json(f"/v4/releases/{self.release_id}"))
        return self

    def activate(self) -> Release:
        """Make this release its deployment's only active one (a rollback when it is older); returns it.

        Raises:
            NotFound: the release was deleted. Forbidden: a viewer.
        """
        return self._set_active(True)

    def deactivate(self) -> Release:
        """Stop this release being active (its deployment then has none); returns it."""
        return self._set_active(False)

    def _set_active(self, active: bool) -> Release:
        record = self._client.request("PATCH", f"/v4/releases/{self.release_id}", json={"active": active})
        self._record = dict(record.json())
        return self

    def diff(self, other: Release | int | str = "active") -> dict[str, Any]:
        """What this release changes compared with ``other`` (a release, its id, or ``"active"``).

        Returns the API's diff: ``{"from", "to", "flows": {"added", "removed",
        "renamed", "changed": [{"flow", "stages", "edges", "parameters", ...}]},
        "artifacts", "importRules"}``. Secrets in configurations are never shown.
        """
        against = other.release_id if isinstance(other, Release) else other
        body = self._client.get_json(f"/v4/releases/{self.release_id}/diff", against=str(against))
        return dict(body)

    def download_package(self, destination: str | Path) -> Path:
        """Write the package ZIP the release was imported from, byte for byte; returns the path.

        Raises:
            NotFound: the package was not kept (it carried plain-text credentials).
        """
        response = self._client.request("GET", f"/v4/releases/{self.release_id}/package")
        path = Path(destination)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(response.content)
        return path

    def delete(self) -> httpx.Response:
        """Delete the release and its flows (deleting the active one leaves none active); the 204 answer."""
        return self._client.request("DELETE", f"/v4/releases/{self.release_id}")


class ReleaseList(Listing[Release]):
    """Releases of a deployment in creation order; ``get(release_id=...)``, ``get(active=True)``."""

    _what = "release"


@dataclass
class ImportResult:
    """What importing a package into a deployment did (or, for a dry run, would do).

    ``import_rule_changes`` holds the rules that applied (``{"object": [...],
    "value": [...]}``), ``flow_name`` the primary flow's name in the package,
    ``primary_flow_ids`` the id of its stored copy (empty for a dry run),
    ``value_changes`` every value a value rule rewrote, ``unresolved_connections``
    the stages whose connection this server does not have (they cannot run),
    and ``release`` the new, active release (None for a dry run).
    """

    import_rule_changes: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"object": [], "value": []}
    )
    flow_name: str = ""
    primary_flow_ids: list[int] = field(default_factory=list)
    value_changes: list[dict[str, Any]] = field(default_factory=list)
    resolved_artifacts: list[dict[str, Any]] = field(default_factory=list)
    unresolved_connections: list[dict[str, Any]] = field(default_factory=list)
    release: Release | None = None
    dry_run: bool = False
    activated: bool = False
    message: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, client: Client, data: Mapping[str, Any]) -> ImportResult:
        """From the API's import answer."""
        changes = data.get("importRuleChanges") or {}
        release = data.get("release")
        return cls(
            import_rule_changes={
                "object": list(changes.get("object") or []),
                "value": list(changes.get("value") or []),
            },
            flow_name=str(data.get("flowName") or ""),
            primary_flow_ids=[int(i) for i in data.get("primaryFlowIds") or []],
            value_changes=list(data.get("valueChanges") or []),
            resolved_artifacts=list(data.get("resolvedArtifacts") or []),
            unresolved_connections=list(data.get("unresolvedConnections") or []),
            release=Release(client, release) if isinstance(release, Mapping) else None,
            dry_run=bool(data.get("dryRun")),
            activated=bool(data.get("activated")),
            message=str(data.get("message") or ""),
            raw=dict(data),
        )

    def to_dict(self) -> dict[str, Any]:
        """The result in the API's shape."""
        return dict(self.raw)


class Deployment:
    """A deployment of the server: its import rules, releases and runs."""

    def __init__(self, client: Client, record: Mapping[str, Any]) -> None:
        self._client = client
        self._record = dict(record)

    def __repr__(self) -> str:
        return f"Deployment(name={self.name!r}, deployment_id={self.deployment_id!r})"

    @property
    def deployment_id(self) -> int:
        """The deployment's id on the server."""
        return int(self._record["id"])

    @property
    def name(self) -> str:
        """The deployment's name."""
        return str(self._record["name"])

    @property
    def project_id(self) -> int | None:
        """The id of the project where the releases' flows are stored."""
        return _ref_id(self._record.get("project"))

    @property
    def record(self) -> dict[str, Any]:
        """The deployment as the API last returned it."""
        return dict(self._record)

    def _path(self, suffix: str = "") -> str:
        return f"/v4/deployments/{self.deployment_id}{suffix}"

    def refresh(self) -> Deployment:
        """Fetch the deployment again."""
        self._record = dict(self._client.get_json(self._path()))
        return self

    def rename(self, name: str) -> Deployment:
        """Rename the deployment; returns it.

        Raises:
            Conflict: another deployment has that name.
        """
        self._record = dict(self._client.request("PATCH", self._path(), json={"name": name}).json())
        return self

    def delete(self) -> httpx.Response:
        """Delete the deployment with its releases, rules and project (job history stays); the 204 answer."""
        return self._client.request("DELETE", self._path())

    # -- releases ---------------------------------------------------------------------

    @property
    def releases(self) -> ReleaseList:
        """The deployment's releases in creation order (fetched now)."""
        records = self._client.list_all("/v4/releases", deploymentId=self.deployment_id)
        return ReleaseList(Release(self._client, r) for r in records)

    @property
    def active_release(self) -> Release | None:
        """The release a run runs (fetched now), or None when no release is active."""
        return next((r for r in self.releases if r.active), None)

    def import_package(
        self, path: str | Path, dry_run: bool = False, notes: str = "", activate: str = "auto"
    ) -> ImportResult:
        """Import a package ZIP (as exported from a flow) as a new release, which becomes the active one.

        The deployment's object import rules, then its value rules in order,
        rewrite the package's flows while they are imported. ``dry_run``
        reports what the import would do and stores nothing. A release whose
        stages use connections this server lacks is stored but not activated
        (``result.activated`` is False, ``result.message`` says why) unless
        ``activate="force"``.

        Raises:
            NotFound: the file does not exist, or the deployment was deleted.
            ValidationFailed: the package is refused (an artifact version this
            server does not have, a rule naming a missing connection, ...).
        """
        source = Path(path)
        if not source.is_file():
            raise NotFound(f"Package file '{source}' does not exist")
        with source.open("rb") as handle:
            files: dict[str, Any] = {"data": (source.name, handle, "application/zip")}
            if notes:
                files["notes"] = (None, notes)  # a plain form field beside the file
            response = self._client.request(
                "POST",
                self._path("/releases/dryRun" if dry_run else "/releases"),
                files=files,
                params={"activate": activate} if activate != "auto" and not dry_run else None,
            )
        return ImportResult.from_dict(self._client, response.json())

    # -- import rules ---------------------------------------------------------------------

    def _rules(self, kind: str) -> list[dict[str, Any]]:
        body = self._client.get_json(self._path(f"/{kind}ImportRules"))
        return list(body.get("data") or []) if isinstance(body, Mapping) else []

    def _set_rules(self, kind: str, rules: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        if isinstance(rules, Mapping | str | bytes):
            raise TypeError(f"{kind} import rules are a list of rules (dicts), got {type(rules).__name__}")
        body = self._client.request(
            "PATCH", self._path(f"/{kind}ImportRules"), json=[dict(rule) for rule in rules]
        ).json()
        return list(body.get("deleted") or []) if isinstance(body, Mapping) else []

    @property
    def object_import_rules(self) -> list[dict[str, Any]]:
        """The object import rules (fetched now).

        ``[{"tableName": "connections", "onCondition": {"uuid"}, "withCondition": {"id"}}]``.
        """
        return self._rules("object")

    @property
    def value_import_rules(self) -> list[dict[str, Any]]:
        """The value import rules in the order they apply (fetched now): ``[{type, on, with}]``."""
        return self._rules("value")

    def set_object_import_rules(self, rules: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Replace the object import rules; returns the rules that were replaced (deleted).

        A rule maps a connection of the package, by uuid, to a connection of
        this server, by id: ``{"tableName": "connections", "onCondition":
        {"uuid": DEV_UUID}, "withCondition": {"id": LOCAL_ID}}``.

        Raises:
            ValidationFailed: a rule is malformed.
        """
        return self._set_rules("object", rules)

    def set_value_import_rules(self, rules: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Replace the value import rules, applied in order; returns the rules that were replaced.

        A rule is ``{"type": "fileLocation" | "s3Bucket" | "tableName" |
        "parameter", "on": LITERAL or "/REGEX/", "with": REPLACEMENT}``.

        Raises:
            ValidationFailed: a rule is malformed (e.g. an invalid regular expression).
        """
        return self._set_rules("value", rules)

    # -- running ---------------------------------------------------------------------------

    def run(self, overrides: Mapping[str, Any] | None = None) -> Job:
        """Run the primary flow of the active release; ``job.wait()`` waits for its end.

        Args:
            overrides: Parameter values for this run, ``{name: value}``.

        Raises:
            Conflict: the deployment has no active release.
            ValidationFailed: stages use connections this server does not have
            (``details["missingConnections"]`` names them).
        """
        body: dict[str, Any] = {}
        if overrides:
            data = [{"key": str(key), "value": value} for key, value in overrides.items()]
            body = {"runParameters": {"overrides": {"data": data}}}
        answer = self._client.request("POST", self._path("/run"), json=body).json()
        started = dict((answer.get("data") or [{}])[0])
        job = Job(self._client, started)
        with contextlib.suppress(NotFound):  # deleted meanwhile: keep what the run answered
            job.refresh()
        return job

    @property
    def jobs(self) -> list[Job]:
        """The jobs of the deployment's runs, newest first."""
        records = self._client.list_all("/v4/jobGroups", deploymentId=self.deployment_id)
        return [Job(self._client, r) for r in records]


class DeploymentList(Listing[Deployment]):
    """Deployments of the server; ``get(name=...)`` picks one."""

    _what = "deployment"


class Deployments:
    """``client.deployments``: create and find the server's deployments."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, name: str) -> Deployment:
        """Create a deployment and return it.

        Raises:
            Conflict: a deployment already has that name. Forbidden: a viewer.
        """
        record = self._client.request("POST", "/v4/deployments", json={"name": name}).json()
        return Deployment(self._client, record)

    def get_all(self, **criteria: Any) -> DeploymentList:
        """Every deployment (matching the given attributes, if any), in creation order."""
        name = criteria.get("name")
        records = self._client.list_all("/v4/deployments", name=name if isinstance(name, str) else None)
        return DeploymentList(Deployment(self._client, r) for r in records).get_all(**criteria)

    def get(self, name: str | None = None, deployment_id: int | None = None, **criteria: Any) -> Deployment:
        """The deployment with this name or id.

        Raises:
            NotFound: there is none.
        """
        if deployment_id is not None:
            return Deployment(self._client, self._client.get_json(f"/v4/deployments/{int(deployment_id)}"))
        if name is not None:
            criteria["name"] = name
        if not criteria:
            raise ValueError("Say which deployment: get(name='Production Orders') or get(deployment_id=3)")
        return self.get_all(**criteria).get(**criteria)

    def get_release(self, release_id: int) -> Release:
        """The release with this id, whatever its deployment.

        Raises:
            NotFound: there is none.
        """
        return Release(self._client, self._client.get_json(f"/v4/releases/{int(release_id)}"))

    def __iter__(self) -> Iterator[Deployment]:
        return iter(self.get_all())
