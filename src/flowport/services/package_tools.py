"""Rewriting package files: widen artifact pins (``flowport packages upgrade``)."""

from __future__ import annotations

from datetime import datetime

from flowport.connections.spec import ConnectionSpec
from flowport.model.package import PackageManifest
from flowport.model.pins import PinChange, widen_pins
from flowport.services.package_archive import build_package, read_package

__all__ = ["upgrade_package"]


def _connections(manifest: PackageManifest) -> list[ConnectionSpec]:
    specs = []
    for entry in manifest.connections:
        username, secrets = ConnectionSpec.split_credentials(getattr(entry, "credentials", None) or [])
        specs.append(
            ConnectionSpec(
                uuid=entry.uuid,
                name=entry.name,
                vendor=entry.vendor,
                username=username,
                secrets=secrets,
            )
        )
    return specs


def upgrade_package(data: bytes, version_range: str | None = None) -> tuple[bytes, list[PinChange]]:
    """The package with every exact artifact pin widened to a range, and the list of changes.

    The package is read with every check of an import (a hostile or broken
    archive is refused the same way), the flows are rewritten, and a new
    package is built with fresh checksums, the same exporting instance,
    export time and connection references.
    """
    package = read_package(data)
    manifest = package.manifest
    flows = []
    changes: list[PinChange] = []
    for _, flow in package.flows:
        widened, flow_changes = widen_pins(flow, version_range)
        flows.append(widened)
        changes.extend(flow_changes)
    rebuilt = build_package(
        flows,
        _connections(manifest),
        manifest.instance.uuid,
        plain_text_credentials=manifest.with_plain_text_credentials,
        instance_name=manifest.instance.name,
        exported_at=datetime.fromisoformat(manifest.exported_at.replace("Z", "+00:00")),
    )
    return rebuilt, changes
