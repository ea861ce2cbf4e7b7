"""The context a pipeline task runs in: parameters, connections, file roots, log, deadline, stop signal."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowport.connections.spec import ConnectionSpec
from flowport.errors import TaskFailed
from flowport.plugins.file_roots import FileRoots
from flowport.services.connections import StoreConnectionLookup

__all__ = ["TaskContext", "TaskFailed", "TaskRunner"]

# A task's log keeps its last lines.
_MAX_LINES = 2000
_MAX_LINE_CHARS = 2000


@dataclass
class TaskContext:
    """Everything one try of a task may use.

    ``values`` are the run's parameters (``${name}`` is already substituted
    in the task); ``stopping`` is set when the run is cancelled or stops
    after another task failed; ``deadline`` is the ``time.monotonic()`` by
    which the try must end (None: no timeout).
    """

    run_id: int
    pipeline_id: int | None
    project_id: int
    values: Mapping[str, str]
    database_url: str
    home: Path
    base_dir: Path
    file_roots: FileRoots
    stopping: threading.Event
    deadline: float | None = None
    _lines: deque[str] = field(default_factory=lambda: deque(maxlen=_MAX_LINES))
    _secrets: list[str] = field(default_factory=list)
    _lookup: StoreConnectionLookup | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Set by a flow or deployment task: the job group it started.
    child_group_id: int | None = None
    on_child: Callable[[int], None] | None = None

    def connection(self, ref: str) -> ConnectionSpec:
        """The stored connection (confined to the file roots), its secrets noted for masking."""
        if self._lookup is None:
            self._lookup = StoreConnectionLookup(
                self.database_url, home=self.home, file_roots=self.file_roots, base_dir=self.base_dir
            )
        spec = self._lookup.get(ref)
        self.add_secrets(spec.secret_values())
        return spec

    def add_secrets(self, values: Any) -> None:
        """Mask these values wherever the task's log or messages would show them."""
        with self._lock:
            for value in values:
                if value and len(str(value)) >= 3 and str(value) not in self._secrets:
                    self._secrets.append(str(value))

    def mask(self, text: str) -> str:
        """``text`` with every secret the task used replaced by ``****``."""
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, "****")
        return text

    def log(self, text: str) -> None:
        """Keep a line (or several) of the task's output, masked."""
        masked = self.mask(text)
        with self._lock:
            for line in masked.splitlines() or [""]:
                self._lines.append(line[:_MAX_LINE_CHARS])

    def output(self) -> str:
        """The kept lines."""
        with self._lock:
            return "\n".join(self._lines)

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no timeout)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def timed_out(self) -> bool:
        """Whether the deadline has passed."""
        left = self.remaining()
        return left is not None and left <= 0

    def fail(self, message: str) -> TaskFailed:
        """A TaskFailed with ``message`` masked."""
        return TaskFailed(self.mask(message))


#: Runs one try of a task; returns a one-line summary or raises TaskFailed.
TaskRunner = Callable[[Any, TaskContext], str]
