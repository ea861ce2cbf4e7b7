"""The cache of verified HTTP Basic credentials: argon2 once per credential, never a stale answer.

argon2 calls are counted by wrapping the real hasher (the store is the real
SQLite store of the test's FLOWPORT_HOME). Changes made straight in the
store, without :func:`auth.update_user`, stand for another process of the
same instance: its cache invalidation never reaches this one.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher

from flowport.errors import Unauthorized
from flowport.services import auth, instance
from flowport.store import users as users_repo
from flowport.store.database import transaction

PASSWORD = "Corr3ct-horse-battery"
OTHER_PASSWORD = "An0ther-pass-phrase"


class CountingHasher:
    """The real argon2 hasher, counting its verifications (optionally slowed down to widen races)."""

    def __init__(self, real: PasswordHasher, delay: float = 0.0) -> None:
        self.real = real
        self.delay = delay
        self.verified = 0
        self._lock = threading.Lock()

    def verify(self, password_hash: str, password: str) -> bool:
        with self._lock:
            self.verified += 1
        time.sleep(self.delay)
        return self.real.verify(password_hash, password)

    def hash(self, password: str) -> str:
        return self.real.hash(password)

    def check_needs_rehash(self, password_hash: str) -> bool:
        return self.real.check_needs_rehash(password_hash)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _initialized() -> Iterator[None]:
    instance.init_instance()
    # The cache is per process: every test starts cold.
    auth._basic_cache.clear()
    yield
    auth._basic_cache.clear()


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    counting = CountingHasher(auth._hasher())
    auth._dummy_hash()  # made with the real hasher before counting starts
    monkeypatch.setattr(auth, "_hasher", lambda: counting)
    return counting


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(auth, "time", fake)
    return fake


def _store(name: str, **changes: Any) -> None:
    """Change a user straight in the store, as another process of the instance would."""
    with transaction(instance.store_url()) as session:
        users_repo.update(session, users_repo.get_by_name(session, name), changes)


def _stored_hash(name: str) -> str:
    with transaction(instance.store_url()) as session:
        return users_repo.get_by_name(session, name).password_hash


def test_a_verified_credential_is_not_verified_again(hasher: CountingHasher) -> None:
    ann = auth.create_user("ann", PASSWORD, "editor")
    for _ in range(5):
        assert auth.authenticate_basic("ann", PASSWORD) == ann
    assert hasher.verified == 1
    # Through the Authorization header too: the same credential, the same entry.
    header = "Basic " + base64.b64encode(f"ann:{PASSWORD}".encode()).decode()
    assert auth.authenticate(header) == ann
    assert hasher.verified == 1


def test_the_cache_holds_neither_the_password_nor_a_plain_hash_of_it(hasher: CountingHasher) -> None:
    auth.create_user("ann", PASSWORD, "viewer")
    auth.authenticate_basic("ann", PASSWORD)
    entries = list(auth._basic_cache._entries.items())
    assert len(entries) == 1
    key, entry = entries[0]
    assert PASSWORD.encode() not in key
    for unkeyed in (PASSWORD, f"ann:{PASSWORD}", f"ann{PASSWORD}"):
        assert key not in (
            hashlib.sha256(unkeyed.encode()).digest(),
            hashlib.sha256(unkeyed.encode()).hexdigest(),
        )
    assert PASSWORD not in repr(entry) and entry.password_hash == _stored_hash("ann")
    # Keyed per process: another cache (another process) derives another key.
    assert auth._BasicCache(60, 10).key("ann", PASSWORD) != key


def test_a_wrong_password_is_refused_right_after_the_right_one_and_never_cached(
    hasher: CountingHasher,
) -> None:
    auth.create_user("ann", PASSWORD, "viewer")
    auth.authenticate_basic("ann", PASSWORD)
    for _ in range(3):
        with pytest.raises(Unauthorized):
            auth.authenticate_basic("ann", OTHER_PASSWORD)
        with pytest.raises(Unauthorized):
            auth.authenticate_basic("ann", PASSWORD + "x")
    # Every failure ran argon2 (none was remembered); the right one did once.
    assert hasher.verified == 1 + 6
    assert len(auth._basic_cache) == 1
    assert auth.authenticate_basic("ann", PASSWORD).name == "ann"
    assert hasher.verified == 7


def test_an_unknown_user_still_costs_an_argon2_verification(hasher: CountingHasher) -> None:
    for _ in range(2):
        with pytest.raises(Unauthorized, match="Invalid user name or password"):
            auth.authenticate_basic("nobody", PASSWORD)
    with pytest.raises(Unauthorized):
        auth.authenticate_basic("not a name", PASSWORD)
    assert hasher.verified == 3
    assert len(auth._basic_cache) == 0


def test_a_password_change_stops_the_cached_credential_at_once(hasher: CountingHasher) -> None:
    ann = auth.create_user("ann", PASSWORD, "viewer")
    auth.authenticate_basic("ann", PASSWORD)
    auth.update_user("ann", password=OTHER_PASSWORD, actor=ann)
    with pytest.raises(Unauthorized):
        auth.authenticate_basic("ann", PASSWORD)
    assert auth.authenticate_basic("ann", OTHER_PASSWORD).id == ann.id


def test_a_password_changed_by_another_process_stops_the_cached_credential(hasher: CountingHasher) -> None:
    auth.create_user("ann", PASSWORD, "viewer")
    auth.authenticate_basic("ann", PASSWORD)
    # No update_user here: this process's cache is not told.
    _store("ann", password_hash=PasswordHasher().hash(OTHER_PASSWORD))
    with pytest.raises(Unauthorized):
        auth.authenticate_basic("ann", PASSWORD)
    with pytest.raises(Unauthorized):
        auth.authenticate_basic("ann", PASSWORD)
    assert auth.authenticate_basic("ann", OTHER_PASSWORD).name == "ann"


def test_a_deleted_user_is_refused_at_once(hasher: CountingHasher) -> None:
    root = auth.create_user("root", OTHER_PASSWORD, "admin")
    ann = auth.create_user("ann", PASSWORD, "editor")
    auth.authenticate_basic("ann", PASSWORD)
    auth.delete_user("ann", actor=root)
    with pytest.raises(Unauthorized):
        auth.authenticate_basic("ann", PASSWORD)
    # A new user with the same name and password is a new user (its id may even be the old one's).
    again = auth.create_user("ann", PASSWORD, "viewer")
    found = auth.authenticate_basic("ann", PASSWORD)
    assert found == again and found.role == "viewer"
    assert ann.role == "editor"


def test_a_user_deleted_by_another_process_is_refused(hasher: CountingHasher) -> None:
    auth.create_user("ann", PASSWORD, "editor")
    auth.authenticate_basic("ann", PASSWORD)
    with transaction(instance.store_url()) as session:
        users_repo.delete(session, users_repo.get_by_name(session, "ann"))
    with pytest.raises(Unauthorized):
        auth.authenticate_basic("ann", PASSWORD)


def test_a_role_change_is_seen_on_the_next_request(hasher: CountingHasher) -> None:
    root = auth.create_user("root", OTHER_PASSWORD, "admin")
    auth.create_user("ann", PASSWORD, "editor")
    assert auth.authenticate_basic("ann", PASSWORD).role == "editor"
    auth.update_user("ann", role="viewer", actor=root)
    assert auth.authenticate_basic("ann", PASSWORD).role == "viewer"
    # Changed in the store by another process: still seen, and still without argon2.
    verified = hasher.verified
    auth.authenticate_basic("ann", PASSWORD)
    _store("ann", role="admin")
    assert auth.authenticate_basic("ann", PASSWORD).role == "admin"
    assert hasher.verified == verified


def test_concurrent_first_requests_run_argon2_once(monkeypatch: pytest.MonkeyPatch) -> None:
    auth._dummy_hash()
    # Slow verifications: every thread arrives while the first one is still verifying.
    slow = CountingHasher(auth._hasher(), delay=0.3)
    monkeypatch.setattr(auth, "_hasher", lambda: slow)
    ann = auth.create_user("ann", PASSWORD, "viewer")
    threads = 8
    start = threading.Barrier(threads)
    results: list[Any] = []

    def sign_in() -> None:
        start.wait()
        try:
            results.append(auth.authenticate_basic("ann", PASSWORD))
        except Exception as exc:  # reported by the assertion below
            results.append(exc)

    workers = [threading.Thread(target=sign_in) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert results == [ann] * threads
    assert slow.verified == 1
    assert auth._basic_cache._flights == {}


def test_concurrent_wrong_passwords_are_each_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    auth._dummy_hash()
    counting = CountingHasher(auth._hasher())
    monkeypatch.setattr(auth, "_hasher", lambda: counting)
    auth.create_user("ann", PASSWORD, "viewer")
    threads = 4
    start = threading.Barrier(threads)
    refused: list[bool] = []

    def sign_in() -> None:
        start.wait()
        try:
            auth.authenticate_basic("ann", OTHER_PASSWORD)
            refused.append(False)
        except Unauthorized:
            refused.append(True)

    workers = [threading.Thread(target=sign_in) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert refused == [True] * threads
    assert counting.verified == threads
    assert len(auth._basic_cache) == 0


def test_an_entry_expires_after_the_window(hasher: CountingHasher, clock: Clock) -> None:
    auth.create_user("ann", PASSWORD, "viewer")
    auth.authenticate_basic("ann", PASSWORD)
    clock.now += auth.BASIC_CACHE_SECONDS - 1
    auth.authenticate_basic("ann", PASSWORD)
    assert hasher.verified == 1
    clock.now += 2
    auth.authenticate_basic("ann", PASSWORD)
    assert hasher.verified == 2
    auth.authenticate_basic("ann", PASSWORD)
    assert hasher.verified == 2


def test_the_cache_is_bounded_and_forgets_the_oldest_first() -> None:
    cache = auth._BasicCache(60, 2)
    keys = [cache.key(f"user{n}", PASSWORD) for n in range(3)]
    for n, key in enumerate(keys):
        cache.put(key, n, f"hash{n}")
    assert len(cache) == 2
    assert cache.get(keys[0]) is None
    assert [cache.get(key).user_id for key in keys[1:]] == [1, 2]  # type: ignore[union-attr]
    cache.forget_user(1)
    assert cache.get(keys[1]) is None and cache.get(keys[2]) is not None


def test_an_upgraded_hash_is_the_one_cached(hasher: CountingHasher) -> None:
    auth.create_user("ann", PASSWORD, "viewer")
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    _store("ann", password_hash=weak)
    auth.authenticate_basic("ann", PASSWORD)
    upgraded = _stored_hash("ann")
    assert upgraded != weak
    # The next sign-in is served from the cache, which holds the upgraded hash.
    assert auth.authenticate_basic("ann", PASSWORD).name == "ann"
    assert hasher.verified == 1
    (entry,) = auth._basic_cache._entries.values()
    assert entry.password_hash == upgraded
