"""API fixtures: whole Flowport instances driven through the real ASGI app.

An :class:`Instance` is one Flowport: its own ``FLOWPORT_HOME`` (secret
key, data folder), its own metadata store (a SQLite file in the home, or
a PostgreSQL database) and three users, ``admin``, ``editor`` and
``viewer``. Several instances live in one test (Dev and Prod of the seed):
the services read the instance from the environment, so every request
first points the environment at its instance.

PostgreSQL gets one database per role (``dev``, ``prod``) per test session,
emptied before each test, like the store's own tests.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, text
from tests.connections.live_servers import postgres_database

from flowport.api.app import create_app
from flowport.connections.secrets import SECRET_KEY_ENV
from flowport.services import auth, flow_records, instance, jobs
from flowport.services import launcher as launchers
from flowport.store.database import DATABASE_URL_ENV, dispose_engines, get_engine

STORES = ["sqlite", "postgresql"]
PASSWORDS = {"admin": "admin-pass-1", "editor": "editor-pass-1", "viewer": "viewer-pass-1"}
TIMEOUT = 120.0
# What each role sends; None sends no credentials at all.
Role = str | None


def example_document() -> dict[str, Any]:
    """The shipped orders flow document."""
    folder = resources.files("flowport") / "examples" / "orders"
    return dict(json.loads((folder / "flow.json").read_text(encoding="utf-8")))


def trash_only_document(name: str = "Broken") -> dict[str, Any]:
    """The seed's flow of one Trash stage: two validation issues."""
    return {"name": name, "stages": [{"name": "Trash_01", "plugin": {"name": "trash"}}]}


def zip_entries(data: bytes) -> dict[str, bytes]:
    """Every entry of a ZIP, decompressed."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


class _OncePerPassword:
    """argon2 as ``create_user`` uses it, hashing each password once per test process.

    Every instance's ``admin``, ``editor`` and ``viewer`` then get the very
    hash a real ``create_user`` made: neither the hashing (about 0.1 s of CPU
    a user) nor, through the services' cache of verified credentials, the
    first verification of each role is paid again in every instance. Wrong
    passwords, other users and the tests of hashing itself
    (``tests/services/test_auth*.py``) run argon2 for real.
    """

    _hashes: dict[str, str] = {}

    def hash(self, password: str) -> str:
        if password not in self._hashes:
            self._hashes[password] = auth.PasswordHasher().hash(password)
        return self._hashes[password]


def _once_per_password() -> _OncePerPassword:
    return _OncePerPassword()


class Instance:
    """One Flowport instance under test, with a client that signs in as any of its users."""

    def __init__(
        self,
        name: str,
        home: Path,
        database_url: str | None,
        monkeypatch: pytest.MonkeyPatch,
        *,
        launcher: str = "thread",
        max_body_bytes: int | None = None,
    ) -> None:
        self.name = name
        self.home = home
        self.database_url = database_url
        self._monkeypatch = monkeypatch
        self.launcher = launcher
        self.activate()
        instance.init_instance()
        with monkeypatch.context() as patch:
            patch.setattr(auth, "_hasher", _once_per_password)
            for role, password in PASSWORDS.items():
                auth.create_user(role, password, role)
        options: dict[str, Any] = {}
        if max_body_bytes is not None:
            options["max_body_bytes"] = max_body_bytes
        self.app = create_app(**options)
        self.client = TestClient(self.app)
        # Every body the API sent back, to look for secrets that must never be in one.
        self.bodies: list[bytes] = []

    def activate(self) -> None:
        """Point the services (which read the environment) at this instance."""
        self._monkeypatch.setenv("FLOWPORT_HOME", str(self.home))
        # Where its jobs run: the instance's settings choose (tests: threads unless asked).
        self._monkeypatch.setenv(launchers.LAUNCHER_ENV, self.launcher)
        if self.database_url:
            self._monkeypatch.setenv(DATABASE_URL_ENV, self.database_url)
        else:
            self._monkeypatch.delenv(DATABASE_URL_ENV, raising=False)

    @contextmanager
    def one_event_loop(self) -> Iterator[None]:
        """Requests made inside share one event loop thread.

        Outside a ``with`` block, the test client starts a thread and an event loop for every
        request (about 3 ms each); a test that sends thousands uses one, as a server does. The
        app's lifespan does not run (as for the other requests of these tests).
        """
        with anyio.from_thread.start_blocking_portal(**self.client.async_backend) as portal:
            self.client.portal = portal
            try:
                yield
            finally:
                self.client.portal = None

    def request(self, method: str, path: str, *, role: Role = "admin", **kwargs: Any) -> httpx.Response:
        """One request to this instance as ``role`` (HTTP Basic)."""
        self.activate()
        headers = {k.lower() for k in kwargs.get("headers") or {}}
        if role is not None and "auth" not in kwargs and "authorization" not in headers:
            kwargs["auth"] = (role, PASSWORDS[role])
        response = self.client.request(method, path, **kwargs)
        self.bodies.append(response.content)
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """GET as admin unless ``role`` says otherwise."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        """POST as admin unless ``role`` says otherwise."""
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        """PATCH as admin unless ``role`` says otherwise."""
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        """DELETE as admin unless ``role`` says otherwise."""
        return self.request("DELETE", path, **kwargs)

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        """The JSON answer of a request that must succeed with ``status``."""
        response = self.request(method, path, **kwargs)
        assert response.status_code == status, (response.status_code, response.text)
        return response.json() if response.content else None

    def create_example(self, **kwargs: Any) -> dict[str, Any]:
        """The shipped orders flow stored through the API, its CSV in the data folder."""
        self.activate()
        data = flow_records.data_dir()
        data.mkdir(parents=True, exist_ok=True)
        folder = resources.files("flowport") / "examples" / "orders"
        (data / "orders.csv").write_bytes((folder / "orders.csv").read_bytes())
        result: dict[str, Any] = self.ok("POST", "/v4/flows", 201, json=example_document(), **kwargs)
        return result

    def flow_names(self, project_id: int | None = None) -> list[str]:
        """Names of the stored flows (of one project, or all)."""
        params: dict[str, Any] = {"noLimit": "true"}
        if project_id is not None:
            params["projectId"] = project_id
        return [f["name"] for f in self.ok("GET", "/v4/flows", params=params)["data"]]

    def wait(self, job_group_id: int, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Poll the job group through the API until it has ended."""
        deadline = time.monotonic() + timeout
        while True:
            group: dict[str, Any] = self.ok("GET", f"/v4/jobGroups/{job_group_id}", params={"embed": "jobs"})
            if group["status"] in jobs.FINAL_STATUSES:
                return group
            assert time.monotonic() < deadline, f"job group {job_group_id} still {group['status']}"
            time.sleep(0.1)

    def close(self) -> None:
        """Close the client."""
        self.client.close()


class _LazyDatabases(dict[str, str]):
    """PostgreSQL database URLs by role, each created on first use and dropped at the session's end."""

    def __init__(self, stack: ExitStack) -> None:
        super().__init__()
        self._stack = stack

    def __missing__(self, role: str) -> str:
        name = self._stack.enter_context(postgres_database(f"flowport_api_{role}"))
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        self[role] = url
        return url


@pytest.fixture(scope="session")
def postgresql_databases() -> Iterator[_LazyDatabases]:
    """One PostgreSQL database per instance role for the whole session."""
    with ExitStack() as stack:
        databases = _LazyDatabases(stack)
        yield databases
        # Pooled connections would stop the databases from being dropped.
        dispose_engines()


def _empty(url: str) -> None:
    # Rows only: the schema stays at head, as instance.transaction() checked once.
    engine = get_engine(url)
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            if table.name not in ("alembic_version", "store_changes"):
                connection.execute(table.delete())
        # Ids start again at 1, as in a new database (and as on SQLite): the fixture's users then
        # have the ids and hashes of the previous test's, which the verified-credential cache knows.
        sequences = connection.execute(
            text("SELECT format('%I.%I', sequence_schema, sequence_name) FROM information_schema.sequences")
        ).scalars()
        for sequence in list(sequences):
            connection.execute(text(f"ALTER SEQUENCE {sequence} RESTART"))


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    """The kind of metadata store, for tests that run on each."""
    return str(request.param)


MakeInstance = Callable[..., Instance]


@pytest.fixture
def make_instance(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MakeInstance]:
    """A factory of instances: ``make_instance("dev", store="sqlite", launcher="thread")``."""
    for name in (flow_records.DATA_DIR_ENV, launchers.EXECUTOR_ENV, launchers.WORKERS_ENV, SECRET_KEY_ENV):
        monkeypatch.delenv(name, raising=False)
    made: list[Instance] = []

    def make(name: str = "dev", *, store: str = "sqlite", **options: Any) -> Instance:
        url = None
        if store == "postgresql":
            url = request.getfixturevalue("postgresql_databases")[name]
            _empty(url)
        home = tmp_path / name
        home.mkdir()
        created = Instance(name, home, url, monkeypatch, **options)
        made.append(created)
        return created

    yield make
    for created in made:
        created.close()
    # SQLite engines are per home: let go of their files (PostgreSQL's reconnect on next use).
    dispose_engines()


@pytest.fixture
def api(make_instance: MakeInstance) -> Instance:
    """One instance on SQLite."""
    return make_instance("dev")
