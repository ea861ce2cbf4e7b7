"""Package archives: build the ZIP of a package and read one back, safely, in memory.

:func:`build_package` writes ``manifest.json`` and one ``flows/<uuid>.json``
per flow, byte for byte the same for the same input. :func:`read_package`
treats the upload as hostile: it never extracts to disk, checks every entry
name, type and size before reading anything, counts the bytes it actually
decompresses, and verifies the manifest, the checksums and every flow
document. Any problem is a :class:`PackageInvalid` that names the entry and
says how to fix it; nothing is returned half-checked, so an importer that
stores only after :func:`read_package` returns never stores half a package.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import stat
import uuid as _uuid
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from flowport.connections.spec import ConnectionSpec
from flowport.errors import FlowDocumentError, PipelineDocumentError, ValidationFailed
from flowport.model.catalog import PluginCatalog
from flowport.model.document import flow_from_dict, flow_to_dict, flow_to_json
from flowport.model.flow import Flow
from flowport.model.package import (
    MANIFEST_FILE,
    PACKAGE_FORMAT,
    Package,
    PackageArtifact,
    PackageConnection,
    PackageFlow,
    PackageInstance,
    PackageInvalid,
    PackageManifest,
    PackagePipeline,
    flow_file_name,
    manifest_from_dict,
    pipeline_file_name,
    referenced_artifacts,
    referenced_connections,
)
from flowport.model.pipeline import pipeline_from_dict

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_ENTRY_BYTES",
    "DEFAULT_MAX_TOTAL_BYTES",
    "Package",
    "PackageInvalid",
    "build_package",
    "check_storable",
    "read_package",
]

DEFAULT_MAX_ENTRIES: Final = 1000
DEFAULT_MAX_TOTAL_BYTES: Final = 256 * 1024 * 1024
DEFAULT_MAX_ENTRY_BYTES: Final = 64 * 1024 * 1024

_FLOWS_DIR: Final = "flows/"
_PIPELINES_DIR: Final = "pipelines/"
_FLOW_ENTRY = re.compile(r"^flows/[^/]+\.json$")
_PIPELINE_ENTRY = re.compile(r"^pipelines/[^/]+\.json$")
_DRIVE = re.compile(r"^[A-Za-z]:")
_READ_CHUNK: Final = 64 * 1024
# What zipfile can decompress; anything else is refused before opening it.
_METHODS: Final = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}
_ENCRYPTED_FLAG: Final = 0x1
# Where a ZIP written from the start begins (its first local file header), and
# the record that ends it: 22 bytes, the last two the length of the comment after it.
_LOCAL_HEADER: Final = b"PK\x03\x04"
_END_RECORD: Final = b"PK\x05\x06"
_END_RECORD_SIZE: Final = 22
_REEXPORT: Final = "Export the package again from Flowport and upload the ZIP file unchanged"
# Regular file, rw-r--r--, as written by a Unix host: fixed so the bytes do
# not depend on the exporting machine.
_FILE_ATTR: Final = (stat.S_IFREG | 0o644) << 16


# -- building -------------------------------------------------------------


def build_package(
    flows: Sequence[Flow],
    connections: Iterable[ConnectionSpec],
    instance_uuid: _uuid.UUID | str,
    *,
    plain_text_credentials: bool = False,
    instance_name: str | None = None,
    exported_at: datetime | None = None,
    catalog: PluginCatalog | None = None,
    pipelines: Sequence[Mapping[str, Any]] = (),
) -> bytes:
    """Build the package ZIP of ``flows`` (and orchestration ``pipelines``: their documents).

    The manifest lists each flow with the sha256 of its file, the
    connections the flows refer to (matched by uuid or name among
    ``connections``; others are left out, so the caller may pass all of the
    instance's connections) by ``uuid``, ``name`` and ``vendor`` only, and
    the artifacts the stages use (see
    :func:`flowport.model.package.referenced_artifacts`; ``catalog`` fills in
    unpinned stages). The output is deterministic: the same arguments give
    the same bytes (pass ``exported_at`` to fix the time; it defaults to now).

    Args:
        flows: The flows, in the order the manifest lists them (the first is
            the primary flow of a release).
        connections: Connections that may be referenced; their secrets are
            never written unless ``plain_text_credentials``.
        instance_uuid: The exporting instance.
        plain_text_credentials: Also write each connection's credentials in
            clear and mark the manifest ``withPlainTextCredentials``. Admins
            only: the caller enforces the role.
        instance_name: Optional display name of the exporting instance.
        exported_at: Export time (UTC if naive); also the entries' timestamp.
        catalog: Resolves unpinned stage plugins for the manifest's artifacts.
        pipelines: ``flowport.pipeline/1`` documents travelling with the flows.

    Raises:
        ValidationFailed: no flows, or two flows with the same uuid.
    """
    if not flows and not pipelines:
        raise ValidationFailed("A package needs at least one flow: choose the flows to export")
    seen: set[_uuid.UUID] = set()
    for flow in flows:
        if flow.uuid in seen:
            raise ValidationFailed(
                f"Flow {flow.uuid} ('{flow.name}') is given twice: a package holds each flow once"
            )
        seen.add(flow.uuid)

    when = _utc(exported_at if exported_at is not None else datetime.now(UTC))
    files: list[tuple[str, bytes]] = []
    entries: list[PackageFlow] = []
    references: set[str] = set()
    artifacts: dict[tuple[str, str, str], PackageArtifact] = {}
    for flow in flows:
        name = flow_file_name(flow.uuid)
        body = flow_to_json(flow).encode("utf-8")
        files.append((name, body))
        entries.append(
            PackageFlow(uuid=flow.uuid, name=flow.name, type=flow.type, file=name, sha256=_sha256(body))
        )
        references |= referenced_connections(flow)
        for artifact in referenced_artifacts(flow, catalog):
            artifacts.setdefault((artifact.name, artifact.version or "", artifact.scope or ""), artifact)

    pipeline_entries: list[PackagePipeline] = []
    for document in pipelines:
        name = pipeline_file_name(str(document["name"]))
        body = (json.dumps(dict(document), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        files.append((name, body))
        pipeline_entries.append(PackagePipeline(name=str(document["name"]), file=name, sha256=_sha256(body)))

    manifest = PackageManifest(
        format=PACKAGE_FORMAT,
        exported_at=_iso(when),
        instance=PackageInstance(uuid=_uuid.UUID(str(instance_uuid)), name=instance_name),
        flows=entries,
        connections=_package_connections(connections, references, plain_text_credentials),
        artifacts=[artifacts[key] for key in sorted(artifacts)],
        pipelines=pipeline_entries,
        with_plain_text_credentials=plain_text_credentials,
    )
    manifest_body = (json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    buffer = io.BytesIO()
    stamp = _zip_time(when)
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in [(MANIFEST_FILE, manifest_body), *files]:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = _FILE_ATTR
            archive.writestr(info, body, compresslevel=6)
    return buffer.getvalue()


def _package_connections(
    connections: Iterable[ConnectionSpec], references: set[str], plain_text: bool
) -> list[PackageConnection]:
    wanted = references | {_canonical_uuid(ref) for ref in references}
    chosen: dict[_uuid.UUID, PackageConnection] = {}
    for spec in connections:
        if str(spec.uuid) not in wanted and spec.name not in wanted:
            continue
        credentials = None
        if plain_text:
            # The seed's credentials shape: one object with the user name and every secret.
            item: dict[str, str] = {}
            if spec.username is not None:
                item["username"] = spec.username
            for key in sorted(spec.secrets):
                item[key] = spec.secrets[key].get_secret_value()
            credentials = [item]
        chosen[spec.uuid] = PackageConnection(
            uuid=spec.uuid, name=spec.name, vendor=spec.vendor, credentials=credentials
        )
    # Sorted, so the manifest does not depend on the order the caller listed them in.
    return [chosen[key] for key in sorted(chosen, key=str)]


def _canonical_uuid(ref: str) -> str:
    try:
        return str(_uuid.UUID(ref))
    except ValueError:
        return ref


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    # The API's timestamp shape (seed: 2017-11-21T00:55:50.770Z).
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    # ZIP (DOS) timestamps cover 1980-2107 only.
    if moment.year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    if moment.year > 2107:
        return (2107, 12, 31, 23, 59, 58)
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


# -- reading --------------------------------------------------------------


def read_package(
    data: bytes,
    *,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
) -> Package:
    """Read and check a package ZIP held in memory; nothing touches the disk.

    Checks, in order: the data is a ZIP and nothing but the ZIP (no bytes
    before its first entry or after its end record, which zipfile would
    skip: a package is the file Flowport wrote, not something that merely
    contains it); at most ``max_entries`` entries;
    every entry name is relative, has no ``..``, ``.`` or empty components,
    no backslash, drive letter or NUL; no symlinks or other special files;
    no encrypted entries and only compression methods zipfile supports; the
    only directory is ``flows/`` and the only files are ``manifest.json``
    and ``flows/*.json``; no name twice; declared sizes within
    ``max_entry_bytes`` each and ``max_total_bytes`` together. Then, while
    reading, the bytes actually decompressed are counted against the same
    limits and must equal the declared size (a lying header is caught);
    ``manifest.json`` must be a valid ``flowport.package/1`` manifest; the
    flow files and the manifest's list must match exactly; each file's
    sha256 must match; each must be a valid flow document whose uuid, name
    and type match its manifest entry.

    Raises:
        PackageInvalid: the first problem found, naming the entry and the fix;
            ``details`` holds ``entry`` and a ``problem`` code.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception as exc:  # zipfile raises many types on hostile input; none may become a 500
        raise PackageInvalid(
            f"The upload is not a ZIP archive ({_describe(exc)}). A package is the ZIP file Flowport "
            "exports (GET /v4/flows/{id}/package); upload that file unchanged",
            details={"entry": None, "problem": "NOT_A_ZIP"},
        ) from None
    with archive:
        infos = archive.infolist()
        _check_framing(data, infos)
        _check_entries(infos, max_entries, max_total_bytes, max_entry_bytes)
        reader = _EntryReader(archive, max_total_bytes, max_entry_bytes)
        by_name = {info.filename: info for info in infos}

        manifest_info = by_name.get(MANIFEST_FILE)
        if manifest_info is None:
            raise _refuse(
                MANIFEST_FILE,
                "is missing: every package starts with manifest.json at the top of the ZIP",
                "MANIFEST_MISSING",
                fix="Export the package from Flowport instead of zipping flow files by hand",
            )
        manifest = manifest_from_dict(
            _parse_json(reader.read(manifest_info), MANIFEST_FILE), source=MANIFEST_FILE
        )

        listed = {entry.file for entry in manifest.flows} | {entry.file for entry in manifest.pipelines}
        present = {info.filename for info in infos if not _is_dir(info) and info.filename != MANIFEST_FILE}
        unlisted = sorted(present - listed)
        if unlisted:
            raise _refuse(
                unlisted[0],
                "is not listed in manifest.json"
                + (f" (nor are {len(unlisted) - 1} more flow files)" if len(unlisted) > 1 else ""),
                "ENTRY_NOT_IN_MANIFEST",
                fix="Remove the file or export the package again so that the manifest lists every flow",
            )
        for entry in manifest.flows:
            if entry.file not in present:
                raise _refuse(
                    entry.file,
                    f"is listed in manifest.json for flow '{entry.name}' but is not in the ZIP",
                    "ENTRY_MISSING",
                )

        for pipeline_entry in manifest.pipelines:
            if pipeline_entry.file not in present:
                raise _refuse(
                    pipeline_entry.file,
                    f"is listed in manifest.json for pipeline '{pipeline_entry.name}' but is not in the ZIP",
                    "ENTRY_MISSING",
                )
        flows = [(entry.file, _read_flow(reader, by_name[entry.file], entry)) for entry in manifest.flows]
        pipelines = [
            (entry.file, _read_pipeline(reader, by_name[entry.file], entry)) for entry in manifest.pipelines
        ]
    return Package(manifest=manifest, flows=flows, archive_sha256=_sha256(bytes(data)), pipelines=pipelines)


def _read_pipeline(reader: _EntryReader, info: zipfile.ZipInfo, entry: PackagePipeline) -> dict[str, Any]:
    body = reader.read(info)
    digest = _sha256(body)
    if digest != entry.sha256:
        raise _refuse(
            entry.file,
            f"has sha256 {digest} but manifest.json says {entry.sha256}: the file was changed or "
            "damaged after export",
            "CHECKSUM_MISMATCH",
        )
    data = _parse_json(body, entry.file)
    try:
        pipeline = pipeline_from_dict(data, source=entry.file)
    except PipelineDocumentError as exc:
        raise PackageInvalid(
            f"Package entry {entry.file!r} is not a valid pipeline document: {exc.message}",
            details={"entry": entry.file, "problem": "INVALID_PIPELINE", "errors": exc.details},
        ) from None
    except RecursionError:
        raise _refuse(entry.file, "is nested too deeply to be a pipeline", "INVALID_PIPELINE") from None
    if pipeline.name != entry.name or entry.file != pipeline_file_name(entry.name):
        raise _refuse(
            entry.file,
            f"holds pipeline '{pipeline.name}' where manifest.json says '{entry.name}'",
            "PIPELINE_MISMATCH",
        )
    return dict(data)


def _read_flow(reader: _EntryReader, info: zipfile.ZipInfo, entry: PackageFlow) -> Flow:
    body = reader.read(info)
    digest = _sha256(body)
    if digest != entry.sha256:
        raise _refuse(
            entry.file,
            f"has sha256 {digest} but manifest.json says {entry.sha256}: the file was changed or "
            "damaged after export",
            "CHECKSUM_MISMATCH",
            fix="Export the package again; to change a flow, edit it in Flowport and export it",
        )
    try:
        flow = flow_from_dict(_parse_json(body, entry.file), source=entry.file)
    except FlowDocumentError as exc:
        raise PackageInvalid(
            f"Package entry {entry.file!r} is not a valid flow document: {exc.message}\n"
            "Fix the flow on the exporting instance and export the package again",
            details={"entry": entry.file, "problem": "INVALID_FLOW", "errors": exc.details},
        ) from None
    except RecursionError:
        raise _refuse(entry.file, "is nested too deeply to be a flow document", "INVALID_FLOW") from None
    mismatched = [
        f"{what} {got!r} where manifest.json says {want!r}"
        for what, got, want in (
            ("uuid", str(flow.uuid), str(entry.uuid)),
            ("name", flow.name, entry.name),
            ("type", flow.type, entry.type),
        )
        if got != want
    ]
    if mismatched:
        raise _refuse(
            entry.file,
            "does not match its manifest entry: it has " + "; ".join(mismatched),
            "FLOW_MISMATCH",
        )
    return flow


class _EntryReader:
    """Reads entries while counting the bytes really decompressed.

    The declared sizes were checked already, but a header can lie; the
    count is what protects memory, whatever zipfile trusts.
    """

    def __init__(self, archive: zipfile.ZipFile, max_total_bytes: int, max_entry_bytes: int) -> None:
        self._archive = archive
        self._max_entry = max_entry_bytes
        self._max_total = max_total_bytes
        self._remaining = max_total_bytes

    def read(self, info: zipfile.ZipInfo) -> bytes:
        name = info.filename
        limit = min(self._max_entry, self._remaining)
        chunks: list[bytes] = []
        count = 0
        try:
            with self._archive.open(info) as stream:
                while chunk := stream.read(_READ_CHUNK):
                    count += len(chunk)
                    if count > limit:
                        raise self._over_limit(name, count)
                    chunks.append(chunk)
        except PackageInvalid:
            raise
        except Exception as exc:  # corrupt data, bad CRC, header/directory mismatch, truncated ZIP
            raise _refuse(
                name,
                f"cannot be read: its data does not match its header ({_describe(exc)})",
                "ENTRY_CORRUPT",
            ) from None
        if count != info.file_size:
            raise _refuse(
                name,
                f"decompresses to {count} bytes but its header declares {info.file_size}",
                "SIZE_MISMATCH",
            )
        self._remaining -= count
        return b"".join(chunks)

    def _over_limit(self, name: str, count: int) -> PackageInvalid:
        if count > self._max_entry:
            return _refuse(
                name,
                f"decompresses to more than {self._max_entry} bytes, the limit for one entry "
                "(its header declared less: the archive is damaged or hostile)",
                "ENTRY_TOO_LARGE",
            )
        return _refuse(
            name,
            f"takes the package past {self._max_total} decompressed bytes, the limit for a package "
            "(the headers declared less: the archive is damaged or hostile)",
            "PACKAGE_TOO_LARGE",
        )


def _check_framing(data: bytes, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse bytes before the archive's first entry or after its end record.

    zipfile finds the end record near the end of the data and shifts every
    entry's offset by whatever precedes the archive, so a ZIP with junk (or
    another file) prepended or appended reads as if it were clean.
    ``header_offset`` is the shifted offset: the first entry of a ZIP that
    starts the data is at 0.
    """
    first = min((info.header_offset for info in infos), default=0)
    if first != 0 or not data.startswith(_LOCAL_HEADER if infos else _END_RECORD):
        where = f" (its first entry is at byte {first})" if first > 0 else ""
        raise PackageInvalid(
            f"The upload has data before the ZIP archive begins{where}: it is not the package file "
            f"Flowport exported, or it was changed since. {_REEXPORT}",
            details={"entry": None, "problem": "DATA_BEFORE_ARCHIVE"},
        )
    # zipfile takes the last end-record signature as the end record, and so does this.
    end = data.rfind(_END_RECORD)
    record = data[end : end + _END_RECORD_SIZE] if end >= 0 else b""
    if len(record) != _END_RECORD_SIZE:
        raise PackageInvalid(
            f"The upload's ZIP end record is damaged. {_REEXPORT}",
            details={"entry": None, "problem": "NOT_A_ZIP"},
        )
    comment = int.from_bytes(record[20:22], "little")
    extra = len(data) - (end + _END_RECORD_SIZE + comment)
    if extra > 0:
        raise PackageInvalid(
            f"The upload has {extra} bytes after the end of the ZIP archive: it is not the package file "
            f"Flowport exported, or it was changed since. {_REEXPORT}",
            details={"entry": None, "problem": "DATA_AFTER_ARCHIVE"},
        )
    if extra < 0:
        raise PackageInvalid(
            f"The upload ends {-extra} bytes before its ZIP archive does (the archive comment is cut "
            f"short): the file is truncated. {_REEXPORT}",
            details={"entry": None, "problem": "TRUNCATED_ARCHIVE"},
        )


def _check_entries(
    infos: list[zipfile.ZipInfo], max_entries: int, max_total_bytes: int, max_entry_bytes: int
) -> None:
    """Refuse the archive on names, types and declared sizes alone, before reading any data."""
    if len(infos) > max_entries:
        raise PackageInvalid(
            f"The package has {len(infos)} entries; at most {max_entries} are allowed. "
            "Export fewer flows per package",
            details={"entry": None, "problem": "TOO_MANY_ENTRIES", "entries": len(infos)},
        )
    for info in infos:
        _check_entry(info, max_entry_bytes)
    duplicates = sorted(name for name, n in Counter(i.filename for i in infos).items() if n > 1)
    if duplicates:
        raise _refuse(
            duplicates[0],
            "appears more than once in the ZIP; which copy to use would be ambiguous",
            "DUPLICATE_ENTRY",
        )
    total = sum(info.file_size for info in infos)
    if total > max_total_bytes:
        raise PackageInvalid(
            f"The package declares {total} bytes once decompressed; at most {max_total_bytes} are "
            "allowed. Export fewer or smaller flows per package",
            details={"entry": None, "problem": "PACKAGE_TOO_LARGE", "bytes": total},
        )


def _check_entry(info: zipfile.ZipInfo, max_entry_bytes: int) -> None:
    # orig_filename is the name as stored: zipfile cuts filename at a NUL.
    raw = info.orig_filename
    name = info.filename
    if "\x00" in raw:
        raise _refuse(raw, "contains a NUL character in its name", "BAD_NAME")
    if not raw:
        raise _refuse(raw, "has an empty name", "BAD_NAME")
    if "\\" in raw:
        raise _refuse(raw, "uses a backslash in its path; ZIP paths use '/' only", "BAD_NAME")
    if raw.startswith("/"):
        raise _refuse(raw, "is an absolute path; package entries are relative", "ABSOLUTE_PATH")
    if _DRIVE.match(raw):
        raise _refuse(raw, "starts with a drive letter; package entries are relative", "ABSOLUTE_PATH")
    parts = raw.split("/")
    if ".." in parts:
        raise _refuse(raw, "has a '..' component (path traversal)", "PATH_TRAVERSAL")
    if "." in parts or "" in parts[:-1]:
        raise _refuse(raw, "has an empty or '.' path component", "BAD_NAME")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise _refuse(name, "is a symbolic link; packages hold regular files only", "SYMLINK")
    file_type = stat.S_IFMT(mode)
    if file_type and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise _refuse(name, "is a special file (device, pipe or socket), not a regular file", "SPECIAL_FILE")
    if info.flag_bits & _ENCRYPTED_FLAG:
        raise _refuse(
            name,
            "is encrypted; packages are not encrypted (protect them in transit instead)",
            "ENCRYPTED",
            fix="Export the package from Flowport and upload it without re-zipping it with a password",
        )
    if info.compress_type not in _METHODS:
        raise _refuse(
            name,
            f"uses compression method {info.compress_type}; supported: {', '.join(_METHODS.values())}",
            "UNSUPPORTED_COMPRESSION",
        )
    if _is_dir(info):
        if name not in (_FLOWS_DIR, _PIPELINES_DIR):
            raise _refuse(
                name,
                "is a directory; the only directories a package may have are flows/ and pipelines/",
                "UNEXPECTED_DIRECTORY",
            )
        return
    if name != MANIFEST_FILE and not _FLOW_ENTRY.match(name) and not _PIPELINE_ENTRY.match(name):
        raise _refuse(
            name,
            "is not a package file; a package holds manifest.json, flows/<uuid>.json and "
            "pipelines/<uuid>.json only",
            "UNEXPECTED_ENTRY",
        )
    if info.file_size > max_entry_bytes:
        raise _refuse(
            name,
            f"declares {info.file_size} bytes once decompressed; at most {max_entry_bytes} are allowed "
            "per entry",
            "ENTRY_TOO_LARGE",
            fix="Split the flow or raise the import limit",
        )


def _is_dir(info: zipfile.ZipInfo) -> bool:
    return info.filename.endswith("/") or stat.S_ISDIR(info.external_attr >> 16)


def _parse_json(body: bytes, entry: str) -> Any:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _refuse(entry, f"is not UTF-8 text (byte {exc.start})", "INVALID_JSON") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise _refuse(
            entry, f"is not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", "INVALID_JSON"
        ) from None
    except ValueError as exc:
        raise _refuse(entry, f"is not valid JSON: {exc}", "INVALID_JSON") from None
    except RecursionError:
        raise _refuse(entry, "is JSON nested too deeply", "INVALID_JSON") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # With a repeated key, a reviewer's viewer and the importer could see
    # different values; refuse rather than silently keep the last one.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key '{key}' appears twice in one object")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"'{name}' is not a JSON value")


def _refuse(entry: str, problem: str, code: str, *, fix: str = _REEXPORT) -> PackageInvalid:
    return PackageInvalid(
        f"Package entry {entry!r} {problem}. {fix}",
        details={"entry": entry, "problem": code},
    )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_storable(entry: str, flow: Flow) -> None:
    """PackageInvalid for text or numbers a database cannot store faithfully.

    JSON allows a NUL character, an unpaired surrogate (``"\\ud800"``) and
    numbers too large for a float (``1e400`` reads as infinity); PostgreSQL
    refuses all three. Refused here, with the entry named, instead of by the
    database halfway through the import.
    """
    pending: list[Any] = [flow_to_dict(flow)]
    while pending:
        value = pending.pop()
        problem = None
        if isinstance(value, str):
            if "\x00" in value:
                problem = "contains a NUL character"
            else:
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    problem = "contains an unpaired UTF-16 surrogate (not valid Unicode text)"
        elif isinstance(value, float) and not math.isfinite(value):
            problem = "contains a number too large to store"
        elif isinstance(value, Mapping):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list | tuple):
            pending.extend(value)
        if problem:
            raise PackageInvalid(
                f"Package entry {entry!r} {problem}. Fix the flow on the exporting instance and "
                "export the package again",
                details={"entry": entry, "problem": "UNSTORABLE_VALUE"},
            )
