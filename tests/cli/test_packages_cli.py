"""`flowport packages upgrade` widens exact pins inside a package file."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from typer.testing import CliRunner

from flowport.cli.main import app
from flowport.model.flow import Flow
from flowport.services.package_archive import build_package, read_package


def _package(tmp_path: Path) -> Path:
    flow = Flow.model_validate(
        {
            "name": "Pinned",
            "stages": [
                {
                    "name": "Src",
                    "plugin": {
                        "name": "csv_file_origin",
                        "artifact": {"name": "flowport-core", "version": "0.1.0", "scope": "SYSTEM"},
                    },
                    "configuration": {"path": "in.csv"},
                },
                {
                    "name": "Out",
                    "plugin": {
                        "name": "trash",
                        "artifact": {"name": "flowport-core", "version": "[0.1.0,1.0.0)", "scope": "SYSTEM"},
                    },
                },
            ],
            "edges": [{"from": "Src", "to": "Out"}],
        }
    )
    path = tmp_path / "pinned.zip"
    path.write_bytes(build_package([flow], [], uuid.uuid4()))
    return path


def test_upgrade_rewrites_exact_pins_and_keeps_a_valid_package(tmp_path: Path) -> None:
    path = _package(tmp_path)
    out = tmp_path / "upgraded.zip"
    result = CliRunner().invoke(app, ["packages", "upgrade", str(path), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["changes"] == [
        {
            "flow": "Pinned",
            "stage": "Src",
            "artifact": "flowport-core",
            "from": "0.1.0",
            "to": "[0.1.0,1.0.0)",
        }
    ]
    [(_, flow)] = read_package(out.read_bytes()).flows  # checksums are valid again
    assert flow.stage("Src").plugin.artifact.version == "[0.1.0,1.0.0)"
    assert read_package(path.read_bytes()).flows[0][1].stage("Src").plugin.artifact.version == "0.1.0"


def test_upgrade_with_an_explicit_range_in_place(tmp_path: Path) -> None:
    path = _package(tmp_path)
    result = CliRunner().invoke(app, ["packages", "upgrade", str(path), "--range", "[0.0.1,10.0.0]"])
    assert result.exit_code == 0, result.output
    [(_, flow)] = read_package(path.read_bytes()).flows
    assert flow.stage("Src").plugin.artifact.version == "[0.0.1,10.0.0]"


def test_upgrade_refuses_a_broken_package(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    result = CliRunner().invoke(app, ["packages", "upgrade", str(bad)])
    assert result.exit_code == 1
    assert bad.read_bytes() == b"not a zip at all"
