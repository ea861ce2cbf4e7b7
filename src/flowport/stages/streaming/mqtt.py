"""MQTT origin: QoS 1 on a persistent session, each message acknowledged only after the commit."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from flowport.connections.drivers import mqtt_client
from flowport.errors import StageError
from flowport.plugins.contract import Origin, StageOutput, setting
from flowport.stages.sql._common import connection_spec
from flowport.stages.streaming._messages import MessageOriginConfig, message_batches

__all__ = ["MqttOrigin", "MqttOriginConfig"]

_CONNECT_TIMEOUT = 10.0


class MqttOriginConfig(MessageOriginConfig):
    """Settings of the MQTT origin."""

    connection: str = setting(
        label="Connection",
        description="An mqtt connection (host, port, an optional user name and password).",
        min_length=1,
    )
    topic: str = setting(
        label="Topic Filter",
        description="The topics to subscribe to (MQTT wildcards + and # allowed), at QoS 1.",
        min_length=1,
        max_length=65535,
    )
    client_id: str = setting(
        "flowport",
        label="Client ID",
        description="The persistent session's client id: the broker keeps the messages for it while no "
        "micro-batch runs, and sends again those it got no acknowledgement for. One running flow per id.",
        min_length=1,
        max_length=256,
    )
    session_expiry: int = setting(
        604800,
        label="Session Expiry (seconds)",
        description="How long the broker keeps the session (and its messages) while the flow is stopped.",
        ge=1,
        le=4294967294,
    )


class MqttOrigin(Origin[MqttOriginConfig]):
    """Subscribes at QoS 1 on a persistent session (MQTT 5, clean start off, a session expiry).

    Each micro-batch connects, takes what the broker sends (at most
    ``batch_size``: the session's Receive Maximum, so no more is in flight),
    and acknowledges each message (PUBACK, paho's manual ack) only after the
    commit. A failed or killed run acknowledges nothing: the broker sends
    those messages again on the next connect (at least once). Records hold
    ``_topic`` and the payload's fields; MQTT has no message id that survives
    a redelivery, so an upsert needs a key inside the payload.

    Preview subscribes with a clean, throwaway session for ``batch_wait``: it
    shows retained messages and what arrives meanwhile, and leaves the flow's
    session and its queued messages as they were.
    """

    name = "mqtt_origin"
    label = "MQTT Subscriber"
    description = "Streaming origin: MQTT topics at QoS 1 on a persistent session; PUBACK after the commit."
    config_model = MqttOriginConfig
    restrictions = frozenset({"network"})
    streaming = True

    def open(self) -> None:
        """Connect (resuming the persistent session) and subscribe at QoS 1."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        from paho.mqtt.subscribeoptions import SubscribeOptions

        spec = connection_spec(self.context, self.config.connection)
        if spec.vendor != "mqtt":
            raise StageError(self.context.stage_name, f"connection '{spec.name}' is {spec.vendor}, not mqtt")
        self._scrub = spec.scrub
        self._taken: list[Any] = []
        self._messages: list[Any] = []
        self._arrived = threading.Condition()
        self._answers: dict[str, Any] = {}
        self._events = {
            name: threading.Event() for name in ("connect", "subscribe", "unsubscribe", "disconnect")
        }
        preview = self.context.preview
        client_id = f"flowport-preview-{uuid.uuid4().hex[:12]}" if preview else self.config.client_id
        self._client: Any = mqtt_client(spec, client_id, manual_ack=not preview)
        client = self._client
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.ReceiveMaximum = max(1, min(self.context.batch_size, 65535))
        if not preview:
            properties.SessionExpiryInterval = self.config.session_expiry
        try:
            client.connect(
                spec.host or "127.0.0.1",
                spec.effective_port() or 1883,
                keepalive=60,
                clean_start=preview,
                properties=properties,
            )
        except Exception as exc:
            raise self._failed(exc) from None
        client.loop_start()
        self._started = True
        reason = self._await("connect")
        if reason.is_failure:
            raise StageError(self.context.stage_name, f"the MQTT broker refused the connection: {reason}")
        # Retained messages only when the subscription is new, not again on each micro-batch.
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        client.subscribe(self.config.topic, options=options)
        codes = self._await("subscribe")
        if not codes or any(code.is_failure for code in codes):
            refused = ", ".join(str(c) for c in codes or []) or "no answer"
            raise StageError(self.context.stage_name, f"the MQTT broker refused the subscription: {refused}")

    def _failed(self, exc: BaseException) -> StageError:
        text = str(exc).strip()
        return StageError(
            self.context.stage_name, self._scrub(f"MQTT: {type(exc).__name__}{': ' + text if text else ''}")
        )

    def _await(self, event: str) -> Any:
        if not self._events[event].wait(_CONNECT_TIMEOUT):
            raise StageError(self.context.stage_name, f"no {event} answer from the MQTT broker in 10s")
        return self._answers.get(event)

    # paho's callbacks, on its network thread
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._answers["connect"] = reason
        self._events["connect"].set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, properties: Any) -> None:
        self._answers["subscribe"] = list(codes)
        self._events["subscribe"].set()

    def _on_unsubscribe(self, client: Any, userdata: Any, mid: int, codes: Any, properties: Any) -> None:
        self._events["unsubscribe"].set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._events["disconnect"].set()
        with self._arrived:
            self._arrived.notify_all()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._arrived:
            self._messages.append(message)
            self._arrived.notify_all()

    def close(self) -> None:
        """Disconnect: what was not acknowledged stays in the session and comes again."""
        client = getattr(self, "_client", None)
        if client is None or not getattr(self, "_started", False):
            return
        self._started = False
        try:
            if client.is_connected():
                client.disconnect()  # sent after the PUBACKs queued before it
                self._events["disconnect"].wait(5)
        finally:
            client.loop_stop()

    def batches(self) -> Iterator[pa.RecordBatch | StageOutput]:
        """One micro-batch: the messages the broker sends, up to batch_size, waiting at most batch_wait."""
        count = self.context.batch_size
        if self.context.record_limit is not None:
            count = min(count, self.context.record_limit)
        if count <= 0:
            return
        deadline = time.monotonic() + self.config.batch_wait
        with self._arrived:
            while len(self._messages) < count and not self.context.cancelled:
                left = deadline - time.monotonic()
                if left <= 0 or self._events["disconnect"].is_set():
                    break
                self._arrived.wait(min(left, 0.1))
            taken = self._messages[:count]
        if self._events["disconnect"].is_set() and not taken:
            raise StageError(self.context.stage_name, "the MQTT broker closed the connection")
        if not taken:
            return
        if not self.context.preview:
            self._taken = taken
        meta = {"_topic": [m.topic for m in taken]}
        yield from message_batches(meta, [bytes(m.payload) for m in taken], self.config.data_format, count)

    def acknowledge(self) -> None:
        """PUBACK every message of the micro-batch (its records are committed)."""
        if not self._taken:
            return
        for message in self._taken:
            self._client.ack(message.mid, message.qos)
        # The broker answers packets in order: once it answered this, it has every PUBACK before it.
        # (A disconnect right after the PUBACKs can overtake them: the messages would come again.)
        self._client.unsubscribe(f"flowport/ack-barrier/{uuid.uuid4().hex}")
        if not self._events["unsubscribe"].wait(_CONNECT_TIMEOUT):
            self.context.logger.warning(
                "the MQTT broker did not confirm the acknowledgements in time: the messages may come again"
            )
        acknowledged = len(self._taken)
        self._taken = []
        self.context.save_state(
            {"topic": self.config.topic, "client_id": self.config.client_id, "acknowledged": acknowledged}
        )
