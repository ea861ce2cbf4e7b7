"""A background loop: one ``run_once`` called every ``interval`` seconds until stopped.

Maintenance the runtime does on its own (failing jobs whose heartbeat lease
expired, later the scheduler's tick) is a function that does one round and
returns; this runs it in a daemon thread, logs (never raises) what a round
raised, and stops promptly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Loop"]

_log = logging.getLogger(__name__)


class Loop:
    """Calls ``run_once`` every ``interval`` seconds in a daemon thread named ``name``."""

    def __init__(self, name: str, interval: float, run_once: Callable[[], object]) -> None:
        self.name = name
        self.interval = interval
        self.run_once = run_once
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Rounds completed (with or without an error).
        self.rounds = 0

    def start(self) -> Loop:
        """Start the loop's thread (the first round runs after one interval)."""
        self._thread = threading.Thread(target=self._run, name=f"flowport-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:
                _log.exception("Background loop '%s': a round failed", self.name)
            self.rounds += 1

    def stop(self, timeout: float | None = 5.0) -> None:
        """Ask the loop to stop and wait up to ``timeout`` seconds for its round to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
