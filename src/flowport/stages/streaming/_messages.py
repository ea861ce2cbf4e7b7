"""What the message-broker origins share: settings, and messages turned into records.

A message's payload is parsed in the origin's ``data_format``: ``JSON`` (an
object; each top-level field becomes a text column, nested values as JSON
text, so a stream keeps one schema whatever the values hold) or ``TEXT`` (the
payload in a ``text`` column). Metadata columns (``_message_id``,
``_subject``, ...) come first. A payload that is not a JSON object becomes an
error record (code ``MESSAGE_NOT_JSON``) with the payload as text: it goes to
the error stage and is acknowledged with the micro-batch, so one bad message
does not stop the stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import pyarrow as pa

from flowport.plugins.contract import ErrorBatch, StageConfig, StageOutput, setting

__all__ = ["ID_FIELD", "MessageOriginConfig", "message_batches", "text_value"]

ID_FIELD = "_message_id"
NOT_JSON = "MESSAGE_NOT_JSON"


class MessageOriginConfig(StageConfig):
    """Settings every message-broker origin has."""

    connection: str = setting(label="Connection", description="The broker's connection.", min_length=1)
    data_format: Literal["JSON", "TEXT"] = setting(
        "JSON",
        label="Data Format",
        description="JSON: each message is an object whose top-level fields become text columns; "
        "TEXT: the message in a 'text' column.",
    )
    batch_wait: float = setting(
        1.0,
        label="Batch Wait (seconds)",
        description="The longest a micro-batch waits for messages (its maximum latency).",
        gt=0,
        le=300,
    )


def text_value(value: Any) -> str | None:
    """A JSON value as the text a column holds: strings as they are, others as JSON, null as None."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _decode(payload: bytes) -> str:
    return payload.decode("utf-8", "replace")


def message_batches(
    meta: Mapping[str, Sequence[str | None]],
    payloads: Sequence[bytes],
    data_format: str,
    batch_size: int,
) -> Iterator[pa.RecordBatch | StageOutput]:
    """The messages as record batches of at most ``batch_size`` rows (and bad ones as error records).

    ``meta`` holds one list per metadata column, each as long as ``payloads``.
    """
    if data_format == "TEXT":
        columns = {name: pa.array(list(values), pa.string()) for name, values in meta.items()}
        columns["text"] = pa.array([_decode(p) for p in payloads], pa.string())
        yield from pa.table(columns).to_batches(max_chunksize=max(1, batch_size))
        return
    good: list[int] = []
    bad: list[int] = []
    bad_reasons: list[str] = []
    rows: list[dict[str, str | None]] = []
    names: dict[str, None] = {}
    for index, payload in enumerate(payloads):
        try:
            value = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            bad.append(index)
            bad_reasons.append(f"the message is not JSON: {exc}")
            continue
        if not isinstance(value, dict):
            bad.append(index)
            bad_reasons.append(f"the message is JSON {type(value).__name__}, not an object")
            continue
        row = {str(k): text_value(v) for k, v in value.items() if str(k) not in meta}
        names.update(dict.fromkeys(row))
        rows.append(row)
        good.append(index)
    if good:
        columns = {name: pa.array([values[i] for i in good], pa.string()) for name, values in meta.items()}
        for name in names:
            columns[name] = pa.array([row.get(name) for row in rows], pa.string())
        yield from pa.table(columns).to_batches(max_chunksize=max(1, batch_size))
    if bad:
        records = {name: pa.array([values[i] for i in bad], pa.string()) for name, values in meta.items()}
        records["payload"] = pa.array([_decode(payloads[i]) for i in bad], pa.string())
        yield StageOutput(
            errors=ErrorBatch(
                pa.table(records),
                pa.array([NOT_JSON] * len(bad), pa.string()),
                pa.array(bad_reasons, pa.string()),
            )
        )
