"""The instance's job launcher: chosen from settings in one place, shared by every service that starts jobs.

``FLOWPORT_LAUNCHER`` (or ``[jobs] launcher`` in ``flowport.toml``) names it:

- ``process`` (default, what ``flowport server`` uses): a local pool of
  ``FLOWPORT_WORKERS`` (default 2) processes, each configured once for the
  instance; only a job group's id and where the instance lives travel to it.
- ``thread``: background threads of this process (small tools, tests).
- ``inline``: in the caller's thread; starting a job returns when it has ended (the CLI, tests).
- ``celery``: published to the broker ``FLOWPORT_BROKER_URL`` names (setting it implies this
  launcher); ``flowport worker`` processes on any machine sharing the store run the jobs.

``FLOWPORT_EXECUTOR``, the setting's name before 0.9, is still read. The
launcher is built on first use and rebuilt when the settings name another
kind or another instance; :func:`use_launcher` installs one explicitly (the
server, the CLI, tests).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flowport.orchestrate import JobLauncher, create_launcher
from flowport.services.instance import store_url
from flowport.services.pipeline_runner import run_job_group
from flowport.services.settings import settings
from flowport.services.worker_loss import recover_lost
from flowport.store.database import DATABASE_URL_ENV

__all__ = [
    "EXECUTOR_ENV",
    "LAUNCHER_ENV",
    "WORKERS_ENV",
    "configured_kind",
    "configured_workers",
    "launcher",
    "shutdown_launcher",
    "use_launcher",
]

_log = logging.getLogger(__name__)

LAUNCHER_ENV = "FLOWPORT_LAUNCHER"
#: The launcher setting's earlier name, still read.
EXECUTOR_ENV = "FLOWPORT_EXECUTOR"
WORKERS_ENV = "FLOWPORT_WORKERS"

_lock = threading.Lock()
_current: JobLauncher | None = None
_current_key: tuple[Any, ...] | None = None
_installed: JobLauncher | None = None


def configured_kind() -> str:
    """The launcher the settings name.

    ``FLOWPORT_LAUNCHER``, else ``FLOWPORT_EXECUTOR``, else ``[jobs] launcher``, else ``process``
    (read through the instance's :class:`~flowport.services.settings.Settings`).
    """
    return str(settings().launcher)


def configured_workers() -> int:
    """Worker processes of the local pool: ``FLOWPORT_WORKERS``, ``[jobs] workers``, 2."""
    return int(settings().workers)


def _build(kind: str, workers: int, home: str, url: str) -> JobLauncher:
    return create_launcher(
        kind,
        run_job_group,
        on_lost=recover_lost,
        workers=workers,
        # A pool's workers serve this instance, whatever environment they were spawned with.
        worker_environment={"FLOWPORT_HOME": home, DATABASE_URL_ENV: url},
        broker_url=settings().broker_url if kind == "celery" else "",
    )


def launcher() -> JobLauncher:
    """The launcher jobs go to now: the one installed by :func:`use_launcher`, else the configured one."""
    global _current, _current_key
    with _lock:
        if _installed is not None:
            return _installed
    kind = configured_kind()
    home, url = str(settings().home), store_url()
    workers = configured_workers() if kind == "process" else 0
    key = (kind, workers, home, url, settings().broker_url if kind == "celery" else "")
    with _lock:
        if _current is not None and _current_key == key:
            return _current
        previous, _current_key = _current, key
        _current = current = _build(kind, max(workers, 1), home, url)
    if previous is not None:
        previous.shutdown(wait=False)
    _log.debug("Job launcher: %s", kind)
    return current


def use_launcher(kind: str | JobLauncher | None) -> JobLauncher | None:
    """Install a launcher (a kind or an instance) for every job started from now; None: back to the settings.

    Returns the launcher installed (None when back to the settings).
    """
    global _installed
    installed = (
        _build(kind, configured_workers(), str(settings().home), store_url())
        if isinstance(kind, str)
        else kind
    )
    with _lock:
        previous, _installed = _installed, installed
    if previous is not None and previous is not installed:
        previous.shutdown(wait=False)
    return installed


def shutdown_launcher(*, wait: bool = True) -> None:
    """Stop the current launcher's workers (server shutdown, tests); queued jobs stay Pending.

    Jobs left Pending or InProgress are failed by lease
    (:func:`~flowport.services.jobs.fail_stale_job_groups`) or, on a
    single-server instance, when it starts again.
    """
    global _current, _current_key
    with _lock:
        stopping = [x for x in (_current, _installed) if x is not None]
        _current, _current_key = None, None
    for item in stopping:
        item.shutdown(wait=wait)
