"""The one place a launcher kind named in settings becomes an implementation."""

from __future__ import annotations

from collections.abc import Mapping

from flowport.errors import ValidationFailed
from flowport.orchestrate.celery_launcher import CeleryLauncher
from flowport.orchestrate.inline import InlineLauncher
from flowport.orchestrate.launcher import JobLauncher, JobRunner, LostHandler
from flowport.orchestrate.process import ProcessLauncher
from flowport.orchestrate.thread import ThreadLauncher

__all__ = ["LAUNCHERS", "LAUNCHER_KINDS", "create_launcher"]

#: Every launcher by the name settings use for it (``FLOWPORT_LAUNCHER``).
LAUNCHERS: Mapping[str, type[JobLauncher]] = {
    cls.kind: cls for cls in (InlineLauncher, ThreadLauncher, ProcessLauncher, CeleryLauncher)
}
#: The launcher kinds settings may name.
LAUNCHER_KINDS = tuple(LAUNCHERS)


def create_launcher(
    kind: str,
    runner: JobRunner,
    *,
    on_lost: LostHandler | None = None,
    workers: int = 2,
    worker_environment: Mapping[str, str] | None = None,
    broker_url: str = "",
) -> JobLauncher:
    """The launcher named ``kind``.

    Args:
        runner: runs one job (for ``process``, a module-level function).
        on_lost: told when a job's worker vanished without recording an end.
        workers: processes of a ``process`` launcher.
        worker_environment: variables a ``process`` launcher's workers start with
            (the instance they serve); the other launchers run in this process.
        broker_url: where a ``celery`` launcher publishes jobs.

    Raises:
        ValidationFailed: an unknown kind or a bad number of workers.
    """
    if kind not in LAUNCHERS:
        raise ValidationFailed(f"Unknown job launcher '{kind}': expected one of {', '.join(LAUNCHER_KINDS)}")
    if kind == ProcessLauncher.kind:
        return ProcessLauncher(runner, on_lost=on_lost, workers=workers, environment=worker_environment)
    if kind == CeleryLauncher.kind:
        return CeleryLauncher(runner, on_lost=on_lost, broker_url=broker_url)
    return LAUNCHERS[kind](runner, on_lost=on_lost)
