"""Streaming jobs: a flow with a streaming origin runs micro-batch after micro-batch until it is stopped.

Each micro-batch is one run of the flow through the same engine and stages
as a batch run: the origin reads what arrived (up to ``batch_size`` records,
waiting at most its ``batch_wait``), every destination commits it, then — and
only then — the origin acknowledges it or saves its offset in the store
(:meth:`~flowport.plugins.contract.Origin.acknowledge`). A micro-batch that
fails, or whose worker dies, is read again by the next one: at least once,
and effectively once into an ``upsert`` destination keyed on the message id.

Stopping (``POST /v4/jobGroups/{id}/stop``, ``flow.stop()``, or cancel) lets
the micro-batch in flight commit and acknowledge, then ends the job
Complete. A failed micro-batch ends the job Failed unless the flow's
``retry_pipeline_on_error`` (default on, as the seed) says to try again: after
``retry_initial_wait`` seconds, doubling up to ``retry_max_wait``, the count of
failures in a row and the last error on the job. The job's result carries
the running totals per stage, micro-batches, records/s and the last error;
they are written while it runs, so the API, SDK, CLI and UI show them live.
One job holds one worker slot for as long as it runs, by design.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowport.engine import FlowRun
from flowport.model.flow import Flow
from flowport.plugins.registry import PluginRegistry

__all__ = ["StreamState", "is_streaming", "run_stream"]

_log = logging.getLogger("flowport.services.jobs")


def is_streaming(flow: Flow, registry: PluginRegistry) -> bool:
    """Whether a flow's job runs as a stream: it is a streaming flow with at least one streaming origin."""
    if flow.type != "streaming":
        return False
    targets = {edge.to for edge in flow.edges}
    for stage in flow.stages:
        if stage.name in targets:
            continue
        try:
            cls = registry.plugin_class(stage.plugin)
        except Exception:
            continue
        if getattr(cls, "streaming", False):
            return True
    return False


@dataclass
class StreamState:
    """What a streaming job has done so far (shown live as the job's result)."""

    started: float = field(default_factory=time.monotonic)
    batches: int = 0
    records: int = 0
    failures_in_row: int = 0
    failures: int = 0
    last_error: str | None = None
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    stopped: bool = False
    #: Records waiting in the streaming origins after the last micro-batch (None: unknown).
    lag: int | None = None

    def add(self, metrics: Mapping[str, Mapping[str, Any]], origin_names: set[str]) -> None:
        """Add one committed micro-batch's metrics to the totals."""
        read = 0
        for name, values in metrics.items():
            into = self.stages.setdefault(name, {})
            for key, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    into[key] = round(into.get(key, 0) + value, 3)
            if name in origin_names:
                read += int(values.get("output_records", 0))
        if read:
            self.batches += 1
            self.records += read

    def result(self, status: str, error: str | None) -> dict[str, Any]:
        """The job's result: totals per stage, micro-batches, records/s, failures, the last error."""
        seconds = max(time.monotonic() - self.started, 1e-9)
        return {
            "status": status,
            "runId": None,
            "seconds": round(seconds, 3),
            "errorRecords": int(sum(s.get("error_records", 0) for s in self.stages.values())),
            "error": {"stage": None, "message": error} if error else None,
            "stages": [
                {"stage": name, **{_camel(k): v for k, v in values.items()}}
                for name, values in self.stages.items()
            ],
            "streaming": {
                "batches": self.batches,
                "records": self.records,
                "recordsPerSecond": round(self.records / seconds, 1),
                "failures": self.failures,
                "failuresInRow": self.failures_in_row,
                "lastError": self.last_error,
                "lag": self.lag,
                "stopped": self.stopped,
            },
        }


_CAMEL = {
    "input_records": "inputRecords",
    "output_records": "outputRecords",
    "error_records": "errorRecords",
    "input_batches": "inputBatches",
    "output_batches": "outputBatches",
}


def _camel(key: str) -> str:
    return _CAMEL.get(key, key)


def run_stream(
    flow: Flow,
    start: Callable[[Flow, str], FlowRun],
    progress: Callable[[StreamState, FlowRun | None], bool],
    *,
    run_prefix: str,
) -> tuple[str, str | None, StreamState]:
    """Run ``flow`` micro-batch after micro-batch; ``(status, error, state)`` when it ends.

    ``start(flow, run_id)`` starts one micro-batch run. ``progress(state, run)``
    is called about twice a second: it records the job's progress and returns
    True once a stop was asked for (the micro-batch in flight still commits).
    """
    config = flow.configuration
    batch_flow = flow.model_copy(deep=True)
    batch_flow.configuration.fail_on_no_output = False  # an empty or all-filtered micro-batch is normal
    targets = {edge.to for edge in flow.edges}
    origins = {s.name for s in flow.stages if s.name not in targets}
    state = StreamState()
    number = 0
    while True:
        if progress(state, None):
            state.stopped = True
            return "Complete", None, state
        number += 1
        run = start(batch_flow, f"{run_prefix}-{number}")
        stop = False
        while True:
            try:
                result = run.wait(0.5)
                break
            except TimeoutError:
                stop = progress(state, run) or stop
        if result.status == "Complete":
            state.failures_in_row = 0
            state.add({name: m.to_dict() for name, m in result.stages.items()}, origins)
            if run.lag:
                state.lag = sum(run.lag.values())
            if run.exhausted:
                _log.info("The streaming origin has nothing more to read: the job ends")
                return "Complete", None, state
            if stop:
                state.stopped = True
                return "Complete", None, state
            continue
        if result.status == "Canceled":
            state.stopped = True
            return "Complete", None, state
        state.failures += 1
        state.failures_in_row += 1
        state.last_error = f"{result.error_stage}: {result.error}" if result.error_stage else result.error
        if not config.retry_pipeline_on_error:
            return "Failed", state.last_error, state
        wait = min(
            float(config.retry_max_wait),
            float(config.retry_initial_wait) * 2 ** (state.failures_in_row - 1),
        )
        _log.warning(
            "Micro-batch %s failed (%s in a row): %s; trying again in %gs",
            number,
            state.failures_in_row,
            state.last_error,
            wait,
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if progress(state, None):
                state.stopped = True
                return "Complete", None, state
            time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
