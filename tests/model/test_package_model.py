"""The package manifest model and the connection/artifact walkers, with plain values."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from flowport.errors import ValidationFailed
from flowport.model.flow import ArtifactRef, ErrorStageSpec, Flow, PluginRef, Stage, StageKind
from flowport.model.package import (
    PACKAGE_FORMAT,
    Package,
    PackageArtifact,
    PackageInvalid,
    PackageManifest,
    flow_file_name,
    manifest_from_dict,
    referenced_artifacts,
    referenced_connections,
    replace_connections,
)

FLOW_ID = uuid.UUID("5a0c8a52-1f1e-4c56-9d59-0f5b2f7d1c11")
CONN_ID = "b8014610-ce56-11e7-9739-27deec2c3249"
DIGEST = "ab" * 32


def _manifest_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "format": PACKAGE_FORMAT,
        "exportedAt": "2024-05-01T12:00:00.000Z",
        "instance": {"uuid": "11111111-1111-1111-1111-111111111111", "name": "Dev"},
        "flows": [
            {
                "uuid": str(FLOW_ID),
                "name": "Wrangle Orders",
                "type": "batch",
                "file": f"flows/{FLOW_ID}.json",
                "sha256": DIGEST,
            }
        ],
        "connections": [{"uuid": CONN_ID, "name": "Dev Redshift Conn", "vendor": "redshift"}],
        "artifacts": [{"name": "flowport-core", "version": "1.0.0", "scope": "SYSTEM"}],
        "withPlainTextCredentials": False,
    }
    data.update(overrides)
    return data


def _stage(
    name: str, plugin: str, configuration: dict[str, Any], artifact: ArtifactRef | None = None
) -> Stage:
    return Stage(name=name, plugin=PluginRef(name=plugin, artifact=artifact), configuration=configuration)


def _flow_with_connections() -> Flow:
    return Flow(
        name="Wrangle Orders",
        stages=[
            _stage("Orders_01", "sql_table_origin", {"connection": CONN_ID, "table": "Dev-Orders"}),
            _stage(
                "Lookup_01",
                "lookup",
                {"lookups": [{"connection": "Customers DB", "table": "c"}], "options": {"connection": 5}},
            ),
            _stage("Filter_01", "filter", {"condition": "total > 1", "connection": ""}),
        ],
        error_stage=ErrorStageSpec(
            plugin=PluginRef(name="sql_table_destination", type=StageKind.ERROR),
            configuration={"connection": "Errors DB", "table": "errors"},
        ),
    )


# -- manifest -------------------------------------------------------------


def test_manifest_reads_camel_case_and_writes_it_back() -> None:
    manifest = manifest_from_dict(_manifest_data())
    assert manifest.exported_at == "2024-05-01T12:00:00.000Z"
    assert manifest.flows[0].uuid == FLOW_ID
    assert manifest.flow_entry(str(FLOW_ID)).file == f"flows/{FLOW_ID}.json"
    out = manifest.to_dict()
    assert out == _manifest_data()
    assert PackageManifest.model_validate(out) == manifest


def test_manifest_flow_entry_unknown_uuid_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        manifest_from_dict(_manifest_data()).flow_entry(uuid.uuid4())


def test_flow_file_name_is_canonical() -> None:
    assert flow_file_name(str(FLOW_ID).upper()) == f"flows/{FLOW_ID}.json"


@pytest.mark.parametrize("fmt", ["flowport.package/2", None, "flowport.flow/1"])
def test_manifest_unsupported_format_version_is_named(fmt: str | None) -> None:
    data = _manifest_data(format=fmt)
    if fmt is None:
        del data["format"]
    with pytest.raises(PackageInvalid) as err:
        manifest_from_dict(data)
    assert "unsupported package format version" in err.value.message
    assert "flowport.package/1" in err.value.message
    assert isinstance(err.value, ValidationFailed)
    assert err.value.details == {"entry": "manifest.json", "problem": "UNSUPPORTED_FORMAT", "format": fmt}


def test_manifest_must_be_an_object() -> None:
    with pytest.raises(PackageInvalid, match=r"manifest.json: the manifest must be a JSON object, got list"):
        manifest_from_dict([1, 2])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"flows": []}, "a package holds at least one flow or pipeline: flows is empty"),
        ({"exportedAt": "yesterday"}, "exportedAt: Value error, must be an ISO 8601 time"),
        ({"surprise": 1}, "surprise: unknown key (check its spelling)"),
        ({"instance": {"name": "Dev"}}, "instance.uuid: Field required"),
    ],
)
def test_manifest_field_problems_are_listed(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(PackageInvalid) as err:
        manifest_from_dict(_manifest_data(**change))
    assert expected in err.value.message
    assert "Re-export the package" in err.value.message
    assert err.value.details["problem"] == "INVALID_MANIFEST"
    assert any(expected in line for line in err.value.details["errors"])


def test_manifest_flow_file_must_be_flows_uuid_json() -> None:
    data = _manifest_data()
    data["flows"][0]["file"] = "../../etc/passwd"
    with pytest.raises(PackageInvalid, match=rf"file must be 'flows/{FLOW_ID}.json'"):
        manifest_from_dict(data)


def test_manifest_sha256_must_be_a_hex_digest() -> None:
    data = _manifest_data()
    data["flows"][0]["sha256"] = "XYZ"
    with pytest.raises(PackageInvalid, match="64 lowercase hexadecimal characters"):
        manifest_from_dict(data)


def test_manifest_lists_each_flow_and_connection_once() -> None:
    data = _manifest_data()
    data["flows"].append(dict(data["flows"][0]))
    with pytest.raises(PackageInvalid, match=f"flow {FLOW_ID} is listed more than once"):
        manifest_from_dict(data)
    data = _manifest_data()
    data["connections"].append(dict(data["connections"][0]))
    with pytest.raises(PackageInvalid, match=f"connection {CONN_ID} is listed more than once"):
        manifest_from_dict(data)


def test_manifest_credentials_only_in_plain_text_packages() -> None:
    data = _manifest_data()
    data["connections"][0]["credentials"] = [{"username": "dev", "password": "pw"}]
    with pytest.raises(PackageInvalid, match="carry credentials but withPlainTextCredentials is false"):
        manifest_from_dict(data)
    data["withPlainTextCredentials"] = True
    manifest = manifest_from_dict(data)
    assert manifest.connections[0].credentials == [{"username": "dev", "password": "pw"}]


# -- connection references --------------------------------------------------


def test_referenced_connections_walks_stages_nested_values_and_error_stage() -> None:
    assert referenced_connections(_flow_with_connections()) == {CONN_ID, "Customers DB", "Errors DB"}


def test_referenced_connections_of_a_flow_without_any() -> None:
    flow = Flow(name="f", stages=[_stage("Filter_01", "filter", {"condition": "x > 1"})])
    assert referenced_connections(flow) == set()


def test_replace_connections_rewrites_a_copy() -> None:
    flow = _flow_with_connections()
    prod = "fa7e06c0-0143-11e8-8faf-27c0392328c5"
    rewritten = replace_connections(flow, {CONN_ID: prod, "Errors DB": "Prod Errors"})
    assert referenced_connections(rewritten) == {prod, "Customers DB", "Prod Errors"}
    assert rewritten.stage("Orders_01").configuration == {"connection": prod, "table": "Dev-Orders"}
    assert rewritten.stage("Lookup_01").configuration["options"] == {"connection": 5}
    assert referenced_connections(flow) == {CONN_ID, "Customers DB", "Errors DB"}


def test_package_map_flows_leaves_the_original_alone() -> None:
    flow = _flow_with_connections()
    package = Package(manifest=manifest_from_dict(_manifest_data()), flows=[("flows/x.json", flow)])
    mapped = package.map_flows(lambda f: replace_connections(f, {CONN_ID: "Prod"}))
    assert "Prod" in referenced_connections(mapped.flows[0][1])
    assert CONN_ID in referenced_connections(package.flows[0][1])
    assert mapped.manifest is package.manifest
    assert mapped.flows[0][0] == "flows/x.json"


# -- artifacts --------------------------------------------------------------


def test_referenced_artifacts_are_the_pins_once_each_sorted() -> None:
    core = ArtifactRef(name="flowport-core", version="1.0.0", scope="SYSTEM")
    flow = Flow(
        name="f",
        stages=[
            _stage(
                "B", "b_plugin", {}, ArtifactRef(name="zz-plugins", version="[1.0.0,2.0.0)", scope="USER")
            ),
            _stage("A", "a_plugin", {}, core),
            _stage("C", "c_plugin", {}, core),
            _stage("D", "d_plugin", {}),
        ],
        error_stage=ErrorStageSpec(
            plugin=PluginRef(name="write_to_file", artifact=ArtifactRef(name="errors-kit"))
        ),
    )
    assert referenced_artifacts(flow) == [
        PackageArtifact(name="errors-kit"),
        PackageArtifact(name="flowport-core", version="1.0.0", scope="SYSTEM"),
        PackageArtifact(name="zz-plugins", version="[1.0.0,2.0.0)", scope="USER"),
    ]


def test_referenced_artifacts_with_a_catalog_fills_in_unpinned_stages(catalog: Any) -> None:
    flow = Flow(
        name="f",
        stages=[
            _stage("Raw_01", "dev_raw", {}),
            _stage(
                "Filter_01",
                "filter",
                {"condition": "x"},
                ArtifactRef(name="flowport-core", version="[1.0.0,2.0.0)"),
            ),
            _stage("Mystery_01", "no_such_plugin", {}),
        ],
    )
    assert referenced_artifacts(flow, catalog) == [
        # The range pin wins over the installed version; the scope gap is filled.
        PackageArtifact(name="flowport-core", version="1.0.0", scope="SYSTEM"),
        PackageArtifact(name="flowport-core", version="[1.0.0,2.0.0)", scope="SYSTEM"),
    ]
