"""Every error class lives in flowport.errors, and the SDK rebuilds each one from the API's answer."""

from __future__ import annotations

import importlib
import json
import pkgutil

import httpx
import pytest

import flowport
from flowport import errors
from flowport.api.errors import error_response, status_of
from flowport.sdk.client import error_from_response


def _import_everything() -> None:
    for module in pkgutil.walk_packages(flowport.__path__, "flowport."):
        if ".migrations." in module.name:
            continue
        importlib.import_module(module.name)


def test_every_error_class_of_flowport_is_in_flowport_errors() -> None:
    _import_everything()
    outside = [
        f"{cls.__module__}.{cls.__name__}"
        for cls in errors.error_classes()
        if cls.__module__ != "flowport.errors"
    ]
    assert outside == []
    assert {cls.__name__ for cls in errors.error_classes()} <= set(errors.__all__)
    # No HTTP in the core: the API decides the status.
    assert all("status_code" not in vars(cls) for cls in errors.error_classes())


@pytest.mark.parametrize("cls", errors.error_classes(), ids=lambda cls: cls.__name__)
def test_the_sdk_rebuilds_every_error_class(cls: type[errors.FlowportError]) -> None:
    original = cls.__new__(cls)
    errors.FlowportError.__init__(original, f"something about {cls.__name__}", details={"k": 1})
    answer = error_response(original)
    response = httpx.Response(
        answer.status_code,
        content=bytes(answer.body),
        headers={"content-type": "application/json"},
        request=httpx.Request("GET", "http://flowport.test/v4/x"),
    )
    rebuilt = error_from_response(response)
    assert type(rebuilt) is cls
    assert rebuilt.details == {"k": 1}
    assert json.loads(bytes(answer.body))["exception"]["name"] == cls.__name__
    if status_of(original) < 500:
        assert rebuilt.message == f"something about {cls.__name__}"
    else:
        assert f"something about {cls.__name__}" in rebuilt.message
