"""In-memory DuckDB databases made ahead of need, and closed after it, off the caller's thread.

Making an in-memory DuckDB database takes 12-22 ms (its catalog and
built-in extensions are set up) and closing one that ran a large query
takes about as long (its memory is handed back). A run needs a few: the
fusion planner's probe, an origin's reader. :func:`prefetch` starts making
them in a background thread when a run starts, while the run imports its
stage plugins and builds its plan (DuckDB releases the GIL while it sets a
database up, so the other core does the work); :func:`take` hands one over,
or makes one when none is ready or coming. :func:`close_later` closes a
database in a background thread once the caller is done with it.

A spare is a plain database with DuckDB's defaults: whoever takes one
configures it (a stage sandboxes it at once, see
:func:`flowport.stages._duckdb.sandbox`), exactly as it would a database it
had just made. Spares are per process: a forked child never uses its
parent's (nor closes them: their locks may be held by threads the child
does not have).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading

import duckdb

__all__ = ["close_later", "prefetch", "take"]

log = logging.getLogger(__name__)

#: Spares kept ready or being made, at most (what one run of a fused file flow takes).
LIMIT = 2

_cond = threading.Condition()
_ready: list[duckdb.DuckDBPyConnection] = []
_making = 0
_pid = os.getpid()
#: Databases inherited over a fork: kept referenced, never used or closed in the child.
_inherited: list[duckdb.DuckDBPyConnection] = []


def _check_pid() -> None:
    """Drop (without closing) what a forked child inherited. Called with ``_cond`` held."""
    global _pid, _making, _closer, _closer_thread
    if _pid != os.getpid():
        _inherited.extend(_ready)
        _ready.clear()
        _making = 0
        _closer, _closer_thread = None, None
        _pid = os.getpid()


def prefetch(count: int = LIMIT) -> None:
    """Start making spares until ``count`` (at most :data:`LIMIT`) are ready or being made."""
    global _making
    with _cond:
        _check_pid()
        wanted = min(count, LIMIT) - len(_ready) - _making
        if wanted <= 0:
            return
        _making += wanted
    threading.Thread(target=_make, args=(wanted,), name="flowport-duckdb-spare", daemon=True).start()


def _make(count: int) -> None:
    global _making
    for _ in range(count):
        database: duckdb.DuckDBPyConnection | None = None
        try:
            database = duckdb.connect(":memory:")
        except Exception as exc:  # take() makes its own then, and says why if it fails too
            log.debug("could not make a spare DuckDB database: %s", exc)
        with _cond:
            _making -= 1
            if database is not None:
                if _pid == os.getpid():
                    _ready.append(database)
                else:  # forked meanwhile (this thread does not exist in the child): keep it aside
                    _inherited.append(database)
            _cond.notify_all()


def take() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB database with DuckDB's defaults: a spare, or a new one.

    Waits for a spare being made rather than making another (it started sooner).
    """
    with _cond:
        _check_pid()
        while not _ready and _making:
            _cond.wait()
        if _ready:
            return _ready.pop()
    return duckdb.connect(":memory:")


_closer: queue.SimpleQueue[duckdb.DuckDBPyConnection | None] | None = None
_closer_thread: threading.Thread | None = None


def close_later(database: duckdb.DuckDBPyConnection) -> None:
    """Close ``database`` in a background thread (the process waits for it before it exits)."""
    global _closer, _closer_thread
    with _cond:
        _check_pid()
        if _closer is None:
            _closer = queue.SimpleQueue()
            _closer_thread = threading.Thread(
                target=_close_loop, args=(_closer,), name="flowport-duckdb-close", daemon=True
            )
            _closer_thread.start()
        _closer.put(database)


def _close_loop(pending: queue.SimpleQueue[duckdb.DuckDBPyConnection | None]) -> None:
    while True:
        database = pending.get()
        if database is None:
            return
        try:
            database.close()
        except Exception as exc:  # closing is best effort: the database is gone with the process
            log.debug("closing a DuckDB database failed: %s", exc)


def drain() -> None:
    """Close what is waiting to be closed, and the spares nobody took (at exit, or in tests)."""
    global _closer, _closer_thread
    with _cond:
        _check_pid()
        closer, thread, _closer, _closer_thread = _closer, _closer_thread, None, None
        while _making:
            _cond.wait()
        spares = list(_ready)
        _ready.clear()
    if closer is not None and thread is not None:
        closer.put(None)
        thread.join()
    for database in spares:
        database.close()


atexit.register(drain)
