"""Streaming origins on the real brokers of this machine, into the real PostgreSQL.

As in ``test_streaming.py``: a streaming job runs in a worker process that
is SIGKILLed mid-stream; a new job of the same flow picks up what the killed
one had read and not acknowledged. Into an upsert keyed on the message id
every event lands exactly once; into an append at least once, with at most
one micro-batch of duplicates. A stop lets the micro-batch in flight commit
and acknowledge: what the sink holds plus what still waits at the broker is
exactly what was published.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from tests.conftest import require_service
from tests.connections.live_servers import PG_HOST, PG_PORT, postgres_database

from flowport.orchestrate import JobLauncher, JobTask
from flowport.services import connections, flow_records, instance, jobs, runs
from flowport.services import launcher as launchers
from flowport.services.settings import settings
from flowport.store.database import DATABASE_URL_ENV

TIMEOUT = 60.0
EVENTS, BATCH = 1_000, 100


class _Held(JobLauncher):
    """Keeps jobs Pending: the test runs each in a worker process it can kill."""

    kind = "held"

    def submit(self, task: JobTask) -> None:
        del task


# -- brokers ------------------------------------------------------------------------------------


class Broker:
    """One origin's broker as the test drives it: publish events, see what still waits there."""

    plugin = ""
    #: How many events a phase of a test publishes.
    events = EVENTS
    #: How many events the stop test publishes (enough that a stop comes mid-stream).
    stop_events = 5 * EVENTS
    #: Whether :meth:`waiting` can be asked while a job consumes.
    waiting_while_running = True
    #: Whether the origin tells its lag (what waits after each micro-batch).
    lag_known = True

    def stage_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def publish(self, start: int, count: int) -> None:
        raise NotImplementedError

    def waiting(self) -> int:
        """Events published and not acknowledged (read or not): 0 once everything is checkpointed."""
        raise NotImplementedError

    def close(self) -> None:
        """Remove what the test made."""

    #: The column an upsert is keyed on.
    key = "_message_id"

    def attach(self, sink: dict[str, Any]) -> None:
        """The test's PostgreSQL database (the sink) is there."""

    def flow_made(self, flow: dict[str, Any]) -> None:
        """The test's flow was created."""


class Nats(Broker):
    plugin = "nats_jetstream_origin"

    def __init__(self) -> None:
        require_service("NATS", "127.0.0.1", 4222)
        self.stream = f"events_{uuid.uuid4().hex[:8]}"
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._setup())

    async def _setup(self) -> None:
        import nats

        self.nc = await nats.connect("nats://127.0.0.1:4222")
        self.js = self.nc.jetstream()
        await self.js.add_stream(name=self.stream, subjects=[f"{self.stream}.>"])

    def stage_config(self) -> dict[str, Any]:
        return {
            "connection": "nats",
            "stream": self.stream,
            "subject": f"{self.stream}.>",
            "batch_wait": 0.2,
            "ack_wait": 1.0,
        }

    def publish(self, start: int, count: int) -> None:
        async def send() -> None:
            for i in range(start, start + count):
                await self.js.publish(f"{self.stream}.e", json.dumps({"n": str(i)}).encode())

        self.loop.run_until_complete(send())

    def waiting(self) -> int:
        from nats.js.errors import NotFoundError

        try:
            info = self.loop.run_until_complete(self.js.consumer_info(self.stream, "flowport"))
        except NotFoundError:  # no consumer yet: every message waits
            stream = self.loop.run_until_complete(self.js.stream_info(self.stream))
            return int(stream.state.messages)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    def close(self) -> None:
        async def drop() -> None:
            await self.js.delete_stream(self.stream)
            await self.nc.close()

        self.loop.run_until_complete(drop())
        self.loop.close()


class RabbitMq(Broker):
    plugin = "rabbitmq_origin"

    def __init__(self) -> None:
        require_service("RabbitMQ", "127.0.0.1", 5672)
        import amqp

        self.queue = f"events-{uuid.uuid4().hex[:8]}"
        self.conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
        self.conn.connect()
        self.channel = self.conn.channel()
        self.channel.queue_declare(self.queue, durable=True, auto_delete=False)

    def stage_config(self) -> dict[str, Any]:
        return {"connection": "rabbitmq", "queue": self.queue, "batch_wait": 0.2}

    def publish(self, start: int, count: int) -> None:
        import amqp

        for i in range(start, start + count):
            message = amqp.Message(json.dumps({"n": str(i)}), message_id=f"m-{i}", delivery_mode=2)
            self.channel.basic_publish(message, exchange="", routing_key=self.queue)

    def waiting(self) -> int:
        # Ready messages; a live consumer's unacknowledged ones are back here once its channel closed.
        return int(self.channel.queue_declare(self.queue, passive=True).message_count)

    def close(self) -> None:
        self.channel.queue_delete(self.queue)
        self.conn.close()


class Mqtt(Broker):
    """Mosquitto. Its persistent session is made first (as a flow that ran before would have),
    so what is published before the first job waits for it. Mosquitto queues at most 1,000
    messages for a session by default: fewer events."""

    plugin = "mqtt_origin"
    lag_known = False
    events = 400
    stop_events = 800
    waiting_while_running = False

    def __init__(self) -> None:
        require_service("Mosquitto", "127.0.0.1", 1883)
        from paho.mqtt.subscribeoptions import SubscribeOptions

        self.topic = f"events/{uuid.uuid4().hex[:8]}"
        self.client_id = f"flowport-test-{uuid.uuid4().hex[:8]}"
        session = self._session()
        session.subscribe(self.topic, options=SubscribeOptions(qos=1))
        time.sleep(0.2)
        self._leave(session)
        self.publisher = self._client(f"pub-{self.client_id}")
        self.publisher.connect("127.0.0.1", 1883)
        self.publisher.loop_start()

    @staticmethod
    def _client(client_id: str, manual_ack: bool = False) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        return mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=manual_ack
        )

    def _session(self, expiry: int = 3600, received: list[Any] | None = None) -> Any:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        client = self._client(self.client_id, manual_ack=True)
        if received is not None:
            client.on_message = lambda c, u, m: received.append(m)
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = expiry
        properties.ReceiveMaximum = 65535
        client.connect("127.0.0.1", 1883, clean_start=expiry == 0, properties=properties)
        client.loop_start()
        _wait(client.is_connected, 10)
        return client

    @staticmethod
    def _leave(client: Any) -> None:
        client.disconnect()
        client.loop_stop()

    def stage_config(self) -> dict[str, Any]:
        return {"connection": "mqtt", "topic": self.topic, "client_id": self.client_id, "batch_wait": 0.2}

    def publish(self, start: int, count: int) -> None:
        sent = [
            self.publisher.publish(self.topic, json.dumps({"n": str(i)}), qos=1)
            for i in range(start, start + count)
        ]
        for info in sent:
            info.wait_for_publish(10)

    def waiting(self) -> int:
        # Only while no job runs: takes the session over, counts what the broker sends, acknowledges nothing.
        # Counted once nothing more arrives for half a second (a busy machine delivers 800 slowly).
        received: list[Any] = []
        session = self._session(received=received)
        seen, deadline = -1, time.monotonic() + 30
        while len(received) != seen and time.monotonic() < deadline:
            seen = len(received)
            time.sleep(0.5)
        self._leave(session)
        return len(received)

    def close(self) -> None:
        self._leave(self.publisher)
        self._leave(self._session(expiry=0))  # a clean start with no expiry: the session is gone


class Table(Broker):
    """A PostgreSQL table (in the sink's database) with a bigserial id: each event one inserted row."""

    plugin = "sql_table_stream_origin"
    key = "id"
    lag_known = False

    def attach(self, sink: dict[str, Any]) -> None:
        self.dsn = sink
        with psycopg.connect(**sink, autocommit=True) as conn:
            conn.execute("CREATE TABLE source (id bigserial PRIMARY KEY, n text)")

    def flow_made(self, flow: dict[str, Any]) -> None:
        self.flow_uuid = flow["uuid"]

    def stage_config(self) -> dict[str, Any]:
        return {"connection": "warehouse", "table": "source", "offset_column": "id", "batch_wait": 0.2}

    def publish(self, start: int, count: int) -> None:
        with psycopg.connect(**self.dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO source (n) SELECT i::text FROM generate_series(%s::int, %s::int) AS i",
                (start, start + count - 1),
            )

    def waiting(self) -> int:
        from flowport.services.stage_state import StoreStageState

        state = StoreStageState(self.flow_uuid).load("Events_01") or {}
        offset = (state.get("offset") or {}).get("value") or 0
        with psycopg.connect(**self.dsn) as conn:
            found = conn.execute("SELECT count(*) FROM source WHERE id > %s", (offset,)).fetchone()
        assert found is not None
        return int(found[0])


class Directory(Broker):
    """A folder in the instance's file roots; each publish writes files of 50 JSON lines, named in
    order and renamed into place complete. Read files are moved to a done folder."""

    plugin = "directory_origin"
    lag_known = False
    per_file = 50
    moved = True

    def attach(self, sink: dict[str, Any]) -> None:
        tag = uuid.uuid4().hex[:8]
        self.folder = settings().data_dir / f"inbox-{tag}"
        self.done = settings().data_dir / f"done-{tag}"
        self.folder.mkdir(parents=True)

    def flow_made(self, flow: dict[str, Any]) -> None:
        self.flow_uuid = flow["uuid"]

    def stage_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"directory": str(self.folder), "settle_seconds": 0, "batch_wait": 0.2}
        if self.moved:
            config["done_directory"] = str(self.done)
        return config

    def publish(self, start: int, count: int) -> None:
        for first in range(start, start + count, self.per_file):
            lines = [
                json.dumps({"n": str(i)}) for i in range(first, min(first + self.per_file, start + count))
            ]
            temp = self.folder / f".events-{first:08d}.jsonl"
            temp.write_text("\n".join(lines) + "\n")
            temp.rename(self.folder / f"events-{first:08d}.jsonl")

    def waiting(self) -> int:
        done: set[str] = set()
        if not self.moved:
            from flowport.services.stage_state import StoreStageState

            done = set((StoreStageState(self.flow_uuid).load("Events_01") or {}).get("done", []))
        waiting = [p for p in self.folder.iterdir() if p.name not in done and not p.name.startswith(".")]
        return sum(len(p.read_text().splitlines()) for p in waiting)


class RecordedDirectory(Directory):
    """The same folder, files left in place: the names read are kept in the stage's state."""

    moved = False


BROKERS: dict[str, type[Broker]] = {
    "nats": Nats,
    "rabbitmq": RabbitMq,
    "mqtt": Mqtt,
    "table": Table,
    "directory": Directory,
    "directory-recorded": RecordedDirectory,
}


# -- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name in (DATABASE_URL_ENV, "FLOWPORT_LAUNCHER", "FLOWPORT_BROKER_URL", "FLOWPORT_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    with postgres_database("flowport_origins") as name:
        dsn = {"host": PG_HOST, "port": PG_PORT, "user": "postgres", "dbname": name}
        instance.init_instance()
        connections.add_connection(
            {
                "name": "warehouse",
                "vendor": "postgresql",
                "host": PG_HOST,
                "port": PG_PORT,
                "params": {"database": name},
                "credentials": [{"name": "username", "value": "postgres"}],
            }
        )
        for ref, port in (("nats", 4222), ("rabbitmq", 5672), ("mqtt", 1883)):
            connections.add_connection({"name": ref, "vendor": ref, "host": "127.0.0.1", "port": port})
        launchers.use_launcher(_Held(lambda task: "Pending"))
        try:
            yield dsn
        finally:
            launchers.use_launcher(None)


@pytest.fixture
def broker(request: pytest.FixtureRequest, sink: dict[str, Any]) -> Iterator[Broker]:
    made = BROKERS[request.param]()
    made.attach(sink)
    try:
        yield made
    finally:
        made.close()


def _flow(broker: Broker, table: str, mode: str) -> dict[str, Any]:
    load: dict[str, Any] = {"connection": "warehouse", "table": table, "mode": mode}
    if mode == "upsert":
        load["keys"] = [broker.key]
    flow = flow_records.create_flow(
        {
            "name": f"Stream {uuid.uuid4().hex[:6]}",
            "type": "streaming",
            "configuration": {"batch_size": BATCH, "retry_initial_wait": 0.2, "retry_max_wait": 0.5},
            "stages": [
                {
                    "name": "Events_01",
                    "plugin": {"name": broker.plugin},
                    "configuration": broker.stage_config(),
                },
                {"name": "Load_01", "plugin": {"name": "sql_table_destination"}, "configuration": load},
            ],
            "edges": [{"from": "Events_01", "to": "Load_01"}],
        }
    )
    broker.flow_made(flow)
    return flow


def _worker(group_id: int) -> subprocess.Popen[bytes]:
    code = (
        "from flowport.services.runs import job_task; "
        "from flowport.services.pipeline_runner import run_job_group; "
        f"run_job_group(job_task({group_id}))"
    )
    env = {**os.environ, "FLOWPORT_HOME": str(settings().home)}
    return subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)


def _count(dsn: dict[str, Any], table: str) -> tuple[int, int]:
    with psycopg.connect(**dsn) as conn:
        try:
            found = conn.execute(f"SELECT count(*), count(DISTINCT n) FROM {table}").fetchone()
        except psycopg.errors.UndefinedTable:
            return 0, 0
    assert found is not None
    return int(found[0]), int(found[1])


def _wait(condition: Any, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def _end(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)


# -- tests --------------------------------------------------------------------------------------

KILL_CASES = [
    ("nats", "upsert"),
    ("nats", "append"),
    ("rabbitmq", "upsert"),
    ("rabbitmq", "append"),
    ("mqtt", "append"),  # MQTT has no message id: an upsert would need a key in the payload
    ("table", "upsert"),
    ("table", "append"),
    ("directory", "upsert"),
    ("directory", "append"),
    ("directory-recorded", "append"),
]
ORIGINS = ["nats", "rabbitmq", "mqtt", "table", "directory", "directory-recorded"]
# An MQTT preview shows what arrives while it listens, not what the session holds.
PREVIEWED = ["nats", "rabbitmq", "table", "directory"]


@pytest.mark.parametrize(("broker", "mode"), KILL_CASES, indirect=["broker"])
def test_a_sigkilled_stream_resumes_without_losing_an_event(
    sink: dict[str, Any], broker: Broker, mode: str
) -> None:
    table, events = f"events_{mode}", broker.events
    broker.publish(0, events)
    flow = _flow(broker, table, mode)
    first = runs.run_flow(flow["id"])["id"]
    worker = _worker(first)
    try:
        _wait(lambda: _count(sink, table)[0] >= events // 3)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        _end(worker)
    loaded_before_restart = _count(sink, table)[0]
    assert loaded_before_restart < events  # killed mid-stream
    broker.publish(events, events)  # more arrive while nothing runs
    second = runs.run_flow(flow["id"])["id"]
    worker = _worker(second)
    try:
        _wait(
            lambda: (
                _count(sink, table)[1] == 2 * events
                and (not broker.waiting_while_running or broker.waiting() == 0)
            )
        )
        assert jobs.stop_job_group(second)["id"] == second
        assert worker.wait(30) == 0
    finally:
        _end(worker)
    rows, distinct = _count(sink, table)
    assert distinct == 2 * events and broker.waiting() == 0
    if mode == "upsert":
        assert rows == 2 * events  # effectively once
    else:
        assert 2 * events <= rows <= 2 * events + BATCH  # at least once, at most one micro-batch twice
    done = jobs.get_job_group(second)
    assert done["status"] == "Complete" and done["error"] is None
    assert done["result"]["streaming"]["stopped"] is True


@pytest.mark.parametrize("broker", ORIGINS, indirect=True)
def test_stop_drains_the_micro_batch_in_flight_and_acknowledges_it(
    sink: dict[str, Any], broker: Broker
) -> None:
    flow = _flow(broker, "events", "append")
    group = runs.run_flow(flow["id"])["id"]
    worker = _worker(group)
    published = broker.stop_events
    try:
        _wait(lambda: jobs.get_job_group(group)["status"] == "InProgress")
        broker.publish(0, published)
        _wait(lambda: _count(sink, "events")[0] > 0)
        jobs.stop_job_group(group)
        assert worker.wait(30) == 0
    finally:
        _end(worker)
    # Whatever was read was committed and acknowledged; what was not read waits at the broker.
    loaded, distinct = _count(sink, "events")
    assert loaded == distinct and loaded > 0
    assert loaded + broker.waiting() == published
    metrics = jobs.get_job_group_metrics(group)
    assert metrics["status"] == "Complete" and metrics["streaming"]["records"] == loaded
    if broker.lag_known:
        assert metrics["streaming"]["lag"] == broker.waiting()


@pytest.mark.parametrize("broker", PREVIEWED, indirect=True)
def test_preview_shows_the_next_events_and_leaves_the_broker_as_it_was(
    sink: dict[str, Any], broker: Broker
) -> None:
    broker.publish(0, 30)
    flow = _flow(broker, "events", "append")
    for _ in range(2):  # a second preview shows the same: nothing was consumed
        stages = {s["instanceName"]: s for s in flow_records.preview_flow(flow["id"], rows=10)}
        shown = stages["Events_01"]["output"]
        assert [r["n"] for r in shown] == [str(i) for i in range(10)]
    assert broker.waiting() == 30
    assert _count(sink, "events") == (0, 0)


@pytest.mark.parametrize(("vendor", "port"), [("nats", 4222), ("rabbitmq", 5672), ("mqtt", 1883)])
def test_connection_tests_reach_the_real_broker_and_scrub_a_refused_password(vendor: str, port: int) -> None:
    from flowport.connections.drivers import test_connection
    from flowport.connections.spec import ConnectionSpec

    require_service(vendor, "127.0.0.1", port)
    ok = test_connection(ConnectionSpec(name="b", vendor=vendor, host="127.0.0.1"), timeout=5)
    assert ok.ok, ok.message
    closed = test_connection(ConnectionSpec(name="b", vendor=vendor, host="127.0.0.1", port=1), timeout=2)
    assert not closed.ok
    planted = "Pl4nted-Br0ker-pw!"
    wrong = ConnectionSpec(
        name="b", vendor=vendor, host="127.0.0.1", username="nobody", secrets={"password": planted}
    )
    refused = test_connection(wrong, timeout=5)
    assert planted not in refused.message
    if vendor == "rabbitmq":  # the only broker here that checks passwords
        assert not refused.ok and "ACCESS_REFUSED" in refused.message


# An origin's own position, and the first event it then reads (None: earliest and latest only).
RESETS: dict[str, tuple[str, int] | None] = {
    "nats": ("11", 10),
    "table": ("10", 10),
    "directory-recorded": None,
}


@pytest.mark.parametrize("broker", sorted(RESETS), indirect=True)
def test_reset_offsets_moves_where_the_next_micro_batch_starts(sink: dict[str, Any], broker: Broker) -> None:
    from flowport.errors import StageError

    broker.publish(0, 30)
    flow = _flow(broker, "events", "append")

    def shown() -> list[int]:
        stages = {s["instanceName"]: s for s in flow_records.preview_flow(flow["id"], rows=5)}
        return [int(r["n"]) for r in stages["Events_01"]["output"]]

    assert flow_records.reset_flow_offsets(flow["id"], "latest")["stages"] == ["Events_01"]
    assert shown() == [] and broker.waiting() == 0
    flow_records.reset_flow_offsets(flow["id"], "earliest")
    assert shown() == [0, 1, 2, 3, 4] and broker.waiting() == 30
    own = RESETS[request_name(broker)]
    if own is not None:
        flow_records.reset_flow_offsets(flow["id"], own[0])
        assert shown() == list(range(own[1], own[1] + 5)) and broker.waiting() == 30 - own[1]
    with pytest.raises(StageError, match="resets to"):
        flow_records.reset_flow_offsets(flow["id"], "nonsense")


def request_name(broker: Broker) -> str:
    return next(name for name, cls in BROKERS.items() if type(broker) is cls)
