"""HTTP API origin against a real HTTP server on 127.0.0.1 (ephemeral port).

The server serves 95 deterministic records with every pagination style,
checks basic, bearer, API key and Hawk credentials, and can be scripted to
fail (429, 503), to be slow and to count requests and concurrency.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import mohawk
import mohawk.exc
import pyarrow as pa
import pytest
from pydantic import ValidationError

from flowport.connections.spec import ConnectionSpec
from flowport.errors import NotFound, StageError
from flowport.stages.http._fetch import retry_after_seconds
from flowport.stages.http.api_origin import HttpApiOrigin

from .conftest import Make, run_origin

N = 95
PER_PAGE = 10
HAWK_ID = "dataflow"
HAWK_KEY = "hawk-secret-key-0123456789"
PASSWORD = "pa55-w0rd-secret"
TOKEN = "bearer-token-secret-xyz"
API_KEY = "api-key-secret-987"


def record(i: int) -> dict[str, Any]:
    """Record ``i`` of the dataset; records from 50 on have an extra ``tag`` field."""
    rec: dict[str, Any] = {"id": i, "name": f"item-{i:03d}", "meta": {"group": i % 3, "even": i % 2 == 0}}
    if i >= 50:
        rec["tag"] = f"t{i}"
    return rec


DATA = [record(i) for i in range(N)]
IDS = list(range(N))


@dataclass
class Seen:
    """One request as the server saw it."""

    t: float
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Api:
    """The test server's state: what it requires and what it saw."""

    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: list[Seen] = field(default_factory=list)
    inflight: int = 0
    max_inflight: int = 0
    auth: tuple[str, ...] | None = None
    script: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    delay: dict[str, float] = field(default_factory=dict)
    page_delays: bool = False
    tamper_hawk_response: bool = False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self, path: str | None = None) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if path is None or s.path == path]


def _page_slice(page: int, per_page: int) -> list[dict[str, Any]]:
    return DATA[(page - 1) * per_page : page * per_page] if page >= 1 else []


class Handler(BaseHTTPRequestHandler):
    api: Api

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        api = self.api
        with api.lock:
            api.seen.append(Seen(time.monotonic(), parts.path, query, dict(self.headers.items())))
            api.inflight += 1
            api.max_inflight = max(api.max_inflight, api.inflight)
        self._inflight = True
        try:
            self._serve(parts.path, query)
        finally:
            self._leave()

    def _leave(self) -> None:
        # Out of flight before the response goes out: once the client has read it, it may send the
        # next request before this thread runs again, and that is not two requests at once.
        if getattr(self, "_inflight", False):
            self._inflight = False
            with self.api.lock:
                self.api.inflight -= 1

    def _send(
        self, status: int, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None
    ) -> None:
        payload = raw if raw is not None else json.dumps(body).encode()
        content_type = (headers or {}).pop("Content-Type", "application/json")
        self._leave()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _authorized(self) -> tuple[bool, mohawk.Receiver | None]:
        required = self.api.auth
        if required is None:
            return True, None
        kind = required[0]
        header = self.headers.get("Authorization", "")
        if kind == "basic":
            expected = base64.b64encode(f"{required[1]}:{required[2]}".encode()).decode()
            return header == f"Basic {expected}", None
        if kind == "bearer":
            return header == f"Bearer {required[1]}", None
        if kind == "api_key":
            return self.headers.get(required[1]) == required[2], None
        if kind == "hawk":

            def credentials(hawk_id: str) -> dict[str, str]:
                if hawk_id != HAWK_ID:
                    raise LookupError(hawk_id)
                return {"id": HAWK_ID, "key": HAWK_KEY, "algorithm": "sha256"}

            try:
                receiver = mohawk.Receiver(
                    credentials, header, f"{self.api.base}{self.path}", "GET", content="", content_type=""
                )
            except (mohawk.exc.HawkFail, KeyError):
                return False, None
            return True, receiver
        raise AssertionError(kind)

    def _serve(self, path: str, q: dict[str, str]) -> None:
        api = self.api
        time.sleep(api.delay.get(path, 0.0))
        page = int(q.get("page", "1"))
        if api.page_delays and path == "/pages":
            # Later pages answer sooner: the origin must still emit them in order.
            time.sleep(0.02 + 0.06 * ((11 - page) % 4))
        with api.lock:
            scripted = api.script.get(path)
            step = scripted.pop(0) if scripted else None
        if step is not None:
            self._send(step[0], {"detail": f"scripted {step[0]}"}, dict(step[1]))
            return
        ok, receiver = self._authorized()
        if not ok:
            self._send(401, {"detail": "Incorrect authentication credentials."})
            return

        headers: dict[str, str] = {}
        body: Any
        if path == "/list":
            body = DATA[:5]
        elif path == "/next":
            items = _page_slice(page, PER_PAGE)
            nxt = None
            if page * PER_PAGE < N:
                nxt = (
                    f"next?page={page + 1}&rel=1"
                    if q.get("rel") == "1"
                    else f"{api.base}/next?page={page + 1}"
                )
            body = {"count": N, "next": nxt, "previous": None, "results": items}
        elif path == "/pages":
            per_page = int(q.get("per_page", PER_PAGE))
            items = _page_slice(page, per_page)
            if not items and q.get("strict") == "1":
                self._send(404, {"detail": "Invalid page."})
                return
            body = {"data": {"items": items}, "meta": {"total_pages": math.ceil(N / per_page), "total": N}}
        elif path == "/offset":
            offset, limit = int(q.get("offset", "0")), int(q.get("limit", "10"))
            body = {"items": DATA[offset : offset + limit], "total": N}
        elif path == "/cursor":
            start = int(q.get("cursor", "c0")[1:])
            body = {"records": DATA[start : start + PER_PAGE]}
            if start + PER_PAGE < N:
                body["paging"] = {"next_cursor": f"c{start + PER_PAGE}"}
        elif path == "/link":
            body = _page_slice(page, PER_PAGE)
            if page * PER_PAGE < N:
                headers["Link"] = f'</link?page={page + 1}>; rel="next"'
        elif path == "/redirect":
            # To another origin (localhost is not 127.0.0.1): credentials must not follow.
            self._send(302, {}, {"Location": f"http://localhost:{api.port}/list"})
            return
        elif path == "/mixed":
            body = [{"id": 1, "v": 1}, {"id": 2, "v": "two"}, {"id": 3, "v": {"x": 1}}, {"id": 4, "v": None}]
        elif path == "/html":
            self._send(200, None, {"Content-Type": "text/html"}, raw=b"<html>maintenance</html>")
            return
        else:
            self._send(404, {"detail": f"no such endpoint {path}"})
            return
        payload = json.dumps(body).encode()
        if receiver is not None:
            headers["Server-Authorization"] = receiver.respond(
                content=payload, content_type="application/json"
            )
            if api.tamper_hawk_response:
                payload = json.dumps(body, indent=1).encode()
        self._send(200, None, headers, raw=payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is expected here


@pytest.fixture
def api() -> Iterator[Api]:
    """A real HTTP server on 127.0.0.1 with an ephemeral port, serving the dataset."""
    state = Api()
    handler = type("BoundHandler", (Handler,), {"api": state})
    server = _Server(("127.0.0.1", 0), handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


class Lookup:
    """A tiny ConnectionLookup: by name or uuid."""

    def __init__(self, *specs: ConnectionSpec) -> None:
        self._specs = {s.name: s for s in specs} | {str(s.uuid): s for s in specs}

    def get(self, ref: str) -> ConnectionSpec:
        try:
            return self._specs[ref]
        except KeyError:
            raise NotFound(f"no connection '{ref}'") from None


def connected(spec: ConnectionSpec, **context: Any) -> dict[str, Any]:
    return {"resources": {"connections": Lookup(spec)}, **context}


def ids(batches: list[pa.RecordBatch]) -> list[int]:
    return [i for b in batches for i in b.column("id").to_pylist() if isinstance(i, int)]


def fails(origin: HttpApiOrigin) -> StageError:
    with pytest.raises(StageError) as info:
        run_origin(origin)
    return info.value


# -- pagination -------------------------------------------------------------


@pytest.mark.parametrize("relative", [False, True])
def test_next_link_reads_every_page_in_order_and_unifies_later_fields(
    make: Make, api: Api, relative: bool
) -> None:
    origin = make(
        HttpApiOrigin,
        context={"batch_size": 20},
        url=f"{api.base}/next",
        params={"rel": "1"} if relative else {},
        records_path="results",
        pagination={"style": "next_link"},
    )
    batches, errors = run_origin(origin)
    assert errors == []
    assert [b.num_rows for b in batches] == [20, 20, 20, 20, 15]
    assert ids(batches) == IDS
    assert [s.query.get("page", "1") for s in api.requests()] == [str(p) for p in range(1, 11)]
    # 'tag' appears at record 50: batches from then on carry it, with nulls for earlier records.
    assert "tag" not in batches[0].schema.names
    assert batches[-1].schema.names == ["id", "name", "meta", "tag"]
    assert batches[2].column("tag").to_pylist() == [None] * 10 + [f"t{i}" for i in range(50, 60)]
    assert batches[0].schema.field("meta").type == pa.struct([("group", pa.int64()), ("even", pa.bool_())])
    assert batches[0].column("meta").to_pylist()[:2] == [
        {"group": 0, "even": True},
        {"group": 1, "even": False},
    ]


def test_page_number_fetches_concurrently_and_emits_in_page_order(make: Make, api: Api) -> None:
    api.page_delays = True
    origin = make(
        HttpApiOrigin,
        context={"batch_size": 7},
        url=f"{api.base}/pages",
        records_path="data.items",
        concurrency=4,
        pagination={
            "style": "page_number",
            "page_size_param": "per_page",
            "page_size": 10,
            "total_pages_field": "meta.total_pages",
        },
    )
    batches, _ = run_origin(origin)
    assert ids(batches) == IDS
    assert all(b.num_rows <= 7 for b in batches)
    # The total is known from the first page: exactly the 10 pages, never an 11th.
    assert sorted(int(s.query["page"]) for s in api.requests()) == list(range(1, 11))
    assert {s.query["per_page"] for s in api.requests()} == {"10"}
    assert 1 < api.max_inflight <= 4


def test_page_number_without_total_is_sequential_and_stops_at_an_empty_page(make: Make, api: Api) -> None:
    origin = make(
        HttpApiOrigin,
        url=f"{api.base}/pages",
        records_path="data.items",
        concurrency=4,
        pagination={"style": "page_number"},
    )
    batches, _ = run_origin(origin)
    assert ids(batches) == IDS
    assert [int(s.query["page"]) for s in api.requests()] == list(range(1, 12))
    assert api.max_inflight == 1


def test_page_number_past_the_end_404_ends_the_pages(make: Make, api: Api) -> None:
    origin = make(
        HttpApiOrigin,
        url=f"{api.base}/pages",
        params={"strict": 1},
        records_path="data.items",
        pagination={"style": "page_number", "start_page": 1},
    )
    batches, _ = run_origin(origin)
    assert ids(batches) == IDS
    assert len(api.requests()) == 11


def test_page_number_with_max_pages_and_no_total_fetches_ahead_but_stops_at_the_first_empty_page(
    make: Make, api: Api
) -> None:
    origin = make(
        HttpApiOrigin,
        url=f"{api.base}/pages",
        records_path="data.items",
        concurrency=4,
        pagination={"style": "page_number", "max_pages": 50},
    )
    batches, _ = run_origin(origin)
    assert ids(batches) == IDS
    pages = sorted(int(s.query["page"]) for s in api.requests())
    # Pages 1..11 at least (11 is the empty one); at most a window of 4 beyond what was needed.
    assert pages[:11] == list(range(1, 12))
    assert len(pages) <= 11 + 3


def test_max_pages_caps_a_next_link_walk(make: Make, api: Api) -> None:
    origin = make(
        HttpApiOrigin,
        url=f"{api.base}/next",
        records_path="results",
        pagination={"style": "next_link", "max_pages": 3},
    )
    batches, _ = run_origin(origin)
    assert ids(batches) == list(range(30))
    assert len(api.requests()) == 3


def test_offset_with_total_fetches_concurrently_in_order(make: Make, api: Api) -> None:
    origin = make(
        HttpApiOrigin,
        url=f"{api.base}/offset",
        records_path="items",
        concurrency=3,
        pagination={"style": "offset", "limit": 10, "total_field": "total"},
    )
    batches, _ = run_origin(origin)
    assert ids(batches) == IDS
    assert sorted(int(s.query["offset"]) for s in api.requests()) == list(range(0, 100, 10))
    assert {s.query["limit"] for s in api.requests()} == {"10"}


def test_offset_without_total_stops_at_a_short_page(make: Make, api: Api) -> None:
    origin = make(
        HttpApiOrigin,
        url=f"{api.base}/offset",
        records_path="items",
        pagination={"style": "offset", "offset_param": "offset", "limit_param": "limit", "limit": 20},
    )
    batches, _ = run_origin(origin)
    assert ids(batches) == IDS
    assert [int(s.query["offset"]) for s in api.requests()] == [0, 20, 40, 60, 80]


def test_cursor_follows_the_cursor_until_it_is_missing(make: Make, api: Api) -> None:
    origin = make(
        HttpApiOrigin,
        url=f"{api.base}/cursor",
        records_path="records",
        pagination={"style": "cursor", "cursor_param": "cursor", "cursor_field": "paging.next_cursor"},
    )
    batches, _ = run_origin(origin)
    assert ids(batches) == IDS
    assert [s.query.get("cursor") for s in api.requests()] == [None] + [f"c{i}" for i in range(10, 100, 10)]


def test_next_link_from_the_link_header_when_next_field_is_empty(make: Make, api: Api) -> None:
    origin = make(HttpApiOrigin, url=f"{api.base}/link", pagination={"style": "next_link", "next_field": ""})
    batches, _ = run_origin(origin)
    assert ids(batches) == IDS
    assert len(api.requests()) == 10


def test_a_body_that_is_the_list_itself_and_no_pagination(make: Make, api: Api) -> None:
    batches, _ = run_origin(make(HttpApiOrigin, url=f"{api.base}/list"))
    assert ids(batches) == [0, 1, 2, 3, 4]
    assert len(api.requests()) == 1


def test_records_path_missing_names_the_path_and_the_keys(make: Make, api: Api) -> None:
    error = fails(make(HttpApiOrigin, url=f"{api.base}/next", records_path="data.items"))
    assert "records_path 'data.items'" in error.message
    assert "count, next, previous, results" in error.message


def test_mixed_value_types_are_kept_as_json_text(make: Make, api: Api) -> None:
    batches, _ = run_origin(make(HttpApiOrigin, url=f"{api.base}/mixed"))
    assert batches[0].column("v").to_pylist() == ["1", "two", '{"x": 1}', None]


def test_a_body_that_is_not_json_fails_with_the_excerpt(make: Make, api: Api) -> None:
    error = fails(make(HttpApiOrigin, url=f"{api.base}/html"))
    assert "not JSON" in error.message and "<html>maintenance</html>" in error.message


# -- preview, cancellation ----------------------------------------------------


def test_preview_stops_fetching_once_enough_records(make: Make, api: Api) -> None:
    origin = make(
        HttpApiOrigin,
        context={"record_limit": 15, "preview": True},
        url=f"{api.base}/next",
        records_path="results",
        pagination={"style": "next_link"},
    )
    batches, _ = run_origin(origin)
    assert ids(batches) == list(range(15))
    assert len(api.requests()) == 2


def test_preview_of_concurrent_pages_requests_only_what_it_needs(make: Make, api: Api) -> None:
    origin = make(
        HttpApiOrigin,
        context={"record_limit": 15},
        url=f"{api.base}/pages",
        records_path="data.items",
        concurrency=4,
        pagination={"style": "page_number", "total_pages_field": "meta.total_pages"},
    )
    batches, _ = run_origin(origin)
    assert ids(batches) == list(range(15))
    assert len(api.requests()) == 2


def test_cancel_stops_the_origin(make: Make, api: Api) -> None:
    origin = make(
        HttpApiOrigin,
        context={"batch_size": 10},
        url=f"{api.base}/next",
        records_path="results",
        pagination={"style": "next_link"},
    )
    origin.open()
    seen = []
    for item in origin.batches():
        seen.append(item)
        origin.context.cancel_event.set()
    assert len(seen) == 1
    assert len(api.requests()) == 1


# -- authentication -----------------------------------------------------------


def http_connection(api: Api, credential_type: str, **kwargs: Any) -> ConnectionSpec:
    kwargs.setdefault("host", api.base)
    return ConnectionSpec(name="source-api", vendor="http", credential_type=credential_type, **kwargs)


AUTH_CASES: dict[str, tuple[tuple[str, ...], Callable[[Api, str], ConnectionSpec]]] = {
    "basic": (
        ("basic", "ann", PASSWORD),
        lambda api, secret: http_connection(api, "basic", username="ann", secrets={"password": secret}),
    ),
    "bearer": (
        ("bearer", TOKEN),
        lambda api, secret: http_connection(api, "bearer", secrets={"token": secret}),
    ),
    "api_key": (
        ("api_key", "X-Custom-Key", API_KEY),
        lambda api, secret: http_connection(
            api, "api_key", params={"apiKeyHeader": "X-Custom-Key"}, secrets={"api_key": secret}
        ),
    ),
}
SECRETS = {"basic": PASSWORD, "bearer": TOKEN, "api_key": API_KEY}


@pytest.mark.parametrize("kind", sorted(AUTH_CASES))
def test_connection_credentials_authenticate(make: Make, api: Api, kind: str) -> None:
    required, spec_of = AUTH_CASES[kind]
    api.auth = required
    spec = spec_of(api, SECRETS[kind])
    batches, _ = run_origin(
        make(HttpApiOrigin, context=connected(spec), connection=str(spec.uuid), url="list")
    )
    assert ids(batches) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("kind", sorted(AUTH_CASES))
def test_wrong_credentials_fail_without_showing_them(
    make: Make, api: Api, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    required, spec_of = AUTH_CASES[kind]
    api.auth = required
    wrong = "wrong-" + SECRETS[kind]
    spec = spec_of(api, wrong)
    error = fails(make(HttpApiOrigin, context=connected(spec), connection="source-api", url="/list"))
    assert "401" in error.message and f"{api.base}/list" in error.message
    assert "Incorrect authentication credentials" in error.message
    assert "connection 'source-api'" in error.message
    assert wrong not in error.message and wrong not in caplog.text and wrong not in repr(error.details)
    assert len(api.requests()) == 1  # a 401 is not retried


def test_hawk_signs_every_page_and_verifies_the_server(make: Make, api: Api) -> None:
    api.auth = ("hawk",)
    spec = http_connection(
        api,
        "hawk",
        params={"baseUrl": f"{api.base}/"},
        host="ignored.invalid",
        secrets={"hawk_id": HAWK_ID, "hawk_key": HAWK_KEY},
    )
    origin = make(
        HttpApiOrigin,
        context=connected(spec),
        connection="source-api",
        url="next",
        records_path="results",
        pagination={"style": "next_link"},
    )
    batches, _ = run_origin(origin)
    assert ids(batches) == IDS
    headers = [s.headers["Authorization"] for s in api.requests()]
    assert len(headers) == 10 and all(h.startswith("Hawk ") for h in headers)
    assert len(set(headers)) == 10  # a fresh nonce and MAC per request


def test_hawk_with_a_wrong_key_fails_clearly_and_never_shows_the_key(
    make: Make, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api.auth = ("hawk",)
    wrong_key = "not-the-hawk-key-5555"
    spec = http_connection(api, "hawk", username=HAWK_ID, secrets={"hawk_key": wrong_key})
    error = fails(make(HttpApiOrigin, context=connected(spec), connection="source-api", url="list"))
    assert f"GET {api.base}/list returned HTTP 401" in error.message
    assert error.code == "HTTP_AUTH_FAILED"
    assert wrong_key not in error.message and wrong_key not in caplog.text
    assert HAWK_KEY not in caplog.text


def test_hawk_response_that_does_not_verify_is_rejected(make: Make, api: Api) -> None:
    api.auth = ("hawk",)
    api.tamper_hawk_response = True
    spec = http_connection(api, "hawk", username=HAWK_ID, secrets={"hawk_key": HAWK_KEY})
    error = fails(make(HttpApiOrigin, context=connected(spec), connection="source-api", url="list"))
    assert "Hawk signature" in error.message and "did not verify" in error.message
    # ... unless the connection turns verification off.
    spec = http_connection(
        api, "hawk", username=HAWK_ID, secrets={"hawk_key": HAWK_KEY}, params={"hawkVerifyResponse": False}
    )
    batches, _ = run_origin(make(HttpApiOrigin, context=connected(spec), connection="source-api", url="list"))
    assert ids(batches) == [0, 1, 2, 3, 4]


def test_credentials_do_not_follow_a_redirect_to_another_origin(make: Make, api: Api) -> None:
    api.auth = ("bearer", TOKEN)
    spec = http_connection(api, "bearer", secrets={"token": TOKEN})
    error = fails(make(HttpApiOrigin, context=connected(spec), connection="source-api", url="redirect"))
    first, second = api.requests()
    assert first.headers.get("Authorization") == f"Bearer {TOKEN}"
    assert second.path == "/list" and "Authorization" not in second.headers
    assert "401" in error.message and "credentials are only sent to http://127.0.0.1" in error.message


def test_a_missing_connection_or_secret_is_a_clear_error(make: Make, api: Api) -> None:
    spec = http_connection(api, "bearer")
    error = fails(make(HttpApiOrigin, context=connected(spec), connection="source-api", url="list"))
    assert "has no secret 'token'" in error.message
    error = fails(make(HttpApiOrigin, context=connected(spec), connection="elsewhere", url="list"))
    assert "no connection 'elsewhere'" in error.message
    assert api.requests() == []


def test_configuration_is_validated() -> None:
    with pytest.raises(ValidationError, match="absolute"):
        HttpApiOrigin.config_model(url="items")
    with pytest.raises(ValidationError):
        HttpApiOrigin.config_model(url="http://x/", concurrency=17)
    with pytest.raises(ValidationError):
        HttpApiOrigin.config_model(url="http://x/", pagination={"style": "pages"})
    with pytest.raises(ValidationError, match="page_size"):
        HttpApiOrigin.config_model(
            url="http://x/", pagination={"style": "page_number", "page_size_param": "n"}
        )
    schema = HttpApiOrigin.config_model.model_json_schema()
    assert schema["properties"]["timeout"]["default"] == 30.0
    assert schema["properties"]["concurrency"]["title"] == "Concurrency"


# -- retries, timeouts, rate limit -------------------------------------------


def test_429_waits_for_retry_after_then_succeeds(make: Make, api: Api) -> None:
    api.script["/list"] = [(429, {"Retry-After": "1"})]
    batches, _ = run_origin(make(HttpApiOrigin, url=f"{api.base}/list", retry_backoff=0.01))
    assert ids(batches) == [0, 1, 2, 3, 4]
    first, second = api.requests()
    assert 0.9 <= second.t - first.t < 3.0


def test_503_twice_then_success(make: Make, api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    api.script["/list"] = [(503, {}), (503, {})]
    batches, _ = run_origin(make(HttpApiOrigin, url=f"{api.base}/list", retry_backoff=0.02))
    assert ids(batches) == [0, 1, 2, 3, 4]
    assert len(api.requests()) == 3
    assert caplog.text.count("HTTP 503") == 2


def test_exhausted_retries_fail_with_the_last_status(make: Make, api: Api) -> None:
    api.script["/list"] = [(503, {})] * 5
    error = fails(make(HttpApiOrigin, url=f"{api.base}/list", max_retries=2, retry_backoff=0.01))
    assert "failed after 3 attempts" in error.message and "HTTP 503" in error.message
    assert "scripted 503" in error.message
    assert len(api.requests()) == 3


def test_a_404_fails_at_once_with_url_status_and_excerpt(make: Make, api: Api) -> None:
    error = fails(make(HttpApiOrigin, url=f"{api.base}/nowhere?token=abc123", retry_backoff=0.01))
    assert f"GET {api.base}/nowhere?token=***" in error.message
    assert "HTTP 404" in error.message and "no such endpoint /nowhere" in error.message
    assert "abc123" not in error.message
    assert len(api.requests()) == 1


def test_a_slow_server_times_out_after_retries(make: Make, api: Api) -> None:
    api.delay["/list"] = 1.0
    started = time.monotonic()
    error = fails(make(HttpApiOrigin, url=f"{api.base}/list", timeout=0.2, max_retries=1, retry_backoff=0.01))
    assert "timed out after 0.2 s" in error.message and "after 2 attempts" in error.message
    assert time.monotonic() - started < 1.5
    assert len(api.requests()) == 2


def test_rate_limit_spaces_requests_even_when_concurrent(make: Make, api: Api) -> None:
    origin = make(
        HttpApiOrigin,
        url=f"{api.base}/offset",
        records_path="items",
        concurrency=4,
        rate_limit=10,
        pagination={"style": "offset", "limit": 10, "total_field": "total"},
    )
    batches, _ = run_origin(origin)
    assert ids(batches) == IDS
    times = sorted(s.t for s in api.requests())
    assert len(times) == 10
    assert times[-1] - times[0] >= 0.8  # 9 gaps of 0.1 s, loosely
    assert max(sum(1 for t in times if start <= t < start + 0.5) for start in times) <= 6


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=7), usegmt=True), now) == 7.0
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=7), usegmt=True), now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
