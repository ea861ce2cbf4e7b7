"""Running a batch flow locally.

Every stage runs in its own thread; stages are joined by bounded queues of
Arrow record batches, so a fast origin blocks instead of filling memory.
pyarrow and DuckDB release the GIL while they work, so the stages of a
flow overlap on several cores. A stage with several outputs sends each
batch to all of them (fan-out, no copy: batches are immutable); a stage
with several inputs takes batches from all of them (fan-in).

Destinations write beside their targets and are committed only when every
stage has finished without error; on failure or cancellation they are
aborted and targets stay as they were. Executors run after the commit.
Error records go to the flow's error stage, which is committed whatever
the outcome, so a failed run still shows why.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from flowport.connections import duckdb_spares
from flowport.engine.error_records import error_table
from flowport.engine.fusion import FusedChain, plan_fusion
from flowport.engine.lineage import OriginalRecords, with_row_ids
from flowport.engine.metrics import StageMetrics
from flowport.engine.plan import PlannedStage, RunContext, build_plan
from flowport.errors import FlowportError, RunFailed, StageError
from flowport.model.flow import Flow, StageKind
from flowport.plugins.contract import (
    Destination,
    ErrorBatch,
    ErrorSink,
    Executor,
    Origin,
    Processor,
    StageOutput,
)
from flowport.plugins.registry import PluginRegistry
from flowport.stages._duckdb import shared_database_ahead

__all__ = ["FlowRun", "RunResult", "RunStatus", "databases_ahead", "run_flow"]

log = logging.getLogger("flowport.engine")

RunStatus = Literal["Created", "InProgress", "Complete", "Failed", "Canceled"]


class _End:
    """Sentinel: one upstream stage has finished."""


_END = _End()
_POLL = 0.05
# Error messages quoted when a threshold fails a run.
_FIRST_ERRORS = 3


class _Stop(Exception):
    """The run was cancelled or failed elsewhere; unwind quietly."""


@dataclass
class RunResult:
    """The outcome of a run."""

    run_id: str
    status: RunStatus
    stages: dict[str, StageMetrics]
    error: str | None = None
    error_stage: str | None = None
    seconds: float = 0.0
    error_records: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The result as plain data (the shape ``flowport run --json`` prints)."""
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "stages": {name: m.to_dict() for name, m in self.stages.items()},
            "error_records": self.error_records,
        }
        if self.error is not None:
            data["error"] = {"stage": self.error_stage, "message": self.error}
        return data


def _opens_while_running(p: PlannedStage) -> bool:
    plugin = p.plugin
    return (
        isinstance(plugin, Destination)
        and plugin.opens_while_running
        and not callable(getattr(plugin, "copy_target", None))
    )


@dataclass
class _Failure:
    stage: str | None
    message: str
    exc: BaseException


@dataclass
class _Shared:
    cancel: threading.Event
    queues: dict[str, queue.Queue[Any]]
    error_queue: queue.Queue[Any]
    #: The stages opened (or, for those in ``opening``, being opened) so far; closed at the end.
    opened: list[PlannedStage] = field(default_factory=list)
    #: Destinations that open in their own thread, while the stages before them already run.
    opening: frozenset[str] = frozenset()
    failure: list[_Failure] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, stage: str | None, exc: BaseException) -> None:
        with self.lock:
            if not self.failure:
                message = exc.message if isinstance(exc, FlowportError) else f"{type(exc).__name__}: {exc}"
                self.failure.append(_Failure(stage, message, exc))
        self.cancel.set()

    def put(self, q: queue.Queue[Any], item: Any) -> None:
        while True:
            if self.cancel.is_set():
                raise _Stop
            try:
                q.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue

    def get(self, q: queue.Queue[Any]) -> Any:
        while True:
            if self.cancel.is_set():
                raise _Stop
            try:
                return q.get(timeout=_POLL)
            except queue.Empty:
                continue


def _batches_of(data: pa.RecordBatch | pa.Table | None) -> list[pa.RecordBatch]:
    if data is None:
        return []
    if isinstance(data, pa.RecordBatch):
        return [data] if data.num_rows else []
    return [b for b in data.to_batches() if b.num_rows]


class FlowRun:
    """One run of a flow: start it, watch its metrics, cancel it, wait for the result."""

    def __init__(self, flow: Flow, registry: PluginRegistry, context: RunContext | None = None) -> None:
        self.flow = flow
        self.context = context or RunContext()
        self.registry = registry
        self.metrics: dict[str, StageMetrics] = {s.name: StageMetrics() for s in flow.stages}
        self.status: RunStatus = "Created"
        self._thread: threading.Thread | None = None
        self._result: RunResult | None = None
        self._error_count = 0
        # The first few (code, message) of each stage's error records, for a threshold's message.
        self._first_errors: dict[str, list[tuple[str, str]]] = {}
        self.fused: dict[str, FusedChain] = {}
        #: Set when the run succeeded and a streaming origin has nothing more to read, ever.
        self.exhausted = False
        #: Records waiting in each streaming origin after this run's micro-batch, where it knows.
        self.lag: dict[str, int] = {}

    # -- public API -------------------------------------------------------
    def start(self) -> FlowRun:
        """Start the run in the background."""
        self._thread = threading.Thread(target=self._run_safely, name=f"flowport-run-{self.context.run_id}")
        self.status = "InProgress"
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> RunResult:
        """Block until the run ends and return its result."""
        if self._thread is None:
            self.start()
        assert self._thread is not None
        self._thread.join(timeout)
        if self._result is None:
            raise TimeoutError(f"run {self.context.run_id} still in progress after {timeout}s")
        return self._result

    def cancel(self) -> None:
        """Ask every stage to stop; destinations are aborted."""
        self._cancelled_by_user = True
        self.context.cancel_event.set()

    @property
    def error_records(self) -> int:
        """Error records sent to the error stage so far."""
        return self._error_count

    # -- the run ----------------------------------------------------------
    _cancelled_by_user = False

    def _run_safely(self) -> None:
        started = time.perf_counter()
        try:
            self._result = self._run(started)
        except BaseException as exc:  # never leave wait() hanging
            if isinstance(exc, FlowportError):
                # An expected failure: the result carries it to the caller, who reports it.
                log.info("run %s failed: %s", self.context.run_id, exc.message)
            else:
                log.exception("run %s crashed", self.context.run_id)
            message = exc.message if isinstance(exc, FlowportError) else f"{type(exc).__name__}: {exc}"
            self._result = RunResult(
                self.context.run_id, "Failed", self.metrics, message, None, time.perf_counter() - started
            )
        self.status = self._result.status

    def _run(self, started: float) -> RunResult:
        # The DuckDB databases a fused plan's probe and a file origin take are made on the other
        # core while this thread imports the stage plugins and builds the plan.
        databases_ahead()
        planned, error_sink = build_plan(self.flow, self.registry, self.context)
        queue_size = self.flow.configuration.queue_size
        policy = self.flow.configuration.error_record_policy
        executors = [p for p in planned if p.kind == StageKind.EXECUTOR]
        opened: list[PlannedStage] = []
        sink_opened = False
        # A destination that connects to another system opens in its own thread, while the
        # stages before it already read (a database connection and its first checks take
        # a few hundred milliseconds; the origin's batches wait in the bounded queue).
        opening = frozenset(p.name for p in planned if _opens_while_running(p))
        try:
            error_sink.open()
            sink_opened = True
            for p in planned:
                if p.name not in opening:
                    p.plugin.open()
                    opened.append(p)
            chains = plan_fusion(planned, policy) if self.flow.configuration.fuse_stages else []
        except BaseException:
            self._close(opened, error_sink if sink_opened else None)
            raise
        self.fused = {chain.origin.name: chain for chain in chains}
        fused_names = {step.stage.name for chain in chains for step in chain.steps}
        data_stages = [p for p in planned if p.kind != StageKind.EXECUTOR and p.name not in fused_names]
        shared = _Shared(
            cancel=self.context.cancel_event,
            queues={
                p.name: queue.Queue(maxsize=queue_size) for p in data_stages if p.kind != StageKind.ORIGIN
            },
            error_queue=queue.Queue(maxsize=queue_size * 4),
            opened=opened,
            opening=opening,
        )
        # Enough to hold every batch that can be in flight at once.
        capacity = queue_size * (len(shared.queues) + 1) + 2 * len(planned) + 4
        originals = OriginalRecords(capacity) if policy == "ORIGINAL_RECORD" else None
        data_names = {p.name for p in data_stages}
        # How many upstream stages feed each stage (a fused chain feeds from its origin's thread).
        self._producers: dict[str, int] = dict.fromkeys(data_names, 0)
        for p in data_stages:
            chain = self.fused.get(p.name)
            for target in chain.outputs if chain is not None else p.outputs:
                if target in self._producers:
                    self._producers[target] += 1
        try:
            sink_thread = threading.Thread(
                target=self._error_sink_loop, args=(error_sink, shared), name="flowport-errors", daemon=True
            )
            sink_thread.start()
            threads = [
                threading.Thread(
                    target=self._stage_loop,
                    args=(p, shared, originals, data_names),
                    name=f"flowport-{p.name}",
                    daemon=True,
                )
                for p in data_stages
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self._finish_error_sink(sink_thread, shared)
            if not shared.failure and not self.context.cancel_event.is_set():
                self._check_thresholds(planned, shared)
            if not shared.failure and not self.context.cancel_event.is_set():
                self._commit(data_stages, shared)
            if not shared.failure and not self.context.cancel_event.is_set():
                self._execute(executors, shared)
        finally:
            if shared.failure or self.context.cancel_event.is_set():
                self._abort(data_stages)
            try:
                if isinstance(error_sink, ErrorSink):
                    error_sink.commit()
            except Exception as exc:
                log.error("error stage could not store error records: %s", exc)
                shared.fail(self.flow.error_stage.name, exc)
            if not shared.failure and not self.context.cancel_event.is_set():
                self._acknowledge(planned)
            self._close(opened, error_sink)
        seconds = time.perf_counter() - started
        if shared.failure:
            f = shared.failure[0]
            return RunResult(
                self.context.run_id, "Failed", self.metrics, f.message, f.stage, seconds, self._error_count
            )
        if self.context.cancel_event.is_set():
            return RunResult(
                self.context.run_id,
                "Canceled",
                self.metrics,
                "Run was canceled",
                None,
                seconds,
                self._error_count,
            )
        return RunResult(
            self.context.run_id, "Complete", self.metrics, None, None, seconds, self._error_count
        )

    @staticmethod
    def _close(opened: list[PlannedStage], error_sink: Any | None) -> None:
        if error_sink is not None:
            try:
                error_sink.close()
            except Exception as exc:
                log.warning("error stage failed to close: %s", exc)
        for p in opened:
            try:
                p.plugin.close()
            except Exception as exc:  # close problems must not hide the real outcome
                log.warning("stage %s failed to close: %s", p.name, exc)

    def _stage_loop(
        self,
        p: PlannedStage,
        shared: _Shared,
        originals: OriginalRecords | None,
        data_names: set[str],
    ) -> None:
        metrics = self.metrics[p.name]
        chain = self.fused.get(p.name)
        targets = chain.outputs if chain is not None else p.outputs
        outputs = [shared.queues[name] for name in targets if name in data_names]
        try:
            if p.name in shared.opening:
                if shared.cancel.is_set():
                    raise _Stop
                with shared.lock:  # closed at the end even when its open fails half way
                    shared.opened.append(p)
                p.plugin.open()
            if isinstance(p.plugin, Origin) and chain is not None:
                self._fused_loop(p, p.plugin, chain, shared, outputs, metrics)
            elif isinstance(p.plugin, Origin):
                self._origin_loop(p, p.plugin, shared, originals, outputs, metrics)
            else:
                self._consumer_loop(p, shared, originals, outputs, metrics, data_names)
            for q in outputs:
                shared.put(q, _END)
        except _Stop:
            return
        except Exception as exc:
            log.debug("stage %s failed", p.name, exc_info=True)
            shared.fail(p.name, exc)

    def _origin_loop(
        self,
        p: PlannedStage,
        origin: Origin[Any],
        shared: _Shared,
        originals: OriginalRecords | None,
        outputs: list[queue.Queue[Any]],
        metrics: StageMetrics,
    ) -> None:
        seq = 0
        iterator = iter(origin.batches())
        while True:
            if shared.cancel.is_set():
                raise _Stop
            t0 = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                metrics.seconds += time.perf_counter() - t0
                return
            metrics.seconds += time.perf_counter() - t0
            out = item if isinstance(item, StageOutput) else StageOutput(records=item)
            if out.errors is not None and out.errors.num_rows:
                self._route_errors(p, out.errors, shared, originals, from_origin=True)
            for batch in _batches_of(out.records):
                if originals is not None:
                    originals.keep(seq, batch)
                batch = with_row_ids(batch, seq)
                seq += 1
                metrics.output_records += batch.num_rows
                metrics.output_batches += 1
                for q in outputs:
                    shared.put(q, batch)

    def _fused_loop(
        self,
        p: PlannedStage,
        origin: Origin[Any],
        chain: FusedChain,
        shared: _Shared,
        outputs: list[queue.Queue[Any]],
        metrics: StageMetrics,
    ) -> None:
        iterator = iter(origin.batches())
        while True:
            if shared.cancel.is_set():
                raise _Stop
            t0 = time.perf_counter()
            item = next(iterator, None)
            metrics.seconds += time.perf_counter() - t0
            if item is None:
                return
            out = item if isinstance(item, StageOutput) else StageOutput(records=item)
            if out.errors is not None and out.errors.num_rows:
                self._route_errors(p, out.errors, shared, None, from_origin=True)
            for batch in _batches_of(out.records):
                metrics.output_records += batch.num_rows
                metrics.output_batches += 1
                t0 = time.perf_counter()
                split = chain.split(batch)
                metrics.seconds += time.perf_counter() - t0
                for stage, count_in, count_out in split.counts:
                    m = self.metrics[stage.name]
                    m.input_records += count_in
                    m.input_batches += 1
                    m.output_records += count_out
                    m.output_batches += 1 if count_out else 0
                for stage, errors in split.errors:
                    first_mapper = stage is chain.steps[0].stage
                    self._route_errors(stage, errors, shared, None, from_origin=first_mapper)
                if split.records is not None:
                    for q in outputs:
                        shared.put(q, split.records)

    def _consumer_loop(
        self,
        p: PlannedStage,
        shared: _Shared,
        originals: OriginalRecords | None,
        outputs: list[queue.Queue[Any]],
        metrics: StageMetrics,
        data_names: set[str],
    ) -> None:
        q = shared.queues[p.name]
        remaining = self._producers[p.name]
        plugin = p.plugin
        while remaining:
            item = shared.get(q)
            if item is _END:
                remaining -= 1
                continue
            batch: pa.RecordBatch = item
            metrics.input_records += batch.num_rows
            metrics.input_batches += 1
            t0 = time.perf_counter()
            if isinstance(plugin, Processor):
                out = plugin.process(batch)
            elif isinstance(plugin, Destination):
                out = plugin.write(batch) or StageOutput()
            else:
                raise StageError(p.name, f"a {p.kind.value} stage cannot receive records")
            metrics.seconds += time.perf_counter() - t0
            self._emit(p, out, shared, originals, outputs, metrics)
        if isinstance(plugin, Processor):
            finishing = iter(plugin.finish_batches())
            while True:
                t0 = time.perf_counter()
                final = next(finishing, None)
                metrics.seconds += time.perf_counter() - t0
                if final is None:
                    break
                self._emit(p, final, shared, originals, outputs, metrics)

    def _emit(
        self,
        p: PlannedStage,
        out: StageOutput,
        shared: _Shared,
        originals: OriginalRecords | None,
        outputs: list[queue.Queue[Any]],
        metrics: StageMetrics,
    ) -> None:
        if out.errors is not None and out.errors.num_rows:
            self._route_errors(p, out.errors, shared, originals)
        if p.kind == StageKind.DESTINATION:
            # A destination's "output" is what it accepted.
            accepted = self.metrics[p.name].input_records - metrics.error_records
            metrics.output_records = accepted
            return
        for batch in _batches_of(out.records):
            metrics.output_records += batch.num_rows
            metrics.output_batches += 1
            for q in outputs:
                shared.put(q, batch)

    def _route_errors(
        self,
        p: PlannedStage,
        errors: ErrorBatch,
        shared: _Shared,
        originals: OriginalRecords | None,
        *,
        from_origin: bool = False,
    ) -> None:
        self.metrics[p.name].error_records += errors.num_rows
        first = self._first_errors.setdefault(p.name, [])
        if len(first) < _FIRST_ERRORS:
            wanted = min(errors.num_rows, _FIRST_ERRORS - len(first))
            codes = errors.codes.slice(0, wanted).to_pylist()
            messages = errors.messages.slice(0, wanted).to_pylist()
            first.extend((str(c), str(m)) for c, m in zip(codes, messages, strict=True))
        if p.on_record_error == "discard":
            return
        if p.on_record_error == "stop_pipeline":
            code = errors.codes[0].as_py()
            message = errors.messages[0].as_py()
            raise StageError(
                p.name,
                f"stopped the pipeline on a record error ({code}): {message}",
                code=str(code),
            )
        table = error_table(
            p.name, errors, self.flow.configuration.error_record_policy, originals, from_origin=from_origin
        )
        self._error_count += table.num_rows
        shared.put(shared.error_queue, table)

    def _error_sink_loop(self, sink: Any, shared: _Shared) -> None:
        while True:
            try:
                item = shared.error_queue.get(timeout=_POLL)
            except queue.Empty:
                continue
            if item is _END:
                return
            try:
                if isinstance(sink, ErrorSink):
                    sink.write(item)
            except Exception as exc:
                shared.fail(self.flow.error_stage.name, exc)
                return

    def _finish_error_sink(self, sink_thread: threading.Thread, shared: _Shared) -> None:
        # Every producer has stopped: drain what is queued, then stop the sink.
        while sink_thread.is_alive():
            try:
                shared.error_queue.put(_END, timeout=_POLL)
                break
            except queue.Full:
                continue
        sink_thread.join()

    def _received(self, p: PlannedStage) -> int:
        m = self.metrics[p.name]
        # An origin "receives" what it read: the records it produced and those it rejected.
        return m.output_records + m.error_records if p.kind == StageKind.ORIGIN else m.input_records

    def _why(self, names: list[str]) -> str:
        shown = [
            f"{name}: {code}: {message}"
            for name in names
            for code, message in self._first_errors.get(name, [])
        ][:_FIRST_ERRORS]
        return ("; first errors: " + " | ".join(shown)) if shown else ""

    def _check_thresholds(self, planned: list[PlannedStage], shared: _Shared) -> None:
        """Fail the run before anything is published when it rejected too much, or loaded nothing.

        Checked after every stage has finished and before any destination
        commits: a failing check aborts the destinations (targets stay as
        they were) while the error records are still stored for inspection.
        """
        config = self.flow.configuration
        max_records, max_percent = config.max_error_records, config.max_error_percent
        data = [p for p in planned if p.kind != StageKind.EXECUTOR]
        for p in data:
            errors, seen = self.metrics[p.name].error_records, self._received(p)
            problem = _over(errors, seen, max_records, max_percent)
            if problem:
                shared.fail(
                    p.name,
                    StageError(
                        p.name,
                        f"rejected {errors} of {seen} records, {problem}; nothing was published"
                        + self._why([p.name]),
                        code="ERROR_THRESHOLD",
                    ),
                )
                return
        origins = [p for p in data if p.kind == StageKind.ORIGIN]
        read = sum(self._received(p) for p in origins)
        rejecting = [p.name for p in data if self.metrics[p.name].error_records]
        total = sum(self.metrics[p.name].error_records for p in data)
        problem = _over(total, read, max_records, max_percent)
        if problem:
            shared.fail(
                None,
                RunFailed(
                    f"The run rejected {total} of the {read} records its origins read, {problem}; "
                    f"nothing was published" + self._why(rejecting)
                ),
            )
            return
        destinations = [p for p in data if p.kind == StageKind.DESTINATION]
        loaded = sum(self.metrics[p.name].input_records for p in destinations)
        if config.fail_on_no_output and destinations and read and not loaded:
            worst = max(rejecting, key=lambda n: self.metrics[n].error_records) if rejecting else None
            if not total:
                reason = "every one was filtered out"
            else:
                rest = f" and the other {read - total} filtered out" if read > total else ""
                reason = f"{total} were rejected as error records{rest}" + self._why(rejecting)
            shared.fail(
                worst,
                RunFailed(
                    f"No record reached a destination: the origins read {read} records and {reason}. "
                    "Nothing was published (targets keep their data); set configuration.fail_on_no_output "
                    "to false if an empty result is expected"
                ),
            )

    def _commit(self, stages: list[PlannedStage], shared: _Shared) -> None:
        for p in stages:
            if isinstance(p.plugin, Destination):
                try:
                    p.plugin.commit()
                except Exception as exc:
                    shared.fail(p.name, exc)
                    return

    def _acknowledge(self, stages: list[PlannedStage]) -> None:
        """Tell the origins their records are safe (destinations and error stage committed)."""
        for p in stages:
            if isinstance(p.plugin, Origin):
                try:
                    p.plugin.acknowledge()
                except Exception as exc:
                    # The data is committed; unacknowledged records come again (at least once).
                    log.warning("stage %s could not acknowledge what it read: %s", p.name, exc)
                if p.plugin.exhausted:
                    self.exhausted = True
                try:
                    waiting = p.plugin.lag()
                except Exception as exc:
                    log.debug("stage %s could not tell its lag: %s", p.name, exc)
                    waiting = None
                if waiting is not None:
                    self.lag[p.name] = waiting

    def _abort(self, stages: list[PlannedStage]) -> None:
        for p in stages:
            if isinstance(p.plugin, Destination):
                try:
                    p.plugin.abort()
                except Exception as exc:
                    log.warning("stage %s failed to abort: %s", p.name, exc)

    def _execute(self, executors: list[PlannedStage], shared: _Shared) -> None:
        for p in executors:
            if shared.cancel.is_set():
                return
            plugin = p.plugin
            t0 = time.perf_counter()
            try:
                if isinstance(plugin, Executor):
                    plugin.execute()
            except Exception as exc:
                shared.fail(p.name, exc)
                return
            finally:
                self.metrics[p.name].seconds += time.perf_counter() - t0


def _over(errors: int, seen: int, max_records: int | None, max_percent: float | None) -> str:
    """Which limit ``errors`` of ``seen`` crosses, in words; empty when none."""
    if max_records is not None and errors > max_records:
        return f"more than max_error_records ({max_records})"
    if max_percent is not None and seen and errors * 100.0 / seen > max_percent:
        return f"{errors * 100.0 / seen:.1f}%, more than max_error_percent ({max_percent:g}%)"
    return ""


def databases_ahead(*, spares: bool = True) -> None:
    """Start making, on the other core, the DuckDB databases a flow's check and run use: the shared
    database of the stages' own SQL (a field mapper's conversions, which the check runs) and, with
    ``spares``, the databases a fused plan's probe and a file origin take. Called before the stage
    plugins are imported and checked."""
    if spares:
        duckdb_spares.prefetch()
    shared_database_ahead()


def run_flow(
    flow: Flow,
    registry: PluginRegistry,
    context: RunContext | None = None,
    *,
    on_start: Callable[[FlowRun], None] | None = None,
) -> RunResult:
    """Run a parameter-resolved flow to the end and return its result."""
    run = FlowRun(flow, registry, context)
    run.start()
    if on_start is not None:
        on_start(run)
    return run.wait()
