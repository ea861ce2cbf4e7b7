"""Jobs go to Celery workers on any number of machines (``FLOWPORT_BROKER_URL``: Redis or RabbitMQ).

The server (or scheduler, or CLI) publishes one small JSON message per job
group to a queue of its kind; ``flowport worker`` processes on any machine
that shares the metadata store (and the secret key) consume them and run
the job there with the runner the services gave them. The message carries
the job group's id, its try, its folder and its file roots — never the
store's URL or a credential: a worker reads everything else from its own
configuration and the store.

Delivery is at least once, and safe:

- ``task_acks_late``: a message is acknowledged when the job has ended, so
  a worker that dies mid-job (SIGKILL, out of memory, machine gone) leaves
  it to be delivered again; ``task_reject_on_worker_lost`` hands it back at
  once when a pool process dies under a live worker.
- prefetch 1: a worker holds no more messages than it runs, so a long load
  cannot sit on a message another worker could run now.
- the Redis visibility timeout (``FLOWPORT_BROKER_VISIBILITY_TIMEOUT``,
  default 6 h) is far longer than a job's heartbeat lease: Redis redelivers
  an unacknowledged message only after it, and by then the lease has
  long decided whether the job's worker is alive.
- a delivered message goes through the runner's claim first: a job that
  ended, or that a live worker runs, is left untouched (redelivery is
  idempotent by job group and try); one whose worker was lost is retried
  or failed by its flow's policy.

Queues by kind (``flowport.jobs``, ``flowport.pipelines``,
``flowport.partitions``, ``flowport.streams``): a worker serving only
``jobs`` is never blocked by long pipeline runs or by streaming jobs, which
hold their worker until stopped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from flowport.errors import LaunchFailed, ValidationFailed
from flowport.orchestrate.launcher import JobLauncher, JobRunner, LostHandler
from flowport.orchestrate.task import JobTask
from flowport.orchestrate.worker import work

__all__ = [
    "QUEUES",
    "TASK_NAME",
    "VISIBILITY_TIMEOUT_ENV",
    "CeleryLauncher",
    "WorkerSetup",
    "celery_app",
    "queue_names",
    "serve",
]

_log = logging.getLogger(__name__)

#: The Celery task every job message names.
TASK_NAME = "flowport.run_job_group"
#: The queue of each kind of job (what ``flowport worker --queues`` names by its short name).
QUEUES: Mapping[str, str] = {
    "jobs": "flowport.jobs",
    "pipelines": "flowport.pipelines",
    "partitions": "flowport.partitions",
    "streams": "flowport.streams",
}
_QUEUE_OF_KIND = {"flow": "jobs", "pipeline": "pipelines", "partition": "partitions", "stream": "streams"}
VISIBILITY_TIMEOUT_ENV = "FLOWPORT_BROKER_VISIBILITY_TIMEOUT"
_DEFAULT_VISIBILITY_TIMEOUT = 6 * 3600


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker process needs to turn a message into a :class:`JobTask` and run it."""

    runner: JobRunner
    #: The worker's own store URL and instance folder (never read from a message).
    database_url: str
    home: str


_serving: WorkerSetup | None = None


def queue_names(short: Sequence[str]) -> list[str]:
    """The broker queues for short names (``jobs``, ``pipelines``, ``partitions``).

    Raises:
        ValidationFailed: an unknown name, with the names there are.
    """
    unknown = [name for name in short if name not in QUEUES]
    if unknown:
        raise ValidationFailed(
            f"Unknown queue(s) {', '.join(unknown)}: a worker serves any of {', '.join(QUEUES)}"
        )
    return [QUEUES[name] for name in dict.fromkeys(short)]


def _visibility_timeout() -> int:
    raw = os.environ.get(VISIBILITY_TIMEOUT_ENV, "").strip()
    if not raw:
        return _DEFAULT_VISIBILITY_TIMEOUT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValidationFailed(
            f"{VISIBILITY_TIMEOUT_ENV}={raw!r} is not a number of seconds: set it to a whole number of "
            f"at least 1 (default {_DEFAULT_VISIBILITY_TIMEOUT}), longer than the longest job"
        )
    return value


def celery_app(broker_url: str) -> Any:
    """The Celery application of an instance: its settings and its one task.

    Imported on use: Celery costs start-up time commands that do not send
    jobs need not pay.
    """
    from celery import Celery

    app = Celery("flowport", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_default_queue=QUEUES["jobs"],
        task_create_missing_queues=True,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        broker_transport_options={"visibility_timeout": _visibility_timeout()},
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    app.task(name=TASK_NAME, ignore_result=True)(_run_message)
    return app


def _run_message(message: dict[str, Any]) -> str:
    """The Celery task: run the job group a message names, in this worker process."""
    setup = _serving
    if setup is None:
        raise RuntimeError("This process is not a flowport worker: start it with `flowport worker`")
    task = JobTask(
        job_group_id=int(message["job_group_id"]),
        database_url=setup.database_url,
        home=setup.home,
        base_dir=str(message["base_dir"]),
        file_roots=tuple(str(r) for r in message.get("file_roots", ())),
        attempt=int(message.get("attempt", 1)),
        kind=str(message.get("kind", "flow")),
        partition=message.get("partition"),
    )
    return work(task, setup.runner)


def _message(task: JobTask) -> dict[str, Any]:
    # What travels through the broker: no store URL (it may hold a password), no instance folder.
    return {
        "job_group_id": task.job_group_id,
        "attempt": task.attempt,
        "kind": task.kind,
        "base_dir": task.base_dir,
        "file_roots": list(task.file_roots),
        "partition": task.partition,
    }


class CeleryLauncher(JobLauncher):
    """Publishes each job to the broker; ``flowport worker`` processes anywhere run it."""

    kind: ClassVar[str] = "celery"

    def __init__(
        self, runner: JobRunner, *, on_lost: LostHandler | None = None, broker_url: str = ""
    ) -> None:
        super().__init__(runner, on_lost=on_lost)
        if not broker_url:
            raise ValidationFailed(
                "The celery launcher needs a broker: set FLOWPORT_BROKER_URL to a redis:// or amqp:// URL"
            )
        self.app = celery_app(broker_url)

    def submit(self, task: JobTask) -> None:
        """Publish the job to its kind's queue; returns once the broker has it."""
        queue = QUEUES[_QUEUE_OF_KIND.get(task.kind, "jobs")]
        try:
            self.app.send_task(TASK_NAME, args=[_message(task)], queue=queue)
        except Exception as exc:
            # Kombu's messages name the host and port, never the URL's password.
            raise LaunchFailed(
                f"Could not hand job group {task.job_group_id} to the broker: {type(exc).__name__}: {exc}"
            ) from exc

    def healthy(self) -> bool:
        """Whether the broker answers now."""
        try:
            with self.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
        except Exception:
            return False
        return True

    def shutdown(self, *, wait: bool = True) -> None:
        """Close the connections to the broker (queued jobs stay in the broker)."""
        del wait
        try:
            self.app.close()
        except Exception:
            _log.debug("Closing the broker connections failed", exc_info=True)


def serve(
    broker_url: str,
    setup: WorkerSetup,
    *,
    name: str,
    queues: Sequence[str],
    concurrency: int,
    on_ready: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
    loglevel: str = "INFO",
) -> None:
    """Run a Celery worker here until it is stopped (SIGTERM: warm shutdown, running jobs finish).

    ``concurrency`` pool processes, each forked from this one, run one job at
    a time. ``on_ready`` is called when the worker consumes, ``on_stop``
    when it shuts down (both in this, the main, process).
    """
    global _serving
    from celery import signals

    _serving = setup
    app = celery_app(broker_url)
    if on_ready is not None:
        signals.worker_ready.connect(lambda **_: on_ready(), weak=False)
    if on_stop is not None:
        signals.worker_shutdown.connect(lambda **_: on_stop(), weak=False)
    app.worker_main(
        [
            "worker",
            f"--hostname={name}",
            f"--queues={','.join(queues)}",
            f"--concurrency={concurrency}",
            "--pool=prefork",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
