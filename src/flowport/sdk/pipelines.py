"""Pipelines on the server: DAGs of tasks (flow, deployment, shell, dbt, SQL, HTTP), their runs, task locks.

>>> pipeline = client.pipelines.create({"name": "nightly", "tasks": [
...     {"name": "pull", "type": "shell", "command": ["git", "pull"], "cwd": "repo"},
...     {"name": "load", "type": "flow", "flow": "Wrangle Orders", "after": ["pull"]}]})
>>> run = pipeline.run(target="prod").wait()
>>> run.status, [(t["task"], t["status"]) for t in run.tasks]
>>> client.pipelines.locks()      # held task locks: name, task, pipeline, run, since
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowport.sdk.client import Client

__all__ = ["Pipeline", "PipelineRun", "Pipelines"]

_FINAL = ("Complete", "Failed", "Canceled")


class PipelineRun:
    """One run of a pipeline: its status and each task's status, tries, job, message and log."""

    def __init__(self, client: Client, record: dict[str, Any]) -> None:
        self._client = client
        self.record = dict(record)

    def __repr__(self) -> str:
        return f"PipelineRun(id={self.run_id!r}, status={self.status!r})"

    @property
    def run_id(self) -> int:
        """The run's id (also its job group's id)."""
        return int(self.record["id"])

    @property
    def status(self) -> str:
        """Created, Pending, InProgress, Complete, Failed or Canceled."""
        return str(self.record["status"])

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """The task runs (read again with :meth:`refresh`)."""
        return list(self.record.get("tasks") or [])

    def refresh(self) -> PipelineRun:
        """Read the run again."""
        self.record = self._client.get_json(f"/v4/pipelineRuns/{self.run_id}")
        return self

    def wait(self, timeout: float = 3600.0, poll: float = 0.5) -> PipelineRun:
        """Wait until the run has ended (TimeoutError after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while self.refresh().status not in _FINAL:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Pipeline run {self.run_id} is still {self.status} after {timeout:g}s")
            time.sleep(poll)
        return self

    def cancel(self) -> PipelineRun:
        """Stop the run: its running tasks are stopped, its locks released."""
        self.record = self._client.request("POST", f"/v4/pipelineRuns/{self.run_id}/cancel").json()
        return self


class Pipeline:
    """A stored pipeline."""

    def __init__(self, client: Client, record: dict[str, Any]) -> None:
        self._client = client
        self.record = dict(record)

    def __repr__(self) -> str:
        return f"Pipeline(id={self.pipeline_id!r}, name={self.name!r})"

    @property
    def pipeline_id(self) -> int:
        """The pipeline's id."""
        return int(self.record["id"])

    @property
    def name(self) -> str:
        """The pipeline's name."""
        return str(self.record["name"])

    @property
    def document(self) -> dict[str, Any]:
        """Its ``flowport.pipeline/1`` document."""
        if "document" not in self.record:
            self.record = self._client.get_json(f"/v4/pipelines/{self.pipeline_id}")
        return dict(self.record["document"])

    def run(self, **parameters: Any) -> PipelineRun:
        """Start a run with these parameter values (``target="prod"`` picks dbt's prod target).

        Raises:
            LocksHeld: another run holds one of its task locks (the message names it).
        """
        body = {"parameters": {k: str(v) for k, v in parameters.items()}}
        record = self._client.request("POST", f"/v4/pipelines/{self.pipeline_id}/run", json=body).json()
        return PipelineRun(self._client, record)

    def update(self, changes: Mapping[str, Any]) -> Pipeline:
        """Change top-level keys of its document (a whole document replaces it); validated as at creation."""
        self.record = self._client.request(
            "PATCH", f"/v4/pipelines/{self.pipeline_id}", json=dict(changes)
        ).json()
        return self

    def export(self, path: str | Path | None = None) -> bytes:
        """Its package ZIP (the pipeline and the flows its flow tasks run); written to ``path`` when given.
        Import it into a project with ``project.import_package(...)`` or ``flowport flows import``."""
        data = self._client.request("GET", f"/v4/pipelines/{self.pipeline_id}/package").content
        if path is not None:
            Path(path).write_bytes(data)
        return data

    def runs(self, **filters: Any) -> list[PipelineRun]:
        """Its runs, newest first (filter: ``status``)."""
        records = self._client.list_all("/v4/pipelineRuns", pipelineId=self.pipeline_id, **filters)
        return [PipelineRun(self._client, r) for r in records]

    def delete(self) -> None:
        """Delete it and its schedules (its runs stay in the history)."""
        self._client.request("DELETE", f"/v4/pipelines/{self.pipeline_id}")


class Pipelines:
    """The server's pipelines (``client.pipelines``)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, document: Mapping[str, Any], *, project: int | None = None) -> Pipeline:
        """Store a pipeline document (in the default project unless ``project`` is an id)."""
        params = {"projectId": project} if project is not None else None
        record = self._client.request("POST", "/v4/pipelines", params=params, json=dict(document)).json()
        return Pipeline(self._client, record)

    def get(self, pipeline_id: int | None = None, *, name: str | None = None) -> Pipeline:
        """The pipeline with this id or name (NotFound otherwise)."""
        from flowport.errors import NotFound

        if pipeline_id is not None:
            return Pipeline(self._client, self._client.get_json(f"/v4/pipelines/{pipeline_id}"))
        for record in self._client.list_all("/v4/pipelines", name=name):
            if record["name"] == name:
                return Pipeline(self._client, record)
        raise NotFound(f"No pipeline named '{name}'")

    def run(self, run_id: int) -> PipelineRun:
        """The pipeline run with this id."""
        return PipelineRun(self._client, self._client.get_json(f"/v4/pipelineRuns/{run_id}"))

    def locks(self) -> list[dict[str, Any]]:
        """Held task locks: ``{"name", "task", "pipeline", "run", "since"}``."""
        return list(self._client.get_json("/v4/locks")["data"])

    def list(self, **filters: Any) -> list[Pipeline]:
        """Every pipeline (filters: ``projectId``, ``name`` fragment)."""
        return [Pipeline(self._client, r) for r in self._client.list_all("/v4/pipelines", **filters)]
