"""SQL connections kept open from one run to the next: a streaming job's micro-batches.

Each micro-batch of a streaming job is a whole run of its flow, and its
SQL stages would connect afresh every time: the PostgreSQL ADBC driver
reads the server's type catalog on connect (about 25 ms, against a few
milliseconds for the micro-batch's own statements). A job that runs its
micro-batches with a :class:`KeptConnections` in the run's resources
(``kept_connections``) hands each stage a connection a previous micro-batch
closed, when one to the very same connection (spec, credentials included)
is idle and still answers; closing gives it back.

A connection is kept only once :meth:`~flowport.stages.sql._connection.SqlConnection.reset`
made it what a new one is (transaction rolled back, session settings,
temporary tables, prepared statements and advisory locks gone), and only
for vendors that can (``reusable``); anything else is closed as before. The
job closes its keeper when it ends.
"""

from __future__ import annotations

import logging
import threading

from flowport.connections.spec import ConnectionSpec
from flowport.stages.sql._connection import SqlConnection

__all__ = ["KEPT_CONNECTIONS", "KeptConnections"]

#: The run resource under which a job lends its kept connections to the run's stages.
KEPT_CONNECTIONS = "kept_connections"

log = logging.getLogger(__name__)


class KeptConnections:
    """Idle SQL connections, at most ``per_connection`` for each connection spec."""

    def __init__(self, *, per_connection: int = 4) -> None:
        self._per_connection = per_connection
        self._idle: list[SqlConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def take(self, spec: ConnectionSpec) -> SqlConnection | None:
        """An idle connection to ``spec`` that still answers, lent to the caller; None when none is.

        Idle connections of the same stored connection made before it changed (another password,
        host, ...) are closed: no later run can take them.
        """
        while True:
            with self._lock:
                stale = [c for c in self._idle if c.spec.uuid == spec.uuid and c.spec != spec]
                found = next((c for c in self._idle if c.spec == spec), None)
                for conn in [*stale, *([found] if found is not None else [])]:
                    self._idle.remove(conn)
            for conn in stale:
                conn.discard()
            if found is None:
                return None
            if found.alive():
                found.lend(self)
                return found
            log.info("a kept connection to '%s' no longer answers: connecting again", spec.name)
            found.discard()

    def keep(self, conn: SqlConnection) -> bool:
        """Keep ``conn`` for a later run once reset; False (the caller closes it) when it cannot be."""
        if self._closed or not conn.reusable:
            return False
        with self._lock:
            if sum(1 for c in self._idle if c.spec == conn.spec) >= self._per_connection:
                return False
        try:
            conn.reset()
        except Exception as exc:
            log.info("a connection to '%s' is not kept: %s", conn.spec.name, conn.scrub(str(exc)))
            return False
        with self._lock:
            if self._closed:
                return False
            self._idle.append(conn)
        return True

    def close(self) -> None:
        """Close every idle connection; connections given back from now on are closed."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            try:
                conn.discard()
            except Exception:
                log.debug("closing a kept connection failed", exc_info=True)
