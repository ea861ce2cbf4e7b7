"""The seed ``deploy-a-flow-dev-to-prod.txt`` played for real: two servers, two databases, no hand edits.

Dev and Prod are two ``flowport server`` processes, each with its own
FLOWPORT_HOME, admin password and metadata store (Dev on SQLite, Prod on a
fresh PostgreSQL database), and their own users: ``User1`` (editor) on
Dev, ``Admin2`` (admin) on Prod, both created with ``flowport users
create``. Their data lives in two PostgreSQL databases of this machine,
``devWrangleDB`` with table ``Dev-Orders`` and ``prodWrangleDB`` with table
``Prod-Orders``, holding different orders.

User1 builds the flow on Dev through the SDK (one table dataset → one
recipe → one JSON output), runs it and exports it. Admin2 deploys it on
Prod exactly as the seed does over HTTP (deployment, connection, object
import rule, value rules, package upload, run, poll), and the JSON output
on Prod holds Prod's orders only. Then a second release (a recipe change
made on Dev) and a rollback to the first by activation, each verified by a
run, through the SDK and the ``flowport deployments`` CLI.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from tests.conftest import require_service
from tests.sdk.flowport_server import ADMIN_PASSWORD, free_port, wait_until_up
from typer.testing import CliRunner

from flowport.cli.main import app
from flowport.sdk import Client, Job, Unauthorized

PG_HOST, PG_PORT = "127.0.0.1", 5432
USER1_PASSWORD = "User1-dev-only-passw0rd"
ADMIN2_PASSWORD = "Admin2-prod-only-passw0rd"
# Planted in the connections' credentials: never in a package, an answer or a log.
DEV_DB_PASSWORD = "Pl4nted-dev-redshift-pw!"
PROD_DB_PASSWORD = "Pl4nted-prod-redshift-pw!"

DEV_ORDERS = [(i, f"Dev customer {i}", 40.0 * i) for i in range(1, 6)]  # ids 1-5
PROD_ORDERS = [(100 + i, f"Prod customer {i}", 25.0 * i) for i in range(1, 9)]  # ids 101-108
BIG = 100.0  # release 2's recipe keeps the orders of at least this total


# -- PostgreSQL ---------------------------------------------------------------------------------


def _admin_sql(statement: str) -> None:
    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres", autocommit=True
    ) as c:
        c.execute(statement)


@contextlib.contextmanager
def _database(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database named ``<prefix>_<random>`` (case kept), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    _admin_sql(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fill(database: str, table: str, rows: list[tuple[int, str, float]]) -> None:
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname=database) as db:
        db.execute(f'CREATE TABLE "{table}" (order_id integer, customer text, total numeric(10,2))')
        with db.cursor() as cursor:
            cursor.executemany(f'INSERT INTO "{table}" VALUES (%s, %s, %s)', rows)


# -- servers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """One running ``flowport server``: its URL, home and environment."""

    name: str
    url: str
    home: Path
    env: dict[str, str]

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """``flowport ARGS`` run against this instance's home and metadata store (a new process)."""
        return subprocess.run(
            [sys.executable, "-m", "flowport.cli.main", *args],
            input=stdin,
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@contextlib.contextmanager
def _servers(specs: list[tuple[str, Path, dict[str, str]]]) -> Iterator[list[Instance]]:
    """Start one ``flowport server`` per spec (all at once), wait until each answers; stop them after."""
    base = {
        key: value
        for key, value in os.environ.items()
        if key not in ("FLOWPORT_DATABASE_URL", "FLOWPORT_DATA_DIR", "FLOWPORT_URL", "FLOWPORT_TOKEN")
    }
    started: list[tuple[subprocess.Popen[bytes], Instance, Path]] = []
    try:
        for name, home, extra in specs:
            home.mkdir(parents=True, exist_ok=True)
            port = free_port()
            env = {**base, "FLOWPORT_HOME": str(home), "FLOWPORT_ADMIN_PASSWORD": ADMIN_PASSWORD, **extra}
            log = home / "server.log"
            command = [sys.executable, "-m", "flowport.cli.main", "server", "--port", str(port)]
            with log.open("wb") as output:
                process = subprocess.Popen(
                    command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=home
                )
            started.append((process, Instance(name, f"http://127.0.0.1:{port}", home, env), log))
        for process, instance, log in started:
            wait_until_up(process, instance.url, log)
        yield [instance for _, instance, _ in started]
    finally:
        for process, _, _ in started:
            process.terminate()
        for process, _, _ in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _create_user(instance: Instance, name: str, password: str, role: str) -> None:
    done = instance.cli("users", "create", name, "--role", role, "--password-stdin", "--json", stdin=password)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["role"] == role and password not in done.stdout + done.stderr


# -- helpers ----------------------------------------------------------------------------------


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.request.method, response.request.url, response.text)
    return response.json() if response.content else None


def _connection_body(name: str, database: str, password: str) -> dict[str, Any]:
    """The seed's connection body; Redshift speaks PostgreSQL's protocol, so the vendor is postgresql."""
    return {
        "name": name,
        "vendor": "postgresql",
        "host": PG_HOST,
        "port": PG_PORT,
        "params": {"connectStrOpts": "", "defaultDatabase": database},
        "isGlobal": True,
        "type": "jdbc",
        "ssl": False,
        "credentialType": "basic",
        "credentials": [{"username": "postgres", "password": password}],
    }


def _orders(path: Path) -> list[dict[str, Any]]:
    records = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(records, list)
    return sorted(records, key=lambda r: r["orderId"])


def _ids(rows: list[tuple[int, str, float]], minimum: float = 0.0) -> list[int]:
    return [order_id for order_id, _customer, total in rows if total >= minimum]


def _poll(client: httpx.Client, job_group_id: int, timeout: float = 60.0) -> dict[str, Any]:
    """GET /v4/jobGroups/{id} until the job group has ended."""
    deadline = time.monotonic() + timeout
    while True:
        group: dict[str, Any] = _ok(client.get(f"/v4/jobGroups/{job_group_id}"))
        if group["status"] in ("Complete", "Failed", "Canceled"):
            return group
        assert time.monotonic() < deadline, f"job group {job_group_id} still {group['status']}"
        time.sleep(0.2)


def _zip_text(data: bytes) -> str:
    """Every entry of a ZIP, uncompressed, as one text."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return "\n".join(archive.read(name).decode("utf-8", errors="replace") for name in archive.namelist())


# -- the walk-through ---------------------------------------------------------------------------


def test_deploy_a_flow_from_dev_to_prod_then_a_second_release_and_a_rollback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    for name in ("FLOWPORT_URL", "FLOWPORT_TOKEN", "FLOWPORT_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        dev_db = stack.enter_context(_database("devWrangleDB"))
        prod_db = stack.enter_context(_database("prodWrangleDB"))
        prod_metadata = stack.enter_context(_database("flowport_e2e_prod_metadata"))
        _fill(dev_db, "Dev-Orders", DEV_ORDERS)
        _fill(prod_db, "Prod-Orders", PROD_ORDERS)
        dev, prod = stack.enter_context(
            _servers(
                [
                    ("Dev", tmp_path / "dev-home", {}),
                    (
                        "Prod",
                        tmp_path / "prod-home",
                        {
                            "FLOWPORT_DATABASE_URL": f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{prod_metadata}"
                        },
                    ),
                ]
            )
        )
        _create_user(dev, "User1", USER1_PASSWORD, "editor")
        _create_user(prod, "Admin2", ADMIN2_PASSWORD, "admin")
        _walk_through(dev, prod, dev_db, prod_db, tmp_path)
    elapsed = time.monotonic() - began
    assert elapsed < 120, f"the walk-through took {elapsed:.0f}s"


def _walk_through(dev: Instance, prod: Instance, dev_db: str, prod_db: str, tmp_path: Path) -> None:
    user1 = Client(dev.url, username="User1", password=USER1_PASSWORD)
    admin2 = Client(prod.url, username="Admin2", password=ADMIN2_PASSWORD)
    dev_http = httpx.Client(base_url=dev.url, auth=("User1", USER1_PASSWORD), timeout=30)
    prod_http = httpx.Client(base_url=prod.url, auth=("Admin2", ADMIN2_PASSWORD), timeout=30)
    with user1, admin2, dev_http, prod_http:
        bodies: list[bytes] = []
        prod_http.event_hooks["response"] = [lambda r: bodies.append(r.read())]
        dev_http.event_hooks["response"] = [lambda r: bodies.append(r.read())]

        # Separate accounts: User1 works on Dev and has no access to Prod.
        assert user1.current_user()["role"] == "editor"
        assert admin2.current_user()["role"] == "admin"
        refused = httpx.get(f"{prod.url}/v4/deployments", auth=("User1", USER1_PASSWORD), timeout=10)
        assert refused.status_code == 401
        with pytest.raises(Unauthorized), Client(prod.url, username="User1", password=USER1_PASSWORD) as c:
            c.current_user()

        # -- 1. Build in Dev: User1's connection and flow (one table dataset → recipe → JSON output).
        dev_connection = _ok(
            dev_http.post(
                "/v4/connections", json=_connection_body("Dev Redshift Conn", dev_db, DEV_DB_PASSWORD)
            ),
            201,
        )
        assert dev_connection["params"]["defaultDatabase"] == dev_db
        listed = _ok(dev_http.get("/v4/connections"))
        assert [c["uuid"] for c in listed["data"] if c["name"] == "Dev Redshift Conn"] == [
            dev_connection["uuid"]
        ]
        dev_output = dev.data_dir / "wrangle-orders" / "orders.json"
        prod_output = prod.data_dir / "published" / "orders.json"

        project = user1.projects.get(name="default")
        # A server loads no example unless asked: Dev starts empty and builds the seed's flow.
        assert list(project.flows) == []
        flow = project.create_flow("Wrangle Orders", description="Weekly batches of orders")
        table = flow.add_stage("sql_table_origin")
        table.connection = dev_connection["uuid"]
        table.table = "Dev-Orders"
        recipe = flow.add_stage("field_mapper")
        recipe.fields = [
            {"source": "order_id", "target": "orderId", "type": "integer"},
            {"source": "customer"},
            {"source": "total", "type": "double"},
        ]
        output = flow.add_stage("json_file_destination")
        output.path = str(dev_output)
        output.format = "array"
        table >> recipe >> output
        project.update_flow(flow)
        assert flow.validate().success

        job = flow.run().wait(timeout=60)
        assert job.status == "Complete", job.error
        assert [r["orderId"] for r in _orders(dev_output)] == _ids(DEV_ORDERS)

        # -- 2. Export: GET /v4/flows/{id}/package; the connection's password is nowhere in it.
        flows = _ok(dev_http.get("/v4/flows", params={"name": "Wrangle Orders"}))
        flow_id = flows["data"][0]["id"]
        assert flow_id == flow.flow_id
        exported = dev_http.get(f"/v4/flows/{flow_id}/package")
        assert exported.status_code == 200 and exported.headers["content-type"] == "application/zip"
        first_package = tmp_path / "flow-WrangleOrders.zip"
        first_package.write_bytes(exported.content)
        assert DEV_DB_PASSWORD.encode() not in exported.content
        assert DEV_DB_PASSWORD not in _zip_text(exported.content)
        assert dev_connection["uuid"] in _zip_text(exported.content)

        # -- 3. Deploy to Prod, as the seed does over HTTP.
        deployment = _ok(prod_http.post("/v4/deployments", json={"name": "Production Orders"}), 201)
        assert deployment["name"] == "Production Orders" and deployment["activeRelease"] is None
        assert {"id", "createdAt", "updatedAt", "creator", "updater"} <= set(deployment)
        deployment_id = deployment["id"]
        prod_connection = _ok(
            prod_http.post(
                "/v4/connections", json=_connection_body("Prod Redshift Conn", prod_db, PROD_DB_PASSWORD)
            ),
            201,
        )
        assert prod_connection["uuid"] != dev_connection["uuid"]
        rule = {
            "tableName": "connections",
            "onCondition": {"uuid": dev_connection["uuid"]},
            "withCondition": {"id": prod_connection["id"]},
        }
        assert _ok(prod_http.patch(f"/v4/deployments/{deployment_id}/objectImportRules", json=[rule])) == {
            "deleted": []
        }
        # The object rule changes only the connection: the table and the output folder need value rules.
        value_rules = [
            {"type": "tableName", "on": "Dev-Orders", "with": "Prod-Orders"},
            {
                "type": "fileLocation",
                "on": f"/^{re.escape(str(dev.data_dir))}/wrangle-orders/(.*)$/",
                "with": f"{prod.data_dir}/published/\\1",
            },
        ]
        assert _ok(
            prod_http.patch(f"/v4/deployments/{deployment_id}/valueImportRules", json=value_rules)
        ) == {"deleted": []}

        with first_package.open("rb") as handle:
            imported = _ok(
                prod_http.post(
                    f"/v4/deployments/{deployment_id}/releases",
                    files={"data": (first_package.name, handle, "application/zip")},
                ),
                201,
            )
        assert imported["importRuleChanges"]["object"] == [rule]
        assert imported["importRuleChanges"]["value"] == value_rules
        assert imported["flowName"] == "Wrangle Orders" and len(imported["primaryFlowIds"]) == 1
        assert imported["unresolvedConnections"] == []
        first_id = imported["release"]["id"]
        release = _ok(prod_http.get(f"/v4/releases/{first_id}"))
        assert release["active"] is True and release["deployment"] == {"id": deployment_id}
        prod_flow_id = imported["primaryFlowIds"][0]
        stored = _ok(prod_http.get(f"/v4/flows/{prod_flow_id}"))["document"]
        configuration = {stage["name"]: stage["configuration"] for stage in stored["stages"]}
        assert configuration[table.instance_name]["connection"] == prod_connection["uuid"]
        assert configuration[table.instance_name]["table"] == "Prod-Orders"
        assert configuration[output.instance_name]["path"] == str(prod_output)
        assert _ok(prod_http.get(f"/v4/flows/{prod_flow_id}/validate"))["success"] is True  # no red dots

        # -- 4. Test the deployment: run it, poll the job group, read the output.
        dev_before = dev_output.read_bytes()
        started = _ok(prod_http.post(f"/v4/deployments/{deployment_id}/run"), 201)
        assert set(started) == {"data"} and len(started["data"]) == 1
        assert started["data"][0]["reason"] == "JobStarted" and uuid.UUID(started["data"][0]["sessionId"])
        group = _poll(prod_http, started["data"][0]["id"])
        assert group["status"] == "Complete", group["error"]
        assert group["deployment"] == {"id": deployment_id} and group["flow"] == {"id": prod_flow_id}
        written = _orders(prod_output)
        assert [r["orderId"] for r in written] == _ids(PROD_ORDERS)
        assert {r["customer"] for r in written} == {c for _, c, _ in PROD_ORDERS}
        assert not {r["orderId"] for r in written} & set(_ids(DEV_ORDERS))
        assert dev_output.read_bytes() == dev_before  # Prod never wrote to Dev's folder

        # -- Iterate: a recipe change on Dev (keep the big orders only), exported again.
        keep_big = flow.add_stage("filter")
        keep_big.condition = f"total >= {BIG}"
        recipe.disconnect(output)
        recipe >> keep_big >> output
        project.update_flow(flow)
        assert flow.run().wait(timeout=60).status == "Complete"
        assert [r["orderId"] for r in _orders(dev_output)] == _ids(DEV_ORDERS, BIG)
        second_package = project.export_flow(flow, tmp_path / "flow-WrangleOrders-2.zip")
        assert DEV_DB_PASSWORD not in _zip_text(second_package.read_bytes())

        # -- Release 2 through the SDK: rules replaced (the same rule again), dry run, import.
        production = admin2.deployments.get(name="Production Orders")
        assert production.deployment_id == deployment_id
        assert production.object_import_rules == [rule] and production.value_import_rules == value_rules
        assert production.set_object_import_rules([rule]) == [rule]
        dry = production.import_package(second_package, dry_run=True)
        assert dry.dry_run and dry.release is None and dry.primary_flow_ids == []
        assert dry.import_rule_changes == {"object": [rule], "value": value_rules}
        assert len(production.releases) == 1
        result = production.import_package(second_package, notes="keep orders of 100 or more")
        second = result.release
        assert second is not None and second.active and second.notes == "keep orders of 100 or more"
        assert result.import_rule_changes["object"] == [rule] and result.flow_name == "Wrangle Orders"
        assert repr(production.active_release) == f"Release(id={second.release_id}, active=True)"
        assert [r.active for r in production.releases] == [False, True]

        # Run release 2 with the CLI, signed in to Prod with an API token of Admin2.
        token = admin2.create_api_token("e2e deployments cli")["token"]
        cli = CliRunner()
        cli_env = {"FLOWPORT_URL": prod.url, "FLOWPORT_TOKEN": token}
        ran = cli.invoke(app, ["deployments", "run", "Production Orders", "--wait", "--json"], env=cli_env)
        assert ran.exit_code == 0, ran.output
        ran_record = json.loads(ran.stdout)
        assert ran_record["status"] == "Complete" and ran_record["deployment"] == {"id": deployment_id}
        assert ran_record["flow"] == {"id": result.primary_flow_ids[0]}
        assert [r["orderId"] for r in _orders(prod_output)] == _ids(PROD_ORDERS, BIG)
        assert token not in ran.stdout + ran.stderr

        # -- Roll back to release 1 by activating it (SDK), verified by a run (SDK).
        first = production.releases.get(release_id=first_id)
        assert first.active is False
        assert repr(first.activate()) == f"Release(id={first_id}, active=True)"
        assert second.refresh().active is False
        job = production.run()
        assert isinstance(job, Job) and job.wait(timeout=60).status == "Complete", job.error
        assert job.metrics[table.instance_name]["outputRecords"] == len(PROD_ORDERS)
        assert [r["orderId"] for r in _orders(prod_output)] == _ids(PROD_ORDERS)

        listed_releases = cli.invoke(
            app, ["deployments", "releases", str(deployment_id), "--json"], env=cli_env
        )
        assert listed_releases.exit_code == 0, listed_releases.output
        assert [(r["id"], r["active"]) for r in json.loads(listed_releases.stdout)["data"]] == [
            (first_id, True),
            (second.release_id, False),
        ]
        runs = production.jobs
        assert len(runs) == 3 and all(j.status == "Complete" for j in runs)
        assert [j.flow_id for j in runs] == [prod_flow_id, result.primary_flow_ids[0], prod_flow_id]

        # No planted password in anything either server answered, nor in the Prod job logs.
        logs = "".join(j.logs for j in runs)
        for secret in (DEV_DB_PASSWORD, PROD_DB_PASSWORD):
            assert secret.encode() not in b"".join(bodies) and secret not in logs
