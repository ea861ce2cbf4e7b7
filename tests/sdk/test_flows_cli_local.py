"""``flowport flows export|import`` without a server: flow files in, a package out, and back."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowport.cli.main import app
from flowport.services.flows import load_flow

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLOWPORT_URL", "FLOWPORT_TOKEN", "FLOWPORT_PROJECT"):
        monkeypatch.delenv(name, raising=False)


def _flow_file(folder: Path, name: str, uuid: str) -> Path:
    document = {
        "format": "flowport.flow/1",
        "uuid": uuid,
        "name": name,
        "type": "batch",
        "stages": [
            {
                "name": "CSV_01",
                "plugin": {"name": "csv_file_origin", "type": "origin"},
                "configuration": {"path": "in.csv"},
            },
            {"name": "Trash_01", "plugin": {"name": "trash", "type": "destination"}},
        ],
        "edges": [{"from": "CSV_01", "to": "Trash_01"}],
    }
    path = folder / f"{name.replace(' ', '-')}.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_export_files_then_import_into_a_directory(tmp_path: Path) -> None:
    first = _flow_file(tmp_path, "Local One", "11111111-1111-4111-8111-111111111111")
    second = _flow_file(tmp_path, "Local Two", "22222222-2222-4222-8222-222222222222")
    package = tmp_path / "pkg.zip"
    result = runner.invoke(app, ["flows", "export", str(first), str(second), "-o", str(package), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["output"] == str(package)
    with zipfile.ZipFile(package) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert [f["name"] for f in manifest["flows"]] == ["Local One", "Local Two"]
    assert manifest["instance"]["name"] == "local files" and not manifest["withPlainTextCredentials"]

    out = tmp_path / "out"
    imported = runner.invoke(app, ["flows", "import", str(package), "-d", str(out), "--json"])
    assert imported.exit_code == 0, imported.output
    report = json.loads(imported.stdout)
    assert [Path(f["file"]).name for f in report["data"]] == ["Local_One.json", "Local_Two.json"]
    assert load_flow(out / "Local_One.json").model_dump() == load_flow(first).model_dump()

    again = json.loads(runner.invoke(app, ["flows", "import", str(package), "-d", str(out), "--json"]).stdout)
    assert again["skipped"] == ["Local One", "Local Two"] and again["count"] == 0
    dry = runner.invoke(
        app, ["flows", "import", str(package), "-d", str(out), "--conflict-resolution", "rename", "--dry-run"]
    )
    assert dry.exit_code == 0 and "Would write" in dry.stdout
    assert sorted(p.name for p in out.iterdir()) == ["Local_One.json", "Local_Two.json"]
    renamed = runner.invoke(
        app, ["flows", "import", str(package), "-d", str(out), "--conflict-resolution", "rename", "--json"]
    )
    # The same rule as a server's import: a copy named "<name> (1)" with a uuid of its own.
    report = json.loads(renamed.stdout)
    assert [r["to"] for r in report["renamed"]] == ["Local One (1)", "Local Two (1)"]
    assert [Path(f["file"]).name for f in report["data"]] == ["Local_One_1.json", "Local_Two_1.json"]
    copy = load_flow(out / "Local_One_1.json")
    assert copy.name == "Local One (1)" and copy.uuid != load_flow(first).uuid
    assert copy.stages == load_flow(first).stages
    replaced = runner.invoke(
        app, ["flows", "import", str(package), "-d", str(out), "--conflict-resolution", "replace"]
    )
    assert replaced.exit_code == 0 and "Replaced" in replaced.stdout


def test_local_refusals(tmp_path: Path) -> None:
    missing = runner.invoke(
        app, ["flows", "export", str(tmp_path / "nope.json"), "-o", str(tmp_path / "p.zip")]
    )
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    assert runner.invoke(app, ["flows", "export", str(broken), "-o", str(tmp_path / "p.zip")]).exit_code == 1
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    refused = runner.invoke(app, ["flows", "import", str(junk), "-d", str(tmp_path / "out")])
    assert refused.exit_code == 1 and "not a ZIP" in refused.stderr and not (tmp_path / "out").exists()
    assert runner.invoke(app, ["flows", "import", str(tmp_path / "none.zip")]).exit_code == 2
