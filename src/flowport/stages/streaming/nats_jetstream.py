"""NATS JetStream origin: a durable pull consumer, each micro-batch acknowledged only after the commit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterator
from typing import Any, Literal, TypeVar

import pyarrow as pa

from flowport.connections.drivers import nats_connect_options
from flowport.connections.spec import ConnectionSpec
from flowport.errors import StageError
from flowport.plugins.contract import Origin, StageOutput, setting
from flowport.stages.sql._common import connection_spec
from flowport.stages.streaming._messages import ID_FIELD, MessageOriginConfig, message_batches

__all__ = ["NatsJetStreamOrigin", "NatsJetStreamOriginConfig"]

T = TypeVar("T")


class NatsJetStreamOriginConfig(MessageOriginConfig):
    """Settings of the NATS JetStream origin."""

    connection: str = setting(
        label="Connection",
        description="A nats connection (host, port; a user name and password, or a 'token' credential).",
        min_length=1,
    )
    stream: str = setting(label="Stream", description="The JetStream stream to read.", min_length=1)
    subject: str | None = setting(
        None,
        label="Subject Filter",
        description="Read only the stream's messages on these subjects (wildcards allowed); default: all.",
    )
    durable: str = setting(
        "flowport",
        label="Durable Consumer",
        description="The durable pull consumer; created when missing. What it delivered and this flow "
        "did not acknowledge comes again after the ack wait.",
        min_length=1,
        max_length=256,
        pattern=r"^[^.*>\s]+$",
    )
    start_from: Literal["earliest", "latest"] = setting(
        "earliest",
        label="Start From",
        description="Where a new consumer starts: the stream's first message, or only new ones.",
    )
    ack_wait: float = setting(
        30.0,
        label="Ack Wait (seconds)",
        description="Messages delivered and not acknowledged for this long (a killed run's) are "
        "delivered again. Applies when the consumer is created.",
        gt=0,
        le=86400,
    )


class NatsJetStreamOrigin(Origin[NatsJetStreamOriginConfig]):
    """Reads a JetStream stream through a durable pull consumer; acknowledges a micro-batch once committed.

    Each record has ``_message_id`` (the message's sequence in the stream: an
    upsert key for effectively-once loads), ``_subject`` and the payload's
    fields. A micro-batch that failed is negatively acknowledged (delivered
    again at once); one whose process died is delivered again after
    ``ack_wait``. Preview reads the messages after the consumer's last
    delivered one directly from the stream and leaves the consumer as it was.
    """

    name = "nats_jetstream_origin"
    label = "NATS JetStream Consumer"
    description = (
        "Streaming origin: a NATS JetStream stream through a durable pull consumer; ack after the commit."
    )
    config_model = NatsJetStreamOriginConfig
    restrictions = frozenset({"network"})
    streaming = True

    def open(self) -> None:
        """Connect and make sure the durable consumer exists (not in preview)."""
        spec = connection_spec(self.context, self.config.connection)
        if spec.vendor != "nats":
            raise StageError(self.context.stage_name, f"connection '{spec.name}' is {spec.vendor}, not nats")
        self._scrub = spec.scrub
        self._msgs: list[Any] = []
        self._nc: Any = None
        self._loop = asyncio.new_event_loop()
        self._run(self._connect(spec))

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        try:
            return self._loop.run_until_complete(work)
        except StageError:
            raise
        except Exception as exc:
            raise StageError(
                self.context.stage_name, self._scrub(f"NATS: {type(exc).__name__}: {exc}".rstrip(": "))
            ) from None

    async def _connect(self, spec: ConnectionSpec) -> None:
        import nats
        from nats.js.errors import NotFoundError

        cfg = self.config
        self._nc = await nats.connect(**nats_connect_options(spec, 10.0))
        self._js = self._nc.jetstream(timeout=10.0)
        await self._js.stream_info(cfg.stream)  # a missing stream fails here, with its name
        if self.context.preview:
            return
        try:
            await self._js.consumer_info(cfg.stream, cfg.durable)
        except NotFoundError:
            await self._js.add_consumer(cfg.stream, self._consumer_config(cfg.start_from))
        self._sub = await self._js.pull_subscribe_bind(durable=cfg.durable, stream=cfg.stream)

    def _consumer_config(self, position: str) -> Any:
        from nats.js import api

        cfg = self.config
        options: dict[str, Any] = {"deliver_policy": api.DeliverPolicy.ALL}
        if position == "latest":
            options = {"deliver_policy": api.DeliverPolicy.NEW}
        elif position != "earliest":
            options = {"deliver_policy": api.DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": int(position)}
        return api.ConsumerConfig(
            durable_name=cfg.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            filter_subject=cfg.subject,
            ack_wait=cfg.ack_wait,
            max_ack_pending=max(1000, 2 * self.context.batch_size),
            **options,
        )

    def reset(self, position: str) -> None:
        """Make the durable consumer again at ``earliest``, ``latest`` or a stream sequence (a number).

        What it delivered and nobody acknowledged is forgotten with it.
        """
        if position not in ("earliest", "latest") and not (position.isdigit() and int(position) > 0):
            raise StageError(
                self.context.stage_name,
                f"{self.label} resets to earliest, latest or a stream sequence number, not {position!r}",
            )
        self._run(self._recreate(position))
        self.context.save_state(
            {"stream": self.config.stream, "durable": self.config.durable, "reset_to": position}
        )

    async def _recreate(self, position: str) -> None:
        from nats.js.errors import NotFoundError

        with contextlib.suppress(NotFoundError):
            await self._js.delete_consumer(self.config.stream, self.config.durable)
        await self._js.add_consumer(self.config.stream, self._consumer_config(position))

    def close(self) -> None:
        """Give back what was read and not acknowledged (a failed run's), then disconnect."""
        loop = getattr(self, "_loop", None)
        if loop is None:
            return
        try:
            if self._nc is not None:
                loop.run_until_complete(self._close())
        except Exception as exc:
            self.context.logger.warning(self._scrub(f"closing the NATS connection: {exc}"))
        finally:
            loop.close()

    async def _close(self) -> None:
        if self._msgs and not self._nc.is_closed:
            for msg in self._msgs:
                await msg.nak()  # delivered again at once, not after ack_wait
            self._msgs = []
            await self._nc.flush(timeout=5)
        await self._nc.close()

    def batches(self) -> Iterator[pa.RecordBatch | StageOutput]:
        """One micro-batch: what the consumer delivers, up to batch_size, waiting at most batch_wait."""
        count = self.context.batch_size
        if self.context.record_limit is not None:
            count = min(count, self.context.record_limit)
        if count <= 0:
            return
        if self.context.preview:
            found = self._run(self._peek(count))
        else:
            self._msgs = self._run(self._fetch(count))
            found = [(m.metadata.sequence.stream, m.subject, m.data) for m in self._msgs]
        if not found:
            return
        meta = {ID_FIELD: [str(seq) for seq, _, _ in found], "_subject": [s for _, s, _ in found]}
        yield from message_batches(meta, [d for _, _, d in found], self.config.data_format, count)

    async def _fetch(self, count: int) -> list[Any]:
        import nats.errors

        try:
            msgs: list[Any] = await self._sub.fetch(batch=count, timeout=self.config.batch_wait)
        except nats.errors.TimeoutError:
            return []
        return msgs

    async def _peek(self, count: int) -> list[tuple[int, str, bytes]]:
        """The next messages the consumer would deliver, read from the stream (the consumer untouched)."""
        from nats.js.errors import NotFoundError

        cfg = self.config
        info = await self._js.stream_info(cfg.stream)
        try:
            consumer = await self._js.consumer_info(cfg.stream, cfg.durable)
            seq = int(consumer.delivered.stream_seq or 0) + 1
        except NotFoundError:
            if cfg.start_from == "latest":
                return []
            seq = int(info.state.first_seq or 1)
        found: list[tuple[int, str, bytes]] = []
        last = int(info.state.last_seq or 0)
        while len(found) < count and seq <= last:
            try:
                raw = await self._js.get_msg(cfg.stream, seq=seq, subject=cfg.subject, next=True)
            except NotFoundError:
                break
            found.append((int(raw.seq or seq), str(raw.subject), bytes(raw.data or b"")))
            seq = int(raw.seq or seq) + 1
        return found

    def acknowledge(self) -> None:
        """Acknowledge the micro-batch (its records are committed) and note the last sequence in the state."""
        if not self._msgs:
            return
        self._run(self._ack())
        last = self._msgs[-1].metadata.sequence.stream
        self._msgs = []
        self.context.save_state(
            {"stream": self.config.stream, "durable": self.config.durable, "last_sequence": last}
        )

    def lag(self) -> int | None:
        """The stream's messages the consumer has not delivered yet."""
        if self.context.preview or self._nc is None:
            return None
        info = self._run(self._js.consumer_info(self.config.stream, self.config.durable))
        return int(info.num_pending or 0)

    async def _ack(self) -> None:
        for msg in self._msgs:
            await msg.ack()
        await self._nc.flush(timeout=10)
