"""Package archives: round trip, no secrets, determinism, and every hostile archive refused.

Hostile archives are built by hand with zipfile (and, where zipfile will not
write the lie, by patching header fields in the bytes).
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import struct
import uuid
import warnings
import zipfile
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from flowport.connections.spec import ConnectionSpec
from flowport.errors import ValidationFailed
from flowport.model.document import flow_to_json
from flowport.model.flow import ArtifactRef, Edge, ErrorStageSpec, Flow, PluginRef, Stage, StageKind
from flowport.model.package import PackageInvalid, manifest_from_dict, replace_connections
from flowport.services.package_archive import build_package, read_package

PLANTED_PASSWORD = "Planted-Pa55word-7d1e"
PLANTED_TOKEN = "planted-token-93be2c"
PLANTED_USER = "planted_dev_user"
INSTANCE = uuid.UUID("11111111-2222-3333-4444-555555555555")
WHEN = datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC)
ORDERS_FILE = "flows/5a0c8a52-1f1e-4c56-9d59-0f5b2f7d1c11.json"
CORE = ArtifactRef(name="flowport-core", version="1.0.0", scope="SYSTEM")


def _connections() -> list[ConnectionSpec]:
    return [
        ConnectionSpec(
            uuid=uuid.UUID("b8014610-ce56-11e7-9739-27deec2c3249"),
            name="Dev Redshift Conn",
            vendor="redshift",
            host="dev-redshift.example.com",
            username=PLANTED_USER,
            secrets={"password": SecretStr(PLANTED_PASSWORD)},
        ),
        ConnectionSpec(
            uuid=uuid.UUID("6c3f1f0a-3b7e-4f43-8c8e-2a9b8f6f1e01"),
            name="Orders API",
            vendor="http",
            secrets={"token": SecretStr(PLANTED_TOKEN)},
        ),
        ConnectionSpec(
            uuid=uuid.UUID("9d1b5a54-7c1f-4a8e-bb0a-52b7e0f1d0c2"),
            name="Unused",
            vendor="postgresql",
            secrets={"password": SecretStr("unused-secret")},
        ),
    ]


def _flows(connections: list[ConnectionSpec]) -> list[Flow]:
    redshift, api, _ = connections
    orders = Flow(
        uuid=uuid.UUID("5a0c8a52-1f1e-4c56-9d59-0f5b2f7d1c11"),
        name="Wrangle Orders",
        description="Dev orders to JSON",
        parameters={"min_total": "100"},
        stages=[
            Stage(
                name="Orders_01",
                label="Orders",
                plugin=PluginRef(name="sql_table_origin", type=StageKind.ORIGIN, artifact=CORE),
                configuration={"connection": str(redshift.uuid), "table": "Dev-Orders", "limit": None},
            ),
            Stage(
                name="Filter_01",
                plugin=PluginRef(name="filter", type=StageKind.PROCESSOR, artifact=CORE),
                configuration={"condition": "total >= ${min_total}"},
            ),
            Stage(
                name="JSON_01",
                plugin=PluginRef(name="json_file_destination", type=StageKind.DESTINATION, artifact=CORE),
                configuration={"path": "out/orders.json"},
            ),
        ],
        edges=[
            Edge.model_validate({"from": "Orders_01", "to": "Filter_01"}),
            Edge.model_validate({"from": "Filter_01", "to": "JSON_01"}),
        ],
    )
    fetch = Flow(
        uuid=uuid.UUID("0b3a7e0e-8a47-4b0e-9a51-0d0c0e7f9a22"),
        name="Fetch API",
        type="streaming",
        stages=[
            Stage(
                name="API_01",
                plugin=PluginRef(
                    name="http_api_origin",
                    artifact=ArtifactRef(name="acme-http", version="[2.0.0,3.0.0)", scope="USER"),
                ),
                configuration={"connection": api.name, "url": "https://api.example.com/orders"},
            ),
        ],
        error_stage=ErrorStageSpec(plugin=PluginRef(name="write_to_file"), configuration={"directory": "e/"}),
    )
    return [orders, fetch]


def _package(**kwargs: Any) -> bytes:
    connections = _connections()
    return build_package(_flows(connections), connections, INSTANCE, exported_at=WHEN, **kwargs)


def _entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


# -- building and reading back ----------------------------------------------


def test_round_trip_gives_the_same_flows_and_manifest() -> None:
    connections = _connections()
    flows = _flows(connections)
    data = build_package(flows, connections, INSTANCE, instance_name="Dev", exported_at=WHEN)
    package = read_package(data)

    assert [flow for _, flow in package.flows] == flows
    assert [name for name, _ in package.flows] == [f"flows/{f.uuid}.json" for f in flows]
    written = json.loads(_entries(data)["manifest.json"])
    assert package.manifest == manifest_from_dict(written)
    assert package.manifest.to_dict() == written
    assert package.archive_sha256 == hashlib.sha256(data).hexdigest()

    manifest = package.manifest
    assert manifest.exported_at == "2024-05-01T12:30:15.250Z"
    assert (manifest.instance.uuid, manifest.instance.name) == (INSTANCE, "Dev")
    assert [(f.name, f.type) for f in manifest.flows] == [
        ("Wrangle Orders", "batch"),
        ("Fetch API", "streaming"),
    ]
    # Only the referenced connections, by uuid (or name) -> uuid, name, vendor.
    assert sorted((c.name, c.vendor) for c in manifest.connections) == [
        ("Dev Redshift Conn", "redshift"),
        ("Orders API", "http"),
    ]
    assert all(c.credentials is None for c in manifest.connections)
    assert manifest.with_plain_text_credentials is False
    assert [a.model_dump() for a in manifest.artifacts] == [
        {"name": "acme-http", "version": "[2.0.0,3.0.0)", "scope": "USER"},
        {"name": "flowport-core", "version": "1.0.0", "scope": "SYSTEM"},
    ]


def test_archive_layout_is_manifest_then_one_file_per_flow() -> None:
    data = _package()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
    flows = _flows(_connections())
    assert [i.filename for i in infos] == ["manifest.json"] + [f"flows/{f.uuid}.json" for f in flows]
    assert all(stat.S_ISREG(i.external_attr >> 16) for i in infos)
    body = _entries(data)[f"flows/{flows[0].uuid}.json"]
    assert body == flow_to_json(flows[0]).encode()
    manifest = json.loads(_entries(data)["manifest.json"])
    assert manifest["flows"][0]["sha256"] == hashlib.sha256(body).hexdigest()


def test_same_input_gives_the_same_bytes() -> None:
    first = _package()
    connections = _connections()
    # Connection order must not matter either.
    second = build_package(_flows(connections), list(reversed(connections)), INSTANCE, exported_at=WHEN)
    assert first == second
    assert _package() == first
    later = build_package(_flows(connections), connections, INSTANCE, exported_at=datetime(2025, 1, 1))
    assert later != first


def test_export_time_defaults_to_now() -> None:
    connections = _connections()
    before = datetime.now(UTC).replace(microsecond=0)
    package = read_package(build_package(_flows(connections), connections, str(INSTANCE)))
    exported = datetime.fromisoformat(package.manifest.exported_at)
    assert before <= exported <= datetime.now(UTC)


def test_planted_credentials_appear_nowhere_in_the_package() -> None:
    data = _package()
    secrets = [PLANTED_PASSWORD, PLANTED_TOKEN, PLANTED_USER, "unused-secret"]
    for secret in secrets:
        assert secret.encode() not in data
    for name, body in _entries(data).items():
        for secret in secrets:
            assert secret.encode() not in body, f"{secret} leaked into {name}"
    # Not even the name of a secret key: the manifest carries no credentials at all.
    assert "password" not in _entries(data)["manifest.json"].decode()


def test_plain_text_credentials_are_written_and_marked() -> None:
    data = _package(plain_text_credentials=True)
    manifest = read_package(data).manifest
    assert manifest.with_plain_text_credentials is True
    by_name = {c.name: c.credentials for c in manifest.connections}
    assert by_name == {
        "Dev Redshift Conn": [{"username": PLANTED_USER, "password": PLANTED_PASSWORD}],
        "Orders API": [{"token": PLANTED_TOKEN}],
    }
    # Unreferenced connections never travel, not even in plain-text mode.
    assert b"unused-secret" not in _entries(data)["manifest.json"]
    username, secrets = ConnectionSpec.split_credentials(by_name["Dev Redshift Conn"])
    assert (username, secrets) == (PLANTED_USER, {"password": PLANTED_PASSWORD})


def test_building_needs_flows_each_once() -> None:
    with pytest.raises(ValidationFailed, match="at least one flow"):
        build_package([], [], INSTANCE)
    flow = _flows(_connections())[0]
    with pytest.raises(ValidationFailed, match="is given twice"):
        build_package([flow, flow], [], INSTANCE)


def test_importer_can_rewrite_flows_before_storing() -> None:
    package = read_package(_package())
    prod = "fa7e06c0-0143-11e8-8faf-27c0392328c5"
    rewritten = package.map_flows(
        lambda flow: replace_connections(flow, {"b8014610-ce56-11e7-9739-27deec2c3249": prod})
    )
    assert rewritten.flows[0][1].stage("Orders_01").configuration["connection"] == prod
    assert package.flows[0][1].stage("Orders_01").configuration["connection"] != prod


# -- hostile archives ---------------------------------------------------------


def _parts() -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest (as data) and the flow files of a valid package, to be spoiled."""
    entries = _entries(_package())
    manifest = json.loads(entries.pop("manifest.json"))
    return manifest, entries


def _zip(
    entries: list[tuple[str | zipfile.ZipInfo, bytes]], *, compression: int = zipfile.ZIP_DEFLATED
) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on duplicate names; that is the point
        with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
            for name, body in entries:
                archive.writestr(name, body)
    return buffer.getvalue()


def _assemble(
    manifest: dict[str, Any], files: dict[str, bytes], *extra: tuple[str | zipfile.ZipInfo, bytes]
) -> bytes:
    return _zip([("manifest.json", json.dumps(manifest).encode()), *files.items(), *extra])


def _refused(data: bytes, **limits: int) -> PackageInvalid:
    with pytest.raises(PackageInvalid) as err:
        read_package(data, **limits)
    assert isinstance(err.value, ValidationFailed)
    return err.value


def _headers(data: bytes, name: str) -> list[tuple[int, int]]:
    """(header start, name offset) of the local and the central header of ``name``."""
    found = []
    for signature, name_len_at, name_at in ((b"PK\x03\x04", 26, 30), (b"PK\x01\x02", 28, 46)):
        start = data.find(signature)
        while start != -1:
            (length,) = struct.unpack_from("<H", data, start + name_len_at)
            if data[start + name_at : start + name_at + length] == name.encode():
                found.append((start, start + name_at))
            start = data.find(signature, start + 4)
    assert len(found) == 2, f"expected a local and a central header for {name}"
    return found


def _patch(data: bytes, name: str, *, local: tuple[int, str, int], central: tuple[int, str, int]) -> bytes:
    """Overwrite one field (offset, struct format, value) in the local and central headers of ``name``."""
    out = bytearray(data)
    for (start, _), (offset, fmt, value) in zip(_headers(data, name), (local, central), strict=True):
        struct.pack_into(fmt, out, start + offset, value)
    return bytes(out)


def _rename(data: bytes, name: str, new: str, *, local_only: bool = False) -> bytes:
    """Give ``name`` the same-length name ``new`` in its headers (zipfile would not write it)."""
    assert len(new.encode()) == len(name.encode())
    out = bytearray(data)
    for _, at in _headers(data, name)[: 1 if local_only else 2]:
        out[at : at + len(new.encode())] = new.encode()
    return bytes(out)


def _declare_size(data: bytes, name: str, size: int) -> bytes:
    return _patch(data, name, local=(22, "<I", size), central=(24, "<I", size))


def _first_flow(files: dict[str, bytes]) -> str:
    return sorted(files)[0]


@pytest.mark.parametrize("data", [b"", b"hello, not a zip", b"PK\x03\x04" + b"\x00" * 40])
def test_not_a_zip(data: bytes) -> None:
    error = _refused(data)
    assert error.message.startswith("The upload is not a ZIP archive")
    assert "upload that file unchanged" in error.message
    assert error.details["problem"] == "NOT_A_ZIP"


def test_missing_manifest() -> None:
    _, files = _parts()
    error = _refused(_zip(list(files.items())))
    assert error.message.startswith("Package entry 'manifest.json' is missing")
    assert "Export the package from Flowport" in error.message


def test_manifest_that_is_not_json() -> None:
    _, files = _parts()
    error = _refused(_zip([("manifest.json", b"{not json"), *files.items()]))
    assert "Package entry 'manifest.json' is not valid JSON at line 1, column 2" in error.message
    assert error.details["problem"] == "INVALID_JSON"


def test_manifest_with_a_missing_field() -> None:
    manifest, files = _parts()
    del manifest["instance"]
    error = _refused(_assemble(manifest, files))
    assert "manifest.json: invalid manifest" in error.message
    assert "instance: Field required" in error.message


def test_manifest_with_a_duplicate_key() -> None:
    _, files = _parts()
    body = b'{"format": "flowport.package/1", "format": "flowport.package/1"}'
    error = _refused(_zip([("manifest.json", body), *files.items()]))
    assert "key 'format' appears twice in one object" in error.message


def test_unsupported_format_version() -> None:
    manifest, files = _parts()
    manifest["format"] = "flowport.package/9"
    error = _refused(_assemble(manifest, files))
    assert "unsupported package format version (format 'flowport.package/9')" in error.message
    assert "this Flowport reads 'flowport.package/1'" in error.message


def test_manifest_smuggling_credentials_without_the_flag() -> None:
    manifest, files = _parts()
    manifest["connections"][0]["credentials"] = [{"password": "x"}]
    error = _refused(_assemble(manifest, files))
    assert "carry credentials but withPlainTextCredentials is false" in error.message


@pytest.mark.parametrize(
    ("name", "expected", "problem"),
    [
        ("/etc/cron.d/evil", "Package entry '/etc/cron.d/evil' is an absolute path", "ABSOLUTE_PATH"),
        (
            "../evil.json",
            "Package entry '../evil.json' has a '..' component (path traversal)",
            "PATH_TRAVERSAL",
        ),
        (
            "flows/../../evil.json",
            "Package entry 'flows/../../evil.json' has a '..' component (path traversal)",
            "PATH_TRAVERSAL",
        ),
        ("flows\\..\\evil.json", "uses a backslash in its path", "BAD_NAME"),
        (
            "C:/Windows/evil.json",
            "Package entry 'C:/Windows/evil.json' starts with a drive letter",
            "ABSOLUTE_PATH",
        ),
        ("flows/./x.json", "has an empty or '.' path component", "BAD_NAME"),
        ("flows//x.json", "has an empty or '.' path component", "BAD_NAME"),
        (
            "other/",
            "Package entry 'other/' is a directory; the only directories a package may have are flows/ "
            "and pipelines/",
            "UNEXPECTED_DIRECTORY",
        ),
        ("flows/sub/", "is a directory; the only directories", "UNEXPECTED_DIRECTORY"),
        ("other/x.json", "Package entry 'other/x.json' is not a package file", "UNEXPECTED_ENTRY"),
        (
            "flows/sub/x.json",
            "is not a package file; a package holds manifest.json, flows/<uuid>.json and "
            "pipelines/<uuid>.json only",
            "UNEXPECTED_ENTRY",
        ),
        ("README.txt", "is not a package file", "UNEXPECTED_ENTRY"),
    ],
)
def test_hostile_entry_names(name: str, expected: str, problem: str) -> None:
    manifest, files = _parts()
    error = _refused(_assemble(manifest, files, (name, b"{}")))
    assert expected in error.message
    assert "Export the package again from Flowport" in error.message
    assert error.details["problem"] == problem


def test_flows_directory_entry_is_allowed() -> None:
    manifest, files = _parts()
    package = read_package(_assemble(manifest, files, ("flows/", b"")))
    assert len(package.flows) == 2


def test_symlink_entry() -> None:
    manifest, files = _parts()
    link = zipfile.ZipInfo("flows/link.json")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    error = _refused(_assemble(manifest, files, (link, b"/etc/passwd")))
    assert "Package entry 'flows/link.json' is a symbolic link" in error.message
    assert error.details == {"entry": "flows/link.json", "problem": "SYMLINK"}


def test_special_file_entry() -> None:
    manifest, files = _parts()
    fifo = zipfile.ZipInfo("flows/pipe.json")
    fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
    error = _refused(_assemble(manifest, files, (fifo, b"")))
    assert "is a special file" in error.message


def test_duplicate_entry_names() -> None:
    manifest, files = _parts()
    name = _first_flow(files)
    error = _refused(_assemble(manifest, files, (name, files[name])))
    assert f"Package entry '{name}' appears more than once in the ZIP" in error.message
    # A second manifest is just as ambiguous.
    error = _refused(_assemble(manifest, files, ("manifest.json", b"{}")))
    assert "Package entry 'manifest.json' appears more than once" in error.message


def test_too_many_entries() -> None:
    manifest, files = _parts()
    error = _refused(_assemble(manifest, files), max_entries=2)
    assert error.message == (
        "The package has 3 entries; at most 2 are allowed. Export fewer flows per package"
    )
    padding = [(f"flows/pad{i}.json", b"") for i in range(1000)]
    error = _refused(_assemble(manifest, files, *padding))
    assert "The package has 1003 entries; at most 1000 are allowed" in error.message


def test_zip_bomb_entry_over_the_default_limit() -> None:
    # 65 MiB of zeros compress to about 64 KiB.
    manifest, files = _parts()
    data = _assemble(manifest, files, ("flows/bomb.json", b"\x00" * (65 * 1024 * 1024)))
    assert len(data) < 1024 * 1024
    error = _refused(data)
    assert "Package entry 'flows/bomb.json' declares 68157440 bytes once decompressed" in error.message
    assert "at most 67108864 are allowed per entry" in error.message
    assert error.details["problem"] == "ENTRY_TOO_LARGE"


def test_entries_over_the_total_limit() -> None:
    manifest, files = _parts()
    total = sum(len(body) for body in files.values())
    error = _refused(_assemble(manifest, files), max_total_bytes=total)
    assert "The package declares" in error.message
    assert f"at most {total} are allowed" in error.message
    assert error.details["problem"] == "PACKAGE_TOO_LARGE"


def test_lying_header_smaller_than_the_data() -> None:
    # The bomb declares 100 bytes but holds 8 MiB: the limits see 100, reading must not trust it.
    manifest, files = _parts()
    name = _first_flow(files)
    bomb = b" " * (8 * 1024 * 1024)
    files[name] = bomb
    manifest_entry = next(f for f in manifest["flows"] if f["file"] == name)
    manifest_entry["sha256"] = hashlib.sha256(bomb).hexdigest()
    data = _declare_size(_assemble(manifest, files), name, 100)
    error = _refused(data, max_entry_bytes=1024 * 1024)
    assert f"Package entry '{name}' cannot be read: its data does not match its header" in error.message
    assert error.details["problem"] == "ENTRY_CORRUPT"


def test_lying_header_larger_than_the_data() -> None:
    manifest, files = _parts()
    name = _first_flow(files)
    real = len(files[name])
    data = _declare_size(_assemble(manifest, files), name, real + 50)
    error = _refused(data)
    assert f"Package entry '{name}' decompresses to {real} bytes but its header declares {real + 50}" in (
        error.message
    )
    assert error.details["problem"] == "SIZE_MISMATCH"


def test_bytes_are_counted_while_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever zipfile believes, the reader stops at the limit it counts itself.
    manifest, files = _parts()
    name = _first_flow(files)
    data = _assemble(manifest, files)
    real_open = zipfile.ZipFile.open

    def lying_open(self: zipfile.ZipFile, info: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(info, "filename", info) == name:
            return io.BytesIO(b"x" * 5000)
        return real_open(self, info, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", lying_open)
    error = _refused(data, max_entry_bytes=4096)
    assert f"Package entry '{name}' decompresses to more than 4096 bytes" in error.message
    total = len(json.dumps(manifest).encode()) + 4096
    error = _refused(data, max_total_bytes=total)
    assert f"Package entry '{name}' takes the package past {total} decompressed bytes" in error.message


def test_local_header_name_differs_from_the_directory() -> None:
    manifest, files = _parts()
    name = _first_flow(files)
    spoiled = _rename(_assemble(manifest, files), name, name.replace("flows/", "flowz/"), local_only=True)
    error = _refused(spoiled)
    assert f"Package entry '{name}' cannot be read: its data does not match its header" in error.message
    assert error.details["problem"] == "ENTRY_CORRUPT"


def test_nul_character_in_a_name() -> None:
    manifest, files = _parts()
    data = _rename(
        _assemble(manifest, files, ("flows/x.json_.txt", b"{}")), "flows/x.json_.txt", "flows/x.json\x00.txt"
    )
    error = _refused(data)
    assert "Package entry 'flows/x.json\\x00.txt' contains a NUL character in its name" in error.message
    assert error.details["problem"] == "BAD_NAME"


def test_encrypted_entry() -> None:
    manifest, files = _parts()
    name = _first_flow(files)
    data = _patch(_assemble(manifest, files), name, local=(6, "<H", 0x1), central=(8, "<H", 0x1))
    error = _refused(data)
    assert f"Package entry '{name}' is encrypted" in error.message
    assert "without re-zipping it with a password" in error.message


def test_unsupported_compression_method() -> None:
    manifest, files = _parts()
    name = _first_flow(files)
    data = _patch(_assemble(manifest, files), name, local=(8, "<H", 99), central=(10, "<H", 99))
    error = _refused(data)
    assert f"Package entry '{name}' uses compression method 99" in error.message


def test_flow_file_not_listed_in_the_manifest() -> None:
    manifest, files = _parts()
    stray = f"flows/{uuid.uuid4()}.json"
    error = _refused(_assemble(manifest, files, (stray, b"{}")))
    assert f"Package entry '{stray}' is not listed in manifest.json" in error.message
    assert "so that the manifest lists every flow" in error.message


def test_flow_file_listed_but_missing() -> None:
    manifest, files = _parts()
    name = _first_flow(files)
    del files[name]
    error = _refused(_assemble(manifest, files))
    assert f"Package entry '{name}' is listed in manifest.json for flow" in error.message
    assert "but is not in the ZIP" in error.message


def test_checksum_mismatch() -> None:
    manifest, files = _parts()
    name = ORDERS_FILE
    tampered = files[name].replace(b"Dev-Orders", b"Hacked-Orders")
    assert tampered != files[name]
    files[name] = tampered
    error = _refused(_assemble(manifest, files))
    assert f"Package entry '{name}' has sha256" in error.message
    assert "changed or damaged after export" in error.message
    assert error.details["problem"] == "CHECKSUM_MISMATCH"


def _with_flow_body(manifest: dict[str, Any], files: dict[str, bytes], name: str, body: bytes) -> bytes:
    files[name] = body
    next(f for f in manifest["flows"] if f["file"] == name)["sha256"] = hashlib.sha256(body).hexdigest()
    return _assemble(manifest, files)


def test_flow_file_that_is_not_a_flow_document() -> None:
    manifest, files = _parts()
    name = _first_flow(files)
    document = json.loads(files[name])
    del document["name"]
    document["stages"][0]["plugn"] = {}
    error = _refused(_with_flow_body(manifest, files, name, json.dumps(document).encode()))
    assert (
        f"Package entry '{name}' is not a valid flow document: {name}: invalid flow document" in error.message
    )
    assert "name: Field required" in error.message
    assert "stages[0].plugn: unknown key (check its spelling)" in error.message
    assert error.details["problem"] == "INVALID_FLOW"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[1, 2]", "a flow document must be a JSON/YAML object, got list"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
        (b'{"name": NaN}', "'NaN' is not a JSON value"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_flow_file_that_is_not_json_or_not_an_object(body: bytes, expected: str) -> None:
    manifest, files = _parts()
    name = _first_flow(files)
    error = _refused(_with_flow_body(manifest, files, name, body))
    assert f"Package entry '{name}'" in error.message
    assert expected in error.message


def test_flow_file_that_does_not_match_its_manifest_entry() -> None:
    manifest, files = _parts()
    name = _first_flow(files)
    document = json.loads(files[name])
    document["uuid"] = str(uuid.uuid4())
    document["name"] = "Something else"
    error = _refused(_with_flow_body(manifest, files, name, json.dumps(document).encode()))
    assert f"Package entry '{name}' does not match its manifest entry" in error.message
    assert f"uuid '{document['uuid']}' where manifest.json says" in error.message
    assert "name 'Something else' where manifest.json says" in error.message
    assert error.details["problem"] == "FLOW_MISMATCH"
