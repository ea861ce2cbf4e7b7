"""The web UI's sign-in: a session cookie over the same users and roles, CSRF on every change."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from tests.api.conftest import PASSWORDS, Instance

from flowport import ui
from flowport.services import sessions
from flowport.store.database import transaction
from flowport.store.tables import ApiToken, utcnow


def _browser(api: Instance) -> TestClient:
    ui.attach(api.app)
    return TestClient(api.app, base_url="http://testserver", follow_redirects=False)


def _sign_in(browser: TestClient, name: str, password: str) -> TestClient:
    page = browser.get("/ui/login")
    assert page.status_code == 200
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    answer = browser.post("/ui/login", data={"name": name, "password": password, "csrf": token})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/", answer.text
    return browser


def test_signing_in_sets_an_httponly_strict_session_and_a_csrf_token(api: Instance) -> None:
    browser = _browser(api)
    assert browser.get("/").headers["location"] == "/ui/"
    assert browser.get("/ui/").headers["location"] == "/ui/login"  # not signed in
    page = browser.get("/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    answer = browser.post("/ui/login", data={"name": "admin", "password": PASSWORDS["admin"], "csrf": token})
    cookies = answer.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith(f"{sessions.SESSION_COOKIE}="))
    assert "HttpOnly" in session and "SameSite=strict" in session.replace("Strict", "strict")
    csrf = next(c for c in cookies if c.startswith("flowport_csrf="))
    assert "HttpOnly" not in csrf  # the app's script reads it
    app_page = browser.get("/ui/")
    assert app_page.status_code == 200 and "/ui/static/app.js" in app_page.text
    # Only its own files, no inline script, never framed.
    policy = app_page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert app_page.headers["x-frame-options"] == "DENY"
    assert browser.get("/ui/static/app.js").status_code == 200
    # The API answers the session cookie alone.
    assert browser.get("/v4/users/current").json()["name"] == "admin"


def test_a_wrong_password_or_a_forged_sign_in_form_gets_no_session(api: Instance) -> None:
    browser = _browser(api)
    page = browser.get("/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    wrong = browser.post("/ui/login", data={"name": "admin", "password": "nope", "csrf": token})
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    assert sessions.SESSION_COOKIE not in wrong.headers.get("set-cookie", "")
    # A form posted from another site carries no matching login token.
    forged = TestClient(api.app, follow_redirects=False).post(
        "/ui/login", data={"name": "admin", "password": PASSWORDS["admin"], "csrf": "guessed"}
    )
    assert forged.status_code == 403 and sessions.SESSION_COOKIE not in forged.headers.get("set-cookie", "")


def test_a_change_without_the_csrf_token_is_refused_and_changes_nothing(api: Instance) -> None:
    browser = _sign_in(_browser(api), "admin", PASSWORDS["admin"])
    refused = browser.post("/v4/projects", json={"name": "forged"})
    assert refused.status_code == 403 and "CSRF" in refused.json()["exception"]["message"]
    wrong = browser.post("/v4/projects", json={"name": "forged"}, headers={"X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403
    assert api.ok("GET", "/v4/projects", params={"name": "forged"})["count"] == 0
    token = browser.cookies["flowport_csrf"]
    made = browser.post("/v4/projects", json={"name": "made"}, headers={"X-CSRF-Token": token})
    assert made.status_code == 201


def test_a_viewer_session_reads_but_may_not_change(api: Instance) -> None:
    flow = api.create_example()
    browser = _sign_in(_browser(api), "viewer", PASSWORDS["viewer"])
    assert browser.get(f"/v4/flows/{flow['id']}").status_code == 200
    token = browser.cookies["flowport_csrf"]
    run = browser.post(f"/v4/flows/{flow['id']}/run", json={}, headers={"X-CSRF-Token": token})
    assert run.status_code == 403 and run.json()["exception"]["name"] == "Forbidden"


def test_signing_out_ends_the_session_for_good(api: Instance) -> None:
    browser = _sign_in(_browser(api), "editor", PASSWORDS["editor"])
    session = browser.cookies[sessions.SESSION_COOKIE]
    token = browser.cookies["flowport_csrf"]
    assert browser.post("/ui/logout").status_code == 403  # without the CSRF token
    out = browser.post("/ui/logout", headers={"X-CSRF-Token": token})
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    # The old cookie, replayed, no longer signs anyone in.
    replay = TestClient(api.app, cookies={sessions.SESSION_COOKIE: session})
    assert replay.get("/v4/users/current").status_code == 401


@pytest.mark.parametrize("age_hours", [11, 13])
def test_a_session_expires_after_its_lifetime(api: Instance, age_hours: int) -> None:
    browser = _sign_in(_browser(api), "editor", PASSWORDS["editor"])
    api.activate()
    with transaction() as session:
        session.execute(update(ApiToken).values(created_at=utcnow() - timedelta(hours=age_hours)))
    status = browser.get("/v4/users/current").status_code
    assert status == (200 if age_hours < sessions.SESSION_TTL.total_seconds() / 3600 else 401)


def test_an_api_token_cannot_stand_in_for_a_session_cookie(api: Instance) -> None:
    token = api.ok("POST", "/v4/apiTokens", 201, json={"name": "script"})["token"]
    as_cookie = TestClient(api.app, cookies={sessions.SESSION_COOKIE: token})
    assert as_cookie.get("/v4/users/current").status_code == 401
