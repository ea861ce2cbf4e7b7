"""A store too busy to take a request answers 503 with Retry-After, never a 500 with a traceback.

SQLite gives up with "database is locked" when another process keeps its
write lock past the busy timeout. That is load, not a bug: the client is
told to send the request again, in the API's error shape, whether the lock
is met by the route's service or by the authentication before it.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from tests.api.conftest import PASSWORDS, Instance

from flowport.services import auth, flow_records


def _locked(*_args: Any, **_kwargs: Any) -> Any:
    raise OperationalError("INSERT INTO job_groups ...", {}, sqlite3.OperationalError("database is locked"))


def _broken(*_args: Any, **_kwargs: Any) -> Any:
    raise OperationalError("SELECT ...", {}, sqlite3.OperationalError("no such column: flows.nope"))


def _busy_answer(answer: Any) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"].isdigit()
    body = answer.json()["exception"]
    assert body["name"] == "StoreNotReady"
    assert "busy" in body["message"] and "Traceback" not in answer.text and "INSERT" not in answer.text


def test_a_locked_store_in_a_route_answers_503(api: Instance, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flow_records, "list_flows", _locked)
    _busy_answer(api.get("/v4/flows"))


def test_a_locked_store_while_authenticating_answers_503(
    api: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "authenticate", _locked)
    _busy_answer(api.get("/v4/flows"))


def test_other_database_errors_stay_unexpected(api: Instance, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flow_records, "list_flows", _broken)
    with TestClient(api.app, raise_server_exceptions=False) as client:
        answer = client.get("/v4/flows", auth=("admin", PASSWORDS["admin"]))
    assert answer.status_code == 500
    assert answer.json()["exception"]["name"] == "InternalError"
    assert "no such column" not in answer.text
