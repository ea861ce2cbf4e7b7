"""Authentication and roles on every endpoint of the API."""

from __future__ import annotations

import base64
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi.routing import iter_route_contexts
from tests.api.conftest import PASSWORDS, Instance
from tests.sdk.flowport_server import ADMIN_PASSWORD, running_server

from flowport.services import auth

# Routes outside /v4 that are public on purpose: the API's description and its two readers (Swagger UI,
# ReDoc), which hold no data.
PUBLIC = {"/openapi.json", "/docs", "/redoc"}
# Writes (not GET) a viewer may still do: they change nothing, or only the caller's own tokens.
VIEWER_MAY = {
    ("POST", "/v4/flows/{flow_id}/preview"),
    ("POST", "/v4/packages"),
    ("POST", "/v4/apiTokens"),
    ("DELETE", "/v4/apiTokens/{token_id}"),
}
# Users, and webhooks (a subscription sends job metadata to any URL; URLs may hold tokens): admins only.
ADMIN_ONLY = {("GET", "/v4/users"), ("POST", "/v4/users"), ("GET", "/v4/webhooks"), ("POST", "/v4/webhooks")}


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


def test_every_endpoint_answers_401_without_or_with_bad_credentials(
    api: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every endpoint with none, a wrong password and an unknown token; every kind of bad header on one.
    # The wrong password is that of a user whose hash has argon2's cheapest parameters (argon2 reads
    # them from the hash): the same check as for any user, without 0.1 s of argon2 per endpoint.
    with monkeypatch.context() as patch:
        patch.setattr(auth, "_hasher", lambda: PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        auth.create_user("quick", "quick-password-1", "admin")
    wrong_password = basic("quick", "quick-password-2")
    for method, path in api_endpoints(api):
        for headers in [BAD_CREDENTIALS[0], wrong_password, BAD_CREDENTIALS[7]]:
            # A body that would be invalid: authentication comes first anyway.
            response = api.request(method, concrete(path), role=None, headers=headers, content=b"{not json")
            assert_unauthorized(response)
    for headers in BAD_CREDENTIALS:
        assert_unauthorized(api.request("POST", "/v4/flows", role=None, headers=headers, json={"name": "x"}))
    assert api.ok("GET", "/v4/flows")["count"] == 0
    # The password refused above was wrong, not the user unknown (a first sign-in upgrades the hash).
    assert api.request("GET", "/v4/flows", auth=("quick", "quick-password-1")).status_code == 200


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


# -- Basic credentials remembered between requests -------------------------------------


def test_a_remembered_basic_credential_follows_password_role_and_deletion(api: Instance) -> None:
    editor = ("editor", PASSWORDS["editor"])
    assert api.ok("GET", "/v4/users/current", auth=editor)["role"] == "editor"
    assert api.ok("GET", "/v4/flows", auth=editor)["count"] == 0
    # A role change is seen by the very next request (as by the CLI: straight through the service).
    api.activate()
    auth.update_user("editor", role="viewer")
    assert api.ok("GET", "/v4/users/current", auth=editor)["role"] == "viewer"
    forbidden = api.post("/v4/flows", auth=editor, json={"name": "x"})
    assert forbidden.status_code == 403, forbidden.text
    # A new password: the remembered old one stops at once, the new one works.
    auth.update_user("editor", password="editor-pass-2")
    assert_unauthorized(api.get("/v4/users/current", auth=editor))
    assert api.ok("GET", "/v4/users/current", auth=("editor", "editor-pass-2"))["name"] == "editor"
    # A wrong password right after the right one is still wrong.
    assert_unauthorized(api.get("/v4/users/current", auth=("editor", "editor-pass-3")))
    # Deleted: refused at once, even though it just signed in.
    auth.delete_user("editor")
    assert_unauthorized(api.get("/v4/users/current", auth=("editor", "editor-pass-2")))
    assert api.ok("GET", "/v4/flows")["count"] == 0


def test_each_request_authenticates_once(api: Instance, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str | None] = []
    real = auth.authenticate

    def counting(header: str | None) -> auth.User:
        calls.append(header)
        return real(header)

    monkeypatch.setattr(auth, "authenticate", counting)
    for role in ("viewer", "editor", "admin"):
        calls.clear()
        assert api.ok("GET", "/v4/users/current", role=role)["name"] == role
        assert len(calls) == 1, calls
    calls.clear()
    api.create_example()
    assert len(calls) == 1


# -- 401 before the body -----------------------------------------------------------------

SEVENTY_MIB = 70 * 1024 * 1024


@pytest.mark.parametrize("path", ["/v4/flows", "/v4/flows/package", "/v4/flows/1", "/v4/nothing"])
def test_an_unauthenticated_huge_body_is_401_not_413(api: Instance, path: str) -> None:
    declared = {"content-length": str(SEVENTY_MIB), "content-type": "application/json"}
    for headers in ({}, basic("admin", "wrong-password"), {"Authorization": "Bearer fpt_nope"}):
        response = api.request("POST", path, role=None, headers={**declared, **headers}, content=b"{}")
        assert_unauthorized(response)
        # The rest of the announced body is not waited for.
        assert response.headers["connection"] == "close"
    # With credentials the size is checked: still refused, as too large.
    response = api.request("POST", path, headers=declared, content=b"{}")
    assert response.status_code == 413, response.text
    assert response.json()["exception"]["name"] == "RequestTooLarge"
    assert api.ok("GET", "/v4/flows")["count"] == 0


def test_a_route_that_is_not_authenticated_stays_public(api: Instance) -> None:
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    api.app.add_api_route("/v4/ping", ping, methods=["GET"])
    assert api.ok("GET", "/v4/ping", role=None) == {"pong": "yes"}
    # Only for what the route serves: another method on the path still needs credentials first.
    assert_unauthorized(api.request("POST", "/v4/ping", role=None, content=b"x"))


# -- 405 with the real Allow header -------------------------------------------------------


def test_405_allow_names_every_method_of_the_path(api: Instance) -> None:
    for method in ("PUT", "DELETE"):
        response = api.request(method, "/v4/flows")
        assert response.status_code == 405, response.text
        assert response.headers["allow"] == "GET, POST"
        error = response.json()["exception"]
        assert error["name"] == "MethodNotAllowed" and error["details"] == {"allowed": ["GET", "POST"]}
        assert "GET, POST" in error["message"]
    for method in ("PUT", "POST"):
        response = api.request(method, "/v4/flows/1")
        assert response.status_code == 405
        assert response.headers["allow"] == "DELETE, GET, PATCH"
    # Every path of the API: a method none of its routes serves lists all of their methods.
    by_path: dict[str, set[str]] = {}
    for method, path in api_endpoints(api):
        by_path.setdefault(path, set()).add(method)
    assert all("PUT" not in methods for methods in by_path.values())
    for path, methods in by_path.items():
        response = api.request("PUT", concrete(path), json={})
        assert response.status_code == 405, (path, response.text)
        allowed = set(response.headers["allow"].split(", "))
        assert methods <= allowed, (path, allowed)
        assert set(response.json()["exception"]["details"]["allowed"]) == allowed
    # Without credentials the caller learns nothing about the paths: 401 first.
    assert_unauthorized(api.request("PUT", "/v4/flows", role=None))


# -- the same against a real server, on a raw socket ------------------------------------------


@pytest.fixture(scope="module")
def server_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real ``flowport server`` on loopback; yields its port."""
    home = tmp_path_factory.mktemp("auth-server-home")
    with running_server(home, "--workers-executor", "thread") as running:
        yield int(running.url.rsplit(":", 1)[1])


def _exchange(port: int, head: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send a request head and the start of a body; read the answer until the server closes.

    Whatever the head announces, only ``body`` is sent: a server that waited
    for the rest would never answer, and the socket's timeout fails the test.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    raw_head, _, content = received.partition(b"\r\n\r\n")
    status_line, *lines = raw_head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)
    }
    return int(status_line.split()[1]), headers, content


def _head(port: int, path: str, *extra: str) -> str:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json", *extra]
    return "\n".join(lines) + "\n"


def test_a_real_server_answers_401_before_reading_a_huge_unauthenticated_body(server_port: int) -> None:
    port = server_port
    flows = f"http://127.0.0.1:{port}/v4/flows"
    before = httpx.get(flows, auth=("admin", ADMIN_PASSWORD), timeout=30).json()["count"]
    declared = f"Content-Length: {SEVENTY_MIB}"
    wrong = "Authorization: " + basic("admin", "wrong-password")["Authorization"]
    right = "Authorization: " + basic("admin", ADMIN_PASSWORD)["Authorization"]
    for head in (
        _head(port, "/v4/flows", declared),
        _head(port, "/v4/flows/package", declared, wrong),
        _head(port, "/v4/flows", "Transfer-Encoding: chunked", wrong),
    ):
        body = b"1\r\n{\r\n" if "chunked" in head else b'{"name": "'
        status, headers, content = _exchange(port, head, body)
        assert status == 401, (head, content)
        assert headers["www-authenticate"] == 'Basic realm="flowport"'
        assert headers["connection"] == "close"
        assert b'"name":"Unauthorized"' in content
    # Signed in, the same announcement is too large: 413, also without waiting for the body.
    status, headers, content = _exchange(port, _head(port, "/v4/flows", declared, right), b"{")
    assert status == 413 and b"RequestTooLarge" in content
    # Nothing was stored and the server serves on.
    assert httpx.get(flows, auth=("admin", ADMIN_PASSWORD), timeout=30).json()["count"] == before
