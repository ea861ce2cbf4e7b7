"""Table names from configuration: parsing, checking and quoting.

A table name comes from a flow document, so it is untrusted text. It is never
pasted into SQL: every part is quoted for the vendor (a quote inside the name
is doubled), so any character but NUL is taken literally. Names longer than
the vendor keeps are refused instead of being silently truncated (PostgreSQL
would otherwise write to a different table than the one configured).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = [
    "TableName",
    "check_identifier",
    "parse_table_name",
    "work_table_name",
]


@dataclass(frozen=True)
class TableName:
    """A table, optionally in a schema (PostgreSQL schema, MariaDB database, attached SQLite file)."""

    name: str
    schema: str | None = None

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema is not None else self.name

    def sibling(self, name: str) -> TableName:
        """Another table in the same schema."""
        return TableName(name, self.schema)


def check_identifier(text: str, *, what: str = "name") -> str:
    """``text`` if it can be used as a (quoted) identifier; ``ValueError`` with the reason otherwise."""
    if not text:
        raise ValueError(f"the {what} is empty")
    if "\x00" in text:
        raise ValueError(f"the {what} {text!r} contains a NUL character")
    if text != text.strip():
        raise ValueError(f"the {what} {text!r} starts or ends with white space")
    return text


def parse_table_name(text: str) -> TableName:
    """``"table"`` or ``"schema.table"`` as a :class:`TableName`.

    The text is split on the dot; each part is used exactly as written (case
    included) and quoted later. ``ValueError`` explains what is wrong.
    """
    parts = text.split(".")
    if len(parts) > 2:
        raise ValueError(
            f"table {text!r} has {len(parts) - 1} dots; write 'table' or 'schema.table' "
            "(a table name itself cannot contain a dot)"
        )
    for part in parts:
        check_identifier(part, what="table name part" if len(parts) > 1 else "table name")
    return TableName(parts[-1], parts[0] if len(parts) == 2 else None)


def _fits(text: str, limit: int, *, in_bytes: bool) -> bool:
    return len(text.encode("utf-8") if in_bytes else text) <= limit


def _cut(text: str, limit: int, *, in_bytes: bool) -> str:
    while not _fits(text, limit, in_bytes=in_bytes):
        text = text[:-1]
    return text


def work_table_name(table: str, purpose: str, run_id: str, *, limit: int, in_bytes: bool) -> str:
    """The name of a work table of one run: ``<table>__fp_<purpose>_<run_id>``.

    When that is longer than the vendor allows, the table part is shortened
    and a hash of the full name keeps it unique per target.
    """
    run = re.sub(r"[^A-Za-z0-9_]", "_", run_id)[:32] or "run"
    suffix = f"__fp_{purpose}_{run}"
    name = table + suffix
    if _fits(name, limit, in_bytes=in_bytes):
        return name
    digest = hashlib.sha256(table.encode("utf-8")).hexdigest()[:8]
    room = f"_{digest}{suffix}"
    return _cut(table, limit - len(room), in_bytes=in_bytes) + room
