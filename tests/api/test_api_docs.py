"""``/docs`` and ``/redoc`` work offline: every asset they load is served by Flowport itself."""

from __future__ import annotations

import re

import pytest
from tests.api.conftest import Instance

_LOADED = re.compile(r'(?:src|href|spec-url)="([^"]+)"|url:\s*[\'"]([^\'"]+)[\'"]')


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_api_pages_load_only_assets_flowport_serves(api: Instance, page: str) -> None:
    response = api.get(page, role=None)
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    # No address elsewhere: no CDN, no fonts, no validator badge.
    assert re.findall(r"https?://", response.text) == []
    loaded = {a or b for a, b in _LOADED.findall(response.text)}
    assert "/openapi.json" in loaded
    scripts = {path for path in loaded if path.endswith(".js")}
    assert scripts, loaded
    for path in loaded:
        asset = api.get(path, role=None)
        assert asset.status_code == 200, path
        assert len(asset.content) > 1000, path  # the real bundle, not a stub
    if page == "/docs":
        assert '"validatorUrl": null' in response.text


def test_an_asset_that_does_not_exist_is_a_404_and_the_api_still_needs_credentials(api: Instance) -> None:
    assert api.get("/docs/assets/nothing.js", role=None).status_code == 404
    assert api.get("/v4/flows", role=None).status_code == 401
