"""HTTP tasks: one request, success when the answer's status is one the task expects."""

from __future__ import annotations

import httpx

from flowport.model.pipeline import HttpTask
from flowport.services.tasks.context import TaskContext

__all__ = ["run_http_task"]

_DEFAULT_TIMEOUT = 30.0
_BODY_CHARS = 500


def run_http_task(task: HttpTask, context: TaskContext) -> str:
    """Send the request (timeout: the task's, else 30 s); the answer's start is kept in the log."""
    left = context.remaining()
    timeout = max(min(left, _DEFAULT_TIMEOUT) if left is not None else _DEFAULT_TIMEOUT, 0.1)
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            answer = client.request(
                task.method,
                task.url,
                headers=task.headers,
                content=task.body.encode() if task.body is not None else None,
                json=task.json_body,
            )
    except httpx.TimeoutException:
        raise context.fail(f"{task.method} {task.url} timed out after {timeout:.0f}s") from None
    except httpx.HTTPError as exc:
        raise context.fail(f"{task.method} {task.url} failed: {type(exc).__name__}: {exc}") from None
    context.log(f"{task.method} {task.url} -> {answer.status_code}")
    if answer.text:
        context.log(answer.text[:_BODY_CHARS])
    if answer.status_code not in task.expect_status:
        raise context.fail(
            f"{task.method} {task.url} answered {answer.status_code}, expected "
            f"{' or '.join(map(str, task.expect_status))}"
        )
    return f"{task.method} {task.url} -> {answer.status_code}"
