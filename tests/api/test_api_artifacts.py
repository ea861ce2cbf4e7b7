"""``/v4/artifacts`` of the real ASGI app: admins install versions side by side, each flow runs its own."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.api.conftest import Instance, MakeInstance
from tests.plugins.plugin_builds import ARTIFACT, one_shot_gate, upper_flow, wheel

from flowport.model.flow import ArtifactRef, PluginRef
from flowport.services import flow_records
from flowport.services import launcher as launchers
from flowport.services.flows import plugin_registry

RUN_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifact-builds")


@pytest.fixture(scope="module", autouse=True)
def _pool() -> Iterator[None]:
    yield
    launchers.shutdown_launcher()


def _upload(path: Path, name: str | None = None) -> dict[str, Any]:
    return {"files": {"data": (name or path.name, path.read_bytes(), "application/octet-stream")}}


def _install(api: Instance, path: Path, **kwargs: Any) -> dict[str, Any]:
    result: dict[str, Any] = api.ok("POST", "/v4/artifacts", 201, **_upload(path), **kwargs)
    return result


def _mine(api: Instance, role: str = "admin") -> list[dict[str, Any]]:
    body = api.ok("GET", "/v4/artifacts", role=role)
    assert body["count"] == len(body["data"])
    assert len({(a["name"], a["version"]) for a in body["data"]}) == body["count"]  # each version once
    return [a for a in body["data"] if a["name"] == ARTIFACT]


def _folder(api: Instance, version: str) -> Path:
    return api.home / "artifacts" / ARTIFACT / version


def _people(api: Instance) -> None:
    api.activate()
    data = flow_records.data_dir()
    data.mkdir(parents=True, exist_ok=True)
    (data / "people.csv").write_text("name\nada\ngrace\n")


def _output(api: Instance, name: str) -> list[dict[str, Any]]:
    api.activate()
    text = (flow_records.data_dir() / "out" / name).read_text()
    return [json.loads(line) for line in text.splitlines()]


def _create(api: Instance, spec: str, version: str) -> int:
    flow = api.ok("POST", "/v4/flows", 201, json=upper_flow(f"Upper {version}", spec, f"out/{version}.jsonl"))
    return int(flow["id"])


def _run(api: Instance, flow_id: int) -> int:
    return int(api.ok("POST", f"/v4/flows/{flow_id}/run", 201)["id"])


def _assert_ran(api: Instance, group_id: int, version: str) -> None:
    group = api.wait(group_id, RUN_TIMEOUT)
    assert group["status"] == "Complete", group["error"]
    assert _output(api, f"{version}.jsonl") == [
        {"name": "ADA", "plugin_version": version},
        {"name": "GRACE", "plugin_version": version},
    ]


def test_only_admins_install_and_everyone_lists_each_version_once(api: Instance, builds: Path) -> None:
    package = wheel(builds, "1.2.0")
    for role in ("editor", "viewer"):
        response = api.post("/v4/artifacts", role=role, **_upload(package))
        assert response.status_code == 403, response.text
        assert response.json()["exception"]["name"] == "Forbidden"
    assert api.post("/v4/artifacts", role=None, **_upload(package)).status_code == 401
    assert not (api.home / "artifacts" / ARTIFACT).exists()
    assert _mine(api) == []

    first = _install(api, package)
    second = _install(api, wheel(builds, "2.0.0"))
    assert (first["name"], first["version"], first["path"]) == (ARTIFACT, "1.2.0", str(_folder(api, "1.2.0")))
    assert (second["version"], second["source"]) == ("2.0.0", "instance")
    mine = _mine(api, role="viewer")
    assert [(a["version"], a["scope"], a["source"], a["path"]) for a in mine] == [
        ("1.2.0", "USER", "instance", str(_folder(api, "1.2.0"))),
        ("2.0.0", "USER", "instance", str(_folder(api, "2.0.0"))),
    ]
    assert all([p["name"] for p in a["plugins"]] == ["uppercase"] and a["errors"] == [] for a in mine)
    # /v4/stages shows the highest version: its answer is not the one cached before the installs.
    stages = {s["name"]: s for s in api.ok("GET", "/v4/stages")["data"]}
    assert stages["uppercase"]["artifact"] == {"name": ARTIFACT, "version": "2.0.0", "scope": "USER"}
    assert "version_field" in stages["uppercase"]["configSchema"]["properties"]


def test_installing_the_same_version_twice_is_refused(api: Instance, builds: Path) -> None:
    package = wheel(builds, "1.2.0")
    _install(api, package)
    inode = _folder(api, "1.2.0").stat().st_ino
    response = api.post("/v4/artifacts", **_upload(package))
    assert response.status_code == 409, response.text
    assert response.json()["exception"]["name"] == "Conflict"
    assert "flowport-test-plugin 1.2.0 is already installed" in response.json()["exception"]["message"]
    assert _folder(api, "1.2.0").stat().st_ino == inode
    assert [a["version"] for a in _mine(api)] == ["1.2.0"]
    # Replacing takes an explicit force.
    _install(api, package, params={"force": "true"})
    assert _folder(api, "1.2.0").stat().st_ino != inode
    assert [a["version"] for a in _mine(api)] == ["1.2.0"]


def test_what_is_no_wheel_is_refused(api: Instance, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    response = api.post("/v4/artifacts", **_upload(tmp_path / "notes.txt"))
    assert response.status_code == 422 and "Upload a wheel file" in response.text
    (tmp_path / "fake-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    response = api.post("/v4/artifacts", **_upload(tmp_path / "fake-1.0-py3-none-any.whl"))
    assert response.status_code == 422 and "not a ZIP" in response.text
    assert not any((api.home / "artifacts").glob("*/*"))


def test_two_flows_pinned_to_different_versions_run_their_own_code_at_the_same_time(
    api: Instance, builds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install(api, wheel(builds, "1.2.0"))
    _install(api, wheel(builds, "2.0.0"))
    _people(api)
    pins = {"1.2.0": "[1.0.0,2.0.0)", "2.0.0": "[2.0.0,3.0.0)"}
    flow_ids = {version: _create(api, spec, version) for version, spec in pins.items()}
    # The app runs jobs in threads of this process: hold each version's first batch until the
    # other run has one too, so the two runs provably overlap.
    api.activate()
    barrier = threading.Barrier(2, timeout=RUN_TIMEOUT)
    for version, spec in pins.items():
        ref = PluginRef(name="uppercase", artifact=ArtifactRef(name=ARTIFACT, version=spec))
        module = sys.modules[plugin_registry().plugin_class(ref).__module__]
        assert (module.__version__, Path(module.__file__ or "").parent) == (version, _folder(api, version))
        monkeypatch.setattr(module, "gate", one_shot_gate(barrier))
    groups = {version: _run(api, flow_id) for version, flow_id in flow_ids.items()}
    for version, group_id in groups.items():
        _assert_ran(api, group_id, version)
    assert not barrier.broken


def test_remove_a_version(api: Instance, builds: Path) -> None:
    _install(api, wheel(builds, "1.2.0"))
    _install(api, wheel(builds, "2.0.0"))
    _people(api)
    flow_id = _create(api, "[1.0.0,2.0.0)", "1.2.0")
    assert api.delete(f"/v4/artifacts/{ARTIFACT}/1.2.0", role="editor").status_code == 403
    assert _folder(api, "1.2.0").is_dir()
    assert api.delete(f"/v4/artifacts/{ARTIFACT}/1.2.0").status_code == 204
    assert not _folder(api, "1.2.0").exists()
    assert [a["version"] for a in _mine(api)] == ["2.0.0"]
    assert api.delete(f"/v4/artifacts/{ARTIFACT}/1.2.0").status_code == 404
    # The flow pinned to the removed version no longer runs.
    response = api.post(f"/v4/flows/{flow_id}/run")
    assert response.status_code == 422, response.text
    assert "ARTIFACT_VERSION_NOT_FOUND" in response.text


def test_job_worker_processes_see_artifacts_installed_after_they_started(
    make_instance: MakeInstance, builds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = make_instance("dev", launcher="process")
    # One worker process, started (and its registry built) before the artifacts are installed.
    launchers.shutdown_launcher()
    monkeypatch.setenv(launchers.WORKERS_ENV, "1")
    _people(api)
    core_only = {
        "name": "Warm-up",
        "stages": [
            {
                "name": "People_01",
                "plugin": {"name": "csv_file_origin"},
                "configuration": {"path": "people.csv"},
            },
            {
                "name": "Out_01",
                "plugin": {"name": "json_file_destination"},
                "configuration": {"path": "out/w.jsonl"},
            },
        ],
        "edges": [{"from": "People_01", "to": "Out_01"}],
    }
    warm_up = api.ok("POST", "/v4/flows", 201, json=core_only)["id"]
    assert api.wait(_run(api, warm_up), RUN_TIMEOUT)["status"] == "Complete"
    # The worker has discovered the plugins by now; the artifacts come later.
    _install(api, wheel(builds, "1.2.0"))
    _install(api, wheel(builds, "2.0.0"))
    groups = {
        version: _run(api, _create(api, spec, version))
        for version, spec in (("1.2.0", "[1.0.0,2.0.0)"), ("2.0.0", "[2.0.0,3.0.0)"))
    }
    for version, group_id in groups.items():
        _assert_ran(api, group_id, version)
