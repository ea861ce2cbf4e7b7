"""``flowport worker``: a Celery worker that serves this instance, and the list of workers.

A worker needs the instance's store (``FLOWPORT_DATABASE_URL``, shared by
every machine: PostgreSQL), its secret key (``FLOWPORT_SECRET_KEY`` or the
same ``secret.key``) and the broker (``FLOWPORT_BROKER_URL``). It records
itself in the store's ``workers`` table when it starts, renews its heartbeat
there every :data:`HEARTBEAT_INTERVAL` seconds and says when it stopped, so
``flowport workers`` can list every worker of the instance with its queues,
the jobs it runs and when it was last heard of, from any machine. While it
runs it also sweeps the store for jobs whose worker was lost (any worker may:
the moves are conditional), so a cluster without a server still recovers.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from flowport.errors import ValidationFailed
from flowport.orchestrate.celery_launcher import QUEUES, WorkerSetup, queue_names, serve
from flowport.orchestrate.loop import Loop
from flowport.services.instance import init_instance, store_url, timestamp, transaction
from flowport.services.pipeline_runner import run_job_group
from flowport.services.settings import settings
from flowport.services.worker_loss import HEARTBEAT_LEASE, WORKER_NAME_ENV
from flowport.store.tables import JobGroup, WorkerRecord, utcnow

__all__ = ["HEARTBEAT_INTERVAL", "default_worker_name", "list_workers", "run_worker"]

_log = logging.getLogger("flowport.services.workers")

#: How often a worker renews its heartbeat in the store.
HEARTBEAT_INTERVAL = 5.0
#: A worker not heard of for this long is shown as lost.
_LOST_AFTER = 3 * HEARTBEAT_INTERVAL


def default_worker_name() -> str:
    """``worker-<pid>@<host>``: unique on a machine, readable in ``flowport workers``."""
    return f"worker-{os.getpid()}@{socket.gethostname()}"


def _record(name: str, queues: Sequence[str], concurrency: int) -> None:
    now = utcnow()
    with transaction() as session:
        row = session.get(WorkerRecord, name)
        if row is None:
            row = WorkerRecord(name=name)
            session.add(row)
        row.hostname, row.pid = socket.gethostname(), os.getpid()
        row.queues, row.concurrency = list(queues), concurrency
        row.state, row.started_at, row.heartbeat_at, row.stopped_at = "running", now, now, None


def _beat(name: str) -> None:
    with transaction() as session:
        row = session.get(WorkerRecord, name)
        if row is not None and row.state == "running":
            row.heartbeat_at = utcnow()


def _stopped(name: str) -> None:
    try:
        with transaction() as session:
            row = session.get(WorkerRecord, name)
            if row is not None:
                row.state, row.stopped_at = "stopped", utcnow()
    except Exception:
        _log.warning("Worker %s: could not record that it stopped", name, exc_info=True)


def run_worker(*, name: str | None = None, queues: Sequence[str] = ("jobs",), concurrency: int = 1) -> None:
    """Serve the instance's jobs from the broker here until stopped (SIGTERM: running jobs finish).

    Raises:
        ValidationFailed: no broker set, an unknown queue, a concurrency below 1.
        InvalidSettings: settings that do not validate.
    """
    current = settings().check()
    if not current.broker_url:
        raise ValidationFailed(
            "flowport worker needs a broker: set FLOWPORT_BROKER_URL (or [jobs] broker_url in flowport.toml) "
            "to the redis:// or amqp:// URL the server publishes jobs to"
        )
    if concurrency < 1:
        raise ValidationFailed(f"A worker needs a concurrency of at least 1, not {concurrency}")
    names = queue_names(queues)
    init_instance()
    worker = name or default_worker_name()
    # The pool processes record this name on the jobs they run.
    os.environ[WORKER_NAME_ENV] = worker
    setup = WorkerSetup(run_job_group, store_url(), str(current.home))
    loops: list[Loop] = []

    def ready() -> None:
        from flowport.services.jobs import fail_stale_job_groups

        _record(worker, [short for short in QUEUES if QUEUES[short] in names], concurrency)
        loops.append(Loop("worker-heartbeat", HEARTBEAT_INTERVAL, lambda: _beat(worker)).start())
        loops.append(
            Loop("lease", HEARTBEAT_LEASE / 3, lambda: fail_stale_job_groups(only_running=True)).start()
        )
        _log.info("Worker %s serves %s with %s process(es)", worker, ", ".join(names), concurrency)

    def stop() -> None:
        for loop in loops:
            loop.stop()
        _stopped(worker)

    serve(
        current.broker_url,
        setup,
        name=worker,
        queues=names,
        concurrency=concurrency,
        on_ready=ready,
        on_stop=stop,
    )


def list_workers(*, include_stopped: bool = False) -> dict[str, Any]:
    """Every worker recorded for the instance: name, host, pid, queues, concurrency, state, heartbeat, jobs.

    ``state`` is ``running``, ``stopped``, or ``lost`` (running but not heard
    of for three heartbeats). ``jobs`` are the ids of the job groups it runs now.
    """
    now = utcnow()
    with transaction() as session:
        rows = list(session.scalars(select(WorkerRecord).order_by(WorkerRecord.name)))
        running = list(
            session.execute(select(JobGroup.id, JobGroup.worker).where(JobGroup.status == "InProgress"))
        )
    jobs: dict[str, list[int]] = {}
    for group_id, worker in running:
        if worker:
            jobs.setdefault(worker, []).append(group_id)
    data = []
    for row in rows:
        state = row.state
        if state == "running" and row.heartbeat_at < now - timedelta(seconds=_LOST_AFTER):
            state = "lost"
        if state == "stopped" and not include_stopped:
            continue
        data.append(
            {
                "name": row.name,
                "hostname": row.hostname,
                "pid": row.pid,
                "queues": list(row.queues),
                "concurrency": row.concurrency,
                "state": state,
                "startedAt": timestamp(row.started_at),
                "heartbeatAt": timestamp(row.heartbeat_at),
                "stoppedAt": timestamp(row.stopped_at),
                "jobs": sorted(jobs.get(row.name, [])),
            }
        )
    return {"data": data, "count": len(data)}
