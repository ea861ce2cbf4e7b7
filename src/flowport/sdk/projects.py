"""Projects: where flows and parameter sets live, and what you do to them (create, update, export, ...)."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import httpx

from flowport.errors import NotFound
from flowport.sdk._listing import Listing
from flowport.sdk.flows import Flow, FlowList, flow_from_record
from flowport.sdk.parameter_sets import ParameterSet, ParameterSetList, parameters_dict
from flowport.sdk.response import Response

if TYPE_CHECKING:
    from flowport.sdk.client import Client

__all__ = ["DEFAULT_EXPORT_FILE", "ImportReport", "ImportedFlows", "Project", "ProjectList", "Projects"]

DEFAULT_EXPORT_FILE = "flows.zip"
# Chunks of an export streamed with export_flow(..., stream=True).
_CHUNK_BYTES = 64 * 1024


class ImportedFlows(list[Flow]):
    """The flows an import stored, with the names it skipped (a conflict resolved by ``skip``)."""

    def __init__(self, flows: Iterable[Flow], *, skipped: Iterable[str] = ()) -> None:
        super().__init__(flows)
        self.skipped = list(skipped)

    def __repr__(self) -> str:
        return f"ImportedFlows({list(self)!r}, skipped={self.skipped!r})"


ConflictResolution = Literal["skip", "replace", "rename"]
_RESOLUTIONS = ("skip", "replace", "rename")
_CHUNK = 64 * 1024


@dataclass
class ImportReport:
    """What a package import did (or, for a dry run, would do).

    ``flows`` are the imported (or, dry run, would-be) flows as the API
    returns them; ``skipped`` and ``replaced`` are flow names; ``renamed``
    holds ``{"from", "to"}``; ``unresolved_connections`` the package's
    connection references that do not resolve on the server.
    """

    flows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    renamed: list[dict[str, Any]] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unresolved_connections: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False
    #: The package's pipelines: ``{"id", "name", "action"}`` (created, replaced, renamed, skipped).
    pipelines: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, dry_run: bool = False) -> ImportReport:
        """From the API's import answer."""
        return cls(
            flows=list(data.get("data") or []),
            skipped=[str(name) for name in data.get("skipped") or []],
            renamed=list(data.get("renamed") or []),
            replaced=[str(name) for name in data.get("replaced") or []],
            unresolved_connections=list(data.get("unresolvedConnections") or []),
            dry_run=dry_run,
            pipelines=list(data.get("pipelines") or []),
        )

    def to_dict(self) -> dict[str, Any]:
        """The report in the API's shape."""
        return {
            "data": self.flows,
            "count": len(self.flows),
            "skipped": self.skipped,
            "renamed": self.renamed,
            "replaced": self.replaced,
            "unresolvedConnections": self.unresolved_connections,
            "dryRun": self.dry_run,
            **({"pipelines": self.pipelines} if self.pipelines else {}),
        }


def _package_types(source: Path) -> set[str]:
    """The flow types a package's manifest lists (empty when it cannot be read: the server will say why)."""
    try:
        with zipfile.ZipFile(source) as archive:
            manifest = json.loads(archive.read("manifest.json"))
        return {str(entry.get("type")) for entry in manifest.get("flows", []) if isinstance(entry, dict)}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, AttributeError):
        return set()


class Project:
    """A project of the server: its flows and parameter sets, and the operations on them."""

    def __init__(self, client: Client, record: Mapping[str, Any]) -> None:
        self._client = client
        self._record = dict(record)

    def __repr__(self) -> str:
        return (
            f"Project(name={self.name!r}, description={self.description!r}, project_id={self.project_id!r})"
        )

    @property
    def project_id(self) -> int:
        """The project's id on the server."""
        return int(self._record["id"])

    @property
    def name(self) -> str:
        """The project's name."""
        return str(self._record["name"])

    @property
    def description(self) -> str:
        """What the project is for."""
        return str(self._record.get("description") or "")

    # -- flows ------------------------------------------------------------------

    @property
    def flows(self) -> FlowList:
        """Every flow of the project (fetched now), searchable with ``get``/``get_all``."""
        records = self._client.list_all("/v4/flows", projectId=self.project_id, embed="document")
        return FlowList(flow_from_record(self._client, r, self) for r in records)

    def _flow(self, record: Mapping[str, Any]) -> Flow:
        return flow_from_record(self._client, record, self)

    def create_flow(
        self,
        name: str,
        description: str = "",
        environment: Any = None,
        flow_type: Literal["batch", "streaming"] = "streaming",
    ) -> Flow:
        """Create an empty flow in the project and return it.

        Args:
            name: Unique in the project.
            description: Free text.
            environment: Accepted for the seed's signature; Flowport runs flows
                on the server's own executor, so it is not used.
            flow_type: ``streaming`` (the default, as the seed: a ``StreamingFlow``) or ``batch``.

        Raises:
            Conflict: a flow of the project already has that name.
        """
        del environment
        if flow_type not in ("batch", "streaming"):
            raise ValueError(f"flow_type is 'batch' or 'streaming', got {flow_type!r}")
        record = self._client.request(
            "POST",
            "/v4/flows",
            params={"projectId": self.project_id},
            json={"name": name, "description": description, "type": flow_type},
        ).json()
        return self._flow(record)

    def _check_flow(self, flow: Flow) -> None:
        if not isinstance(flow, Flow):
            raise TypeError(f"Expected a Flow (project.flows.get(...)), got {type(flow).__name__}")

    def update_flow(self, flow: Flow) -> Response:
        """Save the flow: send its whole document (stages, configuration, ...). Returns ``<Response [200]>``.

        Raises:
            ValidationFailed: the document is not valid. Conflict: the name is taken.
        """
        self._check_flow(flow)
        response = self._client.request("PATCH", f"/v4/flows/{flow.flow_id}", json=flow.to_dict())
        flow._saved_as(response.json())
        return Response(response)

    def duplicate_flow(self, flow: Flow, name: str, description: str = "") -> Flow:
        """Copy the stored flow under a new name (and a new uuid) and return the copy.

        Raises:
            Conflict: a flow of the project already has that name.
        """
        self._check_flow(flow)
        record = self._client.request(
            "POST", f"/v4/flows/{flow.flow_id}/duplicate", json={"name": name, "description": description}
        ).json()
        return self._flow(record)

    def delete_flow(self, flow: Flow) -> Response:
        """Delete the flow (its jobs' history stays). Returns ``<Response [204]>``."""
        self._check_flow(flow)
        return Response(self._client.request("DELETE", f"/v4/flows/{flow.flow_id}"))

    # -- packages -------------------------------------------------------------------

    def _write(self, response: httpx.Response, destination: str | Path | None) -> Path:
        path = Path(destination) if destination is not None else Path(DEFAULT_EXPORT_FILE)
        if path.is_dir():
            path = path / DEFAULT_EXPORT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.part")
        temporary.write_bytes(response.content)
        temporary.replace(path)
        return path

    @overload
    def export_flow(
        self,
        flow: Flow,
        destination: str | Path | None = None,
        with_plain_text_credentials: bool = False,
        *,
        stream: Literal[False] = False,
    ) -> Path: ...

    @overload
    def export_flow(
        self,
        flow: Flow,
        destination: str | Path | None = None,
        with_plain_text_credentials: bool = False,
        *,
        stream: Literal[True],
    ) -> Iterator[bytes]: ...

    def export_flow(
        self,
        flow: Flow,
        destination: str | Path | None = None,
        with_plain_text_credentials: bool = False,
        *,
        stream: bool = False,
    ) -> Path | Iterator[bytes]:
        """Export one flow as a package ZIP and return where it was written (default ``flows.zip``).

        ``with_plain_text_credentials`` writes the referenced connections'
        credentials in clear (admins only). ``stream=True`` writes no file
        and yields the ZIP's bytes in chunks instead (as the seed does).
        """
        self._check_flow(flow)
        response = self._client.request(
            "GET",
            f"/v4/flows/{flow.flow_id}/package",
            params={"withPlainTextCredentials": True} if with_plain_text_credentials else None,
        )
        if stream:
            return response.iter_bytes(_CHUNK_BYTES)
        return self._write(response, destination)

    def export_flows(
        self,
        flows: Iterable[Flow],
        destination: str | Path | None = None,
        with_plain_text_credentials: bool = False,
    ) -> Path:
        """Export several flows, all of one type, as one package ZIP; returns where it was written.

        Raises:
            ValueError: no flows, or batch and streaming flows mixed.
        """
        chosen = list(flows)
        if not chosen:
            raise ValueError("export_flows() needs at least one flow")
        for flow in chosen:
            self._check_flow(flow)
        types = {flow.flow_type for flow in chosen}
        if len(types) > 1:
            raise ValueError(
                "All flows exported together must be of one type: export the batch and the streaming "
                "flows separately"
            )
        response = self._client.request(
            "POST",
            "/v4/packages",
            json={
                "flowIds": [flow.flow_id for flow in chosen],
                "withPlainTextCredentials": with_plain_text_credentials,
            },
        )
        return self._write(response, destination)

    def import_package(
        self,
        source: str | Path,
        conflict_resolution: ConflictResolution = "skip",
        *,
        dry_run: bool = False,
    ) -> ImportReport:
        """Import a package ZIP into the project (or, ``dry_run``, only report what would happen).

        ``conflict_resolution`` says what to do with a flow whose name or uuid
        the project already has: ``skip`` it, ``replace`` the existing flow,
        or ``rename`` the imported one.

        Raises:
            ValidationFailed: the package is refused (``details`` names the entry and the problem).
        """
        if conflict_resolution not in _RESOLUTIONS:
            raise ValueError(
                f"conflict_resolution is one of {', '.join(_RESOLUTIONS)}, got {conflict_resolution!r}"
            )
        path = Path(source)
        if not path.is_file():
            raise NotFound(f"Package file '{path}' does not exist")
        with path.open("rb") as handle:
            response = self._client.request(
                "POST",
                "/v4/flows/package/dryRun" if dry_run else "/v4/flows/package",
                params={"conflictResolution": conflict_resolution, "projectId": self.project_id},
                files={"data": (path.name, handle, "application/zip")},
            )
        return ImportReport.from_dict(response.json(), dry_run=dry_run)

    def import_flows(
        self,
        source: str | Path,
        conflict_resolution: ConflictResolution = "skip",
        type: Literal["batch", "streaming"] | None = None,
    ) -> Flow | list[Flow]:
        """Import the flows of a package ZIP; returns the imported flow, or a list when there are several.

        Flows skipped because of a conflict are not returned; the list says
        which were skipped (``.skipped``, and in its repr), so an import that
        skips every flow answers ``ImportedFlows([], skipped=['dummy_flow'])``.

        Args:
            source: The package ZIP (as written by :meth:`export_flow`).
            conflict_resolution: ``skip``, ``replace`` or ``rename`` (see :meth:`import_package`).
            type: When given, the package must hold only flows of this type.

        Raises:
            ValueError: ``type`` is given and the package holds flows of another type.
            ValidationFailed: the package is refused.
        """
        if type is not None:
            found = _package_types(Path(source)) - {type}
            if found:
                raise ValueError(f"The package holds {', '.join(sorted(found))} flows, not only {type} flows")
        report = self.import_package(source, conflict_resolution)
        flows = [self._flow(record) for record in report.flows]
        if not flows and report.skipped:
            # Say so: an empty list would look like an empty package.
            return ImportedFlows([], skipped=report.skipped)
        return flows[0] if len(flows) == 1 else ImportedFlows(flows, skipped=report.skipped)

    # -- parameter sets -------------------------------------------------------------------

    @property
    def parameter_sets(self) -> ParameterSetList:
        """The project's parameter sets (fetched now); ``get(name=...)`` picks one."""
        records = self._client.list_all("/v4/parameterSets", projectId=self.project_id)
        return ParameterSetList(ParameterSet(self._client, r) for r in records)

    def create_parameter_set(
        self, name: str, parameters: Mapping[str, Any] | Iterable[Any], description: str = ""
    ) -> ParameterSet:
        """Create a parameter set; ``parameters`` is ``{name: value}`` (or ``{"key", "value"}`` items).

        Raises:
            Conflict: the project already has a set of that name.
            ValidationFailed: a parameter name is not an identifier.
        """
        record = self._client.request(
            "POST",
            "/v4/parameterSets",
            params={"projectId": self.project_id},
            json={"name": name, "description": description, "parameters": parameters_dict(parameters)},
        ).json()
        return ParameterSet(self._client, record)

    def update_parameter_set(self, parameter_set: ParameterSet) -> ParameterSet:
        """Save a parameter set's parameters and description; returns it as stored."""
        record = self._client.request(
            "PATCH",
            f"/v4/parameterSets/{parameter_set.parameter_set_id}",
            json={"description": parameter_set.description, "parameters": parameter_set.parameters},
        ).json()
        return ParameterSet(self._client, record)

    def delete_parameter_set(self, parameter_set: ParameterSet) -> httpx.Response:
        """Delete a parameter set. Returns the 204 answer."""
        return self._client.request("DELETE", f"/v4/parameterSets/{parameter_set.parameter_set_id}")


class ProjectList(Listing[Project]):
    """Projects of the server; ``get(name=...)`` picks one."""

    _what = "project"


class Projects:
    """``client.projects``: find the server's projects."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def get_all(self, **criteria: Any) -> ProjectList:
        """Every project (matching the given attributes, if any)."""
        name = criteria.get("name")
        records = self._client.list_all("/v4/projects", name=name if isinstance(name, str) else None)
        return ProjectList(Project(self._client, r) for r in records).get_all(**criteria)

    def get(self, name: str | None = None, project_id: int | None = None, **criteria: Any) -> Project:
        """The project with this name or id.

        Raises:
            NotFound: there is none.
        """
        if project_id is not None:
            return Project(self._client, self._client.get_json(f"/v4/projects/{project_id}"))
        if name is not None:
            criteria["name"] = name
        if not criteria:
            raise ValueError("Say which project: get(name='default')")
        return self.get_all(**criteria).get(**criteria)

    def __iter__(self) -> Iterator[Project]:
        return iter(self.get_all())

    def create(self, name: str, description: str = "") -> Project:
        """Create a project.

        Raises:
            Conflict: a project of that name exists.
        """
        record = self._client.request("POST", "/v4/projects", json={"name": name, "description": description})
        return Project(self._client, record.json())
