"""Connection services: init, the seed's bodies, secrets at rest, lookups for runs, real servers.

Every test plants the password PLANTED somewhere; the autouse fixture
checks that no log record (at DEBUG, every logger) ever contained it.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from cryptography.fernet import Fernet
from tests.connections.live_servers import (
    PG_HOST,
    PG_PORT,
    PLANTED,
    WRONG,
    exception_text,
    mariadb_account,
    require_postgres,
)
from tests.engine.toy_stages import make_flow, run, stage, store, toy_registry

from flowport.connections.secrets import SECRET_KEY_ENV, SecretKeyError
from flowport.errors import Conflict, NotFound, ValidationFailed
from flowport.plugins.contract import Origin, StageConfig, setting
from flowport.services import connections as svc
from flowport.services import flows
from flowport.services.settings import settings
from flowport.store.schema import StoreNotReady, head_revision

# The body of the seed's POST /v4/connections, with a real password.
SEED_BODY: dict[str, Any] = {
    "host": "prod-redshift.example.com",
    "port": 1433,
    "vendor": "redshift",
    "params": {
        "connectStrOpts": "",
        "defaultDatabase": "prodWrangleDB",
        "extraLoadParams": "BLANKSASNULL EMPTYASNULL TRIMBLANKS TRUNCATECOLUMNS",
    },
    "vendorName": "redshift",
    "name": "Redshift Conn Prod",
    "description": "",
    "isGlobal": True,
    "type": "jdbc",
    "ssl": False,
    "credentialType": "iamRoleArn",
    "credentials": [{"username": "prodDBUser", "password": PLANTED, "iamRoleArn": "iam:aws:12345"}],
}


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("FLOWPORT_DATABASE_URL", raising=False)
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    caplog.set_level(logging.DEBUG)
    # SQLAlchemy keeps its loggers at WARNING unless told: its statements and
    # bound parameters (the stored token, never the password) are checked too.
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    yield
    for record in caplog.records:
        text = f"{record.getMessage()} {record.exc_text or ''}"
        assert PLANTED not in text and WRONG not in text, f"secret logged by {record.name}"


@pytest.fixture
def instance() -> svc.InstanceInfo:
    return svc.init_instance()


def _rows_as_text() -> str:
    # A raw SELECT of every column of every row, outside SQLAlchemy.
    with sqlite3.connect(settings().home / "flowport.db") as db:
        rows = db.execute("SELECT * FROM connections").fetchall()
    return "\n".join(repr(value) for row in rows for value in row)


# -- init ---------------------------------------------------------------------


def test_services_need_init_first() -> None:
    with pytest.raises(StoreNotReady, match="run `flowport init`"):
        svc.list_connections()


def test_init_creates_the_store_and_key_and_is_idempotent() -> None:
    first = svc.init_instance()
    home = settings().home
    assert first.revision == head_revision()
    assert first.secret_key.created and first.secret_key.path == home / "secret.key"
    assert first.database == f"sqlite:///{home / 'flowport.db'}"
    again = svc.init_instance()
    assert again.uuid == first.uuid and not again.secret_key.created and again.warnings == []
    assert again.to_dict()["secretKey"] == {
        "source": "file",
        "path": str(home / "secret.key"),
        "created": False,
    }


def test_init_warns_when_a_new_key_cannot_read_stored_secrets(instance: svc.InstanceInfo) -> None:
    svc.add_connection(SEED_BODY)
    (settings().home / "secret.key").unlink()
    info = svc.init_instance()
    assert info.secret_key.created
    assert "1 connection(s) hold credentials encrypted with a previous key" in info.warnings[0]


# -- the seed's body ------------------------------------------------------------


def test_add_the_seed_body_and_show_it_in_the_seed_shape(instance: svc.InstanceInfo) -> None:
    row = svc.add_connection(SEED_BODY)
    data = svc.connection_public_dict(row)
    assert set(data) == {
        "id", "uuid", "name", "description", "vendor", "vendorName", "type", "host", "port", "params",
        "ssl", "credentialType", "credentials", "isGlobal", "createdAt", "updatedAt", "creator", "updater",
        "credentialsShared", "disableTypeInference", "workspace",
    }  # fmt: skip
    # The seed's GET says "user", its POST answer "username": both are shown.
    assert data["credentials"] == [{"user": "prodDBUser", "username": "prodDBUser"}]
    assert data["credentialsShared"] is True and data["disableTypeInference"] is False
    assert data["workspace"] == {"id": 1}
    expected = {k: v for k, v in SEED_BODY.items() if k != "credentials"}
    assert {k: data[k] for k in expected} == expected
    assert data["createdAt"].endswith("Z") and len(data["createdAt"]) == len("2018-01-24T20:20:11.181Z")
    assert PLANTED not in repr(data) and "iam:aws" not in repr(data)
    assert svc.connection_public_dict(svc.get_connection(data["uuid"])) == data


def test_secrets_are_encrypted_at_rest(instance: svc.InstanceInfo) -> None:
    row = svc.add_connection(SEED_BODY)
    assert row.secret is not None and PLANTED.encode() not in row.secret
    stored = _rows_as_text()
    assert "prodDBUser" in stored  # the user name is not a secret
    assert PLANTED not in stored and "iam:aws:12345" not in stored
    spec = svc.connection_spec("Redshift Conn Prod")
    assert spec.password == PLANTED and spec.secret("iamRoleArn") == "iam:aws:12345"
    assert PLANTED not in repr(spec)


def test_a_changed_secret_key_is_a_clear_error(
    instance: svc.InstanceInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = svc.add_connection(SEED_BODY)
    monkeypatch.setenv(SECRET_KEY_ENV, Fernet.generate_key().decode())
    with pytest.raises(
        SecretKeyError, match=r"Connection 'Redshift Conn Prod': .*the secret key changed"
    ) as info:
        svc.connection_spec(row.id)
    text = exception_text(info.value)
    assert PLANTED not in text and row.secret is not None and row.secret.decode()[:24] not in text


def test_duplicate_name_is_a_conflict(instance: svc.InstanceInfo) -> None:
    svc.add_connection(SEED_BODY)
    with pytest.raises(Conflict, match="named 'Redshift Conn Prod' already exists") as info:
        svc.add_connection(SEED_BODY)
    assert PLANTED not in exception_text(info.value)
    assert svc.count_connections() == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"port": "not a port"}, "port: "),
        ({"vendor": "oracle"}, "unknown vendor 'oracle'"),
        ({"vendorName": "mysql"}, "vendorName 'mysql' does not match vendor 'redshift'"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
        ({"params": {"password": PLANTED}}, "'password' looks like a secret"),
        ({"credentials": [{"password": {"nested": PLANTED}}]}, "credentials.*must be a string"),
        ({"credentials": PLANTED}, "credentials: "),
        ({"name": ""}, "name: "),
    ],
)
def test_invalid_bodies_are_refused_without_echoing_secrets(
    instance: svc.InstanceInfo, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationFailed, match=message) as info:
        svc.add_connection({**SEED_BODY, **change})
    assert PLANTED not in exception_text(info.value)


def test_vendor_aliases_and_snake_case_keys(instance: svc.InstanceInfo) -> None:
    row = svc.add_connection(
        {"name": "m", "vendor": "MariaDB", "is_global": True, "credential_type": "basic"}
    )
    assert (row.vendor, row.is_global, row.username, row.secret) == ("mysql", True, None, None)


def test_list_get_update_remove(instance: svc.InstanceInfo) -> None:
    first = svc.add_connection(SEED_BODY)
    second = svc.add_connection({**SEED_BODY, "name": "Second", "credentials": []})
    assert [r.name for r in svc.list_connections()] == ["Redshift Conn Prod", "Second"]
    assert [r.name for r in svc.list_connections(limit=1, offset=1)] == ["Second"]
    assert svc.get_connection(str(second.id)).name == "Second"

    updated = svc.update_connection(
        first.uuid.hex,
        {"name": "Renamed", "port": 5439, "credentials": [{"username": "u2", "password": WRONG}]},
    )
    assert (updated.name, updated.port, updated.username, updated.uuid) == ("Renamed", 5439, "u2", first.uuid)
    assert updated.updated_at > first.updated_at
    assert svc.connection_spec("Renamed").secrets.keys() == {"password"}
    assert svc.connection_spec("Renamed").password == WRONG
    with pytest.raises(Conflict):
        svc.update_connection("Renamed", {"name": "Second"})
    with pytest.raises(ValidationFailed, match="uuid: Extra inputs"):
        svc.update_connection("Renamed", {"uuid": str(second.uuid)})
    cleared = svc.update_connection("Renamed", {"credentials": []})
    assert (cleared.username, cleared.secret) == (None, None)

    removed = svc.remove_connection("Second")
    assert removed.id == second.id
    with pytest.raises(NotFound, match="'Second'"):
        svc.get_connection("Second")
    assert svc.count_connections() == 1


# -- lookups for runs -----------------------------------------------------------


def test_the_lookup_is_lazy_and_finds_by_uuid_name_or_id(tmp_path: Path) -> None:
    lookup = svc.StoreConnectionLookup()
    assert not (settings().home / "flowport.db").exists()  # constructing it opened nothing
    with pytest.raises(StoreNotReady, match="flowport init"):
        lookup.get("anything")
    svc.init_instance()
    row = svc.add_connection(SEED_BODY)
    lookup = svc.StoreConnectionLookup()
    for ref in (str(row.uuid), row.name, str(row.id)):
        spec = lookup.get(ref)
        assert (spec.uuid, spec.name, spec.username, spec.password) == (
            row.uuid,
            row.name,
            "prodDBUser",
            PLANTED,
        )
    assert lookup.get(row.name) is lookup.get(row.name)  # read once per run
    with pytest.raises(NotFound):
        lookup.get("missing")


def test_a_local_runs_lookup_reads_a_sqlite_store_as_the_store_does(instance: svc.InstanceInfo) -> None:
    row = svc.add_connection(SEED_BODY)
    digits = svc.add_connection({**SEED_BODY, "name": "12345", "credentials": [{"username": "u"}]})
    expected = svc.StoreConnectionLookup()
    for ref in (str(row.uuid), row.name, str(row.id), f" {row.id} ", str(digits.uuid), "12345"):
        read = flows._read_from_sqlite_store(ref)
        assert read is not None and read == expected.get(ref), ref  # every field, the secrets included
    assert read.password is None and flows._read_from_sqlite_store(row.name).password == PLANTED
    lookup = flows._StoreLookupOnUse()
    assert lookup.get(row.name) is lookup.get(row.name)  # read once per run
    # What the quick read leaves to the store's services: they word the error or check the path.
    assert flows._read_from_sqlite_store("missing") is None
    with pytest.raises(NotFound, match="missing"):
        flows._StoreLookupOnUse().get("missing")
    local = svc.add_connection({"name": "local file", "vendor": "sqlite", "params": {"path": "x.db"}})
    assert flows._read_from_sqlite_store(local.name) is None
    with sqlite3.connect(settings().home / "flowport.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '0001'")
    # A store at another revision is left to the services (their check runs once per process).
    assert flows._read_from_sqlite_store(row.name) is None


def test_a_local_run_reads_its_connection_without_importing_sqlalchemy(instance: svc.InstanceInfo) -> None:
    svc.add_connection(SEED_BODY)
    probe = (
        "import sys\n"
        "from flowport.services.flows import _StoreLookupOnUse\n"
        "spec = _StoreLookupOnUse().get('Redshift Conn Prod')\n"
        "print(spec.username, spec.password == sys.argv[1], 'sqlalchemy' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, PLANTED], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["prodDBUser", "True", "False"]


class _ProbeConfig(StageConfig):
    connection: str = setting(..., label="Connection", description="Connection to look up.")


class _ConnectionProbe(Origin[_ProbeConfig]):
    """Emits one record describing the connection it looked up, as a SQL origin would use it."""

    name = "connection_probe"
    label = "Connection probe"
    config_model = _ProbeConfig

    def batches(self) -> Iterator[pa.RecordBatch]:
        spec = self.context.resources["connections"].get(self.config.connection)
        yield pa.record_batch(
            {"name": [spec.name], "user": [spec.username], "password_ok": [spec.password == PLANTED]}
        )


def _probe_registry() -> Any:
    registry = toy_registry()
    registry.add(_ConnectionProbe, artifact="services-test", version="1.0.0")
    return registry


def test_runs_and_previews_find_connections_in_the_store(instance: svc.InstanceInfo) -> None:
    row = svc.add_connection(SEED_BODY)
    flow = make_flow(
        [stage("Probe", "connection_probe", connection=str(row.uuid)), stage("Out", "collect", key="probe")],
        [("Probe", "Out")],
    )
    registry = _probe_registry()
    previewed = flows.preview(flow, registry=registry)
    assert previewed[0].output == [{"name": "Redshift Conn Prod", "user": "prodDBUser", "password_ok": True}]
    result = flows.start_run(flow, registry=registry).wait(timeout=60)
    assert result.status == "Complete", result.error
    assert store("probe")["committed"] is not None


def test_flows_without_connections_never_open_the_store() -> None:
    flow = make_flow(
        [stage("Src", "numbers", count=3), stage("Out", "collect", key="plain")], [("Src", "Out")]
    )
    assert run(flow, toy_registry()).status == "Complete"
    assert flows.start_run(flow, registry=toy_registry()).wait(timeout=60).status == "Complete"
    assert not (settings().home / "flowport.db").exists()


# -- against real servers ---------------------------------------------------------


def test_postgresql_test_succeeds() -> None:
    require_postgres()
    svc.init_instance()
    svc.add_connection(
        {
            "name": "pg",
            "vendor": "postgresql",
            "host": PG_HOST,
            "port": PG_PORT,
            "params": {"defaultDatabase": "postgres"},
            "credentials": [{"username": "postgres", "password": PLANTED}],
        }
    )
    result = svc.test_connection("pg")
    assert result.ok, result.message
    assert PLANTED not in result.message


def test_postgresql_test_fails_with_the_servers_reason() -> None:
    # The test server trusts local logins, so a wrong password passes there:
    # an unknown role is the login failure it reports.
    require_postgres()
    svc.init_instance()
    svc.add_connection(
        {
            "name": "pg-bad",
            "vendor": "postgresql",
            "host": PG_HOST,
            "port": PG_PORT,
            "credentials": [{"username": "flowport_no_such_role", "password": PLANTED}],
        }
    )
    result = svc.test_connection("pg-bad")
    assert not result.ok
    assert 'role "flowport_no_such_role" does not exist' in result.message
    assert PLANTED not in result.message


def test_mariadb_test_succeeds_and_a_wrong_password_fails_with_the_servers_reason() -> None:
    svc.init_instance()
    with mariadb_account(PLANTED) as user:
        base = {"vendor": "mysql", "host": "127.0.0.1", "port": 3306}
        svc.add_connection(
            {**base, "name": "maria", "credentials": [{"username": user, "password": PLANTED}]}
        )
        svc.add_connection(
            {**base, "name": "maria-bad", "credentials": [{"username": user, "password": WRONG}]}
        )
        good = svc.test_connection("maria")
        bad = svc.test_connection("maria-bad")
    assert good.ok, good.message
    assert not bad.ok
    assert "Access denied" in bad.message and user in bad.message
    for message in (good.message, bad.message):
        assert PLANTED not in message and WRONG not in message
