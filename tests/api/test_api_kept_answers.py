"""A kept ``GET /v4/flows`` answer and a kept token check never outlive a write, wherever it comes from.

Writes are made with plain SQL on an engine of their own (another process,
as far as the API can tell): only the store's triggers tell the API about
them. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from tests.api.conftest import Instance, MakeInstance

from flowport.api import kept_answers
from flowport.services import instance


def _bearer(api: Instance, role: str) -> dict[str, str]:
    token = api.ok("POST", "/v4/apiTokens", 201, role=role, json={"name": f"kept-{role}"})["token"]
    return {"Authorization": f"Bearer {token}"}


def _elsewhere(api: Instance, statement: str, **params: Any) -> None:
    """Run ``statement`` on a connection of another engine (not the API's pool, not the services)."""
    api.activate()
    engine = create_engine(instance.store_url().replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as connection:
            connection.execute(text(statement), params)
    finally:
        engine.dispose()


def _names(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [flow["name"] for flow in response.json()["data"]]


@pytest.fixture
def kept_api(make_instance: MakeInstance, store: str) -> Instance:
    return make_instance("dev", store=store)


def test_a_repeated_list_is_answered_as_the_route_answered_it(kept_api: Instance) -> None:
    api = kept_api
    api.create_example()
    headers = _bearer(api, "viewer")
    first = api.get("/v4/flows", headers=headers)
    hits = kept_answers._answers.hits
    second = api.get("/v4/flows", headers=headers)
    assert kept_answers._answers.hits == hits + 1  # answered from what was kept
    assert second.status_code == 200 and second.content == first.content
    assert second.headers["content-type"] == first.headers["content-type"]
    # Another query string is another answer.
    limited = api.get("/v4/flows", headers=headers, params={"offset": 1})
    assert limited.json()["data"] == [] and limited.json()["count"] == 1
    # Refused answers are not kept, and credentials are checked before anything kept is sent.
    hits = kept_answers._answers.hits
    assert api.get("/v4/flows", headers=headers, params={"type": "nope"}).status_code == 422
    assert api.get("/v4/flows", headers=headers, params={"type": "nope"}).status_code == 422
    assert kept_answers._answers.hits == hits
    assert api.get("/v4/flows", role=None, headers={"Authorization": "Bearer fpt_wrong"}).status_code == 401
    assert api.get("/v4/flows", role=None).status_code == 401


def test_a_write_from_elsewhere_is_seen_by_the_very_next_list(kept_api: Instance) -> None:
    api = kept_api
    flow = api.create_example()
    headers = _bearer(api, "viewer")
    assert _names(api.get("/v4/flows", headers=headers)) == [flow["name"]]
    _elsewhere(api, "UPDATE flows SET name = 'Renamed by SQL' WHERE id = :id", id=flow["id"])
    assert _names(api.get("/v4/flows", headers=headers)) == ["Renamed by SQL"]
    copy = api.ok("POST", f"/v4/flows/{flow['id']}/duplicate", 201, json={"name": "Copy"})
    assert _names(api.get("/v4/flows", headers=headers)) == ["Renamed by SQL", "Copy"]
    _elsewhere(api, "DELETE FROM flows WHERE id = :id", id=copy["id"])
    assert _names(api.get("/v4/flows", headers=headers)) == ["Renamed by SQL"]


def test_a_token_revoked_or_a_role_lowered_elsewhere_counts_at_once(kept_api: Instance) -> None:
    api = kept_api
    editor = _bearer(api, "editor")
    viewer = _bearer(api, "viewer")
    assert api.get("/v4/flows", headers=editor).status_code == 200
    assert api.get("/v4/flows", headers=editor).status_code == 200
    created = api.post("/v4/flows", role=None, headers=editor, json={"name": "By the editor"})
    assert created.status_code == 201, created.text
    # The editor becomes a viewer in the store: its next write is refused.
    _elsewhere(api, "UPDATE users SET role = 'viewer' WHERE name = 'editor'")
    refused = api.post("/v4/flows", role=None, headers=editor, json={"name": "Not any more"})
    assert refused.status_code == 403, refused.text
    # The viewer's token is revoked in the store: its very next list is a 401.
    assert api.get("/v4/flows", headers=viewer).status_code == 200
    _elsewhere(api, "UPDATE api_tokens SET revoked_at = CURRENT_TIMESTAMP WHERE name = 'kept-viewer'")
    assert api.get("/v4/flows", role=None, headers=viewer).status_code == 401
    # A deleted user's token stops too.
    _elsewhere(api, "DELETE FROM api_tokens WHERE name = 'kept-editor'")
    assert api.get("/v4/flows", role=None, headers=editor).status_code == 401
