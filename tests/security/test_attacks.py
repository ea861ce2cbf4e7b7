"""Attacks on a shared instance, through the real API of a real server process (issue: security).

Each test plays an editor (or a viewer) trying to read the instance's
secret key or credentials, write outside the file roots, or make itself
admin, and checks the attempt is refused with a clear message, that
nothing was stored or written, and that the key, the encrypted blobs and
the roles never leave the server.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.security.conftest import ADMIN, EDITOR, VIEWER, Target

_TIMEOUT = 120.0


def _stage(name: str, plugin: str, configuration: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "plugin": {"name": plugin}, "configuration": configuration}


def _flow(name: str, *stages: dict[str, Any], error_stage: dict[str, Any] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": name,
        "stages": list(stages),
        "edges": [{"from": a["name"], "to": b["name"]} for a, b in itertools.pairwise(stages)],
    }
    if error_stage is not None:
        document["error_stage"] = error_stage
    return document


def _csv_to_json(name: str, source: str, target: str = "out/result.jsonl") -> dict[str, Any]:
    return _flow(
        name,
        _stage("Orders_01", "csv_file_origin", {"path": source}),
        _stage("JSON_01", "json_file_destination", {"path": target}),
    )


def _create(client: httpx.Client, document: dict[str, Any]) -> int:
    response = client.post("/v4/flows", json=document)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _issues(client: httpx.Client, flow_id: int) -> list[dict[str, Any]]:
    response = client.get(f"/v4/flows/{flow_id}/validate")
    assert response.status_code == 200, response.text
    return list(response.json()["issues"])


def _wait(client: httpx.Client, group_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + _TIMEOUT
    while True:
        group: dict[str, Any] = client.get(f"/v4/jobGroups/{group_id}", params={"embed": "jobs"}).json()
        if group["status"] in ("Complete", "Failed", "Canceled"):
            return group
        assert time.monotonic() < deadline, f"job group {group_id} is still {group['status']}"
        time.sleep(0.1)


def _run(client: httpx.Client, flow_id: int) -> dict[str, Any]:
    started = client.post(f"/v4/flows/{flow_id}/run")
    assert started.status_code == 201, started.text
    return _wait(client, int(started.json()["id"]))


def _secrets(target: Target) -> list[str]:
    """What must never leave the server: the key (and its URL-safe base64 body) and encrypted blobs."""
    key = (target.home / "secret.key").read_text().strip()
    return [key, key[:20]]


def _assert_no_secret(target: Target, *texts: str) -> None:
    for text in texts:
        for secret in _secrets(target):
            assert secret not in text


@pytest.fixture
def editor(target: Target) -> httpx.Client:
    with target.client(EDITOR) as client:
        yield client


@pytest.fixture
def admin(target: Target) -> httpx.Client:
    with target.client(ADMIN) as client:
        yield client


@pytest.fixture
def viewer(target: Target) -> httpx.Client:
    with target.client(VIEWER) as client:
        yield client


@pytest.fixture
def orders(target: Target) -> str:
    """A small CSV inside the root."""
    target.data_dir.mkdir(parents=True, exist_ok=True)
    (target.data_dir / "orders.csv").write_text("id,total\n1,10\n2,20\n", encoding="utf-8")
    return "orders.csv"


# -- hole 1: any file on the server is readable -------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["../secret.key", "{home}/secret.key", "/etc/passwd", "../flowport.db", "sub/../../secret.key"],
)
def test_a_file_origin_outside_the_roots_is_an_issue_and_never_previews_or_runs(
    target: Target, editor: httpx.Client, viewer: httpx.Client, path: str
) -> None:
    source = path.format(home=target.home)
    flow_id = _create(editor, _csv_to_json(f"steal {path}", source))

    issues = _issues(editor, flow_id)
    confined = [i for i in issues if i["code"] in ("PATH_OUTSIDE_ROOTS", "PATH_PROTECTED")]
    assert [i["instanceName"] for i in confined] == ["Orders_01"], issues
    message = confined[0]["humanReadableMessage"]
    assert source in message and "configuration.path" in message
    if confined[0]["code"] == "PATH_OUTSIDE_ROOTS":
        assert str(target.data_dir.resolve()) in message  # names the roots

    preview = editor.post(f"/v4/flows/{flow_id}/preview", json={"rows": 5})
    assert preview.status_code == 422, preview.text
    assert viewer.post(f"/v4/flows/{flow_id}/preview", json={"rows": 5}).status_code == 403
    run = editor.post(f"/v4/flows/{flow_id}/run")
    assert run.status_code == 422, run.text
    assert not (target.data_dir / "out" / "result.jsonl").exists()
    _assert_no_secret(target, preview.text, run.text)


def test_every_file_reading_and_writing_stage_and_the_error_stage_are_confined(
    target: Target, editor: httpx.Client, orders: str
) -> None:
    outside = target.home.parent / "escaped"
    document = _flow(
        "write everywhere",
        _stage("Orders_01", "csv_file_origin", {"path": orders}),
        _stage("CSV_01", "csv_file_destination", {"path": f"{outside}/a.csv"}),
    )
    document["stages"] += [
        _stage("JSON_01", "json_file_destination", {"path": "../escaped/b.jsonl"}),
        _stage("Parquet_01", "parquet_file_destination", {"path": "/tmp/flowport-escaped.parquet"}),
        _stage("JsonIn_01", "json_file_origin", {"path": "../*.key"}),
        _stage("ParquetIn_01", "parquet_file_origin", {"path": "/etc/*"}),
    ]
    document["edges"] += [{"from": "Orders_01", "to": "JSON_01"}, {"from": "Orders_01", "to": "Parquet_01"}]
    document["error_stage"] = {"plugin": {"name": "write_to_file"}, "configuration": {"directory": "../errs"}}
    flow_id = _create(editor, document)

    issues = _issues(editor, flow_id)
    flagged = {i["instanceName"] for i in issues if i["code"] == "PATH_OUTSIDE_ROOTS"}
    assert flagged == {"CSV_01", "JSON_01", "Parquet_01", "JsonIn_01", "ParquetIn_01", "ErrorStage"}, issues
    assert editor.post(f"/v4/flows/{flow_id}/run").status_code == 422
    assert not outside.exists()
    assert not Path("/tmp/flowport-escaped.parquet").exists()
    assert not (target.home / "errs").exists()


def test_a_symlink_that_leaves_the_root_is_refused_when_validated_and_when_the_run_opens_it(
    target: Target, editor: httpx.Client, orders: str
) -> None:
    links = target.data_dir / "links"
    links.mkdir(parents=True, exist_ok=True)
    (links / "a_good.csv").write_text("id,total\n1,10\n", encoding="utf-8")
    outside = target.home.parent / "outside.csv"
    outside.write_text("id,total\n3,30\n", encoding="utf-8")
    link = links / "b_outside.csv"
    if not link.is_symlink():
        os.symlink(outside, link)
    key_link = target.data_dir / "key.csv"
    if not key_link.is_symlink():
        os.symlink(target.home / "secret.key", key_link)

    direct = _create(editor, _csv_to_json("via link", "links/b_outside.csv", "out/link.jsonl"))
    assert [i["code"] for i in _issues(editor, direct)] == ["PATH_OUTSIDE_ROOTS"]
    to_key = _create(editor, _csv_to_json("via key link", "key.csv", "out/link.jsonl"))
    assert [i["code"] for i in _issues(editor, to_key)] == ["PATH_PROTECTED"]

    # A glob is judged by its folder at validation; the run checks each file it matches.
    globbed = _create(editor, _csv_to_json("via glob", "links/*.csv", "out/glob.jsonl"))
    assert _issues(editor, globbed) == []
    group = _run(editor, globbed)
    assert group["status"] == "Failed"
    assert "Orders_01" in group["error"] and "outside the instance's file roots" in group["error"]
    assert not (target.data_dir / "out" / "glob.jsonl").exists()
    _assert_no_secret(target, str(group), editor.get(f"/v4/jobGroups/{group['id']}/logs").text)


# -- DuckDB: SQL that reads or writes files ------------------------------------------------------


def _sql_attack(name: str, source: str, *processors: dict[str, Any]) -> dict[str, Any]:
    # A CSV origin's schema is known before the run (validation binds the SQL); a JSON origin's is not
    # (the run's sandbox refuses it).
    plugin = "csv_file_origin" if source.endswith(".csv") else "json_file_origin"
    return _flow(
        name,
        _stage("Orders_01", plugin, {"path": source}),
        *processors,
        _stage("JSON_01", "json_file_destination", {"path": f"out/{name.replace(' ', '_')}.jsonl"}),
    )


def _expression_reads_key(home: Path, data: Path) -> dict[str, Any]:
    loot = f"(SELECT string_agg(content, '') FROM read_text('{home}/secret.key'))"
    return _stage("Expr_01", "expression", {"fields": [{"name": "loot", "expression": loot}]})


def _fused_filter_reads_key(home: Path, data: Path) -> dict[str, Any]:
    # Right after the CSV origin: fused into the origin's own DuckDB query.
    return _stage(
        "Filter_01", "filter", {"condition": f"(SELECT count(*) FROM read_text('{home}/secret.key')) > 0"}
    )


def _filter_reads_inside_root(home: Path, data: Path) -> dict[str, Any]:
    # Even a file inside the root: SQL in a stage sees its input only.
    return _stage(
        "Filter_01", "filter", {"condition": f"(SELECT count(*) FROM read_csv('{data}/orders.csv')) > 0"}
    )


def _sql_reads_passwd(home: Path, data: Path) -> dict[str, Any]:
    return _stage(
        "SQL_01", "sql", {"query": "SELECT *, (SELECT count(*) FROM read_csv('/etc/passwd')) AS n FROM input"}
    )


@pytest.mark.parametrize("source", ["orders.csv", "orders.jsonl"])
@pytest.mark.parametrize(
    "make",
    [_expression_reads_key, _fused_filter_reads_key, _filter_reads_inside_root, _sql_reads_passwd],
)
def test_sql_in_a_stage_cannot_read_files(
    target: Target, editor: httpx.Client, orders: str, make: Any, source: str
) -> None:
    (target.data_dir / "orders.jsonl").write_text('{"id": 1, "total": 10}\n', encoding="utf-8")
    stage = make(target.home, target.data_dir)
    label = f"{make.__name__.strip('_')}_{source.rsplit('.', 1)[1]}"
    flow_id = _create(editor, _sql_attack(label, source, stage))
    output = target.data_dir / "out" / f"{label}.jsonl"
    if source.endswith(".csv"):
        # The schema is known: validation binds the SQL, the sandbox refuses, the stage is named.
        issues = _issues(editor, flow_id)
        assert [(i["instanceName"], i["code"]) for i in issues] == [(stage["name"], "SQL_INVALID")]
        assert "sandbox" in issues[0]["humanReadableMessage"]
        for action in ("preview", "run"):
            refused = editor.post(f"/v4/flows/{flow_id}/{action}", json={})
            assert refused.status_code == 422, refused.text
            _assert_no_secret(target, refused.text)
    else:
        group = _run(editor, flow_id)
        assert group["status"] == "Failed", group
        assert f"Stage '{stage['name']}'" in group["error"] and "sandbox" in group["error"]
        _assert_no_secret(target, str(group), editor.get(f"/v4/jobGroups/{group['id']}/logs").text)
    assert not output.exists()


def test_copy_to_from_a_sql_stage_writes_nothing(target: Target, editor: httpx.Client, orders: str) -> None:
    escaped = target.home.parent / "copied.csv"
    sql = _stage("SQL_01", "sql", {"query": f"COPY (SELECT * FROM input) TO '{escaped}'"})
    flow_id = _create(editor, _sql_attack("copy out", orders, sql))
    issues = _issues(editor, flow_id)
    assert [(i["instanceName"], i["code"]) for i in issues] == [("SQL_01", "SQL_INVALID")]
    assert editor.post(f"/v4/flows/{flow_id}/run").status_code == 422
    assert not escaped.exists()


# -- holes 2 and 3: connections to the metadata store ------------------------------------------


def _connection(name: str, vendor: str, path: str) -> dict[str, Any]:
    return {"name": name, "vendor": vendor, "params": {"path": path}}


def _connection_count(admin: httpx.Client) -> int:
    return len(admin.get("/v4/connections", params={"noLimit": "true"}).json()["data"])


def test_a_local_database_connection_can_never_open_the_store_or_leave_the_roots(
    target: Target, editor: httpx.Client, admin: httpx.Client
) -> None:
    target.data_dir.mkdir(parents=True, exist_ok=True)
    hard_link = target.data_dir / "innocent.db"
    if not hard_link.exists():
        os.link(target.home / "flowport.db", hard_link)
    before = _connection_count(admin)
    attempts = [
        (_connection("store", "sqlite", str(target.home / "flowport.db")), None),
        (_connection("store_rel", "sqlite", "../flowport.db"), None),
        (_connection("store_link", "sqlite", "innocent.db"), "PATH_PROTECTED"),
        (_connection("outside", "duckdb", str(target.home.parent / "x.duckdb")), "PATH_OUTSIDE_ROOTS"),
        ({"name": "db_key", "vendor": "sqlite", "params": {"defaultDatabase": "/etc/passwd"}}, None),
    ]
    for body, code in attempts:
        response = editor.post("/v4/connections", json=body)
        assert response.status_code == 422, (body, response.text)
        error = response.json()["exception"]
        if code is not None:
            assert error["details"]["code"] == code
        assert body["name"] in error["message"]
    assert _connection_count(admin) == before
    assert not (target.home.parent / "x.duckdb").exists()

    # A connection inside the root is fine; updating it to the store is refused.
    created = editor.post("/v4/connections", json=_connection("scratch", "sqlite", "scratch.db"))
    assert created.status_code == 201, created.text
    moved = editor.patch(
        f"/v4/connections/{created.json()['id']}", json={"params": {"path": str(target.home / "flowport.db")}}
    )
    assert moved.status_code == 422
    assert admin.get(f"/v4/connections/{created.json()['id']}").json()["params"]["path"] == "scratch.db"


def test_an_editor_cannot_attach_the_store_to_read_blobs_or_become_admin(
    target: Target, editor: httpx.Client, admin: httpx.Client
) -> None:
    created = editor.post("/v4/connections", json=_connection("playground", "sqlite", "playground.db"))
    assert created.status_code == 201, created.text
    store = target.home / "flowport.db"
    escalate = _flow(
        "escalate",
        _stage(
            "SQL_01",
            "sql_executor",
            {
                "connection": "playground",
                "statements": [
                    f"ATTACH DATABASE '{store}' AS s",
                    "UPDATE s.users SET role = 'admin' WHERE name = 'editor1'",
                ],
            },
        ),
    )
    group = _run(editor, _create(editor, escalate))
    assert group["status"] == "Failed"
    assert "SQL_01" in group["error"] and "not authorized" in group["error"]
    assert editor.get("/v4/users/current").json()["role"] == "editor"


# -- restricted stages (the NiFi model) ----------------------------------------------------------


def _restricted_flow(name: str) -> dict[str, Any]:
    return _flow(name, _stage("Cmd_01", "run_command_test", {"marker": f"{name}.txt"}))


def test_stages_list_their_restrictions(editor: httpx.Client) -> None:
    stages = {s["name"]: s for s in editor.get("/v4/stages").json()["data"]}
    assert stages["run_command_test"]["restrictions"] == ["execute-code"]
    assert stages["csv_file_origin"]["restrictions"] == ["read-filesystem"]
    assert stages["sql_executor"]["restrictions"] == ["execute-sql", "network"]
    assert stages["filter"]["restrictions"] == []


def test_an_editor_without_execute_code_cannot_create_import_preview_or_run_a_restricted_stage(
    target: Target, editor: httpx.Client, admin: httpx.Client
) -> None:
    refused = editor.post("/v4/flows", json=_restricted_flow("editor-made"))
    assert refused.status_code == 403, refused.text
    error = refused.json()["exception"]
    assert "Cmd_01" in error["message"] and "'execute-code'" in error["message"]
    assert error["details"]["permissionsMissing"][0]["stage"] == "Cmd_01"

    flow_id = _create(admin, _restricted_flow("admin-made"))
    package = admin.get(f"/v4/flows/{flow_id}/package")
    assert package.status_code == 200
    names_before = {f["name"] for f in admin.get("/v4/flows", params={"noLimit": "true"}).json()["data"]}
    for path in ("/v4/flows/package", "/v4/flows/package/dryRun"):
        imported = editor.post(
            path,
            params={"conflictResolution": "rename"},
            files={"data": ("p.zip", package.content, "application/zip")},
        )
        assert imported.status_code == 403, imported.text
        assert "execute-code" in imported.json()["exception"]["message"]
    names_after = {f["name"] for f in admin.get("/v4/flows", params={"noLimit": "true"}).json()["data"]}
    assert names_after == names_before

    assert editor.post(f"/v4/flows/{flow_id}/run").status_code == 403
    assert editor.post(f"/v4/flows/{flow_id}/duplicate").status_code == 403
    assert not (target.data_dir / "admin-made.txt").exists()
    group = _run(admin, flow_id)
    assert group["status"] == "Complete", group
    assert (target.data_dir / "admin-made.txt").read_text() == "ran"


def test_a_viewer_reads_flows_and_jobs_but_never_records(
    viewer: httpx.Client, editor: httpx.Client, orders: str
) -> None:
    flow_id = _create(editor, _csv_to_json("viewer sees", orders, "out/viewer.jsonl"))
    assert viewer.get(f"/v4/flows/{flow_id}").status_code == 200
    assert viewer.get(f"/v4/flows/{flow_id}/validate").json()["success"] is True
    preview = viewer.post(f"/v4/flows/{flow_id}/preview", json={"rows": 1})
    assert preview.status_code == 403
    assert viewer.post(f"/v4/flows/{flow_id}/run").status_code == 403
    assert editor.post(f"/v4/flows/{flow_id}/preview", json={"rows": 1}).status_code == 200


def test_no_answer_of_the_session_held_the_key(target: Target) -> None:
    log = target.log.read_text(errors="replace")
    _assert_no_secret(target, log)
