"""The web UI's operations pages in a real browser: jobs and their error records, cancel, the run-history
grid, import rules, deployment runs with overrides, backfills and pipelines."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from tests.sdk.flowport_server import ADMIN_PASSWORD, Server
from tests.ui.conftest import FIX_CONNECTION, flow_id, sign_in

# Five good rows and three malformed ones (wrong number of columns): three error records.
PEOPLE = "id,name\n1,a\n2,b\n3,c,extra\n4,d\n5,e,more,fields\n6,f\n7\n8,h\n"


def _wait_for(admin: httpx.Client, group_id: int, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        group: dict[str, Any] = admin.get(f"/v4/jobGroups/{group_id}").json()
        if group["status"] in ("Complete", "Failed", "Canceled"):
            return group
        assert time.monotonic() < deadline, f"job group {group_id} is still {group['status']}"
        time.sleep(0.2)


def _people_flow(admin: httpx.Client, running: Server) -> int:
    running.data_dir.mkdir(parents=True, exist_ok=True)
    (running.data_dir / "people.csv").write_text(PEOPLE)
    document = {
        "name": "People with errors",
        "error_stage": {"plugin": {"name": "write_to_file"}, "configuration": {"directory": "errors"}},
        "stages": [
            {
                "name": "People",
                "plugin": {"name": "csv_file_origin"},
                "configuration": {"path": "people.csv"},
            },
            {"name": "Out", "plugin": {"name": "trash"}},
        ],
        "edges": [{"from": "People", "to": "Out"}],
    }
    made = admin.post("/v4/flows", json=document)
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def test_a_job_page_shows_its_first_error_records_and_downloads_them_all(
    running: Server, browser: Any, admin: httpx.Client, artifacts: Path, tmp_path: Path
) -> None:
    people = _people_flow(admin, running)
    group = admin.post(f"/v4/flows/{people}/run", json={}).json()
    assert _wait_for(admin, group["id"])["status"] == "Complete"
    page = sign_in(browser, running.url, "admin", ADMIN_PASSWORD)
    page.goto(f"{running.url}/ui/#/jobs/{group['id']}")
    table = page.locator("#error-records")
    table.wait_for()
    rows = table.locator("tbody tr")
    assert rows.count() == 3
    assert rows.first.locator("td").first.text_content() == "People"
    assert "3,c,extra" in table.text_content()  # the malformed line, as the origin read it
    assert "stored 3" in page.locator("#error-count").text_content()
    page.screenshot(path=str(artifacts / "job-error-records.png"), full_page=True)
    with page.expect_download() as event:
        page.locator("#download-errors").click()
    saved = tmp_path / "errors.jsonl"
    event.value.save_as(saved)
    lines = [json.loads(line) for line in saved.read_text().splitlines()]
    assert len(lines) == 3 and {line["stage"] for line in lines} == {"People"}

    # The run-history grid of the flow: its one run, a cell per stage, the origin's cell says its errors.
    page.goto(f"{running.url}/ui/#/flows/{people}")
    row = page.locator(f'table.history tr[data-run="{group["id"]}"]')
    row.wait_for()
    origin = row.locator('td[data-stage="People"]')
    assert origin.get_attribute("data-state") == "Errors" and origin.text_content() == "3 errors"
    assert row.locator('td[data-stage="Out"]').get_attribute("data-state") == "Complete"


def test_the_run_history_grid_marks_the_stage_a_run_failed_at(
    running: Server, browser: Any, admin: httpx.Client, artifacts: Path
) -> None:
    example = flow_id(admin, "Wrangle Orders")
    document = admin.get(f"/v4/flows/{example}").json()["document"]
    document.pop("uuid", None)
    document["name"] = "Orders with a failing filter"
    document["parameters"] = {}
    filter_stage = next(s for s in document["stages"] if s["plugin"]["name"] == "filter")
    filter_stage["configuration"]["condition"] = "total > 100"
    made = admin.post("/v4/flows", json=document)
    assert made.status_code == 201, made.text
    flow = made.json()["id"]
    good = admin.post(f"/v4/flows/{flow}/run", json={}).json()
    assert _wait_for(admin, good["id"])["status"] == "Complete"
    # A filter whose condition only fails when it runs (a text that is not a number).
    filter_stage["configuration"]["condition"] = "CAST(customer AS INTEGER) > 1"
    assert admin.patch(f"/v4/flows/{flow}", json=document).status_code == 200
    bad = admin.post(f"/v4/flows/{flow}/run", json={}).json()
    ended = _wait_for(admin, bad["id"])
    assert ended["status"] == "Failed" and ended["result"]["error"]["stage"] == filter_stage["name"]
    page = sign_in(browser, running.url, "admin", ADMIN_PASSWORD)
    page.goto(f"{running.url}/ui/#/flows/{flow}")
    page.locator("table.history").wait_for()
    assert page.locator("table.history tbody tr").count() == 2

    def states(run: int) -> dict[str, str | None]:
        cells = page.locator(f'table.history tr[data-run="{run}"] td.cell')
        return {
            cells.nth(i).get_attribute("data-stage"): cells.nth(i).get_attribute("data-state")
            for i in range(cells.count())
        }

    stages = [s["name"] for s in document["stages"]]
    good_states, bad_states = states(good["id"]), states(bad["id"])
    assert list(good_states) == stages and list(bad_states) == stages
    assert good_states[filter_stage["name"]] == "Complete"
    assert bad_states[filter_stage["name"]] == "Failed"
    after = stages[stages.index(filter_stage["name"]) + 1 :]
    assert after and all(bad_states[name] == "Stopped" for name in after)
    page.screenshot(path=str(artifacts / "run-history.png"), full_page=True)


def test_a_running_job_is_canceled_from_its_page(running: Server, browser: Any, admin: httpx.Client) -> None:
    # A run of several seconds: a big CSV in batches of 50 through a per-batch query.
    with (running.data_dir / "big.csv").open("w") as file:
        file.write("id,name,total\n")
        file.writelines(f"{i},name{i},{i % 1000}.5\n" for i in range(1_000_000))
    document = {
        "name": "Long",
        "configuration": {"batch_size": 50},
        "stages": [
            {"name": "Big", "plugin": {"name": "csv_file_origin"}, "configuration": {"path": "big.csv"}},
            {
                "name": "Sql",
                "plugin": {"name": "sql"},
                "configuration": {"query": "SELECT *, upper(name) AS loud FROM input", "per_batch": True},
            },
            {"name": "Out", "plugin": {"name": "trash"}},
        ],
        "edges": [{"from": "Big", "to": "Sql"}, {"from": "Sql", "to": "Out"}],
    }
    made = admin.post("/v4/flows", json=document)
    assert made.status_code == 201, made.text
    group = admin.post(f"/v4/flows/{made.json()['id']}/run", json={}).json()
    page = sign_in(browser, running.url, "admin", ADMIN_PASSWORD)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{running.url}/ui/#/jobs/{group['id']}")
    page.wait_for_function("() => document.getElementById('job-status')?.textContent === 'InProgress'")
    page.get_by_role("button", name="Cancel run").click()
    page.wait_for_function(
        "() => document.getElementById('job-status')?.textContent === 'Canceled'", timeout=60_000
    )
    assert page.get_by_role("button", name="Cancel run").is_disabled()
    assert admin.get(f"/v4/jobGroups/{group['id']}").json()["status"] == "Canceled"


def test_jobs_filter_by_status_flow_and_schedule_and_a_backfill_is_started(
    running: Server, browser: Any, admin: httpx.Client, artifacts: Path
) -> None:
    example = flow_id(admin, "Wrangle Orders")
    body = {"name": "backfilled orders", "flow": {"id": example}, "cron": "0 3 * * *", "timezone": "UTC"}
    schedule = admin.post("/v4/schedules", json=body).json()
    page = sign_in(browser, running.url, "admin", ADMIN_PASSWORD)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{running.url}/ui/#/schedules")
    page.get_by_role("button", name="Backfill backfilled orders").click()
    page.get_by_label("First logical date (UTC)").fill("2025-01-01T03:00")
    page.get_by_label("Last logical date (UTC)").fill("2025-01-02T03:00")
    page.get_by_label("Runs at a time").fill("2")
    page.get_by_role("button", name="Preview plan").click()
    plan = page.locator("#plan")
    plan.wait_for()
    assert [plan.locator("tbody tr").nth(i).locator("td").nth(1).text_content() for i in range(2)] == [
        "create",
        "create",
    ]
    assert admin.get("/v4/backfills").json()["count"] == 0  # a preview starts nothing
    page.get_by_role("button", name="Start backfill").click()
    page.locator("#backfills tbody tr").first.wait_for()
    assert "backfilled orders" in page.locator("#backfills").text_content()
    page.screenshot(path=str(artifacts / "schedules-backfill.png"), full_page=True)
    # The scheduler creates the two runs on its next ticks; they finish like any run.
    deadline = time.monotonic() + 120
    while True:
        runs = admin.get("/v4/jobGroups", params={"scheduleId": schedule["id"]}).json()
        if runs["count"] == 2 and all(r["status"] in ("Complete", "Failed") for r in runs["data"]):
            break
        assert time.monotonic() < deadline, runs
        time.sleep(0.5)
    scheduled = {r["id"] for r in runs["data"]}

    page.goto(f"{running.url}/ui/#/jobs")
    page.locator("#runs").wait_for()
    page.get_by_label("Schedule", exact=True).select_option(label="backfilled orders")
    page.wait_for_url(f"**/ui/#/jobs?scheduleId={schedule['id']}")
    page.wait_for_function("() => document.getElementById('runs-count').textContent === '2 run(s).'")
    shown = {int(page.locator("#runs tbody tr").nth(i).get_attribute("data-run")) for i in range(2)}
    assert shown == scheduled
    assert all("2025-01-0" in page.locator("#runs tbody tr").nth(i).text_content() for i in range(2))
    # Status and flow narrow the list; the answer is the API's for the same filters.
    page.get_by_label("Schedule", exact=True).select_option("")
    page.get_by_label("Flow", exact=True).select_option(label="Wrangle Orders")
    page.get_by_label("Status", exact=True).select_option("Complete")
    page.wait_for_url(f"**/ui/#/jobs?status=Complete&flowId={example}")
    expected = admin.get("/v4/jobGroups", params={"status": "Complete", "flowId": example}).json()["count"]
    page.wait_for_function(
        "(n) => document.getElementById('runs-count').textContent.includes(String(n))", arg=expected
    )
    statuses = page.locator("#runs tbody tr td:nth-child(2)").all_text_contents()
    assert statuses and set(statuses) == {"Complete"}
    page.screenshot(path=str(artifacts / "jobs-filtered.png"), full_page=True)
    # A reload keeps the filters (they are in the address).
    page.reload()
    page.locator("#runs").wait_for()
    assert page.get_by_label("Status", exact=True).input_value() == "Complete"


def test_import_rules_are_edited_and_a_deployment_runs_with_overrides(
    running: Server, browser: Any, admin: httpx.Client, artifacts: Path
) -> None:
    example = flow_id(admin, "Wrangle Orders")
    deployment = admin.post("/v4/deployments", json={"name": "Orders Rules"}).json()
    package = admin.get(f"/v4/flows/{example}/package").content
    files = {"data": ("orders.zip", package, "application/zip")}
    assert admin.post(f"/v4/deployments/{deployment['id']}/releases", files=files).status_code == 201
    lite = next(c for c in admin.get("/v4/connections").json()["data"] if c["name"] == FIX_CONNECTION)

    page = sign_in(browser, running.url, "admin", ADMIN_PASSWORD)
    page.goto(f"{running.url}/ui/#/deployments/{deployment['id']}")
    page.get_by_role("button", name="Add object rule").click()
    page.get_by_label("Package connection uuid, object rule 1").fill("b8011aa2-0000-4000-8000-000000000001")
    page.get_by_label("Local connection, object rule 1").select_option(str(lite["id"]))
    page.get_by_role("button", name="Save object rules").click()
    page.locator("#object-rules-status", has_text="Saved").wait_for()

    for on, with_ in (("/Dev-(\\w+)/", "Prod-\\1"), ("out/", "prod/out/")):
        page.get_by_role("button", name="Add value rule").click()
        index = page.locator("#value-rules tr").count()
        page.get_by_label(f"Replace (text or /regex/), value rule {index}").fill(on)
        page.get_by_label(f"With, value rule {index}").fill(with_)
    page.get_by_label("Kind, value rule 1").select_option("tableName")
    page.get_by_role("button", name="Move value rule 2 up").click()  # the file rule applies first
    page.get_by_role("button", name="Save value rules").click()
    page.locator("#value-rules-status", has_text="Saved").wait_for()
    page.screenshot(path=str(artifacts / "deployment-rules.png"), full_page=True)

    objects = admin.get(f"/v4/deployments/{deployment['id']}/objectImportRules").json()["data"]
    assert objects == [
        {
            "tableName": "connections",
            "onCondition": {"uuid": "b8011aa2-0000-4000-8000-000000000001"},
            "withCondition": {"id": lite["id"]},
        }
    ]
    values = admin.get(f"/v4/deployments/{deployment['id']}/valueImportRules").json()["data"]
    assert [(v["type"], v["on"], v["with"]) for v in values] == [
        ("fileLocation", "out/", "prod/out/"),
        ("tableName", "/Dev-(\\w+)/", "Prod-\\1"),
    ]
    # A bad rule is refused with the API's message, and nothing changes.
    page.get_by_label("Replace (text or /regex/), value rule 1").fill("/(unclosed/")
    page.get_by_role("button", name="Save value rules").click()
    page.locator("#value-rules-status", has_text="regular expression").wait_for()
    assert len(admin.get(f"/v4/deployments/{deployment['id']}/valueImportRules").json()["data"]) == 2

    # A reload shows the stored rules; the deployment runs with an override of the flow's parameter.
    page.reload()
    assert page.get_by_label("With, value rule 1").input_value() == "prod/out/"
    page.get_by_label("Parameter min_total").fill("250")
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_url("**/ui/#/jobs/*")
    page.locator("#job-parameters", has_text="min_total=250").wait_for()
    group_id = int(page.url.rsplit("/", 1)[1])
    group = admin.get(f"/v4/jobGroups/{group_id}").json()
    assert group["deployment"] == {"id": deployment["id"]} and group["parameters"] == {"min_total": "250"}


def test_a_pipeline_page_shows_its_graph_and_the_task_states_of_a_run(
    running: Server, browser: Any, admin: httpx.Client, artifacts: Path
) -> None:
    document = {
        "name": "nightly refresh",
        "tasks": [
            {"name": "pull", "type": "shell", "command": "echo pulled", "lock": "repo"},
            {"name": "build", "type": "shell", "command": "echo built", "after": ["pull"]},
            {"name": "broken", "type": "shell", "command": "exit 3", "after": ["pull"]},
            {"name": "publish", "type": "shell", "command": "echo published", "after": ["build", "broken"]},
        ],
    }
    made = admin.post("/v4/pipelines", json=document)
    assert made.status_code == 201, made.text
    pipeline = made.json()
    page = sign_in(browser, running.url, "admin", ADMIN_PASSWORD)
    page.goto(f"{running.url}/ui/#/pipelines")
    page.get_by_role("link", name="nightly refresh").click()
    page.locator('svg.tasks g.stage[data-stage="publish"]').wait_for()
    assert page.locator("svg.tasks path.edge").count() == 4
    page.get_by_role("button", name="Run").click()
    page.wait_for_function(
        "() => ['Complete','Failed','Canceled']"
        ".includes(document.getElementById('pipeline-run-status')?.textContent)",
        timeout=90_000,
    )
    run_id = int(page.url.rsplit("run=", 1)[1])
    run = admin.get(f"/v4/pipelineRuns/{run_id}").json()
    expected = {t["task"]: t["status"] for t in run["tasks"]}
    assert expected["pull"] == "Complete" and expected["broken"] == "Failed"
    for task, status in expected.items():
        assert page.locator(f'#task-states tr[data-task="{task}"] td').nth(2).text_content() == status
        assert page.locator(f'svg.tasks g.stage[data-stage="{task}"]').get_attribute("data-state") == status
    page.screenshot(path=str(artifacts / "pipeline-page.png"), full_page=True)
    assert pipeline["id"] == run["pipeline"]["id"]


def test_a_streaming_job_shows_its_totals_live_and_is_stopped_from_its_page(
    running: Server, browser: Any, admin: httpx.Client, artifacts: Path
) -> None:
    document = {
        "name": "Live stream",
        "type": "streaming",
        "stages": [
            {
                "name": "Raw",
                "plugin": {"name": "dev_raw_data_source"},
                "configuration": {"raw_data": '{"n": 1}\n{"n": 2}', "batch_wait": 0.1},
            },
            {"name": "Out", "plugin": {"name": "trash"}},
        ],
        "edges": [{"from": "Raw", "to": "Out"}],
    }
    made = admin.post("/v4/flows", json=document)
    assert made.status_code == 201, made.text
    group = admin.post(f"/v4/flows/{made.json()['id']}/run", json={}).json()
    page = sign_in(browser, running.url, "admin", ADMIN_PASSWORD)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{running.url}/ui/#/jobs/{group['id']}")
    # The totals grow without a reload.
    grown = "/Streaming: ([3-9]|\\d\\d+) micro-batches/"
    page.wait_for_function(
        f"() => {grown}.test(document.getElementById('stream-stats')?.textContent)", timeout=60_000
    )
    assert page.get_by_role("button", name="Cancel run").is_hidden()
    page.screenshot(path=str(artifacts / "streaming-job.png"), full_page=True)
    page.get_by_role("button", name="Stop").click()
    page.wait_for_function(
        "() => document.getElementById('job-status')?.textContent === 'Complete'", timeout=60_000
    )
    assert "(stopped)" in (page.text_content("#stream-stats") or "")
    assert page.get_by_role("button", name="Stop").is_hidden()
    ended = admin.get(f"/v4/jobGroups/{group['id']}/metrics").json()
    assert ended["status"] == "Complete" and ended["streaming"]["stopped"] is True
    assert ended["stages"]["Out"]["inputRecords"] == 2 * ended["streaming"]["batches"]
