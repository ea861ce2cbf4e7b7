"""The web UI's browser tests share one ``flowport server`` and one headless Chromium for the whole folder.

Debian's chromium driven by Playwright through ``executable_path`` (no
browser download), against a real server process started with the example
flow, a viewer, a flow with a broken connection reference and a SQLite
connection that can fix it. Screenshots go to ``FLOWPORT_ARTIFACTS``/ui (or
the test's temporary folder).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.sdk.flowport_server import ADMIN_PASSWORD, VIEWER_PASSWORD, Server, running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
#: The connection the broken flow's stage can be pointed at.
FIX_CONNECTION = "ui-lite"


def _require_chromium() -> str:
    if CHROMIUM is None:
        reason = "Debian's chromium is not installed (make setup installs it where apt-get can)"
        if os.environ.get("FLOWPORT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}; FLOWPORT_REQUIRE_SERVICES=1 requires it")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="package")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("ui-server-home"), "--example") as started:
        with httpx.Client(base_url=started.url, auth=("admin", ADMIN_PASSWORD), timeout=30) as admin:
            made = admin.post(
                "/v4/users", json={"name": "viewer", "password": VIEWER_PASSWORD, "role": "viewer"}
            )
            assert made.status_code == 201, made.text
            # A flow whose stage names a connection this instance does not have: a red dot.
            broken = {
                "name": "Broken load",
                "stages": [
                    {
                        "name": "Orders",
                        "plugin": {"name": "csv_file_origin"},
                        "configuration": {"path": "orders.csv"},
                    },
                    {
                        "name": "Warehouse",
                        "plugin": {"name": "sql_table_destination"},
                        "configuration": {"connection": "no-such-connection", "table": "orders"},
                    },
                ],
                "edges": [{"from": "Orders", "to": "Warehouse"}],
            }
            assert admin.post("/v4/flows", json=broken).status_code == 201
            lite = {"name": FIX_CONNECTION, "vendor": "sqlite", "params": {"path": "warehouse.sqlite"}}
            assert admin.post("/v4/connections", json=lite).status_code == 201
        yield started


@pytest.fixture(scope="package")
def server(running: Server) -> str:
    return running.url


@pytest.fixture
def admin(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, auth=("admin", ADMIN_PASSWORD), timeout=60) as client:
        yield client


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("FLOWPORT_ARTIFACTS") or tmp_path) / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    executable = _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=FLAGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def sign_in(browser: Any, url: str, name: str, password: str) -> Any:
    """A new page at 1280x800 signed in as ``name``, on the flows list."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{url}/")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/ui/**")
    page.get_by_role("heading", name="Flows").wait_for()
    return page


def flow_id(admin: httpx.Client, name: str) -> int:
    """The id of the stored flow called ``name``."""
    flows = admin.get("/v4/flows", params={"noLimit": "true"}).json()["data"]
    return int(next(f["id"] for f in flows if f["name"] == name))
