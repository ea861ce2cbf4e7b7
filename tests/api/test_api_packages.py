"""Packages through the API: export from one instance, import into another (the seed's Dev → Prod).

Two separate instances (own homes, own stores, own secret keys) on SQLite
and on PostgreSQL; every import is checked for what it stored and, for
refused archives and dry runs, for storing nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import uuid
import zipfile
from typing import Any

import pytest
from tests.api.conftest import Instance, MakeInstance, example_document, trash_only_document, zip_entries
from tests.connections.live_servers import PLANTED

from flowport.services import flow_records


@pytest.fixture
def dev(make_instance: MakeInstance, store: str) -> Instance:
    return make_instance("dev", store=store)


@pytest.fixture
def prod(make_instance: MakeInstance, store: str) -> Instance:
    return make_instance("prod", store=store)


def export(api: Instance, flow_id: int, **params: Any) -> bytes:
    response = api.get(f"/v4/flows/{flow_id}/package", role="viewer", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == f'attachment; filename="flow-{flow_id}.zip"'
    return response.content


def upload(
    api: Instance, data: bytes, resolution: str | None = None, *, dry_run: bool = False, **kwargs: Any
) -> Any:
    params = {"conflictResolution": resolution} if resolution else {}
    path = "/v4/flows/package/dryRun" if dry_run else "/v4/flows/package"
    kwargs.setdefault("role", "editor")
    return api.post(
        path, params=params, files={"data": ("flow-WrangleOrders.zip", data, "application/zip")}, **kwargs
    )


def imported(api: Instance, data: bytes, resolution: str | None = None, **kwargs: Any) -> dict[str, Any]:
    response = upload(api, data, resolution, **kwargs)
    expected = 200 if kwargs.get("dry_run") else 201
    assert response.status_code == expected, response.text
    report: dict[str, Any] = response.json()
    assert set(report) == {
        "data",
        "count",
        "skipped",
        "renamed",
        "replaced",
        "unresolvedConnections",
        "dryRun",
    }
    return report


def snapshot(api: Instance) -> list[dict[str, Any]]:
    """Every stored flow with its document, to compare before and after."""
    return list(api.ok("GET", "/v4/flows", params={"noLimit": "true", "embed": "document"})["data"])


def test_export_import_round_trip_with_skip_replace_rename_and_dry_run(dev: Instance, prod: Instance) -> None:
    orders = dev.create_example()
    broken = dev.ok("POST", "/v4/flows", 201, json=trash_only_document())

    package = export(dev, orders["id"])
    entries = zip_entries(package)
    assert sorted(entries) == ["flows/6f1c2a70-3d5e-4f7b-9a51-0c2b8e1f4d10.json", "manifest.json"]
    manifest = json.loads(entries["manifest.json"])
    assert manifest["format"] == "flowport.package/1" and manifest["withPlainTextCredentials"] is False
    assert manifest["flows"][0]["name"] == "Wrangle Orders" and manifest["connections"] == []
    assert {"name": "flowport-core", "version": "[0.1.0,1.0.0)", "scope": "SYSTEM"} in manifest["artifacts"]

    first = imported(prod, package)
    assert first["count"] == 1 and first["dryRun"] is False
    assert (first["skipped"], first["renamed"], first["replaced"], first["unresolvedConnections"]) == (
        [],
        [],
        [],
        [],
    )
    stored = first["data"][0]
    assert stored["uuid"] == orders["uuid"] and stored["document"] == orders["document"]
    assert stored["creator"] == {"id": prod.ok("GET", "/v4/users/current", role="editor")["id"]}
    assert prod.flow_names() == ["Wrangle Orders"]
    # The seed's step 4: the imported flow runs on Prod.
    prod.activate()
    folder = flow_records.data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dev.activate()
    (folder / "orders.csv").write_bytes((flow_records.data_dir() / "orders.csv").read_bytes())
    group = prod.ok("POST", f"/v4/flows/{stored['id']}/run", 201)
    assert prod.wait(group["id"])["status"] == "Complete"

    both = dev.post("/v4/packages", role="viewer", json={"flowIds": [orders["id"], broken["id"]]})
    assert both.status_code == 200 and both.headers["content-type"] == "application/zip"
    assert len(json.loads(zip_entries(both.content)["manifest.json"])["flows"]) == 2
    before = snapshot(prod)
    dry = imported(prod, both.content, dry_run=True)
    assert dry["dryRun"] is True and dry["skipped"] == ["Wrangle Orders"]
    assert [(f["id"], f["name"]) for f in dry["data"]] == [(None, "Broken")]
    assert snapshot(prod) == before
    skip = imported(prod, both.content, "skip")
    assert skip["skipped"] == ["Wrangle Orders"] and [f["name"] for f in skip["data"]] == ["Broken"]
    assert skip["data"][0]["id"] is not None
    assert prod.flow_names() == ["Wrangle Orders", "Broken"]
    again = imported(prod, both.content)  # skip is the default
    assert again["count"] == 0 and again["skipped"] == ["Wrangle Orders", "Broken"]

    changed = dev.ok("PATCH", f"/v4/flows/{orders['id']}", json={"description": "v2"})
    assert changed["description"] == "v2"
    newer = export(dev, orders["id"])
    before = snapshot(prod)
    dry_replace = imported(prod, newer, "replace", dry_run=True)
    assert dry_replace["replaced"] == ["Wrangle Orders"] and dry_replace["data"][0]["id"] == stored["id"]
    assert snapshot(prod) == before
    replace = imported(prod, newer, "replace")
    assert replace["replaced"] == ["Wrangle Orders"]
    assert replace["data"][0]["id"] == stored["id"] and replace["data"][0]["description"] == "v2"
    assert prod.ok("GET", f"/v4/flows/{stored['id']}")["document"]["description"] == "v2"
    assert prod.flow_names() == ["Wrangle Orders", "Broken"]

    rename = imported(prod, newer, "rename")
    assert rename["renamed"] == [{"from": "Wrangle Orders", "to": "Wrangle Orders (1)"}]
    copy = rename["data"][0]
    assert copy["name"] == "Wrangle Orders (1)" and copy["uuid"] != orders["uuid"]
    assert copy["document"]["name"] == "Wrangle Orders (1)"
    second = imported(prod, newer, "rename")
    assert second["renamed"] == [{"from": "Wrangle Orders", "to": "Wrangle Orders (2)"}]
    assert prod.flow_names() == ["Wrangle Orders", "Broken", "Wrangle Orders (1)", "Wrangle Orders (2)"]

    bad = upload(prod, newer, "merge")
    assert bad.status_code == 422 and "conflictResolution" in bad.json()["exception"]["message"]


def test_import_into_a_project(dev: Instance, prod: Instance) -> None:
    orders = dev.create_example()
    project = prod.ok("POST", "/v4/projects", 201, json={"name": "team"})
    response = prod.post(
        "/v4/flows/package",
        role="editor",
        params={"projectId": project["id"]},
        files={"data": ("p.zip", export(dev, orders["id"]), "application/zip")},
    )
    assert response.status_code == 201
    assert response.json()["data"][0]["projectId"] == project["id"]
    assert prod.flow_names(project["id"]) == ["Wrangle Orders"]
    # The same flow may live once per project.
    assert imported(prod, export(dev, orders["id"]))["count"] == 1
    missing = prod.post(
        "/v4/flows/package", params={"projectId": 999}, files={"data": ("p.zip", export(dev, orders["id"]))}
    )
    assert missing.status_code == 404


def test_replace_matches_by_name_when_the_uuid_differs(dev: Instance, prod: Instance) -> None:
    orders = dev.create_example()
    local = prod.ok("POST", "/v4/flows", 201, json={"name": "Wrangle Orders", "description": "local"})
    report = imported(prod, export(dev, orders["id"]), "replace")
    assert report["replaced"] == ["Wrangle Orders"]
    assert report["data"][0]["id"] == local["id"] and report["data"][0]["uuid"] == orders["uuid"]
    # Matched by uuid from now on, even once renamed locally.
    prod.ok("PATCH", f"/v4/flows/{local['id']}", json={"name": "Renamed"})
    skipped = imported(prod, export(dev, orders["id"]))
    assert skipped["skipped"] == ["Wrangle Orders"] and prod.flow_names() == ["Renamed"]


def test_an_import_that_fails_halfway_stores_nothing(dev: Instance, prod: Instance) -> None:
    clash = str(uuid.uuid4())
    prod.ok("POST", "/v4/flows", 201, json={"name": "One", "uuid": clash})
    prod.ok("POST", "/v4/flows", 201, json={"name": "Two"})
    new = dev.ok("POST", "/v4/flows", 201, json={"name": "New"})
    # Replacing 'One' (same uuid) would rename it to 'Two', which is taken.
    renaming = dev.ok("POST", "/v4/flows", 201, json={"name": "Two", "uuid": clash})
    package = dev.post("/v4/packages", json={"flowIds": [new["id"], renaming["id"]]}).content
    before = snapshot(prod)
    for dry_run in (True, False):
        response = upload(prod, package, "replace", dry_run=dry_run)
        assert response.status_code == 409, response.text
        assert response.json()["exception"]["name"] == "Conflict"
        assert snapshot(prod) == before


# -- hostile archives --------------------------------------------------------------------


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, body in entries:
            archive.writestr(info, body)
    return buffer.getvalue()


def _package(flows: list[dict[str, Any]], *, manifest_changes: dict[str, Any] | None = None) -> bytes:
    """A package built by hand (as an attacker would), consistent unless told otherwise."""
    files = []
    listed = []
    for flow in flows:
        body = json.dumps(flow).encode()
        name = f"flows/{flow['uuid']}.json"
        files.append((name, body))
        listed.append(
            {
                "uuid": flow["uuid"],
                "name": flow["name"],
                "type": flow.get("type", "batch"),
                "file": name,
                "sha256": hashlib.sha256(body).hexdigest(),
            }
        )
    manifest = {
        "format": "flowport.package/1",
        "exportedAt": "2024-05-01T12:00:00.000Z",
        "instance": {"uuid": str(uuid.uuid4())},
        "flows": listed,
        **(manifest_changes or {}),
    }
    return _zip([("manifest.json", json.dumps(manifest).encode()), *files])


def _flow(**changes: Any) -> dict[str, Any]:
    return {**trash_only_document("Hostile"), "uuid": str(uuid.uuid4()), **changes}


def _symlink() -> bytes:
    info = zipfile.ZipInfo("flows/link.json")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return _zip([("manifest.json", b"{}"), (info, b"/etc/passwd")])


def _bomb() -> bytes:
    # 300 MiB of zeros compress to a few hundred KiB.
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("flows/bomb.json", "w", force_zip64=True) as entry,
    ):
        chunk = b"0" * (1024 * 1024)
        for _ in range(300):
            entry.write(chunk)
    return buffer.getvalue()


def _checksum_mismatch() -> bytes:
    flow = _flow()
    data = _package([flow])
    entries = zip_entries(data)
    name = f"flows/{flow['uuid']}.json"
    entries[name] = json.dumps({**flow, "description": "tampered"}).encode()
    return _zip(list(entries.items()))


HOSTILE: list[tuple[str, Any, str]] = [
    ("not a zip", lambda: b"PK\x03\x04 not really", "NOT_A_ZIP"),
    ("empty upload", lambda: b"", "NOT_A_ZIP"),
    (
        "path traversal",
        lambda: _zip([("manifest.json", b"{}"), ("flows/../../etc/cron.json", b"{}")]),
        "PATH_TRAVERSAL",
    ),
    ("absolute path", lambda: _zip([("manifest.json", b"{}"), ("/flows/x.json", b"{}")]), "ABSOLUTE_PATH"),
    ("symlink", _symlink, "SYMLINK"),
    ("too many entries", lambda: _zip([(f"flows/{i}.json", b"{}") for i in range(1001)]), "TOO_MANY_ENTRIES"),
    ("zip bomb", _bomb, "ENTRY_TOO_LARGE"),
    ("missing manifest", lambda: _zip([("flows/x.json", b"{}")]), "MANIFEST_MISSING"),
    (
        "unknown format",
        lambda: _package([_flow()], manifest_changes={"format": "flowport.package/9"}),
        "UNSUPPORTED_FORMAT",
    ),
    (
        "unexpected entry",
        lambda: _zip([("manifest.json", b"{}"), ("run.sh", b"rm -rf /")]),
        "UNEXPECTED_ENTRY",
    ),
    ("checksum mismatch", _checksum_mismatch, "CHECKSUM_MISMATCH"),
    ("not a flow", lambda: _package([_flow(stages="everything")]), "INVALID_FLOW"),
    ("NUL in a name", lambda: _package([_flow(name="Hostile\x00")]), "UNSTORABLE_VALUE"),
    ("unpaired surrogate", lambda: _package([_flow(description="\ud800")]), "UNSTORABLE_VALUE"),
    (
        "credentials without the flag",
        lambda: _package(
            [_flow()],
            manifest_changes={
                "connections": [
                    {
                        "uuid": str(uuid.uuid4()),
                        "name": "c",
                        "vendor": "postgresql",
                        "credentials": [{"password": "x"}],
                    }
                ]
            },
        ),
        "INVALID_MANIFEST",
    ),
]


@pytest.mark.parametrize(("case", "build", "problem"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_archives_are_refused_and_nothing_is_stored(
    make_instance: MakeInstance, case: str, build: Any, problem: str
) -> None:
    prod = make_instance("prod")
    prod.ok("POST", "/v4/flows", 201, json={"name": "Existing"})
    before = snapshot(prod)
    data = build()
    for dry_run in (True, False):
        for resolution in ("skip", "replace", "rename"):
            response = upload(prod, data, resolution, dry_run=dry_run)
            assert response.status_code == 422, (case, response.text)
            error = response.json()["exception"]
            assert error["name"] == "PackageInvalid", error
            assert error["details"]["problem"] == problem, error
    assert snapshot(prod) == before


def test_numbers_too_large_to_store_are_refused(dev: Instance) -> None:
    # JSON's 1e400 reads as infinity, which PostgreSQL's JSONB cannot hold.
    flow = _flow(configuration={"batch_size": 1})
    body = json.dumps(flow).replace('"batch_size": 1', '"batch_size": 1, "x": 1e400')
    data = _package([flow])
    entries = zip_entries(data)
    name = f"flows/{flow['uuid']}.json"
    manifest = json.loads(entries["manifest.json"])
    entries[name] = body.encode()
    manifest["flows"][0]["sha256"] = hashlib.sha256(entries[name]).hexdigest()
    entries["manifest.json"] = json.dumps(manifest).encode()
    response = upload(dev, _zip(list(entries.items())))
    assert response.status_code == 422
    assert response.json()["exception"]["details"]["problem"] in ("INVALID_FLOW", "UNSTORABLE_VALUE")
    assert dev.flow_names() == []


def test_upload_needs_the_data_field(api: Instance) -> None:
    missing = api.post("/v4/flows/package", data={"other": "x"})
    assert missing.status_code == 422 and "'data'" in missing.json()["exception"]["message"]
    as_json = api.post("/v4/flows/package", json={"data": "UEsDBA=="})
    assert as_json.status_code == 422
    broken = api.post(
        "/v4/flows/package",
        content=b'--b\r\nContent-Disposition: form-data; name="data"\r\n\r\nxx',
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert broken.status_code == 422 and broken.json()["exception"]["name"] == "ValidationFailed"
    assert upload(api, b"x", role="viewer").status_code == 403


def test_package_upload_size_is_limited(make_instance: MakeInstance) -> None:
    small = make_instance("small", max_body_bytes=4096)
    response = upload(small, b"0" * 10_000)
    assert response.status_code == 413
    error = response.json()["exception"]
    assert error["name"] == "RequestTooLarge" and "4096" in error["message"]

    def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 1000

    streamed = small.post("/v4/flows", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and streamed.json()["exception"]["name"] == "RequestTooLarge"
    assert small.ok("GET", "/v4/flows")["count"] == 0


# -- connections in packages ---------------------------------------------------------------


def _connection_body(name: str, **changes: Any) -> dict[str, Any]:
    return {
        "host": "dev-redshift.example.com",
        "port": 5439,
        "vendor": "redshift",
        "params": {"defaultDatabase": "devWrangleDB"},
        "vendorName": "redshift",
        "name": name,
        "description": "",
        "isGlobal": True,
        "type": "jdbc",
        "ssl": False,
        "credentialType": "basic",
        "credentials": [{"username": "devDBuser", "password": PLANTED}],
        **changes,
    }


def _flow_using(connection: str, name: str = "Wrangle Orders") -> dict[str, Any]:
    return {
        "name": name,
        "stages": [
            {
                "name": "Orders_01",
                "plugin": {"name": "sql_table_origin"},
                "configuration": {"connection": connection, "table": "Dev-Orders"},
            },
            {"name": "Trash_01", "plugin": {"name": "trash"}},
        ],
        "edges": [{"from": "Orders_01", "to": "Trash_01"}],
    }


def test_unresolved_connections_are_reported_and_resolve_by_uuid_then_name(
    dev: Instance, prod: Instance
) -> None:
    connection = dev.ok("POST", "/v4/connections", 201, json=_connection_body("Dev Redshift Conn"))
    by_uuid = dev.ok("POST", "/v4/flows", 201, json=_flow_using(connection["uuid"]))
    by_name = dev.ok("POST", "/v4/flows", 201, json=_flow_using("Dev Redshift Conn", "By name"))
    elsewhere = dev.ok("POST", "/v4/flows", 201, json=_flow_using("Nowhere", "Dangling"))
    package = dev.post(
        "/v4/packages", json={"flowIds": [by_uuid["id"], by_name["id"], elsewhere["id"]]}
    ).content
    manifest = json.loads(zip_entries(package)["manifest.json"])
    assert manifest["connections"] == [
        {"uuid": connection["uuid"], "name": "Dev Redshift Conn", "vendor": "redshift"}
    ]

    report = imported(prod, package, dry_run=True)
    assert report["unresolvedConnections"] == [
        {
            "uuid": connection["uuid"],
            "name": "Dev Redshift Conn",
            "vendor": "redshift",
            "stages": [
                {"flow": "Wrangle Orders", "stage": "Orders_01"},
                {"flow": "By name", "stage": "Orders_01"},
            ],
        },
        {
            "uuid": None,
            "name": "Nowhere",
            "vendor": None,
            "stages": [{"flow": "Dangling", "stage": "Orders_01"}],
        },
    ]
    # A connection of the same name on Prod resolves the first (its uuid differs: Prod made its own).
    same_name = prod.ok(
        "POST", "/v4/connections", 201, json=_connection_body("Dev Redshift Conn", host="prod")
    )
    assert same_name["uuid"] != connection["uuid"]
    report = imported(prod, package, dry_run=True)
    assert [c["name"] for c in report["unresolvedConnections"]] == ["Nowhere"]
    # So does one with the same uuid under another name.
    prod.ok("DELETE", f"/v4/connections/{same_name['id']}", 204)
    prod.ok(
        "POST", "/v4/connections", 201, json=_connection_body("Prod Redshift Conn", uuid=connection["uuid"])
    )
    stored = imported(prod, package)
    assert [c["name"] for c in stored["unresolvedConnections"]] == ["Nowhere"]
    assert stored["count"] == 3


def test_plain_text_credentials_are_for_admins_and_marked(dev: Instance, prod: Instance) -> None:
    connection = dev.ok("POST", "/v4/connections", 201, json=_connection_body("Dev Redshift Conn"))
    flow = dev.ok("POST", "/v4/flows", 201, json=_flow_using(connection["uuid"]))

    plain = export(dev, flow["id"])
    assert all(PLANTED.encode() not in body for body in zip_entries(plain).values())
    assert PLANTED.encode() not in plain

    refused = dev.get(
        f"/v4/flows/{flow['id']}/package", role="editor", params={"withPlainTextCredentials": "true"}
    )
    assert refused.status_code == 403 and refused.json()["exception"]["name"] == "Forbidden"
    refused = dev.post(
        "/v4/packages", role="editor", json={"flowIds": [flow["id"]], "withPlainTextCredentials": True}
    )
    assert refused.status_code == 403

    response = dev.get(
        f"/v4/flows/{flow['id']}/package", role="admin", params={"withPlainTextCredentials": "true"}
    )
    assert response.status_code == 200
    manifest = json.loads(zip_entries(response.content)["manifest.json"])
    assert manifest["withPlainTextCredentials"] is True
    assert manifest["connections"][0]["credentials"] == [{"username": "devDBuser", "password": PLANTED}]
    # Importing it stores the flow; the credentials go nowhere and are never echoed.
    report = upload(prod, response.content)
    assert report.status_code == 201 and PLANTED not in report.text
    assert prod.ok("GET", "/v4/connections")["count"]["count"] == 0


def test_export_errors(dev: Instance) -> None:
    assert dev.get("/v4/flows/999/package").status_code == 404
    assert dev.post("/v4/packages", json={"flowIds": []}).status_code == 422
    assert dev.post("/v4/packages", json={"flowIds": [999]}).status_code == 404
    assert dev.post("/v4/packages", json={"flowIds": [1], "plain": True}).status_code == 422
    flow = dev.ok("POST", "/v4/flows", 201, json={"name": "Once"})
    twice = dev.post("/v4/packages", json={"flowIds": [flow["id"], flow["id"]]})
    assert (
        twice.status_code == 200
        and len(json.loads(zip_entries(twice.content)["manifest.json"])["flows"]) == 1
    )
    assert example_document()["uuid"] not in twice.text
