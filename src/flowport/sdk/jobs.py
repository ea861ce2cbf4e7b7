"""Jobs: one run of a flow on the server (a job group in the v4 API)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx

from flowport.errors import RunFailed

if TYPE_CHECKING:
    from flowport.sdk.client import Client

__all__ = ["FINISHED", "Job"]

FINISHED = frozenset({"Complete", "Failed", "Canceled"})


class Job:
    """A run of a flow: its status, per-stage metrics and logs.

    ``status`` is fetched again on each read until the job has finished;
    :meth:`wait` polls until it has. ``Created``, ``Pending`` and
    ``InProgress`` are on the way; ``Complete``, ``Failed`` and ``Canceled``
    are final.
    """

    def __init__(self, client: Client, record: dict[str, Any]) -> None:
        self._client = client
        self._record = dict(record)

    def __repr__(self) -> str:
        return f"Job(job_id={self.job_id!r}, flow_id={self.flow_id!r}, status={self._status!r})"

    @property
    def job_id(self) -> int:
        """The job group's id."""
        return int(self._record["id"])

    @property
    def flow_id(self) -> int | None:
        """The id of the flow that ran (None once the flow is deleted)."""
        flow = self._record.get("flow")
        value = flow.get("id") if isinstance(flow, dict) else flow
        return int(value) if value is not None else None

    @property
    def _status(self) -> str:
        return str(self._record.get("status"))

    @property
    def status(self) -> str:
        """The current status (fetched from the server while the job is not finished)."""
        if self._status not in FINISHED:
            self.refresh()
        return self._status

    @property
    def finished(self) -> bool:
        """True once the status is Complete, Failed or Canceled."""
        return self.status in FINISHED

    @property
    def parameters(self) -> dict[str, Any]:
        """The parameter overrides the job was started with."""
        return dict(self._record.get("parameters") or {})

    @property
    def error(self) -> Any:
        """Why the job failed (None when it did not)."""
        return self._record.get("error")

    @property
    def result(self) -> dict[str, Any] | None:
        """The run's result once finished (status, per-stage numbers, timings)."""
        result = self._record.get("result")
        return dict(result) if isinstance(result, dict) else None

    @property
    def record(self) -> dict[str, Any]:
        """The job group as the API last returned it."""
        return dict(self._record)

    def refresh(self) -> Job:
        """Fetch the job group again."""
        self._record = dict(self._client.get_json(f"/v4/jobGroups/{self.job_id}"))
        return self

    def wait(self, timeout: float = 300.0, poll: float = 0.5, *, raise_on_failure: bool = False) -> Job:
        """Wait until the job has finished and return it.

        Args:
            timeout: Seconds to wait at most.
            poll: Seconds between two status checks.
            raise_on_failure: Raise :class:`RunFailed` when it ends Failed or Canceled.

        Raises:
            TimeoutError: still running after ``timeout`` seconds (the job keeps running).
        """
        deadline = time.monotonic() + timeout
        while self.status not in FINISHED:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"Job {self.job_id} is still {self._status} after {timeout:g}s; "
                    "call wait() again or cancel()"
                )
            time.sleep(min(poll, left))
        if raise_on_failure and self._status != "Complete":
            raise RunFailed(
                f"Job {self.job_id} ended {self._status}: {self.error or 'see job.logs'}",
                details=self._record,
            )
        return self

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """Per-stage metrics: ``{stage: {inputRecords, outputRecords, errorRecords, ...}}``."""
        body = self._client.get_json(f"/v4/jobGroups/{self.job_id}/metrics")
        stages = body.get("stages") if isinstance(body, dict) else None
        if isinstance(stages, list):  # tolerate a list of {stage: name, ...}
            return {str(item.get("stage")): dict(item) for item in stages if isinstance(item, dict)}
        return {str(name): dict(values) for name, values in (stages or {}).items()}

    @property
    def logs(self) -> str:
        """The job's log as text (credentials are scrubbed by the server)."""
        return self._client.request("GET", f"/v4/jobGroups/{self.job_id}/logs").text

    @property
    def jobs(self) -> list[dict[str, Any]]:
        """The jobs of this job group, as the API returns them."""
        return self._client.list_all(f"/v4/jobGroups/{self.job_id}/jobs")

    @property
    def streaming(self) -> dict[str, Any]:
        """A streaming job's totals: ``batches``, ``records``, ``recordsPerSecond``, ``failures``,
        ``failuresInRow``, ``lastError``, ``stopped`` (empty for a batch job)."""
        body = self._client.get_json(f"/v4/jobGroups/{self.job_id}/metrics")
        value = body.get("streaming") if isinstance(body, dict) else None
        return dict(value) if isinstance(value, dict) else {}

    def stop(self) -> Job:
        """Ask the server to stop a streaming job (the micro-batch in flight commits first)."""
        response: httpx.Response = self._client.request("POST", f"/v4/jobGroups/{self.job_id}/stop")
        body = response.json() if response.content else None
        if isinstance(body, dict) and "id" in body:
            self._record = dict(body)
        else:
            self.refresh()
        return self

    def cancel(self) -> Job:
        """Ask the server to cancel the job; returns it with the status after the request."""
        response: httpx.Response = self._client.request("POST", f"/v4/jobGroups/{self.job_id}/cancel")
        body = response.json() if response.content else None
        if isinstance(body, dict) and "id" in body:
            self._record = dict(body)
        else:
            self.refresh()
        return self
