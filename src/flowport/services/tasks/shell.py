"""Shell tasks: a program (``git pull``) in a folder inside the file roots, output kept and masked.

The program gets a small environment (PATH, HOME, LANG and the task's own
``env``), never the server's: the server's variables may hold the store's
URL or other secrets. ``secrets`` put connection credentials into variables
the program reads; their values are masked in the log and in messages. A
timeout or a cancel stops the whole process group (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from flowport.model.pipeline import ShellTask
from flowport.services.tasks.context import TaskContext

__all__ = ["run_process", "run_shell_task"]

# Variables a program commonly needs, passed through from the server's environment.
_PASSED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")
_GRACE = 5.0


def _stop(process: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, _GRACE), (signal.SIGKILL, _GRACE)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_process(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], context: TaskContext, what: str
) -> int:
    """Run ``argv`` to its end (or the deadline, or a stop), logging its output; its exit status.

    Raises:
        TaskFailed: it could not start, timed out or was stopped.
    """
    base = {k: os.environ[k] for k in _PASSED if k in os.environ}
    try:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env={**base, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        raise context.fail(f"{what}: cannot start '{argv[0]}': {exc.strerror or exc}") from None
    assert process.stdout is not None
    stream = process.stdout

    def read() -> None:
        for raw in iter(stream.readline, b""):
            context.log(raw.decode("utf-8", "replace").rstrip("\n"))

    reader = threading.Thread(target=read, name="flowport-task-output", daemon=True)
    reader.start()
    reason = None
    while process.poll() is None:
        if context.stopping.wait(0.05):
            reason = "stopped"
        elif context.timed_out():
            reason = "timed out"
        if reason:
            _stop(process)
            break
    process.wait()
    reader.join(2.0)
    stream.close()
    if reason:
        raise context.fail(f"{what} {reason} (pid {process.pid})")
    return int(process.returncode)


def _last_lines(context: TaskContext, count: int = 3) -> str:
    lines = [line for line in context.output().splitlines() if line.strip()]
    return " | ".join(lines[-count:])


def run_shell_task(task: ShellTask, context: TaskContext) -> str:
    """Run the task's command; its exit status 0 is success."""
    folder = context.file_roots.check(task.cwd or ".", base_dir=context.base_dir, what="the task's folder")
    if not folder.is_dir():
        raise context.fail(f"The task's folder '{task.cwd}' is not a folder")
    env = dict(task.env)
    for name, secret in task.secrets.items():
        spec = context.connection(secret.connection)
        value = spec.username if secret.key in ("user", "username") else spec.secret(secret.key)
        if value is None:
            raise context.fail(
                f"Connection '{secret.connection}' has no credential '{secret.key}' for variable {name}"
            )
        context.add_secrets([value])
        env[name] = str(value)
    argv = ["/bin/sh", "-c", task.command] if isinstance(task.command, str) else list(task.command)
    started = time.monotonic()
    status = run_process(argv, cwd=folder, env=env, context=context, what="The command")
    if status != 0:
        tail = _last_lines(context)
        raise context.fail(f"The command exited with status {status}" + (f": {tail}" if tail else ""))
    return f"exit status 0 in {time.monotonic() - started:.2f}s"
