"""The OpenAPI document says what the API accepts and answers.

A request it calls valid is not refused as invalid, and every answer has the shape it documents.

Schemathesis draws requests from the document (``positive`` mode: every
string, pattern, length, enum, required key and ``additionalProperties``
as the document states them) and sends them to the real ASGI app; an
answer of 400 or 422 to such a request means the API holds a rule the
document does not state (schemathesis' ST202, "schema-valid request
rejected"): a client generated from the document would send it.

A few operations hold rules JSON Schema cannot state; they are listed in
:data:`NOT_EXPRESSIBLE` with the rule, and every other operation is drawn.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import response_schema_conformance
from tests.api.conftest import Instance

# Operation -> the rule JSON Schema cannot express.
NOT_EXPRESSIBLE: dict[str, str] = {
    "POST /v4/flows/package": "the upload must be a ZIP package Flowport exported",
    "POST /v4/flows/package/dryRun": "the upload must be a ZIP package Flowport exported",
    "POST /v4/deployments/{deployment_id}/releases": "the upload must be a ZIP package Flowport exported",
    "POST /v4/deployments/{deployment_id}/releases/dryRun": "the upload must be a ZIP package",
    "POST /v4/artifacts": "the upload must be a wheel named as pip builds it",
    "POST /v4/schedules": "a cron expression's fields must name real minutes, hours, days and months",
    "PATCH /v4/schedules/{schedule_id}": "a cron expression's fields must name real minutes, hours, ...",
    "POST /v4/flows": "a flow document's edges and stages must refer to each other",
    "PATCH /v4/flows/{flow_id}": "a flow document's edges and stages must refer to each other",
    "POST /v4/pipelines": "a pipeline's tasks must refer to each other and to stored flows",
    "PATCH /v4/pipelines/{pipeline_id}": "a pipeline's tasks must refer to each other and to stored flows",
}

EXAMPLES = 15


def _satisfy_state_rules(case: Any, connection_id: int) -> None:
    """Bend a drawn request to the rules between fields or on stored state, which no schema states.

    Everything else stays as drawn.
    """
    label, body = case.operation.label, case.body
    if label.endswith("/objectImportRules") and isinstance(body, list):
        for rule in body:  # the rule must name a connection that exists
            rule["withCondition"]["id"] = connection_id
    if label.endswith("/valueImportRules") and isinstance(body, list):
        for rule in body:  # a /…/ rule must be a regular expression that compiles
            on = rule["on"]
            if len(on) >= 2 and on[0] == on[-1] == "/":
                try:
                    re.compile(on[1:-1])
                except re.error:
                    rule["on"] = "literal"
    if label.endswith(("/v4/flows/{flow_id}/run", "/v4/flows/{flow_id}/preview")) and isinstance(body, dict):
        # A parameter must be one the flow declares (the example flow declares min_total).
        if isinstance(body.get("parameters"), dict):
            values = list(body["parameters"].values())
            body["parameters"] = {"min_total": values[0]} if values else {}
        overrides = (body.get("runParameters") or {}).get("overrides") or {}
        for override in overrides.get("data", []):
            override["key"] = "min_total"
    if label.endswith("/backfills") and isinstance(body, dict):
        start, end = (datetime.fromisoformat(body[key]) for key in ("start", "end"))
        if start > end:  # the range must not run backwards
            body["start"], body["end"] = body["end"], body["start"]
    connections = label.startswith(("POST /v4/connections", "PATCH /v4/connections"))
    if connections and isinstance(body, dict) and "vendor" in body and "vendorName" in body:
        body["vendorName"] = body["vendor"]  # the two spellings must agree


def _operations(api: Instance) -> list[Any]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.app)
    found = [result.ok() for result in schema.get_all_operations()]
    return sorted(found, key=lambda operation: operation.label)


def test_every_operation_is_described_or_listed_as_not_expressible(api: Instance) -> None:
    labels = {operation.label for operation in _operations(api)}
    # A listed operation that no longer exists would hide nothing: the list must stay exact.
    assert set(NOT_EXPRESSIBLE) <= labels
    assert len(labels - set(NOT_EXPRESSIBLE)) >= 80


@pytest.mark.parametrize("store", ["sqlite"])
def test_requests_the_document_calls_valid_are_not_refused_as_invalid(make_instance: Any, store: str) -> None:
    api = make_instance("dev", store=store)
    api.create_example()
    # A token, not Basic: argon2 on each of thousands of requests would be slow.
    token = api.ok("POST", "/v4/apiTokens", 201, json={"name": "conformance"})["token"]
    headers = {"Authorization": f"Bearer {token}"}
    # Deletions last: one may revoke the token the others authenticate with.
    connection = {"name": "conformance", "vendor": "postgresql", "host": "127.0.0.1", "port": 5432}
    connection_id = api.ok("POST", "/v4/connections", 201, json=connection)["id"]
    operations = sorted(
        (op for op in _operations(api) if op.label not in NOT_EXPRESSIBLE),
        key=lambda op: (op.method.upper() == "DELETE", op.label == "DELETE /v4/apiTokens/{token_id}"),
    )
    refused = [refusal for op in operations if (refusal := _refusal(api, op, headers, connection_id))]
    assert not refused, "\n".join(refused)


def _refusal(api: Instance, operation: Any, headers: dict[str, str], connection_id: int) -> str | None:
    """The smallest request drawn for ``operation`` that the API refused as invalid, if any."""
    strategy = operation.as_strategy()
    last: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        case = data.draw(strategy)
        _satisfy_state_rules(case, connection_id)
        api.activate()
        response = case.call(headers=headers)
        if response.status_code in (400, 401, 422) or response.status_code >= 500:
            answer = response.content[:400].decode(errors="replace")
            shown = (
                f"{case.path_parameters} {case.query} {case.body!r:.300} -> {response.status_code} {answer}"
            )
            last[:] = [shown]
        # 2xx, or a refusal for a reason no schema states (401/403/404/409); never "invalid".
        assert response.status_code not in (400, 422)
        # Every request is signed in: a 401 would mean the test went blind.
        assert response.status_code != 401 or operation.label == "DELETE /v4/apiTokens/{token_id}"
        assert response.status_code < 500
        # And what it answers is what the document says it answers (2xx bodies and errors alike).
        case.validate_response(response, checks=[response_schema_conformance], headers=headers)

    try:
        check()
    except Exception as exc:
        return f"{operation.label}: {type(exc).__name__}: {''.join(last)}"
    return None
