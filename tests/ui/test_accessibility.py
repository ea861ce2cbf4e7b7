"""The web UI is usable without a mouse and by assistive technology, at 1280x800.

Every control on every main view has an accessible name (as Chromium's
accessibility tree computes it), text meets WCAG AA contrast, nothing
scrolls sideways at 1280x800, and the views are reached and used with the
keyboard alone (Tab, Shift+Tab, Enter, Space, arrows) with a visible focus.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from tests.sdk.flowport_server import ADMIN_PASSWORD
from tests.ui.conftest import flow_id, sign_in

# Roles of the things a user operates: each must have a name.
CONTROLS = {
    "button",
    "checkbox",
    "combobox",
    "link",
    "listbox",
    "menuitem",
    "radio",
    "searchbox",
    "slider",
    "spinbutton",
    "switch",
    "tab",
    "textbox",
}

# Text whose colour does not reach WCAG AA against what is behind it (4.5:1, 3:1 for large text).
_LOW_CONTRAST = """() => {
  const channel = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const parse = (text) => {
    const v = text.match(/[\\d.]+/g).map(Number);
    return [v[0], v[1], v[2], v.length > 3 ? v[3] : 1];
  };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3]));
  const background = (node) => {
    const layers = [];
    for (let n = node; n && n.nodeType === 1; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] === 1) break; }
    }
    let color = [255, 255, 255];
    for (const layer of layers.reverse()) color = over(layer, color);
    return color;
  };
  const failures = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let text = walker.nextNode(); text; text = walker.nextNode()) {
    const node = text.parentElement;
    if (!text.textContent.trim() || !node || node.closest("svg, option, [disabled], .skip")) continue;
    const box = node.getBoundingClientRect();
    const style = getComputedStyle(node);
    if (!box.width || !box.height || style.visibility === "hidden") continue;
    const back = background(node);
    const fore = over(parse(style.color), back);
    const [a, b] = [luminance(fore), luminance(back)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    const what = text.textContent.trim().slice(0, 40);
    if (ratio < needed) failures.push(`${what}: ${ratio.toFixed(2)} < ${needed}`);
  }
  return failures;
}"""

# Whether the focused element shows where the focus is (an outline or a ring).
_FOCUS_SHOWN = """() => {
  const node = document.activeElement;
  if (!node || node === document.body) return false;
  const style = getComputedStyle(node);
  const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
  const ring = style.boxShadow && style.boxShadow !== "none";
  const stroke = node.matches("g.stage")
    && getComputedStyle(node.querySelector("rect")).strokeDasharray !== "none";
  return outline || ring || stroke;
}"""

_ACTIVE = """() => { const n = document.activeElement;
  return n ? { tag: n.tagName.toLowerCase(), text: (n.textContent || "").trim(), id: n.id,
               stage: n.getAttribute("data-stage") } : null; }"""


@pytest.fixture(scope="module")
def views(server: str) -> dict[str, str]:
    """The addresses of the main views, each with something to show."""
    with httpx.Client(base_url=server, auth=("admin", ADMIN_PASSWORD), timeout=60) as admin:
        example = flow_id(admin, "Wrangle Orders")
        group = admin.post(f"/v4/flows/{example}/run", json={}).json()
        deployment = admin.post("/v4/deployments", json={"name": "Accessible"}).json()
        package = admin.get(f"/v4/flows/{example}/package").content
        files = {"data": ("orders.zip", package, "application/zip")}
        assert admin.post(f"/v4/deployments/{deployment['id']}/releases", files=files).status_code == 201
        admin.post("/v4/schedules", json={"name": "accessible", "flow": {"id": example}, "cron": "@hourly"})
        document = {
            "name": "accessible tasks",
            "tasks": [{"name": "hello", "type": "shell", "command": "echo hi"}],
        }
        pipeline = admin.post("/v4/pipelines", json=document).json()
        admin.post(f"/v4/pipelines/{pipeline['id']}/run", json={})
        deadline = time.monotonic() + 120
        while admin.get(f"/v4/jobGroups/{group['id']}").json()["status"] not in ("Complete", "Failed"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    return {
        "Flows": "#/flows",
        "Flow view": f"#/flows/{example}",
        "Jobs": "#/jobs",
        "Job page": f"#/jobs/{group['id']}",
        "Deployments": "#/deployments",
        "Deployment page": f"#/deployments/{deployment['id']}",
        "Connections": "#/connections",
        "Schedules": "#/schedules",
        "Pipelines": "#/pipelines",
        "Pipeline page": f"#/pipelines/{pipeline['id']}",
    }


def _open(page: Any, server: str, address: str) -> None:
    page.goto("about:blank")  # a whole load: no heading of the view before is waited for
    page.goto(f"{server}/ui/{address}")
    page.locator("#view h1").first.wait_for()
    page.wait_for_load_state("networkidle")


def test_every_control_has_a_name_text_has_aa_contrast_and_nothing_scrolls_sideways(
    server: str, browser: Any, views: dict[str, str]
) -> None:
    page = sign_in(browser, server, "admin", ADMIN_PASSWORD)
    cdp = page.context.new_cdp_session(page)
    for view, address in views.items():
        _open(page, server, address)
        nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
        controls = [n for n in nodes if not n.get("ignored") and n.get("role", {}).get("value") in CONTROLS]
        unnamed = [
            n["role"]["value"] for n in controls if not str(n.get("name", {}).get("value", "")).strip()
        ]
        assert len(controls) >= 8, view  # the header's links and buttons at least
        assert unnamed == [], f"{view}: controls without a name: {unnamed}"
        # Every form field of the page is in the tree with its name (none hidden from it; a file
        # field is a button there, counted with the buttons).
        fields = page.locator(
            "#view input:visible:not([type=file]), #view select:visible, #view textarea:visible"
        ).count()
        named_fields = sum(
            1
            for n in controls
            if n["role"]["value"] in ("textbox", "combobox", "checkbox", "spinbutton", "searchbox", "listbox")
        )
        assert named_fields >= fields, view
        assert page.evaluate(_LOW_CONTRAST) == [], view
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280, view
    # The contrast check finds text that is too light (light grey on white: 2.3:1).
    page.evaluate(
        """() => { const p = document.createElement("p"); p.textContent = "Too light";
                   p.style.color = "#aaaaaa"; document.getElementById("view").append(p); }"""
    )
    assert [f.split(":")[0] for f in page.evaluate(_LOW_CONTRAST)] == ["Too light"]


def _press_until(page: Any, key: str, wanted: Any, limit: int = 80) -> dict[str, Any]:
    for _ in range(limit):
        page.keyboard.press(key)
        active = page.evaluate(_ACTIVE)
        if active and wanted(active):
            return dict(active)
    raise AssertionError(f"{key} x{limit} never reached the element")


def test_the_main_views_are_reached_and_used_with_the_keyboard(
    server: str, browser: Any, views: dict[str, str]
) -> None:
    page = sign_in(browser, server, "admin", ADMIN_PASSWORD)
    # A view takes the focus when it is drawn; before it, the skip link (shown when focused) leads back.
    assert page.evaluate(_ACTIVE)["id"] == "view"
    _press_until(page, "Shift+Tab", lambda a: a["text"] == "Skip to content")
    assert page.evaluate(_FOCUS_SHOWN)
    assert page.locator("a.skip").bounding_box()["x"] >= 0  # on screen while focused
    page.keyboard.press("Enter")
    assert page.evaluate(_ACTIVE)["id"] == "view"
    for view in ("Jobs", "Deployments", "Connections", "Schedules", "Pipelines", "Flows"):
        # From wherever the last view left the focus, back up into the main navigation.
        _press_until(page, "Shift+Tab", lambda a, view=view: a["tag"] == "a" and a["text"] == view)
        assert page.evaluate(_FOCUS_SHOWN), view
        page.keyboard.press("Enter")
        page.locator("#view h1", has_text=view).wait_for()
    # The flows list: Tab to a flow's link, Enter opens its flow view.
    page.locator("#view table a").first.wait_for()
    _press_until(page, "Tab", lambda a: a["tag"] == "a" and a["text"] == "Wrangle Orders")
    page.keyboard.press("Enter")
    page.locator("#validity").wait_for()
    # A stage of the graph takes the focus, Space selects it, arrows move it (then Save is enabled).
    stage = _press_until(page, "Tab", lambda a: a["tag"] == "g" and a["stage"] == "Filter_01")
    assert stage["stage"] == "Filter_01" and page.evaluate(_FOCUS_SHOWN)
    page.keyboard.press(" ")
    page.locator("#stage-panel h2", has_text="Stage Filter_01").wait_for()
    before = page.locator('g.stage[data-stage="Filter_01"]').get_attribute("transform")
    assert page.evaluate(_ACTIVE)["stage"] == "Filter_01"  # the focus stays on the stage when it redraws
    page.keyboard.press("ArrowDown")
    assert page.locator('g.stage[data-stage="Filter_01"]').get_attribute("transform") != before
    assert page.get_by_role("button", name="Save").is_enabled()
    # The jobs list's filters are reached with Tab; Enter on a run opens its page.
    page.goto(f"{server}/ui/{views['Jobs']}")
    page.locator("#runs").wait_for()
    page.locator("#view").focus()
    assert _press_until(page, "Tab", lambda a: a["id"] == "filter-status")["id"] == "filter-status"
    assert page.evaluate(_FOCUS_SHOWN)
    _press_until(page, "Tab", lambda a: a["tag"] == "a" and a["text"].startswith("#"))
    page.keyboard.press("Enter")
    page.locator("#job-status").wait_for()
