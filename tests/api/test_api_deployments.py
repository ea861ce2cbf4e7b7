"""Deployments, import rules, releases and runs through the real ASGI app: the seed's Dev -> Prod steps.

Dev and Prod are two instances (their own homes, metadata stores and
users); their data lives in two PostgreSQL databases, one with table
``Dev-Orders`` and one with table ``Prod-Orders``, holding different rows.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from tests.api.conftest import Instance, MakeInstance
from tests.connections.live_servers import PG_HOST, PG_PORT, postgres_database

from flowport.services import flow_records
from flowport.services.flows import plugin_registry

CORE = next(str(a.version) for a in plugin_registry().artifacts() if a.name == "flowport-core")
DEV_ROWS = [(1, "Dev Only One", 10.0), (2, "Dev Only Two", 500.0)]
PROD_ROWS = [(7, "Prod Alpha", 120.5), (8, "Prod Beta", 30.0), (9, "Prod Gamma", 75.25)]


@pytest.fixture(scope="module")
def wrangle_databases() -> Iterator[dict[str, str]]:
    """``devWrangleDB`` and ``prodWrangleDB`` of the seed: database names on the test PostgreSQL."""
    with postgres_database("devwrangledb") as dev, postgres_database("prodwrangledb") as prod:
        for name, table, rows in [(dev, "Dev-Orders", DEV_ROWS), (prod, "Prod-Orders", PROD_ROWS)]:
            with psycopg.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname=name) as db:
                db.execute(f'CREATE TABLE "{table}" (order_id integer, customer text, total numeric(10,2))')
                with db.cursor() as cursor:
                    cursor.executemany(f'INSERT INTO "{table}" VALUES (%s, %s, %s)', rows)
        yield {"dev": dev, "prod": prod}


def connection_body(name: str, database: str) -> dict[str, Any]:
    """The seed's connection body, pointed at a database of the test PostgreSQL."""
    return {
        "name": name,
        "vendor": "postgresql",
        "host": PG_HOST,
        "port": PG_PORT,
        "params": {"defaultDatabase": database},
        "isGlobal": True,
        "credentialType": "basic",
        "credentials": [{"username": "postgres", "password": "not-checked-by-trust"}],
    }


def orders_document(
    connection: str, *, condition: str | None = None, version: str | None = None
) -> dict[str, Any]:
    """The seed's flow: one table dataset -> (a recipe) -> one JSON output."""
    origin: dict[str, Any] = {"name": "sql_table_origin", "type": "origin"}
    if version is not None:
        origin["artifact"] = {"name": "flowport-core", "version": version, "scope": "SYSTEM"}
    stages: list[dict[str, Any]] = [
        {
            "name": "Orders_01",
            "plugin": origin,
            "configuration": {"connection": connection, "table": "Dev-Orders"},
        },
        {
            "name": "JSON_01",
            "plugin": {"name": "json_file_destination", "type": "destination"},
            "configuration": {"path": "out/orders.jsonl", "format": "jsonl"},
        },
    ]
    edges = [{"from": "Orders_01", "to": "JSON_01"}]
    if condition is not None:
        stages.insert(
            1, {"name": "Recipe_01", "plugin": {"name": "filter"}, "configuration": {"condition": condition}}
        )
        edges = [{"from": "Orders_01", "to": "Recipe_01"}, {"from": "Recipe_01", "to": "JSON_01"}]
    return {"name": "Wrangle Orders", "stages": stages, "edges": edges}


def upload(data: bytes) -> dict[str, Any]:
    """The multipart body of a package upload (form field ``data``)."""
    return {"files": {"data": ("flow-WrangleOrders.zip", data, "application/zip")}}


def output_customers(instance: Instance) -> list[str]:
    """The customers the last run wrote to the instance's JSON output."""
    instance.activate()
    text = (flow_records.data_dir() / "out" / "orders.jsonl").read_text(encoding="utf-8")
    return [json.loads(line)["customer"] for line in text.splitlines() if line.strip()]


def run_and_wait(prod: Instance, deployment_id: int) -> dict[str, Any]:
    """POST /v4/deployments/{id}/run, then poll the job group to its end."""
    answer = prod.ok("POST", f"/v4/deployments/{deployment_id}/run", 201)
    assert set(answer) == {"data"} and len(answer["data"]) == 1
    started = answer["data"][0]
    assert started["reason"] == "JobStarted" and uuid.UUID(started["sessionId"])
    assert set(started) == {"reason", "sessionId", "id"}
    return prod.wait(started["id"])


def export_from_dev(dev: Instance, document: dict[str, Any]) -> bytes:
    """Store the flow on Dev and export its package (the seed's GET /v4/flows/{id}/package)."""
    flow = dev.ok("POST", "/v4/flows", 201, json=document)
    response = dev.get(f"/v4/flows/{flow['id']}/package")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    dev.ok("DELETE", f"/v4/flows/{flow['id']}", 204)
    return response.content


# -- the walk-through ------------------------------------------------------------------------


def test_the_seed_walk_through_from_dev_to_prod_with_a_rollback(
    make_instance: MakeInstance, store: str, wrangle_databases: dict[str, str]
) -> None:
    dev = make_instance("dev", store=store)
    prod = make_instance("prod", store=store)

    # Dev: User1 builds the flow on the Dev connection and exports it.
    dev.ok("POST", "/v4/users", 201, json={"name": "User1", "password": "user1-pass-1", "role": "editor"})
    dev_connection = dev.ok(
        "POST", "/v4/connections", 201, json=connection_body("Dev Redshift Conn", wrangle_databases["dev"])
    )
    first_package = export_from_dev(dev, orders_document(dev_connection["uuid"]))
    # User1 has no access to Prod.
    assert prod.get("/v4/deployments", role=None, auth=("User1", "user1-pass-1")).status_code == 401

    # Prod: Admin2 creates the deployment, the connection and the import rules.
    deployment = prod.ok("POST", "/v4/deployments", 201, json={"name": "Production Orders"})
    assert {"id", "name", "createdAt", "updatedAt", "creator", "updater"} <= set(deployment)
    assert (
        deployment["name"] == "Production Orders"
        and deployment["creator"]["id"] == deployment["updater"]["id"]
    )
    deployment_id = deployment["id"]
    prod_connection = prod.ok(
        "POST", "/v4/connections", 201, json=connection_body("Redshift Conn Prod", wrangle_databases["prod"])
    )
    rule = {
        "tableName": "connections",
        "onCondition": {"uuid": dev_connection["uuid"]},
        "withCondition": {"id": prod_connection["id"]},
    }
    assert prod.ok("PATCH", f"/v4/deployments/{deployment_id}/objectImportRules", json=[rule]) == {
        "deleted": []
    }
    table_rule = {"type": "tableName", "on": "/^Dev-(.*)$/", "with": r"Prod-\1"}
    assert prod.ok("PATCH", f"/v4/deployments/{deployment_id}/valueImportRules", json=[table_rule]) == {
        "deleted": []
    }
    assert prod.ok("GET", f"/v4/deployments/{deployment_id}/objectImportRules") == {
        "data": [rule],
        "count": 1,
    }

    # Upload the package: a release, active at once.
    imported = prod.ok("POST", f"/v4/deployments/{deployment_id}/releases", 201, **upload(first_package))
    assert imported["importRuleChanges"] == {"object": [rule], "value": [table_rule]}
    assert imported["flowName"] == "Wrangle Orders" and len(imported["primaryFlowIds"]) == 1
    first = imported["release"]["id"]
    release = prod.ok("GET", f"/v4/releases/{first}")
    assert release["active"] is True and release["deployment"] == {"id": deployment_id}
    assert {"id", "notes", "packageUuid", "active", "createdAt", "updatedAt", "deployment"} <= set(release)
    assert prod.ok("GET", f"/v4/flows/{imported['primaryFlowIds'][0]}/validate")["success"] is True

    # Test the deployment: the job reads Prod's table only.
    group = run_and_wait(prod, deployment_id)
    assert group["status"] == "Complete", group["error"]
    assert output_customers(prod) == [name for _id, name, _total in PROD_ROWS]

    # Iterate: a recipe change made on Dev, exported, imported as release 2.
    second_package = export_from_dev(dev, orders_document(dev_connection["uuid"], condition="total >= 50"))
    second = prod.ok("POST", f"/v4/deployments/{deployment_id}/releases", 201, **upload(second_package))[
        "release"
    ]["id"]
    assert run_and_wait(prod, deployment_id)["status"] == "Complete"
    assert output_customers(prod) == ["Prod Alpha", "Prod Gamma"]
    listed = prod.ok("GET", "/v4/releases", params={"deploymentId": deployment_id})
    assert listed["count"] == 2 and [r["active"] for r in listed["data"]] == [False, True]

    # Roll back to release 1 by activating it, verified by a run.
    activated = prod.ok("PATCH", f"/v4/releases/{first}", json={"active": True})
    assert (
        activated["id"] == first
        and activated["active"]
        and "updatedAt" in activated
        and "updater" in activated
    )
    assert prod.ok("GET", f"/v4/releases/{second}")["active"] is False
    assert run_and_wait(prod, deployment_id)["status"] == "Complete"
    assert output_customers(prod) == [name for _id, name, _total in PROD_ROWS]
    embedded = prod.ok("GET", f"/v4/deployments/{deployment_id}", params={"embed": "releases"})
    assert embedded["activeRelease"] == {"id": first} and embedded["releases"]["count"] == 2
    assert prod.get(f"/v4/releases/{first}/package").content == first_package

    everything = b"".join(prod.bodies + dev.bodies)
    assert b"not-checked-by-trust" not in everything and b"user1-pass-1" not in everything


def test_a_release_whose_connection_is_missing_cannot_run_and_its_stage_shows_red(
    make_instance: MakeInstance, wrangle_databases: dict[str, str]
) -> None:
    dev = make_instance("dev")
    prod = make_instance("prod")
    dev_connection = dev.ok(
        "POST", "/v4/connections", 201, json=connection_body("Dev Redshift Conn", wrangle_databases["dev"])
    )
    data = export_from_dev(dev, orders_document(dev_connection["uuid"]))
    deployment_id = prod.ok("POST", "/v4/deployments", 201, json={"name": "No rules"})["id"]

    # No deployment yet has a release: a clear 409.
    refused = prod.post(f"/v4/deployments/{deployment_id}/run")
    assert refused.status_code == 409 and "has no active release" in refused.json()["exception"]["message"]

    # Stored, not activated: a deployment never switches to a release that cannot run.
    kept = prod.ok("POST", f"/v4/deployments/{deployment_id}/releases", 201, **upload(data))
    assert kept["activated"] is False and kept["release"]["active"] is False
    assert "not activated" in kept["message"]
    assert prod.post(f"/v4/deployments/{deployment_id}/run").status_code == 409
    imported = prod.ok(
        "POST", f"/v4/deployments/{deployment_id}/releases", 201, params={"activate": "force"}, **upload(data)
    )
    assert imported["activated"] is True
    assert imported["unresolvedConnections"][0]["stage"] == "Orders_01"
    refused = prod.post(f"/v4/deployments/{deployment_id}/run")
    assert refused.status_code == 422
    error = refused.json()["exception"]
    assert error["name"] == "ValidationFailed"
    assert "stage 'Orders_01'" in error["message"] and dev_connection["uuid"] in error["message"]
    assert "Dev Redshift Conn" in error["message"]
    assert error["details"]["missingConnections"] == [
        {"stage": "Orders_01", "connection": dev_connection["uuid"]}
    ]
    assert prod.ok("GET", "/v4/jobGroups")["count"] == 0

    validation = prod.ok("GET", f"/v4/flows/{imported['primaryFlowIds'][0]}/validate")
    assert validation["success"] is False
    assert [
        (i["instanceName"], i["code"]) for i in validation["issues"] if i["code"] == "CONNECTION_NOT_FOUND"
    ] == [("Orders_01", "CONNECTION_NOT_FOUND")]


# -- imports ----------------------------------------------------------------------------------


def _package_of(api: Instance, document: dict[str, Any]) -> bytes:
    return export_from_dev(api, document)


def test_dry_run_answers_200_and_stores_nothing(api: Instance) -> None:
    data = _package_of(api, orders_document(str(uuid.uuid4())))
    deployment_id = api.ok("POST", "/v4/deployments", 201, json={"name": "D"})["id"]
    flows_before = api.ok("GET", "/v4/flows", params={"noLimit": "true"})["count"]
    dry = api.ok("POST", f"/v4/deployments/{deployment_id}/releases/dryRun", 200, **upload(data))
    assert dry["dryRun"] is True and dry["flowName"] == "Wrangle Orders" and dry["primaryFlowIds"] == []
    assert dry["importRuleChanges"] == {"object": [], "value": []}
    assert api.ok("GET", "/v4/releases")["count"] == 0
    assert api.ok("GET", "/v4/flows", params={"noLimit": "true"})["count"] == flows_before
    assert api.ok("GET", f"/v4/deployments/{deployment_id}")["activeRelease"] is None


def test_an_exact_pin_that_is_not_installed_is_a_422_listing_the_installed_versions(api: Instance) -> None:
    deployment_id = api.ok("POST", "/v4/deployments", 201, json={"name": "D"})["id"]
    exact = _package_of(api, orders_document(str(uuid.uuid4()), version="0.0.9"))
    refused = api.post(f"/v4/deployments/{deployment_id}/releases", **upload(exact))
    assert refused.status_code == 422
    error = refused.json()["exception"]
    assert "Orders_01" in error["message"] and f"installed versions: {CORE}" in error["message"]
    assert error["details"]["problems"][0]["installed"] == [CORE]
    assert api.ok("GET", "/v4/releases")["count"] == 0
    ranged = _package_of(api, orders_document(str(uuid.uuid4()), version="[0.0.1,10.0.0]"))
    imported = api.ok("POST", f"/v4/deployments/{deployment_id}/releases", 201, **upload(ranged))
    assert imported["resolvedArtifacts"][0]["resolved"] == CORE


def test_deployment_crud_and_release_deletion(api: Instance) -> None:
    created = api.ok("POST", "/v4/deployments", 201, json={"name": "Production Orders"})
    assert api.post("/v4/deployments", json={"name": "Production Orders"}).status_code == 409
    renamed = api.ok("PATCH", f"/v4/deployments/{created['id']}", json={"name": "Prod Orders"})
    assert renamed["name"] == "Prod Orders"
    listed = api.ok("GET", "/v4/deployments")
    assert listed["count"] == 1 and listed["data"][0]["name"] == "Prod Orders"
    data = _package_of(api, orders_document(str(uuid.uuid4())))
    releases = [
        api.ok("POST", f"/v4/deployments/{created['id']}/releases", 201, **upload(data))["release"]["id"]
        for _ in range(2)
    ]
    assert api.patch(f"/v4/releases/{releases[0]}", json={"notes": "x"}).status_code == 422
    api.ok("DELETE", f"/v4/releases/{releases[1]}", 204)
    assert api.ok("GET", f"/v4/deployments/{created['id']}")["activeRelease"] is None
    assert api.post(f"/v4/deployments/{created['id']}/run").status_code == 409
    api.ok("DELETE", f"/v4/deployments/{created['id']}", 204)
    assert api.get(f"/v4/deployments/{created['id']}").status_code == 404
    assert api.get(f"/v4/releases/{releases[0]}").status_code == 404


# -- auth and hostile input ------------------------------------------------------------------------

READS = [
    "/v4/deployments",
    "/v4/deployments/1",
    "/v4/deployments/1/objectImportRules",
    "/v4/deployments/1/valueImportRules",
    "/v4/releases",
    "/v4/releases/1",
    "/v4/releases/1/package",
    "/v4/artifacts",
]
WRITES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v4/deployments", {"json": {"name": "Viewer's"}}),
    ("PATCH", "/v4/deployments/1", {"json": {"name": "Renamed"}}),
    ("DELETE", "/v4/deployments/1", {}),
    ("PATCH", "/v4/deployments/1/objectImportRules", {"json": []}),
    ("PATCH", "/v4/deployments/1/valueImportRules", {"json": []}),
    ("POST", "/v4/deployments/1/releases", upload(b"PK")),
    ("POST", "/v4/deployments/1/releases/dryRun", upload(b"PK")),
    ("PATCH", "/v4/releases/1", {"json": {"active": True}}),
    ("DELETE", "/v4/releases/1", {}),
    ("POST", "/v4/deployments/1/run", {}),
]


def test_every_endpoint_needs_credentials_and_viewers_only_read(api: Instance) -> None:
    deployment_id = api.ok("POST", "/v4/deployments", 201, json={"name": "D"})["id"]
    data = _package_of(api, orders_document(str(uuid.uuid4())))
    api.ok("POST", f"/v4/deployments/{deployment_id}/releases", 201, **upload(data))
    for path in READS:
        assert api.get(path, role=None).status_code == 401, path
        assert api.get(path, role="viewer").status_code == 200, path
    for method, path, kwargs in WRITES:
        response = api.request(method, path, role=None, **kwargs)
        assert response.status_code == 401 and response.headers["www-authenticate"], (method, path)
        response = api.request(method, path, role="viewer", **kwargs)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["exception"]["name"] == "Forbidden"
    assert api.ok("GET", "/v4/deployments", role="viewer")["count"] == 1


GARBAGE: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v4/deployments", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
    ("POST", "/v4/deployments", {"json": []}),
    ("POST", "/v4/deployments", {"json": {"name": 5}}),
    ("POST", "/v4/deployments", {"json": {"name": "a" * 300}}),
    ("POST", "/v4/deployments", {"json": {"name": "nul\u0000"}}),
    ("POST", "/v4/deployments", {"json": {"name": "x", "id": 3}}),
    ("POST", "/v4/deployments", {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}),
    (
        "POST",
        "/v4/deployments",
        {"content": b'{"name": "\\ud800"}', "headers": {"content-type": "application/json"}},
    ),
    ("PATCH", "/v4/deployments/{id}", {"json": {"name": None}}),
    ("PATCH", "/v4/deployments/{id}", {"json": "name"}),
    ("GET", "/v4/deployments/99999999999999999999", {}),
    ("GET", "/v4/deployments/-1", {}),
    ("GET", "/v4/deployments", {"params": {"limit": "lots"}}),
    ("GET", "/v4/deployments", {"params": {"embed": "everything"}}),
    ("GET", "/v4/releases", {"params": {"deploymentId": "x"}}),
    ("PATCH", "/v4/deployments/{id}/objectImportRules", {"json": {"tableName": "connections"}}),
    ("PATCH", "/v4/deployments/{id}/objectImportRules", {"json": [1, "two", None]}),
    (
        "PATCH",
        "/v4/deployments/{id}/objectImportRules",
        {"json": [{"tableName": "users", "onCondition": {"uuid": "u"}, "withCondition": {"id": 1}}]},
    ),
    (
        "PATCH",
        "/v4/deployments/{id}/objectImportRules",
        {
            "json": [
                {"tableName": "connections", "onCondition": {"uuid": "u"}, "withCondition": {"id": 10**30}}
            ]
        },
    ),
    (
        "PATCH",
        "/v4/deployments/{id}/valueImportRules",
        {"json": [{"type": "tableName", "on": "/[/", "with": "x"}]},
    ),
    (
        "PATCH",
        "/v4/deployments/{id}/valueImportRules",
        {"json": [{"type": "tableName", "on": "/(a)/", "with": "\\2"}]},
    ),
    (
        "PATCH",
        "/v4/deployments/{id}/valueImportRules",
        {"json": [{"type": "tableName", "on": "", "with": "x"}]},
    ),
    (
        "PATCH",
        "/v4/deployments/{id}/valueImportRules",
        {"content": b"[" * 5000, "headers": {"content-type": "application/json"}},
    ),
    ("POST", "/v4/deployments/{id}/releases", {"json": {"data": "PK"}}),
    ("POST", "/v4/deployments/{id}/releases", {"data": {"data": "not a file"}}),
    ("POST", "/v4/deployments/{id}/releases", upload(b"PK\x03\x04 truncated")),
    ("POST", "/v4/deployments/{id}/releases", upload(b"")),
    (
        "POST",
        "/v4/deployments/{id}/releases",
        {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data"}},
    ),
    ("POST", "/v4/deployments/{id}/releases/dryRun", upload(b"\x00" * 100)),
    ("POST", "/v4/deployments/{id}/releases", {**upload(b"PK"), "data": {"notes": "n" * 20_000}}),
    ("PATCH", "/v4/releases/{release}", {"json": {"active": "yes"}}),
    ("PATCH", "/v4/releases/{release}", {"json": [True]}),
    ("PATCH", "/v4/releases/{release}", {"json": {"active": True, "notes": "x"}}),
    (
        "PATCH",
        "/v4/releases/{release}",
        {"content": b"null", "headers": {"content-type": "application/json"}},
    ),
    ("POST", "/v4/deployments/{id}/run", {"json": {"runParameters": {"overrides": {"data": [{"key": 1}]}}}}),
    ("POST", "/v4/deployments/{id}/run", {"json": {"runParameters": "all"}}),
    ("POST", "/v4/deployments/{id}/run", {"json": {"parameters": {"bad name": "x"}}}),
    ("POST", "/v4/deployments/{id}/run", {"json": [1, 2]}),
    ("DELETE", "/v4/releases/0", {}),
]


def test_garbage_bodies_and_parameters_are_4xx_in_the_error_shape_never_500(
    make_instance: MakeInstance, store: str
) -> None:
    api = make_instance("dev", store=store)
    deployment_id = api.ok("POST", "/v4/deployments", 201, json={"name": "D"})["id"]
    data = _package_of(api, orders_document(str(uuid.uuid4())))
    forced = {"params": {"activate": "force"}}  # its connection is not on this instance
    release = api.ok("POST", f"/v4/deployments/{deployment_id}/releases", 201, **forced, **upload(data))[
        "release"
    ]["id"]
    for method, template, kwargs in GARBAGE:
        path = template.replace("{id}", str(deployment_id)).replace("{release}", str(release))
        response = api.request(method, path, **kwargs)
        assert 400 <= response.status_code < 500, (method, path, response.status_code, response.text)
        error = response.json()["exception"]
        assert error["name"] and error["message"], (method, path)
    # Nothing of the above changed the deployment.
    after = api.ok("GET", f"/v4/deployments/{deployment_id}", params={"embed": "releases"})
    assert (
        after["name"] == "D" and after["activeRelease"] == {"id": release} and after["releases"]["count"] == 1
    )
