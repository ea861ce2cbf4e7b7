"""What travels to the place a job runs: a job group's id and where its instance lives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["JobTask"]


@dataclass(frozen=True)
class JobTask:
    """A job group to run, and the instance it belongs to.

    Nothing else travels: the worker reads the flow, its parameters and its
    connections from the store. The store URL may hold the database's
    password: it is kept out of the task's repr (and so out of log lines).
    """

    job_group_id: int
    database_url: str = field(repr=False)
    #: The instance folder (its secret key decrypts the connections' secrets).
    home: str
    #: Where the flow's relative paths resolve.
    base_dir: str
    #: The instance's file roots when the job was accepted: the worker opens files inside them only.
    file_roots: tuple[str, ...] = ()
    #: Which try this is (a retried job gets the next attempt);
    #: a redelivered task of an ended attempt does nothing.
    attempt: int = 1
    #: What the job group runs: ``flow``, ``pipeline`` or ``partition`` (queued apart by Celery).
    kind: str = "flow"
    #: For a partition of a partitioned run: its index, the one file it reads, the origin and
    #: destination stages and the staging table it appends to (names and paths only).
    partition: dict[str, Any] | None = field(default=None, hash=False, compare=False)
