"""The web UI in a real browser: headless Chromium (Debian's package) driven by Playwright, no download.

Against a real ``flowport server`` process with the example flow: sign in,
see the red dot on a stage whose connection does not exist, run the
example and watch its job page reach Complete with live stage metrics; a
viewer sees no Run button. Screenshots go to ``FLOWPORT_ARTIFACTS`` (or the
test's temporary folder).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from tests.conftest import require_service
from tests.sdk.flowport_server import ADMIN_PASSWORD, VIEWER_PASSWORD
from tests.ui.conftest import FIX_CONNECTION, flow_id, sign_in


def test_a_missing_connection_shows_a_red_dot_on_its_stage(
    server: str, browser: object, artifacts: Path
) -> None:
    page = sign_in(browser, server, "admin", ADMIN_PASSWORD)
    page.get_by_role("link", name="Broken load", exact=True).click()
    warehouse = page.locator('g.stage[data-stage="Warehouse"]')
    warehouse.wait_for()
    assert warehouse.locator("circle.dot").count() == 1
    assert "no-such-connection" in warehouse.locator("title").text_content()
    # The origin is fine: no dot there.
    assert page.locator('g.stage[data-stage="Orders"] circle.dot').count() == 0
    page.screenshot(path=str(artifacts / "flow-view.png"), full_page=True)


def test_running_the_example_shows_its_job_reach_complete_with_stage_metrics(
    server: str, browser: object, artifacts: Path
) -> None:
    page = sign_in(browser, server, "admin", ADMIN_PASSWORD)
    page.get_by_role("link", name="Wrangle Orders", exact=True).click()
    page.locator("#validity").wait_for()
    assert page.locator("g.stage circle.dot").count() == 0
    # Run with an override of the flow's declared parameter: only bigger orders pass the filter.
    page.get_by_label("Parameter min_total").fill("100")
    page.get_by_role("button", name="Run").click()
    page.wait_for_url("**/ui/#/jobs/*")
    status = page.locator("#job-status")
    page.wait_for_function(
        "() => ['Complete','Failed','Canceled'].includes(document.getElementById('job-status')?.textContent)",
        timeout=90_000,
    )
    assert status.text_content() == "Complete", page.locator("#log").text_content()
    assert page.locator("#job-parameters").text_content() == "Parameters: min_total=100"
    filtered = page.locator("#metrics tr", has_text="Filter_01").locator("td")
    kept, seen = int(filtered.nth(2).text_content() or 0), int(filtered.nth(1).text_content() or 0)
    assert 0 < kept < seen  # the override reached the filter: not every order is over 100
    rows = page.locator("#metrics tr")
    assert rows.count() >= 2
    assert any(int(rows.nth(i).locator("td").nth(2).text_content() or 0) > 0 for i in range(rows.count()))
    page.screenshot(path=str(artifacts / "job-page.png"), full_page=True)


def test_fixing_the_missing_connection_makes_the_red_dot_go(server: str, browser: object) -> None:
    page = sign_in(browser, server, "admin", ADMIN_PASSWORD)
    page.get_by_role("link", name="Broken load", exact=True).click()
    warehouse = page.locator('g.stage[data-stage="Warehouse"]')
    warehouse.locator("circle.dot").wait_for()
    warehouse.click()
    page.locator("#setting-connection").fill(FIX_CONNECTION)
    page.locator("#setting-connection").press("Tab")  # a change is taken when the field is left
    page.get_by_role("button", name="Save").click()
    page.locator("p.note").filter(has_text="Saved.").wait_for()
    # Validated again after the save: the stage is fine now, its dot is gone.
    assert page.locator('g.stage[data-stage="Warehouse"] circle.dot').count() == 0
    assert "issue" not in (page.locator('g.stage[data-stage="Warehouse"]').get_attribute("aria-label") or "")
    with httpx.Client(base_url=server, auth=("admin", ADMIN_PASSWORD), timeout=30) as admin:
        flow = flow_id(admin, "Broken load")
        issues = admin.get(f"/v4/flows/{flow}/validate").json()["issues"]
    assert not [i for i in issues if i.get("instanceName") == "Warehouse"], issues


def test_a_viewer_sees_no_edit_buttons_and_is_refused_if_it_posts_anyway(
    server: str, browser: object
) -> None:
    with httpx.Client(base_url=server, auth=("admin", ADMIN_PASSWORD), timeout=30) as admin:
        example = flow_id(admin, "Wrangle Orders")
        deployment = admin.post("/v4/deployments", json={"name": "Viewed"}).json()
        admin.post(
            "/v4/schedules",
            json={"name": "viewed schedule", "flow": {"id": example}, "cron": "@daily"},
        )
        count = admin.get("/v4/flows").json()["count"]
    page = sign_in(browser, server, "viewer", VIEWER_PASSWORD)
    page.get_by_role("link", name="Wrangle Orders", exact=True).click()
    page.locator("#validity").wait_for()
    for control in ("#run", "#save", "#add-stage", "#preview-button", "#run-parameters"):
        assert page.locator(control).count() == 0, control
    page.locator('g.stage[data-stage="Filter_01"]').click()
    assert page.locator("#stage-panel form").count() == 0  # no settings form to edit
    page.goto(f"{server}/ui/#/deployments/{deployment['id']}")
    page.locator("#rules").wait_for()
    for name in ("Import", "Preview import", "Run", "Add object rule", "Save value rules"):
        assert page.get_by_role("button", name=name, exact=True).count() == 0, name
    page.goto(f"{server}/ui/#/schedules")
    page.locator('tr[data-schedule="viewed schedule"]').wait_for()
    assert page.get_by_role("button", name="Pause").count() == 0
    assert page.get_by_role("button", name="Backfill viewed schedule").count() == 0
    page.goto(f"{server}/ui/#/connections")
    page.locator("#connections").wait_for()
    assert page.locator("#connection-form").count() == 0
    # Posting anyway, with the session's own CSRF token: the server refuses (403), nothing is made.
    answer = page.evaluate(
        """async () => {
          const token = decodeURIComponent(document.cookie.split('; ')
            .find((c) => c.startsWith('flowport_csrf=')).split('=')[1]);
          const response = await fetch('/v4/flows', { method: 'POST', credentials: 'same-origin',
            headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': token },
            body: JSON.stringify({ name: 'Made by a viewer' }) });
          return { status: response.status, body: await response.json() };
        }"""
    )
    assert answer["status"] == 403 and answer["body"]["exception"]["name"] == "Forbidden"
    with httpx.Client(base_url=server, auth=("admin", ADMIN_PASSWORD), timeout=30) as admin:
        assert admin.get("/v4/flows").json()["count"] == count


def test_a_change_without_the_csrf_token_is_refused(server: str, browser: object) -> None:
    page = sign_in(browser, server, "admin", ADMIN_PASSWORD)
    with httpx.Client(base_url=server, auth=("admin", ADMIN_PASSWORD), timeout=30) as admin:
        count = admin.get("/v4/flows").json()["count"]
    # The session cookie goes along (same origin), the token does not: refused, nothing made.
    answer = page.evaluate(
        """async () => {
          const response = await fetch('/v4/flows', { method: 'POST', credentials: 'same-origin',
            headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'No token' }) });
          return { status: response.status, body: await response.json() };
        }"""
    )
    assert answer["status"] == 403 and "CSRF" in answer["body"]["exception"]["message"]
    # A plain HTML form post from a page of this origin (the cookies go along, no token): refused.
    page.set_content(
        '<iframe name="sink" title="answer"></iframe>'
        '<form method="post" action="/ui/logout" target="sink"><button>Sign out by form</button></form>'
    )
    with page.expect_response(f"{server}/ui/logout") as refused:
        page.get_by_role("button", name="Sign out by form").click()
    assert refused.value.status == 403
    page.goto(f"{server}/ui/")
    page.get_by_role("heading", name="Flows").wait_for()  # still signed in: the logout was refused
    with httpx.Client(base_url=server, auth=("admin", ADMIN_PASSWORD), timeout=30) as admin:
        assert admin.get("/v4/flows").json()["count"] == count


def test_the_api_docs_render_with_the_network_off(server: str, browser: object) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    elsewhere: list[str] = []

    def only_this_server(route: object) -> None:
        url = route.request.url
        if url.startswith(server):
            route.continue_()
        else:  # no network beyond Flowport itself
            elsewhere.append(url)
            route.abort()

    context.route("**/*", only_this_server)
    page = context.new_page()
    page.goto(f"{server}/docs")
    page.locator(".swagger-ui .info .title").wait_for()
    assert "Flowport" in page.locator(".swagger-ui .info .title").text_content()
    page.locator(".opblock-tag", has_text="jobs").first.wait_for()
    assert page.locator(".opblock").count() > 20  # the operations, drawn from /openapi.json
    assert elsewhere == []
    page.goto(f"{server}/redoc")
    page.locator("h1", has_text="Flowport").first.wait_for()
    # ReDoc renders offline; the page's Content-Security-Policy keeps its bundle from even asking
    # cdn.redoc.ly for its "by Redocly" logo.
    assert elsewhere == []
    context.close()


def test_a_deployment_imports_a_package_shows_its_diff_and_rolls_back(
    server: str, browser: object, artifacts: Path, tmp_path: Path
) -> None:
    with httpx.Client(base_url=server, auth=("admin", ADMIN_PASSWORD), timeout=60) as admin:
        flow = next(f for f in admin.get("/v4/flows").json()["data"] if f["name"] == "Wrangle Orders")
        deployment = admin.post("/v4/deployments", json={"name": "Orders Prod"}).json()
        first = admin.get(f"/v4/flows/{flow['id']}/package").content
        files = {"data": ("first.zip", first, "application/zip")}
        assert admin.post(f"/v4/deployments/{deployment['id']}/releases", files=files).status_code == 201
        # The next version of the flow: its filter keeps bigger orders only.
        document = admin.get(f"/v4/flows/{flow['id']}").json()["document"]
        stage = next(s for s in document["stages"] if s["plugin"]["name"] == "filter")
        stage["configuration"]["condition"] = "total > 250"
        assert admin.patch(f"/v4/flows/{flow['id']}", json=document).status_code == 200
        second = tmp_path / "second.zip"
        second.write_bytes(admin.get(f"/v4/flows/{flow['id']}/package").content)

    page = sign_in(browser, server, "admin", ADMIN_PASSWORD)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{server}/ui/#/deployments/{deployment['id']}")
    page.locator("#package").set_input_files(str(second))
    page.get_by_role("button", name="Preview import").click()
    diff = page.locator("section.diff")
    diff.wait_for()
    assert "total > 250" in diff.text_content()  # the changed filter condition, before anything is stored
    page.screenshot(path=str(artifacts / "deployment-diff.png"), full_page=True)
    page.get_by_role("button", name="Import", exact=True).click()
    page.locator("#releases tbody tr").nth(1).wait_for()
    assert page.locator("#releases tbody tr").count() == 2
    first_row = page.locator("#releases tbody tr").first
    first_row.get_by_role("button", name="Roll back to this").click()
    page.locator("#releases tbody tr").first.locator("strong", has_text="active").wait_for()
    page.screenshot(path=str(artifacts / "deployment-page.png"), full_page=True)
    with httpx.Client(base_url=server, auth=("admin", ADMIN_PASSWORD), timeout=30) as admin:
        releases = admin.get("/v4/releases", params={"deploymentId": deployment["id"]}).json()["data"]
    assert [r["active"] for r in sorted(releases, key=lambda r: r["id"])] == [True, False]


def test_connections_are_created_and_tested_and_their_password_is_never_shown(
    server: str, browser: object
) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    secret = "Ui-Secret-Do-Not-Show-7"
    page = sign_in(browser, server, "admin", ADMIN_PASSWORD)
    page.goto(f"{server}/ui/#/connections")
    page.get_by_label("Name").fill("ui-warehouse")
    page.get_by_label("Vendor").select_option("postgresql")
    page.get_by_label("Host").fill("127.0.0.1")
    page.get_by_label("Port").fill("5432")
    page.get_by_label("User").fill("postgres")
    page.get_by_label("Password").fill(secret)
    page.get_by_role("button", name="Create").click()
    row = page.locator('tr[data-connection="ui-warehouse"]')
    row.wait_for()
    row.get_by_role("button", name="Test").click()
    page.wait_for_function(
        "() => !['', 'testing…'].includes(document.querySelector("
        "'tr[data-connection=\"ui-warehouse\"] .test-result').textContent)"
    )
    assert row.locator(".test-result").text_content() == "OK"
    # The edit form never shows the password; left empty, the stored one stays.
    row.get_by_role("link", name="Edit").click()
    page.get_by_role("heading", name="Edit ui-warehouse").wait_for()
    assert page.get_by_label("Password").input_value() == ""
    page.get_by_label("Name").fill("ui-warehouse-2")
    page.get_by_role("button", name="Save").click()
    renamed = page.locator('tr[data-connection="ui-warehouse-2"]')
    renamed.wait_for()
    renamed.get_by_role("button", name="Test").click()
    page.wait_for_function(
        "() => document.querySelector("
        "'tr[data-connection=\"ui-warehouse-2\"] .test-result').textContent === 'OK'"
    )
    assert secret not in page.content()
    # The edit sent no credentials, so the stored user (and secret) stayed as they were.
    with httpx.Client(base_url=server, auth=("admin", ADMIN_PASSWORD), timeout=30) as admin:
        stored = next(c for c in admin.get("/v4/connections").json()["data"] if c["name"] == "ui-warehouse-2")
    assert stored["credentials"] == [{"user": "postgres", "username": "postgres"}]
    assert secret not in json.dumps(stored)


def test_schedules_show_their_next_date_and_pause(server: str, browser: object) -> None:
    with httpx.Client(base_url=server, auth=("admin", ADMIN_PASSWORD), timeout=30) as admin:
        flow = next(f for f in admin.get("/v4/flows").json()["data"] if f["name"] == "Wrangle Orders")
        body = {"name": "nightly orders", "flow": {"id": flow["id"]}, "cron": "0 3 * * *", "timezone": "UTC"}
        schedule = admin.post("/v4/schedules", json=body).json()
    page = sign_in(browser, server, "admin", ADMIN_PASSWORD)
    page.goto(f"{server}/ui/#/schedules")
    row = page.locator('tr[data-schedule="nightly orders"]')
    row.wait_for()
    assert schedule["nextLogicalDate"] in row.text_content()
    row.get_by_role("button", name="Pause").click()
    page.locator('tr[data-schedule="nightly orders"]').get_by_role("button", name="Resume").wait_for()
    assert "paused" in page.locator('tr[data-schedule="nightly orders"]').text_content()
    with httpx.Client(base_url=server, auth=("admin", ADMIN_PASSWORD), timeout=30) as admin:
        assert admin.get(f"/v4/schedules/{schedule['id']}").json()["paused"] is True


def test_a_flow_is_built_from_stages_in_the_editor_saved_and_previewed(
    server: str, browser: object, artifacts: Path
) -> None:
    with httpx.Client(base_url=server, auth=("admin", ADMIN_PASSWORD), timeout=30) as admin:
        flow = admin.post("/v4/flows", json={"name": "Built in the UI"}).json()
    page = sign_in(browser, server, "admin", ADMIN_PASSWORD)
    page.goto(f"{server}/ui/#/flows/{flow['id']}")
    page.locator("#add-plugin").select_option("csv_file_origin")
    page.get_by_role("button", name="Add stage").click()
    origin = page.locator('g.stage[data-stage="CsvFileOrigin_01"]')
    origin.wait_for()
    page.locator("#setting-path").fill("orders.csv")
    page.locator("#setting-path").press("Tab")  # a change is taken when the field is left
    page.locator("#add-plugin").select_option("trash")
    page.get_by_role("button", name="Add stage").click()
    page.locator('g.stage[data-stage="Trash_01"]').wait_for()
    origin.click()
    page.locator("#connect-to").select_option("Trash_01")
    page.get_by_role("button", name="Connect").click()
    assert page.locator('path[data-edge="CsvFileOrigin_01->Trash_01"]').count() == 1
    # Move the origin down by dragging it.
    origin.scroll_into_view_if_needed()
    box = origin.bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + 20, box["y"] + 140, steps=5)
    page.mouse.up()
    page.get_by_role("button", name="Save").click()
    page.locator("p.note").filter(has_text="Saved.").wait_for()
    assert page.locator("#validity").text_content() == "Valid"
    assert page.locator("g.stage circle.dot").count() == 0
    with httpx.Client(base_url=server, auth=("admin", ADMIN_PASSWORD), timeout=30) as admin:
        document = admin.get(f"/v4/flows/{flow['id']}").json()["document"]
    stages = {s["name"]: s for s in document["stages"]}
    assert stages["CsvFileOrigin_01"]["configuration"]["path"] == "orders.csv"
    assert document["edges"] == [{"from": "CsvFileOrigin_01", "to": "Trash_01"}]
    assert stages["CsvFileOrigin_01"]["position"]["y"] > stages["Trash_01"]["position"]["y"]
    page.get_by_role("button", name="Preview").click()
    section = page.locator('section.preview-stage[data-stage="CsvFileOrigin_01"]')
    section.wait_for()
    assert section.locator("table tbody tr").count() >= 1  # the origin's first records
    page.screenshot(path=str(artifacts / "flow-editor.png"), full_page=True)
