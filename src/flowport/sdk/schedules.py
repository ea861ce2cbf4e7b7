"""Schedules on the server: when a flow or a deployment's active release runs on its own.

>>> schedule = client.schedules.create('weekly orders', deployment=deployment, cron='0 6 * * 1',
...                                    timezone='Europe/London')
>>> schedule.next_logical_date, schedule.next_run_at   # the interval the next run is for, and when it starts
>>> schedule.pause(); schedule.resume()
>>> schedule.backfill('2026-11-01T00:00:00Z', '2026-11-30T00:00:00Z', dry_run=True)
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowport.sdk.client import Client

__all__ = ["Schedule", "Schedules"]


def _ref(value: Any) -> dict[str, int] | None:
    if value is None:
        return None
    for attribute in ("deployment_id", "flow_id", "pipeline_id"):
        if hasattr(value, attribute):
            return {"id": int(getattr(value, attribute))}
    return {"id": int(value)}


def _when(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.isoformat()


class Schedule:
    """One schedule: its timing, its last run and its next run (``next_logical_date``, ``next_run_at``)."""

    def __init__(self, client: Client, record: dict[str, Any]) -> None:
        self._client = client
        self.record = dict(record)

    def __repr__(self) -> str:
        return f"Schedule(id={self.schedule_id!r}, name={self.name!r}, cron={self.cron!r})"

    @property
    def schedule_id(self) -> int:
        """The schedule's id."""
        return int(self.record["id"])

    @property
    def name(self) -> str:
        """The schedule's name."""
        return str(self.record["name"])

    @property
    def cron(self) -> str:
        """Its cron expression or preset."""
        return str(self.record["cron"])

    @property
    def paused(self) -> bool:
        """Whether it is paused."""
        return bool(self.record["paused"])

    @property
    def next_logical_date(self) -> str | None:
        """The logical date (interval start) of the next run."""
        return self.record.get("nextLogicalDate")

    @property
    def next_run_at(self) -> str | None:
        """When the next run may start (its interval's end); None when paused or done."""
        return self.record.get("nextRunAt")

    @property
    def last_run(self) -> dict[str, Any] | None:
        """The last run: ``{"id", "status", "trigger", "logicalDate", ...}``."""
        return self.record.get("lastRun")

    def refresh(self) -> Schedule:
        """Read the schedule again."""
        self.record = self._client.get_json(f"/v4/schedules/{self.schedule_id}")
        return self

    def update(self, **changes: Any) -> Schedule:
        """Change fields (``cron``, ``timezone``, ``startDate``, ``maxActiveRuns``, ``parameters`` ...)."""
        self.record = self._client.request("PATCH", f"/v4/schedules/{self.schedule_id}", json=changes).json()
        return self

    def pause(self) -> Schedule:
        """Stop creating runs until resumed."""
        self.record = self._client.request("POST", f"/v4/schedules/{self.schedule_id}/pause").json()
        return self

    def resume(self, *, catch_up: bool = False) -> Schedule:
        """Resume; the intervals missed while paused are skipped unless ``catch_up``."""
        self.record = self._client.request(
            "POST", f"/v4/schedules/{self.schedule_id}/resume", params={"catchUp": catch_up}
        ).json()
        return self

    def runs(self, limit: int = 25) -> list[dict[str, Any]]:
        """Its runs, newest first (job groups)."""
        body = self._client.get_json(f"/v4/schedules/{self.schedule_id}/runs", limit=limit)
        return list(body["data"])

    def backfill(
        self,
        start: datetime | str,
        end: datetime | str,
        *,
        reprocess: str = "none",
        max_active_runs: int = 1,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Create the runs of ``[start, end]`` in order (``reprocess``: none, failed or all);
        ``dry_run`` answers the plan only. Returns ``{"backfill", "plan"}``."""
        body = {
            "start": _when(start),
            "end": _when(end),
            "reprocess": reprocess,
            "maxActiveRuns": max_active_runs,
            "dryRun": dry_run,
        }
        result: dict[str, Any] = self._client.request(
            "POST", f"/v4/schedules/{self.schedule_id}/backfills", json=body
        ).json()
        return result

    def delete(self) -> None:
        """Delete the schedule (its runs stay in the history)."""
        self._client.request("DELETE", f"/v4/schedules/{self.schedule_id}")


class Schedules:
    """The server's schedules (``client.schedules``)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        name: str,
        *,
        cron: str,
        flow: Any = None,
        deployment: Any = None,
        pipeline: Any = None,
        lock_policy: str = "wait",
        timezone: str = "UTC",
        start_date: datetime | str | None = None,
        end_date: datetime | str | None = None,
        catchup: bool = False,
        max_active_runs: int = 1,
        paused: bool = False,
        parameters: dict[str, Any] | None = None,
        description: str = "",
    ) -> Schedule:
        """Schedule a flow, a deployment (its active release: a new release keeps the schedule) or a pipeline.

        ``flow``/``deployment``/``pipeline`` take an SDK object or an id; ``lock_policy`` (wait or
        skip) says what a pipeline's scheduled run does while its task locks are held.
        """
        body: dict[str, Any] = {
            "name": name,
            "description": description,
            "cron": cron,
            "timezone": timezone,
            "catchup": catchup,
            "maxActiveRuns": max_active_runs,
            "paused": paused,
            "parameters": dict(parameters or {}),
        }
        if flow is not None:
            body["flow"] = _ref(flow)
        if deployment is not None:
            body["deployment"] = _ref(deployment)
        if pipeline is not None:
            body["pipeline"] = _ref(pipeline)
            body["lockPolicy"] = lock_policy
        if start_date is not None:
            body["startDate"] = _when(start_date)
        if end_date is not None:
            body["endDate"] = _when(end_date)
        return Schedule(self._client, self._client.request("POST", "/v4/schedules", json=body).json())

    def get(self, schedule_id: int | None = None, *, name: str | None = None) -> Schedule:
        """The schedule with this id or name (NotFound otherwise)."""
        from flowport.errors import NotFound

        if schedule_id is not None:
            return Schedule(self._client, self._client.get_json(f"/v4/schedules/{schedule_id}"))
        for record in self._client.list_all("/v4/schedules"):
            if record["name"] == name:
                return Schedule(self._client, record)
        raise NotFound(f"No schedule named '{name}'")

    def list(self, **filters: Any) -> list[Schedule]:
        """Every schedule (filters: ``flowId``, ``deploymentId``, ``paused``)."""
        return [Schedule(self._client, r) for r in self._client.list_all("/v4/schedules", **filters)]

    def scheduler(self) -> dict[str, Any]:
        """The active scheduler's lease: ``{"holder", "acquiredAt", "expiresAt", "active"}``."""
        result: dict[str, Any] = self._client.get_json("/v4/scheduler")
        return result
