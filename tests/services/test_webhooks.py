"""The webhook dispatcher with an injected clock: signed requests, backoff, restarts, two dispatchers,
late commits in the outbox, a dead receiver, a changed secret key; the secret never shown or logged."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from tests.connections.live_servers import mariadb_database, postgres_database
from tests.webhook_receiver import receiving, verify

from flowport import __version__
from flowport.errors import Conflict, NotFound, ValidationFailed
from flowport.services import instance, webhooks
from flowport.services.instance import store_url
from flowport.services.webhooks import MAX_ATTEMPTS, Answer, Dispatcher, event_name, retry_delay
from flowport.store import jobs as jobs_repo
from flowport.store.database import DATABASE_URL_ENV, dispose_engines, session_factory
from flowport.store.tables import JobGroup, OutboxCursor, WebhookRecord, utcnow

SECRET = "whsec-test-0123456789-abcdefghijklmn"


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


class Recorder:
    """A deliver function: records each request and answers ``answer(url)`` (204 by default)."""

    def __init__(self, answer: Callable[[str], Answer] | None = None) -> None:
        self.requests: list[tuple[str, bytes, dict[str, str]]] = []
        self.answer = answer or (lambda url: Answer(204))
        self._lock = threading.Lock()

    def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        with self._lock:
            self.requests.append((url, body, dict(headers)))
        return self.answer(url)

    def bodies(self, url: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(body) for u, body, _ in self.requests if url is None or u == url]


@pytest.fixture
def sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new instance on SQLite (in the test's FLOWPORT_HOME)."""
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    instance.init_instance()


@pytest.fixture
def postgresql(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A new instance on its own PostgreSQL database."""
    with postgres_database("flowport_webhooks") as name:
        monkeypatch.setenv(DATABASE_URL_ENV, f"postgresql://postgres@127.0.0.1:5432/{name}")
        instance.init_instance()
        try:
            yield
        finally:
            dispose_engines()


@pytest.fixture
def mariadb(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A new instance on its own MariaDB database."""
    with mariadb_database("flowport_webhooks") as name:
        monkeypatch.setenv(DATABASE_URL_ENV, f"mysql://root@127.0.0.1:3306/{name}?charset=utf8mb4")
        instance.init_instance()
        try:
            yield
        finally:
            dispose_engines()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def any_store(request: pytest.FixtureRequest) -> str:
    """An instance on each kind of store."""
    request.getfixturevalue(request.param)
    return str(request.param)


@pytest.fixture(params=["postgresql", "mariadb"])
def server_store(request: pytest.FixtureRequest) -> str:
    """An instance on each store that takes ids on insert and shows rows on commit."""
    request.getfixturevalue(request.param)
    return str(request.param)


def _hook(name: str = "ops", events: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "url": f"http://hooks.invalid/{name}", "events": events or ["*"], **fields}
    return webhooks.create_webhook(body)


def _group() -> int:
    with instance.transaction() as session:
        return jobs_repo.create_group(session, flow_id=None).id


def _move(group_id: int, *statuses: str) -> None:
    """Move a job group through ``statuses``, one transaction each (as the runtime does)."""
    for status in statuses:
        with instance.transaction() as session:
            current = jobs_repo.get_group(session, group_id).status
            assert jobs_repo.transition(session, group_id, from_statuses={current}, to_status=status)


def _log_of(hook: dict[str, Any]) -> list[dict[str, Any]]:
    """The hook's deliveries, oldest first."""
    return list(reversed(webhooks.deliveries(hook["id"], no_limit=True)["data"]))


def _cursor() -> int:
    with instance.transaction() as session:
        row = session.get(OutboxCursor, "webhooks")
        return row.last_event_id if row else 0


def _event_ids() -> list[int]:
    with instance.transaction() as session:
        return [e.id for g in session.scalars(select(JobGroup)) for e in jobs_repo.events_of(session, g.id)]


# -- events and subscriptions ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "job", "pipeline"),
    [
        ("Created", None, None),
        ("Pending", "job.queued", "pipeline.queued"),
        ("InProgress", "job.started", "pipeline.started"),
        ("Complete", "job.succeeded", "pipeline.succeeded"),
        ("Failed", "job.failed", "pipeline.failed"),
        ("Canceled", "job.canceled", "pipeline.canceled"),
    ],
)
def test_each_status_names_one_event_and_pipeline_runs_are_pipeline_events(
    status: str, job: str | None, pipeline: str | None
) -> None:
    assert event_name(JobGroup(pipeline_id=None), status) == job
    assert event_name(JobGroup(pipeline_id=7), status) == pipeline
    # A flow that a pipeline's task runs is a job of its own (its parent is the pipeline run).
    assert event_name(JobGroup(pipeline_id=None, parent_id=7), status) == job


@pytest.mark.usefixtures("sqlite")
def test_patterns_choose_the_events_each_subscription_gets() -> None:
    hooks = {
        "failed": _hook("failed", ["job.failed"]),
        "jobs": _hook("jobs", ["job.*"]),
        "pipelines": _hook("pipelines", ["pipeline.*"]),
        "all": _hook("all", ["*"]),
        "two": _hook("two", ["job.started", "job.failed", "job.started"]),
    }
    assert hooks["two"]["events"] == ["job.started", "job.failed"]
    _move(_group(), "Pending", "InProgress", "Failed")
    assert Dispatcher(deliver=Recorder()).run_once()["queued"] == 9
    got = {name: [d["event"] for d in _log_of(hook)] for name, hook in hooks.items()}
    assert got == {
        "failed": ["job.failed"],
        "jobs": ["job.queued", "job.started", "job.failed"],
        "pipelines": [],
        "all": ["job.queued", "job.started", "job.failed"],
        "two": ["job.started", "job.failed"],
    }


@pytest.mark.usefixtures("sqlite")
@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"url": "ftp://files.example.com/x"}, "url"),
        ({"url": "https:///no-host"}, "url"),
        ({"url": "javascript:alert(1)"}, "url"),
        ({"events": []}, "events"),
        ({"events": ["job.exploded"]}, "job.exploded"),
        ({"events": ["job*"]}, "job*"),
        ({"secret": "too-short"}, "secret"),
        ({"name": "  "}, "name"),
        ({"retries": 3}, "retries"),
    ],
)
def test_a_bad_subscription_is_refused_naming_the_key(body: dict[str, Any], named: str) -> None:
    good = {"name": "ops", "url": "https://ops.example.com/hook", "events": ["job.failed"]}
    with pytest.raises(ValidationFailed, match="Invalid webhook") as caught:
        webhooks.create_webhook({**good, **body})
    assert named in caught.value.message
    assert webhooks.list_webhooks()["count"] == 0


@pytest.mark.usefixtures("sqlite")
def test_names_are_unique_and_unknown_ids_are_not_found() -> None:
    _hook("ops")
    with pytest.raises(Conflict, match="ops"):
        _hook("ops")
    with pytest.raises(NotFound):
        webhooks.get_webhook(404)
    with pytest.raises(NotFound):
        webhooks.update_webhook(404, {"enabled": False})


# -- sending ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("sqlite")
def test_a_request_is_signed_over_timestamp_and_body_with_the_headers_receivers_need() -> None:
    hook = _hook("ops", ["job.queued"], secret=SECRET)
    group = _group()
    _move(group, "Pending")
    clock, recorder = Clock(), Recorder()
    assert Dispatcher(clock=clock, deliver=recorder).run_once() == {"queued": 1, "sent": 1, "delivered": 1}
    [(url, body, headers)] = recorder.requests
    [delivery] = _log_of(hook)
    stamp = int(clock.now.timestamp())
    assert url == "http://hooks.invalid/ops"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"Flowport-Webhooks/{__version__}"
    assert headers["Flowport-Event"] == "job.queued"
    assert headers["Flowport-Delivery"] == str(delivery["id"])
    assert headers["Flowport-Timestamp"] == str(stamp)
    # Computed here independently of the code under test.
    digest = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert headers["Flowport-Signature"] == f"v1={digest}"
    payload = json.loads(body)
    assert payload["event"] == "job.queued" and payload["id"] == delivery["eventId"]
    assert payload["jobGroup"]["id"] == group and payload["jobGroup"]["status"] == "Pending"
    assert set(payload["jobGroup"]) == {
        "id",
        "status",
        "flowId",
        "deploymentId",
        "pipelineId",
        "scheduleId",
        "logicalDate",
        "triggeredBy",
        "error",
    }
    assert delivery["status"] == "delivered" and delivery["attemptLog"][0]["statusCode"] == 204


@pytest.mark.usefixtures("sqlite")
def test_the_readmes_verification_snippet_accepts_a_delivery_and_refuses_a_forgery() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    found = re.search(r"```python\n(import hashlib, hmac, time\n.*?def verify\(.*?)```", readme, re.S)
    assert found, "the README's webhook verification snippet moved"
    namespace: dict[str, Any] = {}
    exec(found.group(1), namespace)
    readme_verify = namespace["verify"]
    _hook("ops", secret=SECRET)
    _move(_group(), "Pending")
    recorder = Recorder()
    Dispatcher(deliver=recorder).run_once()
    [(_, body, headers)] = recorder.requests
    assert readme_verify(SECRET, headers, body)
    assert not readme_verify("another-secret-of-enough-length!!", headers, body)
    assert not readme_verify(SECRET, headers, body.replace(b"job.queued", b"job.failed"))
    old = {**headers, "Flowport-Timestamp": str(int(headers["Flowport-Timestamp"]) - 3600)}
    assert not readme_verify(SECRET, old, body)


@pytest.mark.usefixtures("sqlite")
def test_a_failing_receiver_is_retried_with_exponential_backoff_then_the_delivery_fails() -> None:
    hook = _hook("ops", ["job.queued"])
    _move(_group(), "Pending")
    clock, recorder = Clock(), Recorder(lambda url: Answer(503))
    dispatcher = Dispatcher(clock=clock, deliver=recorder)
    dispatcher.run_once()
    waits = [retry_delay(n) for n in range(1, MAX_ATTEMPTS)]
    assert waits == [10, 20, 40, 80, 160, 320, 640]
    for wait in waits:
        clock.advance(wait - 1)
        assert dispatcher.run_once()["sent"] == 0, "sent before its backoff ended"
        clock.advance(1)
        assert dispatcher.run_once()["sent"] == 1
    [delivery] = _log_of(hook)
    assert delivery["status"] == "failed" and delivery["attempts"] == MAX_ATTEMPTS
    assert [a["statusCode"] for a in delivery["attemptLog"]] == [503] * MAX_ATTEMPTS
    assert delivery["nextAttemptAt"] is None and delivery["lastStatusCode"] == 503
    clock.advance(3600)
    assert dispatcher.run_once()["sent"] == 0
    # Redelivered by hand it gets one more try.
    assert webhooks.redeliver(hook["id"], delivery["id"])["status"] == "pending"
    recorder.answer = lambda url: Answer(200)
    assert dispatcher.run_once() == {"queued": 0, "sent": 1, "delivered": 1}
    assert _log_of(hook)[0]["status"] == "delivered"
    assert retry_delay(30) == 3600  # capped at an hour


@pytest.mark.usefixtures("sqlite")
def test_an_unreachable_receiver_costs_one_try_per_round_and_does_not_hold_up_the_others() -> None:
    dead, alive = _hook("dead"), _hook("alive")
    for _ in range(3):
        _move(_group(), "Pending")
    recorder = Recorder(
        lambda url: Answer(None, "ConnectTimeout: timed out") if "dead" in url else Answer(204)
    )
    clock = Clock()
    assert Dispatcher(clock=clock, deliver=recorder).run_once() == {"queued": 6, "sent": 4, "delivered": 3}
    assert [d["status"] for d in _log_of(alive)] == ["delivered"] * 3
    dead_log = _log_of(dead)
    assert [d["attempts"] for d in dead_log] == [1, 0, 0]
    assert dead_log[0]["lastError"] == "ConnectTimeout: timed out" and dead_log[0]["lastStatusCode"] is None


@pytest.mark.usefixtures("sqlite")
def test_the_real_http_client_records_a_refused_connection() -> None:
    with receiving() as receiver:
        closed = receiver.url
    hook = webhooks.create_webhook({"name": "gone", "url": closed, "events": ["*"]})
    _move(_group(), "Pending")
    assert Dispatcher().run_once() == {"queued": 1, "sent": 1, "delivered": 0}
    [delivery] = _log_of(hook)
    assert delivery["status"] == "pending" and delivery["lastStatusCode"] is None
    assert delivery["lastError"].startswith("ConnectError")


@pytest.mark.usefixtures("sqlite")
def test_the_secret_is_shown_once_stored_encrypted_and_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx's and httpcore's included
    rotated = "rotated-secret-9876543210-zyxwvutsrq"
    with receiving() as receiver:
        created = webhooks.create_webhook(
            {"name": "ops", "url": receiver.url, "events": ["*"], "secret": SECRET}
        )
        assert created["secret"] == SECRET
        generated = webhooks.create_webhook({"name": "generated", "url": receiver.url, "events": ["*"]})
        assert len(generated["secret"]) >= 32 and generated["secret"] != SECRET
        receiver.failing = 1
        _move(_group(), "Pending", "InProgress", "Complete")
        clock = Clock()
        Dispatcher(clock=clock).run_once()
        before = len(receiver.requests)
        changed = webhooks.update_webhook(created["id"], {"secret": rotated, "description": "rotated"})
        webhooks.test_webhook(created["id"])
        clock.advance(60)
        Dispatcher(clock=clock).run_once()
        requests = list(receiver.requests)
    shown = [
        changed,
        webhooks.get_webhook(created["id"]),
        webhooks.list_webhooks(),
        webhooks.deliveries(created["id"], no_limit=True),
        webhooks.deliveries(generated["id"], no_limit=True),
    ]
    for secret in (SECRET, rotated, generated["secret"]):
        assert secret not in json.dumps(shown)
        assert secret not in caplog.text
    with instance.transaction() as session:
        stored = [row.secret for row in session.scalars(select(WebhookRecord))]
    assert all(SECRET.encode() not in s and rotated.encode() not in s for s in stored)
    # The retry and the ping after the rotation are signed with the new secret; the other hook's with its own.
    assert before == 6 and len(requests) == 8 and all(verify(r, rotated) for r in requests[before:])
    assert sum(verify(r, generated["secret"]) for r in requests) == 3


@pytest.mark.usefixtures("sqlite")
def test_a_secret_that_cannot_be_decrypted_is_an_attempt_in_the_log_not_a_stuck_dispatcher() -> None:
    broken, fine = _hook("broken"), _hook("fine")
    with instance.transaction() as session:
        row = session.get(WebhookRecord, broken["id"])
        assert row is not None
        row.secret = b"gAAAAA-not-a-token-of-this-instance"
    _move(_group(), "Pending")
    recorder = Recorder()
    assert Dispatcher(deliver=recorder).run_once() == {"queued": 2, "sent": 1, "delivered": 1}
    assert [d["status"] for d in _log_of(fine)] == ["delivered"]
    [failed] = _log_of(broken)
    assert failed["attempts"] == 1 and "cannot be decrypted" in failed["lastError"]
    # A new secret mends it.
    webhooks.update_webhook(broken["id"], {"secret": SECRET})
    assert Dispatcher(deliver=recorder).run_once(utcnow() + timedelta(seconds=11))["delivered"] == 1


@pytest.mark.usefixtures("sqlite")
def test_a_disabled_subscription_gets_no_events_and_its_pending_deliveries_wait() -> None:
    hook = _hook("ops")
    group = _group()
    _move(group, "Pending")
    clock, recorder = Clock(), Recorder(lambda url: Answer(500))
    Dispatcher(clock=clock, deliver=recorder).run_once()
    webhooks.update_webhook(hook["id"], {"enabled": False})
    with pytest.raises(Conflict, match="disabled"):
        webhooks.test_webhook(hook["id"])
    _move(group, "InProgress")
    recorder.answer = lambda url: Answer(204)
    clock.advance(3600)
    assert Dispatcher(clock=clock, deliver=recorder).run_once() == {"queued": 0, "sent": 0, "delivered": 0}
    webhooks.update_webhook(hook["id"], {"enabled": True})
    _move(group, "Complete")
    assert Dispatcher(clock=clock, deliver=recorder).run_once() == {"queued": 1, "sent": 2, "delivered": 2}
    assert [d["event"] for d in _log_of(hook)] == ["job.queued", "job.succeeded"]


@pytest.mark.usefixtures("sqlite")
def test_history_before_the_first_subscription_is_skipped_not_walked() -> None:
    for _ in range(5):
        _move(_group(), "Pending", "InProgress", "Complete")
    recorder = Recorder()
    assert Dispatcher(deliver=recorder).run_once()["queued"] == 0
    assert _cursor() == max(_event_ids())
    hook = _hook("ops")
    _move(_group(), "Pending")
    Dispatcher(deliver=recorder).run_once()
    assert [d["event"] for d in _log_of(hook)] == ["job.queued"] and len(recorder.requests) == 1


# -- restarts and concurrency -------------------------------------------------------------------


class _Crash(BaseException):
    """The process dies (not an error the dispatcher could handle)."""


@pytest.mark.usefixtures("sqlite")
def test_a_restart_sends_what_was_pending_repeats_nothing_and_keeps_the_cursor() -> None:
    hook = _hook("ops", secret=SECRET)
    clock = Clock()
    with receiving() as receiver:
        webhooks.update_webhook(hook["id"], {"url": receiver.url})
        _move(_group(), "Pending", "InProgress")
        receiver.failing = 2
        assert Dispatcher(clock=clock).run_once() == {"queued": 2, "sent": 2, "delivered": 0}
        cursor = _cursor()
        assert cursor == max(_event_ids())
        # The process stops; the store's connections go with it; a new one starts later.
        dispose_engines()
        _move(_group(), "Pending")
        clock.advance(10)
        assert Dispatcher(clock=clock).run_once() == {"queued": 1, "sent": 3, "delivered": 3}
        assert _cursor() == max(_event_ids()) > cursor
        clock.advance(3600)
        assert Dispatcher(clock=clock).run_once() == {"queued": 0, "sent": 0, "delivered": 0}
        bodies = receiver.bodies()
        assert all(verify(r, SECRET) for r in receiver.requests)
    delivered = [b["id"] for b in bodies[2:]]
    assert sorted(delivered) == sorted(_event_ids()) and len(set(delivered)) == 3


@pytest.mark.usefixtures("sqlite")
def test_a_dispatcher_that_dies_while_sending_leaves_the_delivery_to_the_next_after_its_claim() -> None:
    hook = _hook("ops")
    _move(_group(), "Pending")
    clock = Clock()

    def crash(url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        raise _Crash

    with pytest.raises(_Crash):
        Dispatcher(clock=clock, deliver=crash).run_once()
    recorder = Recorder()
    # Claimed by the one that died: another dispatcher leaves it alone for a while ...
    assert Dispatcher(clock=clock, deliver=recorder).run_once(clock.advance(30))["sent"] == 0
    # ... then sends it (at least once: receivers deduplicate on Flowport-Delivery).
    assert Dispatcher(clock=clock, deliver=recorder).run_once(clock.advance(31)) == {
        "queued": 0,
        "sent": 1,
        "delivered": 1,
    }
    assert [d["status"] for d in _log_of(hook)] == ["delivered"]


def test_two_dispatchers_running_at_once_deliver_every_event_exactly_once(any_store: str) -> None:
    hooks = [_hook("a", ["job.*"]), _hook("b", ["job.succeeded", "job.failed"])]
    recorder = Recorder()
    groups = [_group() for _ in range(12)]
    errors: list[BaseException] = []
    producing = threading.Event()
    producing.set()

    def produce() -> None:
        try:
            for index, group in enumerate(groups):
                _move(group, "Pending", "InProgress", "Complete" if index % 2 else "Failed")
        except BaseException as exc:
            errors.append(exc)
        finally:
            producing.clear()

    def dispatch() -> None:
        dispatcher = Dispatcher(deliver=recorder, batch=5)
        try:
            while producing.is_set():
                dispatcher.run_once()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (produce, dispatch, dispatch)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    while Dispatcher(deliver=recorder).run_once() != {"queued": 0, "sent": 0, "delivered": 0}:
        pass
    sent = [
        (url.rsplit("/", 1)[-1], body["id"])
        for (url, _, _), body in zip(recorder.requests, recorder.bodies(), strict=True)
    ]
    assert len(sent) == len(set(sent)), "an event was sent twice"
    assert len([s for s in sent if s[0] == "a"]) == 36 and len([s for s in sent if s[0] == "b"]) == 12
    for hook in hooks:
        assert {d["status"] for d in _log_of(hook)} == {"delivered"}
    assert _cursor() == max(_event_ids())


@pytest.mark.usefixtures("server_store")
def test_an_event_that_commits_after_a_later_one_is_not_skipped() -> None:
    """PostgreSQL and MariaDB hand out ids when rows are inserted, not when they commit: the dispatcher
    must not move its cursor past an id whose transaction is still open."""
    hook = _hook("ops", ["job.queued"])
    first, second, third = _group(), _group(), _group()
    recorder = Recorder()
    clock = Clock()
    dispatcher = Dispatcher(clock=clock, deliver=recorder)
    slow = session_factory(store_url())()
    try:
        assert jobs_repo.transition(slow, first, from_statuses={"Created"}, to_status="Pending")
        slow.flush()  # its event has an id, not yet visible to others
        _move(second, "Pending")
        assert dispatcher.run_once()["queued"] == 0, "the later event went ahead of an open transaction"
        slow.commit()
    finally:
        slow.close()
    assert dispatcher.run_once()["queued"] == 2
    assert [b["jobGroup"]["id"] for b in recorder.bodies()] == [first, second]
    # A transaction that rolled back leaves its id unused for good: the next event waits a while, no more.
    gone = session_factory(store_url())()
    try:
        assert jobs_repo.transition(gone, third, from_statuses={"Created"}, to_status="Pending")
        gone.flush()
        gone.rollback()
    finally:
        gone.close()
    _move(third, "Pending")
    assert dispatcher.run_once()["queued"] == 0
    clock.advance(120)
    assert dispatcher.run_once()["queued"] == 1
    assert [d["jobGroup"]["id"] for d in (x["payload"] for x in _log_of(hook))] == [first, second, third]
