"""RabbitMQ queue origin: manual acknowledgements, sent only after the micro-batch committed."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from flowport.connections.drivers import amqp_connection
from flowport.errors import StageError
from flowport.plugins.contract import Origin, StageOutput, setting
from flowport.stages.sql._common import connection_spec
from flowport.stages.streaming._messages import ID_FIELD, MessageOriginConfig, message_batches

__all__ = ["RabbitMqOrigin", "RabbitMqOriginConfig"]


class RabbitMqOriginConfig(MessageOriginConfig):
    """Settings of the RabbitMQ origin."""

    connection: str = setting(
        label="Connection",
        description="A rabbitmq connection (host, port, params.virtualHost, a user name and password).",
        min_length=1,
    )
    queue: str = setting(label="Queue", description="The queue to consume.", min_length=1, max_length=255)
    declare: bool = setting(
        True,
        label="Declare Queue",
        description="Declare the queue (durable) when it does not exist; off: it must exist.",
    )


class RabbitMqOrigin(Origin[RabbitMqOriginConfig]):
    """Consumes a queue with manual acknowledgements; acknowledges a micro-batch once it is committed.

    The channel's prefetch is the batch size, so the broker hands a
    micro-batch at most that many unacknowledged messages. Each record has
    ``_message_id`` (the publisher's ``message_id`` property: an upsert key
    for effectively-once loads; empty when the publisher set none),
    ``_routing_key``, ``_redelivered`` and the payload's fields. What a failed
    or killed run read goes back to the queue when its channel closes and is
    read again. Preview takes messages with ``basic.get`` and gives them back
    unacknowledged: the queue keeps them in their place, marked redelivered.
    """

    name = "rabbitmq_origin"
    label = "RabbitMQ Consumer"
    description = "Streaming origin: a RabbitMQ (AMQP 0-9-1) queue, acknowledged after the commit."
    config_model = RabbitMqOriginConfig
    restrictions = frozenset({"network"})
    streaming = True

    def open(self) -> None:
        """Connect, open a channel with the prefetch of one micro-batch, declare the queue."""
        spec = connection_spec(self.context, self.config.connection)
        if spec.vendor != "rabbitmq":
            raise StageError(
                self.context.stage_name, f"connection '{spec.name}' is {spec.vendor}, not rabbitmq"
            )
        self._scrub = spec.scrub
        self._tags: list[int] = []
        self._last_id: str | None = None
        self._conn: Any = None
        try:
            self._conn = amqp_connection(spec, 10.0)
            self._conn.connect()
            self._channel: Any = self._conn.channel()
            if not self.context.preview:
                self._channel.basic_qos(0, max(1, self.context.batch_size), False)
            if self.config.declare and not self.context.preview:
                self._channel.queue_declare(self.config.queue, durable=True, auto_delete=False)
            else:
                self._channel.queue_declare(self.config.queue, passive=True)
        except Exception as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: BaseException) -> StageError:
        text = str(exc).strip()
        return StageError(
            self.context.stage_name,
            self._scrub(f"RabbitMQ: {type(exc).__name__}{': ' + text if text else ''}"),
        )

    def close(self) -> None:
        """Close the channel: what was read and not acknowledged (a failed run's) goes back to the queue."""
        conn = getattr(self, "_conn", None)
        if conn is not None:
            self._conn = None
            with contextlib.suppress(Exception):
                conn.close()
            with contextlib.suppress(Exception):
                conn.collect()

    def batches(self) -> Iterator[pa.RecordBatch | StageOutput]:
        """One micro-batch: up to batch_size messages, waiting at most batch_wait for them."""
        count = self.context.batch_size
        if self.context.record_limit is not None:
            count = min(count, self.context.record_limit)
        if count <= 0:
            return
        try:
            messages = self._peek(count) if self.context.preview else self._consume(count)
        except StageError:
            raise
        except Exception as exc:
            raise self._failed(exc) from None
        if not messages:
            return
        if not self.context.preview:
            self._tags = [m.delivery_tag for m in messages]
        ids = [_text(m.properties.get("message_id")) for m in messages]
        self._last_id = ids[-1]
        meta: dict[str, list[str | None]] = {
            ID_FIELD: ids,
            "_routing_key": [_text(m.delivery_info.get("routing_key")) for m in messages],
            "_redelivered": ["true" if m.delivery_info.get("redelivered") else "false" for m in messages],
        }
        payloads = [m.body if isinstance(m.body, bytes) else str(m.body).encode() for m in messages]
        yield from message_batches(meta, payloads, self.config.data_format, count)

    def _consume(self, count: int) -> list[Any]:
        messages: list[Any] = []
        channel = self._channel
        tag = channel.basic_consume(self.config.queue, no_ack=False, callback=messages.append)
        deadline = time.monotonic() + self.config.batch_wait
        while len(messages) < count and not self.context.cancelled:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(socket.timeout, TimeoutError):
                self._conn.drain_events(timeout=left)
        # No more deliveries; the prefetch bounds what was already on its way, which is kept.
        channel.basic_cancel(tag)
        return messages

    def _peek(self, count: int) -> list[Any]:
        messages: list[Any] = []
        while len(messages) < count:
            message = self._channel.basic_get(self.config.queue, no_ack=False)
            if message is None:
                break
            messages.append(message)
        return messages  # never acknowledged: back in the queue when the channel closes

    def acknowledge(self) -> None:
        """Acknowledge every message of the micro-batch at once (its records are committed)."""
        if not self._tags:
            return
        self._channel.basic_ack(max(self._tags), multiple=True)
        acknowledged = len(self._tags)
        self._tags = []
        self.context.save_state(
            {"queue": self.config.queue, "acknowledged": acknowledged, "last_message_id": self._last_id}
        )

    def lag(self) -> int | None:
        """The messages ready in the queue (not counting those other consumers hold unacknowledged)."""
        return int(self._channel.queue_declare(self.config.queue, passive=True).message_count)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
