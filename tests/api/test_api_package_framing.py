"""A package is the ZIP Flowport wrote and nothing else: bytes before or after the archive are refused.

zipfile reads a ZIP with anything prepended (another file, a script, junk)
or appended as if it were clean; Flowport refuses such an upload like any
malformed package (422 ``PackageInvalid``), through every import endpoint,
and stores nothing.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from tests.api.conftest import Instance, MakeInstance

JUNK = b"#!/bin/sh\necho not a package\n" * 4


def _framed(package: bytes) -> dict[str, tuple[bytes, str]]:
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", b"another archive in front")
    return {
        "junk before": (JUNK + package, "DATA_BEFORE_ARCHIVE"),
        "one byte before": (b"\x00" + package, "DATA_BEFORE_ARCHIVE"),
        "another zip before": (other.getvalue() + package, "DATA_BEFORE_ARCHIVE"),
        "junk after": (package + JUNK, "DATA_AFTER_ARCHIVE"),
    }


def _upload(api: Instance, path: str, data: bytes, **params: Any) -> Any:
    return api.post(path, role="editor", params=params, files={"data": ("flow.zip", data, "application/zip")})


@pytest.fixture
def package(make_instance: MakeInstance) -> bytes:
    dev = make_instance("dev")
    flow = dev.create_example()
    response = dev.get(f"/v4/flows/{flow['id']}/package")
    assert response.status_code == 200, response.text
    # What Flowport writes starts with the archive's first entry and ends with its end record.
    assert response.content.startswith(b"PK\x03\x04")
    return response.content


def test_a_package_with_bytes_around_the_archive_is_refused_and_nothing_stored(
    make_instance: MakeInstance, package: bytes
) -> None:
    prod = make_instance("prod")
    # zipfile itself accepts every one of these: the check is Flowport's.
    for data, _problem in _framed(package).values():
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert "manifest.json" in archive.namelist()
    for case, (data, problem) in _framed(package).items():
        for path in ("/v4/flows/package/dryRun", "/v4/flows/package"):
            for resolution in ("skip", "replace", "rename"):
                response = _upload(prod, path, data, conflictResolution=resolution)
                assert response.status_code == 422, (case, path, response.text)
                error = response.json()["exception"]
                assert error["name"] == "PackageInvalid", (case, error)
                assert error["details"]["problem"] == problem, (case, error)
                assert "Export the package again" in error["message"]
    assert prod.flow_names() == []
    # The package exactly as exported still imports.
    response = _upload(prod, "/v4/flows/package", package)
    assert response.status_code == 201, response.text
    assert prod.flow_names() == ["Wrangle Orders"]


def test_a_release_with_bytes_before_the_archive_is_refused(
    make_instance: MakeInstance, package: bytes
) -> None:
    prod = make_instance("prod")
    deployment = prod.ok("POST", "/v4/deployments", 201, json={"name": "Orders"})
    releases = f"/v4/deployments/{deployment['id']}/releases"
    for case, (data, problem) in _framed(package).items():
        response = _upload(prod, releases, data)
        assert response.status_code == 422, (case, response.text)
        assert response.json()["exception"]["details"]["problem"] == problem
    assert prod.ok("GET", "/v4/releases")["count"] == 0
    assert prod.flow_names() == []
    assert _upload(prod, releases, package).status_code == 201
    assert prod.ok("GET", "/v4/releases")["count"] == 1
