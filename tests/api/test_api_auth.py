"""Authentication and roles on every endpoint of the API."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from tests.api.conftest import PASSWORDS, Instance

# Routes outside /v4 that are public on purpose: the API's description, which holds no data.
PUBLIC = {"/openapi.json", "/docs", "/docs/oauth2-redirect"}
# Writes (not GET) a viewer may still do: they change nothing, or only the caller's own tokens.
VIEWER_MAY = {
    ("POST", "/v4/flows/{flow_id}/preview"),
    ("POST", "/v4/packages"),
    ("POST", "/v4/apiTokens"),
    ("DELETE", "/v4/apiTokens/{token_id}"),
}
ADMIN_ONLY = {("GET", "/v4/users"), ("POST", "/v4/users")}


def endpoints(api: Instance) -> list[tuple[str, str]]:
    """(method, path template) of every route of the app."""
    found = []
    for route in iter_route_contexts(api.app.routes):
        for method in sorted(getattr(route, "methods", None) or []):
            if method != "HEAD":
                found.append((method, str(route.path)))
    return found


def concrete(path: str, value: str = "1") -> str:
    """The path with every {parameter} replaced."""
    return re.sub(r"\{[^}]+\}", value, path)


def api_endpoints(api: Instance) -> list[tuple[str, str]]:
    """Every endpoint under /v4 (and a check that nothing else is there but the docs)."""
    everything = endpoints(api)
    others = {path for _method, path in everything if not path.startswith("/v4/")}
    assert others == PUBLIC
    v4 = [(m, p) for m, p in everything if p.startswith("/v4/")]
    assert len(v4) >= 40
    return v4


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


BAD_CREDENTIALS: list[dict[str, str]] = [
    {},
    basic("admin", "wrong-password"),
    basic("nobody", "whatever-pass"),
    basic("admin", ""),
    {"Authorization": "Basic !!!not-base64!!!"},
    {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
    {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()},
    {"Authorization": "Bearer fpt_not-a-real-token"},
    {"Authorization": "Bearer something-else"},
    {"Authorization": "Bearer "},
    {"Authorization": "Digest username=admin"},
    {"Authorization": "admin:admin-pass-1"},
]


def assert_unauthorized(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Basic realm="flowport"'
    body = response.json()["exception"]
    assert body["name"] == "Unauthorized" and body["message"]


def test_every_endpoint_answers_401_without_or_with_bad_credentials(api: Instance) -> None:
    # Every endpoint with none, a wrong password and an unknown token; every kind of bad header on one.
    for method, path in api_endpoints(api):
        for headers in BAD_CREDENTIALS[:2] + BAD_CREDENTIALS[7:8]:
            # A body that would be invalid: authentication comes first anyway.
            response = api.request(method, concrete(path), role=None, headers=headers, content=b"{not json")
            assert_unauthorized(response)
    for headers in BAD_CREDENTIALS:
        assert_unauthorized(api.request("POST", "/v4/flows", role=None, headers=headers, json={"name": "x"}))
    assert api.ok("GET", "/v4/flows")["count"] == 0


def test_401_comes_before_the_body_is_even_read(api: Instance) -> None:
    response = api.request(
        "POST", "/v4/flows", role=None, content=b'{"name": 1}' * 1000, headers={"content-type": "x/y"}
    )
    assert_unauthorized(response)


def test_docs_and_openapi_are_public_and_describe_the_auth(api: Instance) -> None:
    schema = api.get("/openapi.json", role=None).json()
    assert schema["info"]["title"] == "Flowport"
    assert {"basic", "token"} <= set(schema["components"]["securitySchemes"])
    assert "/v4/flows/{flow_id}/package" in schema["paths"]
    error = schema["paths"]["/v4/flows"]["post"]["responses"]["422"]
    assert error["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert api.get("/docs", role=None).status_code == 200


def test_viewer_gets_403_on_every_write(api: Instance) -> None:
    writes = [(m, p) for m, p in api_endpoints(api) if m != "GET" and (m, p) not in VIEWER_MAY]
    assert len(writes) >= 18
    for method, path in writes:
        response = api.request(method, concrete(path), role="viewer", json={})
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["exception"]["name"] == "Forbidden"


def test_viewer_reads_everything_but_users(api: Instance) -> None:
    api.create_example()
    for method, path in api_endpoints(api):
        if method != "GET" or "{" in path:
            continue
        response = api.request(method, path, role="viewer")
        expected = 403 if (method, path) in ADMIN_ONLY else 200
        assert response.status_code == expected, (path, response.text)


def test_editor_may_not_manage_users(api: Instance) -> None:
    assert api.get("/v4/users", role="editor").status_code == 403
    body = {"name": "intruder", "password": "long-enough-pw", "role": "admin"}
    assert api.post("/v4/users", role="editor", json=body).status_code == 403


def test_admin_creates_users_and_never_sees_a_password(api: Instance) -> None:
    created = api.ok(
        "POST", "/v4/users", 201, json={"name": "alice", "password": "alice-pass-1", "role": "editor"}
    )
    assert set(created) == {"id", "name", "role", "createdAt", "updatedAt"}
    assert created["createdAt"].endswith("Z")
    listed = api.ok("GET", "/v4/users")
    assert listed["count"] == 4 and [u["name"] for u in listed["data"]][-1] == "alice"
    assert "alice-pass-1" not in str(listed) and "password" not in str(listed).lower()
    me = api.ok("GET", "/v4/users/current", auth=("alice", "alice-pass-1"))
    assert me["name"] == "alice" and me["role"] == "editor"
    taken = api.post("/v4/users", json={"name": "alice", "password": "another-pass", "role": "viewer"})
    assert taken.status_code == 409 and taken.json()["exception"]["name"] == "Conflict"
    short = api.post("/v4/users", json={"name": "bob", "password": "short", "role": "viewer"})
    assert short.status_code == 422 and "short" not in short.text.replace("'short'", "")
    bad_role = api.post("/v4/users", json={"name": "bob", "password": "bob-pass-12", "role": "root"})
    assert bad_role.status_code == 422 and "role" in bad_role.json()["exception"]["message"]


def test_api_tokens_sign_in_once_shown_and_revocable(api: Instance) -> None:
    created = api.ok("POST", "/v4/apiTokens", 201, role="viewer", json={"name": "ci"})
    token = created["token"]
    assert token.startswith("fpt_") and created["prefix"] == token[:12]
    assert {"id", "name", "prefix", "createdAt"} <= set(created)
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.ok("GET", "/v4/users/current", headers=bearer)["name"] == "viewer"
    assert api.ok("GET", "/v4/flows", headers=bearer)["count"] == 0
    # A token carries its user's role.
    assert api.request("POST", "/v4/flows", headers=bearer, json={"name": "x"}).status_code == 403
    listed = api.ok("GET", "/v4/apiTokens", role="viewer")
    assert listed["count"] == 1 and token not in str(listed)
    # Another non-admin user cannot revoke it, and cannot even see it.
    assert api.delete(f"/v4/apiTokens/{created['id']}", role="editor").status_code == 404
    assert api.ok("GET", "/v4/apiTokens", role="editor")["count"] == 0
    assert api.ok("GET", "/v4/apiTokens", role="admin")["count"] == 1
    assert api.delete(f"/v4/apiTokens/{created['id']}", role="viewer").status_code == 204
    assert_unauthorized(api.request("GET", "/v4/flows", role=None, headers=bearer))


@pytest.mark.parametrize("role", sorted(PASSWORDS))
def test_current_user_is_the_caller(api: Instance, role: str) -> None:
    assert api.ok("GET", "/v4/users/current", role=role)["role"] == role
