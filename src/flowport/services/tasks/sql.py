"""SQL tasks: statements on a stored connection, in one transaction (all or nothing)."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from flowport.connections.drivers import connect_dbapi
from flowport.model.pipeline import SqlTask
from flowport.services.tasks.context import TaskContext

__all__ = ["run_sql_task"]

# How much of a failing statement a message quotes.
_QUOTE = 200


def _run(task: SqlTask, context: TaskContext, conn: Any, done: dict[str, Any]) -> None:
    index = 0
    try:
        cursor = conn.cursor()
        for index, statement in enumerate(task.statements, start=1):
            cursor.execute(statement)
            rows = getattr(cursor, "rowcount", -1)
            context.log(
                f"statement {index}: ok" + (f" ({rows} row(s))" if rows is not None and rows >= 0 else "")
            )
        conn.commit()
        done["ok"] = True
    except Exception as exc:  # the driver's error, any driver
        with contextlib.suppress(Exception):
            conn.rollback()
        quoted = task.statements[index - 1][:_QUOTE] if index else ""
        done["error"] = f"statement {index} failed ({type(exc).__name__}: {str(exc).strip()}); SQL: {quoted}"


def run_sql_task(task: SqlTask, context: TaskContext) -> str:
    """Run the statements on the task's connection; a failure rolls every one back."""
    spec = context.connection(task.connection)
    conn = connect_dbapi(spec, autocommit=False, any_thread=True)
    done: dict[str, Any] = {}
    worker = threading.Thread(target=_run, args=(task, context, conn, done), daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.05)
            if worker.is_alive() and (context.stopping.is_set() or context.timed_out()):
                why = "stopped" if context.stopping.is_set() else "timed out"
                # Closing the connection aborts the statement and its transaction on the server.
                with contextlib.suppress(Exception):
                    conn.close()
                worker.join(5.0)
                raise context.fail(f"The SQL task {why}; its transaction was rolled back")
    finally:
        with contextlib.suppress(Exception):
            conn.close()
    if "error" in done:
        raise context.fail(f"{done['error']}; nothing was committed")
    return f"{len(task.statements)} statement(s) committed on '{spec.name}'"
