"""Connections through the API: the seed's bodies, write-only credentials, and a planted password
that must show up in no response, no package, no job log and no log record."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from tests.api.conftest import Instance, zip_entries
from tests.connections.live_servers import PG_HOST, PG_PORT, PLANTED, require_postgres

# The seed's POST /v4/connections body, with the planted password.
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


def test_connection_crud_in_the_seeds_shape(api: Instance) -> None:
    created = api.ok("POST", "/v4/connections", 201, json=SEED_BODY, role="editor")
    assert created["credentials"] == [{"user": "prodDBUser", "username": "prodDBUser"}]
    assert created["vendor"] == "redshift" and created["type"] == "jdbc" and created["port"] == 1433
    assert created["params"] == SEED_BODY["params"] and created["uuid"]
    assert created["creator"] == {"id": api.ok("GET", "/v4/users/current", role="editor")["id"]}
    listed = api.ok("GET", "/v4/connections", role="viewer")
    # The seed's count object: owned by the caller, shared by others, and the total.
    assert listed["count"] == {"owned": 0, "shared": 1, "count": 1} and listed["data"] == [created]
    by_creator = api.get("/v4/connections", role="editor").json()["count"]
    assert by_creator == {"owned": 1, "shared": 0, "count": 1}
    assert api.ok("GET", f"/v4/connections/{created['id']}") == created

    patched = api.ok("PATCH", f"/v4/connections/{created['id']}", json={"port": 5439, "description": "prod"})
    assert (patched["port"], patched["description"]) == (5439, "prod")
    assert patched["credentials"] == [{"user": "prodDBUser", "username": "prodDBUser"}]
    new_user = api.ok(
        "PATCH",
        f"/v4/connections/{created['id']}",
        json={"credentials": [{"user": "other", "password": "x"}]},
    )
    assert new_user["credentials"] == [{"user": "other", "username": "other"}]

    taken = api.post("/v4/connections", json=SEED_BODY)
    assert taken.status_code == 409
    for bad in (
        {**SEED_BODY, "name": "x", "vendor": "oracle"},
        {**SEED_BODY, "name": "x", "port": 70000},
        {**SEED_BODY, "name": "x", "params": {"password": PLANTED}},
        {**SEED_BODY, "name": "x", "colour": "red"},
        {**SEED_BODY, "name": "x", "credentials": [{"username": "u" * 300, "password": PLANTED}]},
        {**SEED_BODY, "name": "x", "credentials": [{"password": {"nested": PLANTED}}]},
    ):
        response = api.post("/v4/connections", json=bad)
        assert response.status_code == 422, response.text
        assert PLANTED not in response.text
    assert api.delete(f"/v4/connections/{created['id']}", role="viewer").status_code == 403
    assert api.delete(f"/v4/connections/{created['id']}").status_code == 204
    assert api.get(f"/v4/connections/{created['id']}").status_code == 404
    assert all(PLANTED.encode() not in body for body in api.bodies)


def test_list_paging(api: Instance) -> None:
    for index in range(3):
        api.ok("POST", "/v4/connections", 201, json={"name": f"c{index}", "vendor": "sqlite", "params": {}})
    page = api.ok("GET", "/v4/connections", params={"limit": 2, "offset": 1})
    assert page["count"]["count"] == 3 and [c["name"] for c in page["data"]] == ["c1", "c2"]
    assert len(api.ok("GET", "/v4/connections", params={"noLimit": "true", "limit": 1})["data"]) == 3


def test_a_planted_password_is_in_no_response_package_job_log_or_log_record(
    api: Instance, caplog: pytest.LogCaptureFixture
) -> None:
    require_postgres()
    caplog.set_level(logging.DEBUG)
    connection = api.ok(
        "POST",
        "/v4/connections",
        201,
        json={
            "name": "Local PostgreSQL",
            "vendor": "postgresql",
            "host": PG_HOST,
            "port": PG_PORT,
            "params": {"defaultDatabase": "postgres"},
            # The test server trusts local logins: the planted password is sent and ignored.
            "credentials": [{"username": "postgres", "password": PLANTED}],
        },
    )
    tested = api.ok("POST", f"/v4/connections/{connection['id']}/test", role="editor")
    assert tested["ok"] is True, tested
    assert api.post(f"/v4/connections/{connection['id']}/test", role="viewer").status_code == 403

    def flow(name: str, query: str) -> dict[str, Any]:
        result: dict[str, Any] = api.ok(
            "POST",
            "/v4/flows",
            201,
            json={
                "name": name,
                "stages": [
                    {
                        "name": "Query_01",
                        "plugin": {"name": "sql_query_origin"},
                        "configuration": {"connection": connection["uuid"], "query": query},
                    },
                    {"name": "Trash_01", "plugin": {"name": "trash"}},
                ],
                "edges": [{"from": "Query_01", "to": "Trash_01"}],
            },
        )
        return result

    good = flow("Reads", "SELECT 1 AS x, 'hello' AS y")
    bad = flow("Fails", "SELECT * FROM no_such_table")
    preview = api.ok("POST", f"/v4/flows/{good['id']}/preview")
    assert preview["data"][0]["output"] == [{"x": 1, "y": "hello"}]
    failed_preview = api.post(f"/v4/flows/{bad['id']}/preview")
    assert failed_preview.status_code == 400

    for created, status in ((good, "Complete"), (bad, "Failed")):
        group = api.ok("POST", f"/v4/flows/{created['id']}/run", 201)
        ended = api.wait(group["id"])
        assert ended["status"] == status, ended["error"]
        api.get(f"/v4/jobGroups/{group['id']}/logs")
        api.get(f"/v4/jobGroups/{group['id']}/metrics")
        api.get(f"/v4/jobGroups/{group['id']}/jobs")

    package = api.get(f"/v4/flows/{good['id']}/package").content
    several = api.post("/v4/packages", json={"flowIds": [good["id"], bad["id"]]}).content
    for data in (package, several):
        assert PLANTED.encode() not in data
        assert all(PLANTED.encode() not in body for body in zip_entries(data).values())
    api.get("/v4/connections")
    api.get(f"/v4/connections/{connection['id']}")
    api.get("/v4/flows", params={"embed": "document"})
    api.get("/v4/jobGroups", params={"noLimit": "true"})

    assert len(api.bodies) > 15
    assert all(PLANTED.encode() not in body for body in api.bodies)
    assert caplog.records
    assert [r for r in caplog.records if PLANTED in r.getMessage() or PLANTED in str(r.args)] == []
    assert PLANTED not in caplog.text
