"""Partitioned ingest: one job split into partition tasks that load in parallel, published once.

A flow whose configuration says ``partitions: N`` (N > 1) and whose one
origin reads a file glob (CSV, JSON, Parquet) and whose one destination is a
Write SQL Table on PostgreSQL in ``replace`` or ``append`` mode runs as:

1. the job (the *parent*) lists the files the glob matches — one partition
   per file — and creates the shared staging table
   (:class:`~flowport.stages.sql.partitioned.PartitionedLoad`);
2. each partition is a job group of its own (``parent_id`` = the job), the
   same flow reading one file and appending to the staging table; at most N
   run at once: on Celery workers anywhere (the ``partitions`` queue; the
   parent also takes partitions no worker has started, so one worker is
   enough), or in N local processes on the embedded default;
3. a failed partition (its load rolled back: it added nothing) runs again,
   alone, up to ``partition_retries`` times; when one cannot succeed, or the
   job is canceled, the staging table is dropped and the job fails;
4. when every partition succeeded, the parent checks that the staging table
   holds exactly the rows the partitions loaded and publishes it in one
   transaction (the swap of a single-task ``replace``).

The target changes only in step 4. A flow that asks for partitions but
cannot be split this way runs as one task, and its log says why.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flowport.connections.spec import ConnectionLookup, ConnectionSpec
from flowport.errors import FlowportError
from flowport.model.flow import Flow
from flowport.model.parameters import resolve_flow
from flowport.orchestrate import JobLauncher, JobTask
from flowport.plugins.file_roots import FileRoots
from flowport.services.instance import transaction
from flowport.store import jobs as _repo
from flowport.store.tables import utcnow

__all__ = ["SPLITTABLE_ORIGINS", "Split", "partition_flow", "plan", "run_partitioned"]

_log = logging.getLogger("flowport.services.jobs")

#: Origins whose ``path`` glob splits into one partition per file.
SPLITTABLE_ORIGINS = frozenset({"csv_file_origin", "json_file_origin", "parquet_file_origin"})
_DESTINATION = "sql_table_destination"
_POLL = 0.1


@dataclass(frozen=True)
class Split:
    """How a run splits: the origin and destination stages, the partitions, the destination's table.

    Each partition is ``(label, settings)``: what the logs call it and the origin settings it reads
    with (``{"path": file}`` for a file glob, ``{"partition_range": [low, high]}`` for a key range).
    """

    origin: str
    destination: str
    parts: tuple[tuple[str, dict[str, Any]], ...]
    connection: str
    table: str
    mode: str


def _key_ranges(
    origin: Any, count: int, connections: ConnectionLookup | None
) -> list[tuple[str, dict[str, Any]]] | str:
    from flowport.stages.sql.table_origin import key_ranges
    from flowport.stages.sql.vendors import open_connection

    column = str(origin.configuration["partition_column"])
    if connections is None:
        return "key ranges need the instance's connections"
    conn = open_connection(connections.get(str(origin.configuration.get("connection", ""))))
    try:
        ranges = key_ranges(conn, str(origin.configuration.get("table", "")), column, count)
    except ValueError as exc:
        raise FlowportError(f"stage '{origin.name}': {exc}") from None
    finally:
        conn.close()
    return [(f"{column} in [{low}, {high})", {"partition_range": [low, high]}) for low, high in ranges]


def plan(
    flow: Flow,
    values: Mapping[str, str],
    base_dir: Path,
    roots: FileRoots,
    connections: ConnectionLookup | None = None,
) -> Split | str:
    """The split of a run of ``flow``, or why it runs as one task."""
    resolved = resolve_flow(flow, values)
    sources = {edge.from_ for edge in resolved.edges}
    targets = {edge.to for edge in resolved.edges}
    origins = [s for s in resolved.stages if s.name not in targets]
    destinations = [s for s in resolved.stages if s.name not in sources]
    keyed = (
        len(origins) == 1
        and origins[0].plugin.name == "sql_table_origin"
        and origins[0].configuration.get("partition_column")
    )
    if len(origins) != 1 or (origins[0].plugin.name not in SPLITTABLE_ORIGINS and not keyed):
        return (
            "only a flow with one file origin (CSV, JSON or Parquet) or one SQL Table origin with a "
            "partition_column is split"
        )
    if len(destinations) != 1 or destinations[0].plugin.name != _DESTINATION:
        return "only a flow with one Write SQL Table destination is split"
    origin, destination = origins[0], destinations[0]
    mode = str(destination.configuration.get("mode", "append"))
    if mode not in ("replace", "append"):
        return f"a partitioned load replaces or appends; this destination's mode is {mode}"
    target = (
        str(destination.configuration.get("connection", "")),
        str(destination.configuration.get("table", "")),
        mode,
    )
    if keyed:
        ranges = _key_ranges(origin, int(flow.configuration.partitions), connections)
        if isinstance(ranges, str):
            return ranges
        if len(ranges) < 2:
            return f"the partition column's values make {len(ranges)} range(s); partitions need two or more"
        return Split(origin.name, destination.name, tuple(ranges), *target)
    pattern = str(origin.configuration.get("path", ""))
    import glob

    full = Path(pattern).expanduser()
    if not full.is_absolute():
        full = base_dir / full
    files = sorted(
        str(roots.check(p, base_dir=base_dir, what=f"stage '{origin.name}': file"))
        for p in glob.glob(str(full), recursive=True)
        if Path(p).is_file()
    )
    if len(files) < 2:
        return f"its origin's path '{pattern}' matches {len(files)} file(s); partitions need two or more"
    return Split(origin.name, destination.name, tuple((f, {"path": f}) for f in files), *target)


def partition_flow(flow: Flow, partition: Mapping[str, Any]) -> Flow:
    """The flow one partition runs: its origin reads its part, its destination appends to the staging."""
    copy = flow.model_copy(deep=True)
    copy.configuration.partitions = 1
    origin = copy.stage(str(partition["origin"]))
    origin.configuration = {**origin.configuration, **dict(partition["settings"])}
    destination = copy.stage(str(partition["destination"]))
    destination.configuration = {
        **destination.configuration,
        "table": str(partition["table"]),
        "mode": "append",
        "create_table": True,
    }
    return copy


@dataclass
class _Partition:
    index: int
    label: str
    settings: dict[str, Any]
    tries: int = 0
    group_id: int | None = None
    task: JobTask | None = None
    rows: int = 0
    result: dict[str, Any] | None = None


class _Failed(Exception):
    pass


def _loaded_rows(result: Mapping[str, Any] | None, destination: str) -> int:
    for item in (result or {}).get("stages") or []:
        if item.get("stage") == destination:
            return int(item.get("inputRecords", 0)) - int(item.get("errorRecords", 0))
    return 0


def _create_child(parent_id: int, index: int) -> int:
    with transaction() as session:
        parent = _repo.get_group(session, parent_id)
        group = _repo.create_group(
            session,
            flow_id=parent.flow_id,
            deployment_id=parent.deployment_id,
            parameters=dict(parent.parameters or {}),
            creator_id=parent.creator_id,
            trigger=parent.triggered_by,
            parent_id=parent_id,
        )
        _repo.create_job(session, job_group_id=group.id, flow_id=parent.flow_id)
        _repo.transition(
            session, group.id, from_statuses={"Created"}, to_status="Pending", message=f"partition {index}"
        )
        return int(group.id)


def _local_launcher(task: JobTask, workers: int) -> JobLauncher:
    from flowport.orchestrate import ProcessLauncher
    from flowport.services.job_runner import fail_lost_job
    from flowport.services.pipeline_runner import run_job_group
    from flowport.store.database import DATABASE_URL_ENV

    return ProcessLauncher(
        run_job_group,
        on_lost=fail_lost_job,
        workers=workers,
        environment={"FLOWPORT_HOME": task.home, DATABASE_URL_ENV: task.database_url},
    )


def run_partitioned(
    task: JobTask,
    flow: Flow,
    split: Split,
    spec: ConnectionSpec,
    log: Callable[[str], None],
) -> tuple[str, str | None, dict[str, Any]]:
    """Run the parent of a partitioned job to its end; ``(status, error, result)`` for the job's record.

    ``log`` writes a line to the job's log. Never raises for a failing
    partition or publish: the failure is the job's outcome.
    """
    from flowport.services.launcher import configured_kind, launcher
    from flowport.services.pipeline_runner import run_job_group
    from flowport.stages.sql.partitioned import PartitionedLoad

    started = time.perf_counter()
    config = flow.configuration
    at_once = min(int(config.partitions), len(split.parts))
    allowed_tries = int(config.partition_retries) + 1
    parts = [_Partition(i, label, settings) for i, (label, settings) in enumerate(split.parts)]
    load = PartitionedLoad(spec, split.table, split.mode, f"j{task.job_group_id}", stage=split.destination)
    distributed = configured_kind() == "celery"
    runner: JobLauncher = launcher() if distributed else _local_launcher(task, at_once)
    status, error = "Complete", None
    try:
        load.prepare()
        first_alone = not load.exists  # the first partition creates the staging table, then the others run
        log(
            f"Partitioned load of {len(parts)} partition(s) into {load.staging_name}, at most {at_once} "
            "at once "
            f"({'Celery workers' if distributed else 'local processes'})"
        )
        waiting: deque[_Partition] = deque(parts)
        running: dict[int, _Partition] = {}
        while waiting or running:
            limit = 1 if first_alone else at_once
            while waiting and len(running) < limit:
                part = waiting.popleft()
                part.tries += 1
                part.group_id = _create_child(task.job_group_id, part.index)
                part.task = replace(
                    task,
                    job_group_id=part.group_id,
                    attempt=1,
                    kind="partition",
                    partition={
                        "index": part.index,
                        "label": part.label,
                        "settings": part.settings,
                        "origin": split.origin,
                        "destination": split.destination,
                        "table": load.staging_name,
                        "parent": task.job_group_id,
                    },
                )
                running[part.group_id] = part
                runner.submit(part.task)
            ended = _poll(task.job_group_id, running)
            for group_id, (child_status, child_error, result) in ended.items():
                part = running.pop(group_id)
                if child_status == "Complete":
                    part.rows, part.result = _loaded_rows(result, split.destination), result
                    first_alone = False
                    shown = Path(part.label).name  # a file's name; a key range as it is
                    log(f"Partition {part.index} ({shown}): {part.rows} rows, try {part.tries}")
                    continue
                if child_status == "Canceled":
                    raise _Failed(f"partition {part.index} was canceled")
                if part.tries >= allowed_tries:
                    raise _Failed(
                        f"partition {part.index} ({part.label}) failed {part.tries} time(s): {child_error}"
                    )
                log(f"Partition {part.index} failed (try {part.tries}): {child_error}; running it again")
                waiting.appendleft(part)
            if ended:
                continue
            # Nothing ended: take a partition no worker has started yet (Celery), else wait.
            if (distributed and not _steal(running, run_job_group)) or not distributed:
                time.sleep(_POLL)
        expected = sum(p.rows for p in parts)
        load.publish(expected)
        log(f"Published {expected} rows from {len(parts)} partition(s) to {split.table} in one transaction")
    except _Failed as exc:
        status, error = ("Canceled" if "canceled" in str(exc) else "Failed"), str(exc)
    except FlowportError as exc:
        status, error = "Failed", exc.message
    except Exception as exc:
        status, error = "Failed", f"{type(exc).__name__}: {exc}"
    finally:
        if status != "Complete":
            _cancel_children(task.job_group_id)
            # A partition still running would append to the staging table after it was dropped (and
            # create it again: partitions may create it), so the drop waits for them to stop.
            _await_children(task.job_group_id)
            try:
                load.discard()
            except Exception:
                _log.warning("Job group %s: the staging table could not be dropped", task.job_group_id)
        load.close()
        if not distributed:
            runner.shutdown(wait=True)
    return status, error, _result(parts, split, status, error, time.perf_counter() - started)


def _poll(parent_id: int, running: Mapping[int, _Partition]) -> dict[int, tuple[str, str | None, Any]]:
    """The partitions that ended since the last look; renews the parent's lease, obeys its cancel flag."""
    ended: dict[int, tuple[str, str | None, Any]] = {}
    with transaction() as session:
        _repo.heartbeat(session, parent_id)
        parent = _repo.get_group(session, parent_id)
        if parent.cancel_requested_at is not None:
            raise _Failed("the job was canceled")
        for group_id in running:
            child = _repo.get_group(session, group_id)
            if child.status in _repo.FINAL_STATUSES:
                ended[group_id] = (child.status, child.error, child.result)
    return ended


def _steal(running: Mapping[int, _Partition], run: Callable[[JobTask], str]) -> bool:
    """Run here a partition still waiting for a worker (the claim makes sure only one runs it)."""
    with transaction() as session:
        waiting = [
            part
            for group_id, part in running.items()
            if _repo.get_group(session, group_id).status == "Pending"
        ]
    if not waiting or waiting[0].task is None:
        return False
    run(waiting[0].task)
    return True


def _cancel_children(parent_id: int) -> None:
    now = utcnow()
    with transaction() as session:
        for child in _repo.children_of(session, parent_id):
            if child.status in ("Created", "Pending"):
                _repo.transition(
                    session,
                    child.id,
                    from_statuses={child.status},
                    to_status="Canceled",
                    group_values={"error": "The partitioned run stopped"},
                    job_values={"error": "The partitioned run stopped"},
                )
            elif child.status == "InProgress":
                _repo.request_cancel(session, child, now)


def _await_children(parent_id: int, timeout: float = 120.0) -> None:
    """Wait (at most ``timeout`` seconds) until no partition of the run is in progress."""
    deadline = time.monotonic() + timeout
    while True:
        with transaction() as session:
            running = [c.id for c in _repo.children_of(session, parent_id) if c.status == "InProgress"]
        if not running:
            return
        if time.monotonic() >= deadline:
            _log.warning(
                "Job group %s: partition job group(s) %s still running after %.0f s; dropping the staging "
                "table anyway",
                parent_id,
                ", ".join(map(str, running)),
                timeout,
            )
            return
        time.sleep(_POLL)


def _result(
    parts: list[_Partition], split: Split, status: str, error: str | None, seconds: float
) -> dict[str, Any]:
    totals: dict[str, dict[str, Any]] = {}
    for part in parts:
        for item in (part.result or {}).get("stages") or []:
            into = totals.setdefault(item["stage"], {"stage": item["stage"]})
            for key, value in item.items():
                if key != "stage" and isinstance(value, int | float):
                    into[key] = round(into.get(key, 0) + value, 3)
    return {
        "status": status,
        "runId": None,
        "seconds": round(seconds, 3),
        "errorRecords": sum(int((p.result or {}).get("errorRecords") or 0) for p in parts),
        "error": {"stage": split.destination, "message": error} if error else None,
        "stages": list(totals.values()),
        "partitions": [
            {"index": p.index, "part": p.label, "jobGroup": p.group_id, "tries": p.tries, "rows": p.rows}
            for p in parts
        ],
    }
