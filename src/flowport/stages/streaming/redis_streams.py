"""Redis Streams origin: a consumer group, each micro-batch acknowledged (XACK) only after the commit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import pyarrow as pa

from flowport.errors import StageError
from flowport.plugins.contract import Origin, StageConfig, setting
from flowport.stages.sql._common import connection_spec

__all__ = ["RedisStreamsOrigin", "RedisStreamsOriginConfig"]

ID_FIELD = "_message_id"


class RedisStreamsOriginConfig(StageConfig):
    """Settings of the Redis Streams origin."""

    connection: str = setting(
        label="Connection",
        description="A redis connection (host, port, params.database, an optional password).",
        min_length=1,
    )
    stream: str = setting(label="Stream", description="The stream's key.", min_length=1, max_length=512)
    group: str = setting(
        "flowport", label="Consumer Group", description="Created when missing.", min_length=1, max_length=256
    )
    consumer: str = setting(
        "flowport",
        label="Consumer",
        description="This flow's consumer in the group: what it read and did not acknowledge is read "
        "again first after a restart.",
        min_length=1,
        max_length=256,
    )
    start_from: Literal["earliest", "latest"] = setting(
        "earliest",
        label="Start From",
        description="Where a new consumer group starts: the stream's first entry, or only new entries.",
    )
    batch_wait: float = setting(
        1.0,
        label="Batch Wait (seconds)",
        description="The longest a micro-batch waits for entries (its maximum latency).",
        gt=0,
        le=300,
    )
    reclaim_idle: float = setting(
        60.0,
        label="Reclaim After (seconds)",
        description="Entries another consumer of the group read but has not acknowledged for this long "
        "are taken over (XAUTOCLAIM): a dead consumer's entries are not lost.",
        gt=0,
    )


class RedisStreamsOrigin(Origin[RedisStreamsOriginConfig]):
    """Reads a stream through a consumer group; acknowledges a micro-batch once it is committed.

    Each record has the entry's fields as text, and ``_message_id`` (the
    entry's id: an upsert key for effectively-once loads). A run reads its
    consumer's own unacknowledged entries first (what a killed run had read),
    then entries idle with a dead consumer, then new ones, waiting at most
    ``batch_wait``.
    """

    name = "redis_streams_origin"
    label = "Redis Streams Consumer"
    description = "Streaming origin: a Redis stream through a consumer group; XACK after the commit."
    config_model = RedisStreamsOriginConfig
    restrictions = frozenset({"network"})
    streaming = True

    def open(self) -> None:
        """Connect and make sure the consumer group exists."""
        import redis

        spec = connection_spec(self.context, self.config.connection)
        if spec.vendor != "redis":
            raise StageError(self.context.stage_name, f"connection '{spec.name}' is {spec.vendor}, not redis")
        self._scrub = spec.scrub
        try:
            self._redis: Any = redis.Redis(
                host=spec.host or "127.0.0.1",
                port=spec.effective_port() or 6379,
                db=int(spec.params.get("database") or 0),
                username=spec.username,
                password=spec.password,
                ssl=spec.ssl,
                socket_timeout=self.config.batch_wait + 10,
                socket_connect_timeout=10,
            )
            self._redis.xgroup_create(
                self.config.stream,
                self.config.group,
                id="0" if self.config.start_from == "earliest" else "$",
                mkstream=True,
            )
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise self._failed(exc) from None
        except redis.RedisError as exc:
            raise self._failed(exc) from None
        self._ids: list[str] = []

    def _failed(self, exc: BaseException) -> StageError:
        return StageError(self.context.stage_name, self._scrub(f"Redis: {type(exc).__name__}: {exc}"))

    def close(self) -> None:
        """Close the connection."""
        client = getattr(self, "_redis", None)
        if client is not None:
            client.close()

    def batches(self) -> Iterator[pa.RecordBatch]:
        """One micro-batch: own pending entries, else reclaimed idle ones, else new ones (waiting)."""
        import redis

        count = self.context.batch_size
        if self.context.record_limit is not None:
            count = min(count, self.context.record_limit)
        cfg, client = self.config, self._redis
        if self.context.preview:
            yield from self._peek(count)
            return
        try:
            entries = self._read(client.xreadgroup(cfg.group, cfg.consumer, {cfg.stream: "0"}, count=count))
            if not entries:  # a dead consumer's entries, idle long enough
                claimed = client.xautoclaim(
                    cfg.stream, cfg.group, cfg.consumer, int(cfg.reclaim_idle * 1000), "0-0", count=count
                )
                entries = [(i, f) for i, f in claimed[1] if f is not None]
            if not entries:
                entries = self._read(
                    client.xreadgroup(
                        cfg.group,
                        cfg.consumer,
                        {cfg.stream: ">"},
                        count=count,
                        block=int(cfg.batch_wait * 1000),
                    )
                )
        except redis.RedisError as exc:
            raise self._failed(exc) from None
        if not entries:
            return
        self._ids = [_text(i) for i, _ in entries]
        yield from self._table(entries)

    def _peek(self, count: int) -> Iterator[pa.RecordBatch]:
        """Preview: the next entries the group would read (XRANGE), the group left as it was."""
        import redis

        try:
            groups = {_text(g["name"]): g for g in self._redis.xinfo_groups(self.config.stream)}
            last = _text(groups[self.config.group]["last-delivered-id"])
            entries = self._redis.xrange(self.config.stream, min=f"({last}", count=count)
        except redis.RedisError as exc:
            raise self._failed(exc) from None
        if entries:
            yield from self._table(entries)

    def _table(self, entries: list[tuple[Any, dict[Any, Any]]]) -> Iterator[pa.RecordBatch]:
        columns: dict[str, pa.Array[Any]] = {ID_FIELD: _strings([i for i, _ in entries])}
        keys = list(entries[0][1])
        if all(list(fields) == keys for _, fields in entries):
            # Every entry has the same fields in the same order (the usual stream): whole columns at once,
            # decoded as UTF-8 by Arrow rather than value by value.
            values = zip(*(list(fields.values()) for _, fields in entries), strict=True)
            for key, column in zip(keys, values, strict=True):
                name = _text(key)
                if name != ID_FIELD:
                    columns[name] = _strings(list(column))
        else:
            names: dict[Any, None] = {}
            for _, fields in entries:
                names.update(dict.fromkeys(fields))
            for key in names:
                name = _text(key)
                if name != ID_FIELD:
                    columns[name] = _strings([fields.get(key) for _, fields in entries])
        yield from pa.table(columns).to_batches(max_chunksize=self.context.batch_size)

    @staticmethod
    def _read(answer: Any) -> list[tuple[Any, dict[Any, Any]]]:
        entries: list[tuple[Any, dict[Any, Any]]] = []
        for _stream, items in answer or []:
            entries.extend((i, f) for i, f in items if f is not None)
        return entries

    def acknowledge(self) -> None:
        """XACK the micro-batch (its records are committed) and keep the last id in the stage's state."""
        if not self._ids:
            return
        self._redis.xack(self.config.stream, self.config.group, *self._ids)
        self.context.save_state(
            {"stream": self.config.stream, "group": self.config.group, "last_id": self._ids[-1]}
        )
        self._ids = []

    def lag(self) -> int | None:
        """Entries of the stream the group has not read yet (Redis 7's XINFO GROUPS ``lag``)."""
        for group in self._redis.xinfo_groups(self.config.stream):
            if _text(group.get("name")) == self.config.group:
                value = group.get("lag")
                return int(value) if value is not None else None
        return None

    def reset(self, position: str) -> None:
        """Move the consumer group: ``earliest`` (every entry again), ``latest`` (new ones) or an entry id.

        Entries read and not acknowledged are dropped from the group's pending list.
        """
        import redis

        target = {"earliest": "0", "latest": "$"}.get(position, position)
        try:
            for pending in self._redis.xpending_range(
                self.config.stream, self.config.group, min="-", max="+", count=1_000_000
            ):
                self._redis.xack(self.config.stream, self.config.group, pending["message_id"])
            self._redis.xgroup_setid(self.config.stream, self.config.group, target)
        except redis.ResponseError as exc:
            raise StageError(
                self.context.stage_name,
                f"cannot move the group to {position!r}: use earliest, latest or an entry id such as "
                f"1700000000000-0 ({self._scrub(str(exc))})",
            ) from None
        except redis.RedisError as exc:
            raise self._failed(exc) from None
        self.context.save_state(
            {"stream": self.config.stream, "group": self.config.group, "reset_to": position}
        )


def _strings(values: list[Any]) -> pa.Array[Any]:
    """Redis values (bytes, or text from a decoding client) as an Arrow string column; bad UTF-8 replaced."""
    if values and isinstance(next((v for v in values if v is not None), None), bytes):
        raw = pa.array(values, pa.binary())
        try:
            return raw.cast(pa.string())
        except pa.ArrowInvalid:
            return pa.array([None if v is None else _text(v) for v in values], pa.string())
    return pa.array([None if v is None else str(v) for v in values], pa.string())


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
