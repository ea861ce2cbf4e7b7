"""What every SQL stage shares: the ``connection`` setting, opening it, and driver errors as stage errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flowport.connections.drivers import scrub_message
from flowport.connections.spec import ConnectionSpec
from flowport.errors import FlowportError, StageError
from flowport.plugins.contract import StageConfig, StageContext, setting
from flowport.stages.sql._connection import SqlConnection
from flowport.stages.sql.kept import KEPT_CONNECTIONS, KeptConnections
from flowport.stages.sql.vendors import open_connection, vendor_class

__all__ = ["SqlConnectionConfig", "connect_spec", "connection_spec", "driver_errors", "open_sql"]

# Driver messages can quote a whole statement; enough to diagnose, not a wall of text.
_MESSAGE_CHARS = 2000


class SqlConnectionConfig(StageConfig):
    """The setting every SQL stage has."""

    connection: str = setting(
        label="Connection",
        description="The SQL connection (uuid or name): PostgreSQL, Redshift, MariaDB/MySQL, SQLite "
        "or DuckDB.",
        min_length=1,
    )


def connection_spec(context: StageContext, ref: str) -> ConnectionSpec:
    """The connection ``ref`` from the run's connection lookup, or a StageError saying why not."""
    lookup = context.resources.get("connections")
    if lookup is None:
        raise StageError(
            context.stage_name,
            "this run has no connections to look up; run the flow through Flowport "
            "(or pass resources={'connections': ...})",
        )
    try:
        spec: ConnectionSpec = lookup.get(ref)
    except FlowportError as exc:
        raise StageError(context.stage_name, exc.message) from None
    return spec


def open_sql(context: StageContext, ref: str, *, load_mode: str | None = None) -> SqlConnection:
    """Look up connection ``ref`` and connect to it (errors scrubbed of secrets).

    A run whose resources hold ``kept_connections`` (a streaming job's
    micro-batches) takes an idle connection from there when one is, and the
    connection goes back there when the stage closes it. ``load_mode``: the
    connection is for a table load in that mode, which a vendor may start on
    another driver (see :meth:`SqlConnection.open_for_load`); not in a run
    that keeps connections.
    """
    return connect_spec(context, connection_spec(context, ref), load_mode=load_mode)


def connect_spec(
    context: StageContext, spec: ConnectionSpec, *, load_mode: str | None = None
) -> SqlConnection:
    """Connect to ``spec``, already looked up, as :func:`open_sql` does (a kept connection first)."""
    kept: KeptConnections | None = context.resources.get(KEPT_CONNECTIONS)
    if kept is not None:
        lent = kept.take(spec)
        if lent is not None:
            return lent
    with driver_errors(context.stage_name, spec, f"cannot connect to '{spec.name}'"):
        if load_mode is not None and kept is None:
            conn = vendor_class(spec).open_for_load(spec, load_mode)
        else:
            conn = open_connection(spec)
    if kept is not None:
        conn.lend(kept)
    return conn


def _message(spec: ConnectionSpec | None, exc: BaseException) -> str:
    text = exc.message if isinstance(exc, FlowportError) else str(exc)
    text = " ".join(text.strip().split()) or type(exc).__name__
    if spec is not None:
        text = scrub_message(spec, text)
    if len(text) > _MESSAGE_CHARS:
        text = text[:_MESSAGE_CHARS] + "…"
    return text


@contextmanager
def driver_errors(stage: str, spec: ConnectionSpec | None, action: str) -> Iterator[None]:
    """Any failure inside the block as a StageError ``"<action>: <driver's message>"``, secrets scrubbed.

    The original exception is not chained: its text may hold what was just scrubbed.
    """
    try:
        yield
    except StageError as exc:
        if spec is not None:
            exc.message = scrub_message(spec, exc.message)
            exc.args = (exc.message,)
        raise
    except Exception as exc:
        raise StageError(stage, f"{action}: {_message(spec, exc)}") from None
