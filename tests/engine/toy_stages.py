"""Toy stage plugins so engine tests do not depend on built-in stages."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from flowport.engine.run import FlowRun
from flowport.errors import StageError
from flowport.model.flow import Flow
from flowport.plugins.contract import (
    Destination,
    ErrorBatch,
    ErrorSink,
    Origin,
    Processor,
    StageConfig,
    StageOutput,
    setting,
    visible_columns,
)
from flowport.plugins.registry import PluginRegistry

# Where the test destinations and error sinks put what they received, by key.
STORE: dict[str, dict[str, Any]] = {}
STORE_LOCK = threading.Lock()
# Ordered produced/consumed events, by key, to check how far an origin runs ahead.
EVENTS: dict[str, list[str]] = {}


def store(key: str) -> dict[str, Any]:
    with STORE_LOCK:
        return STORE.setdefault(key, {"staged": [], "committed": None, "aborted": False, "opened": False})


class NumbersConfig(StageConfig):
    count: int = setting(10, label="Count", description="How many numbers.")
    delay: float = setting(0.0, label="Delay", description="Seconds to sleep per batch.")
    forever: bool = setting(False, label="Forever", description="Never stop (for cancellation).")
    progress_key: str = setting("", label="Key", description="Where to record progress.")


class Numbers(Origin[NumbersConfig]):
    name = "numbers"
    label = "Numbers"
    config_model = NumbersConfig

    def batches(self) -> Iterator[pa.RecordBatch | StageOutput]:
        size = self.context.batch_size
        start = 0
        limit = self.context.record_limit or self.config.count
        while self.config.forever or start < limit:
            if self.context.cancelled:
                return
            n = size if self.config.forever else min(size, limit - start)
            values = pa.array(range(start, start + n), pa.int64())
            texts = pc.cast(values, pa.string())
            batch = pa.record_batch({"n": values, "text": texts})
            if self.config.progress_key:
                with STORE_LOCK:
                    EVENTS.setdefault(self.config.progress_key, []).append("produced")
            yield batch
            start += n
            if self.config.delay:
                time.sleep(self.config.delay)


class ScaleConfig(StageConfig):
    factor: int = setting(10, label="Factor", description="Multiply n by this.")


class Scale(Processor[ScaleConfig]):
    """n := n * factor, and add a column: the stage record differs from the original."""

    name = "scale"
    label = "Scale"
    config_model = ScaleConfig

    def process(self, batch: pa.RecordBatch) -> StageOutput:
        table = pa.Table.from_batches([batch])
        idx = table.column_names.index("n")
        table = table.set_column(idx, "n", pc.multiply(table.column("n"), self.config.factor))
        table = table.append_column("scaled", pa.array([True] * table.num_rows))
        return StageOutput(records=table)


class RejectConfig(StageConfig):
    divisor: int = setting(2, label="Divisor", description="Reject n divisible by this.")


class RejectMultiples(Processor[RejectConfig]):
    name = "reject_multiples"
    label = "Reject Multiples"
    config_model = RejectConfig

    def process(self, batch: pa.RecordBatch) -> StageOutput:
        table = pa.Table.from_batches([batch])
        bad = pc.equal(
            pc.divide(table.column("n"), self.config.divisor).cast(pa.int64()).cast(pa.float64()),
            pc.divide(table.column("n").cast(pa.float64()), float(self.config.divisor)),
        )
        bad_rows = table.filter(bad)
        errors = ErrorBatch.uniform(bad_rows, "MULTIPLE", f"divisible by {self.config.divisor}")
        return StageOutput(records=table.filter(pc.invert(bad)), errors=errors)


class ExplodeConfig(StageConfig):
    at: int = setting(5, label="At", description="Raise when this n is seen.")


class Explode(Processor[ExplodeConfig]):
    name = "explode"
    label = "Explode"
    config_model = ExplodeConfig

    def process(self, batch: pa.RecordBatch) -> StageOutput:
        if pc.any(pc.equal(batch.column(0), self.config.at)).as_py():
            raise RuntimeError(f"boom at {self.config.at}")
        return StageOutput(records=batch)


class CollectConfig(StageConfig):
    key: str = setting(..., label="Key", description="Store key.")
    delay: float = setting(0.0, label="Delay", description="Seconds to sleep per batch.")
    progress_key: str = setting("", label="Progress key", description="Where to record consumption.")


class Collect(Destination[CollectConfig]):
    name = "collect"
    label = "Collect"
    config_model = CollectConfig

    def open(self) -> None:
        store(self.config.key)["opened"] = True

    def write(self, batch: pa.RecordBatch) -> StageOutput | None:
        if self.config.delay:
            time.sleep(self.config.delay)
        s = store(self.config.key)
        s["staged"].append(visible_columns(batch))
        if self.config.progress_key:
            with STORE_LOCK:
                EVENTS.setdefault(self.config.progress_key, []).append("consumed")
        return None

    def commit(self) -> None:
        s = store(self.config.key)
        s["committed"] = pa.concat_tables(s["staged"]) if s["staged"] else pa.table({})

    def abort(self) -> None:
        store(self.config.key)["aborted"] = True


class RemoteConfig(CollectConfig):
    fail_open: bool = setting(False, label="Fail open", description="Open fails (an unreachable server).")


class RemoteCollect(Collect):
    """A destination that opens while the run already reads (as one that connects to a server).

    Its open waits (up to 10 s) for the origin's first batch, then notes whether it came.
    """

    name = "remote_collect"
    label = "Remote Collect"
    config_model = RemoteConfig
    opens_while_running = True

    def open(self) -> None:
        deadline = time.monotonic() + 10
        while "produced" not in EVENTS.get(self.config.progress_key, []) and time.monotonic() < deadline:
            time.sleep(0.005)
        s = store(self.config.key)
        s["origin_read_first"] = "produced" in EVENTS.get(self.config.progress_key, [])
        if getattr(self.config, "fail_open", False):
            raise StageError(self.context.stage_name, "cannot reach the server")
        s["opened"] = True

    def close(self) -> None:
        store(self.config.key)["closed"] = True


class SinkConfig(StageConfig):
    key: str = setting(..., label="Key", description="Store key.")


class MemorySink(ErrorSink[SinkConfig]):
    name = "memory_errors"
    label = "Memory Errors"
    config_model = SinkConfig

    def write(self, errors: pa.Table) -> None:
        store(self.config.key)["staged"].append(errors)

    def commit(self) -> None:
        s = store(self.config.key)
        s["committed"] = pa.concat_tables(s["staged"], promote_options="permissive") if s["staged"] else None


class NoConfig(StageConfig):
    pass


class DiscardErrors(ErrorSink[NoConfig]):
    name = "discard"
    label = "Discard"
    config_model = NoConfig

    def write(self, errors: pa.Table) -> None:
        return None


def toy_registry() -> PluginRegistry:
    """A registry of the toy stages, with the stores emptied."""
    reg = PluginRegistry()
    for cls in (Numbers, Scale, RejectMultiples, Explode, Collect, RemoteCollect, MemorySink, DiscardErrors):
        reg.add(cls, artifact="engine-test", version="1.0.0")
    STORE.clear()
    EVENTS.clear()
    return reg


def stage(name: str, plugin: str, **config: Any) -> dict[str, Any]:
    return {"name": name, "plugin": {"name": plugin}, "configuration": config}


def make_flow(stages: list[dict[str, Any]], edges: list[tuple[str, str]], **extra: Any) -> Flow:
    return Flow.model_validate(
        {
            "name": "test",
            "stages": stages,
            "edges": [{"from": a, "to": b} for a, b in edges],
            "error_stage": {
                "name": "Errors",
                "plugin": {"name": "memory_errors"},
                "configuration": {"key": "errors"},
            },
            **extra,
        }
    )


def run(flow: Flow, registry: PluginRegistry) -> Any:
    return FlowRun(flow, registry).start().wait(timeout=60)
