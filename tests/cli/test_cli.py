"""The CLI: exit codes, --json shapes, and the shipped example end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flowport.cli.main import app

EXAMPLE = Path(__file__).resolve().parents[2] / "src" / "flowport" / "examples" / "orders"
runner = CliRunner()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    for name in ("flow.json", "orders.csv"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_validate_json_on_a_valid_flow(workdir):
    result = invoke("validate", "flow.json", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"success": True, "issues": []}


def test_validate_json_reports_each_issue_on_its_stage(workdir):
    flow = json.loads((workdir / "flow.json").read_text())
    flow["stages"][1]["configuration"]["fields"][0]["type"] = "integr"
    flow["stages"][2]["configuration"]["condition"] = "total >= ${undefined_param}"
    flow["edges"] = [e for e in flow["edges"] if e["to"] != "Parquet_01"]
    (workdir / "bad.json").write_text(json.dumps(flow))
    result = invoke("validate", "bad.json", "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["success"] is False
    where = {(i["instance_name"], i["code"]) for i in body["issues"]}
    assert ("Parquet_01", "NO_INPUT_STREAMS") in where
    assert ("Filter_01", "UNRESOLVED_PARAMETER") in where
    assert any(name == "Types_01" and code.startswith("CONFIG_") for name, code in where)
    for issue in body["issues"]:
        assert set(issue) == {"type", "instance_name", "code", "message"}


def test_validate_malformed_document_is_exit_1_with_json_issue(workdir):
    (workdir / "broken.json").write_text('{"name": "x", "stages": [}')
    result = invoke("validate", "broken.json", "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["success"] is False and body["issues"][0]["code"] == "FLOW_DOCUMENT_INVALID"
    assert "line 1" in body["issues"][0]["message"]


def test_usage_errors_exit_2(workdir):
    assert invoke("validate", "missing.json").exit_code == 2
    assert invoke("run", "flow.json", "--param", "no-equals-sign").exit_code == 2
    assert invoke("preview", "flow.json", "--rows", "0").exit_code == 2


def test_preview_json_shows_records_per_stage_and_writes_nothing(workdir):
    result = invoke("preview", "flow.json", "--rows", "5", "--json")
    assert result.exit_code == 0, result.output
    stages = json.loads(result.stdout)
    names = [s["instance_name"] for s in stages]
    assert names[:3] == ["Orders_01", "Types_01", "Filter_01"]
    orders = stages[0]
    assert len(orders["output"]) == 5 and orders["output"][0]["order_id"] == "1"
    types = stages[1]
    assert types["output"][0]["order_id"] == 1 and types["output"][0]["total"] == 165.30
    assert not (workdir / "out").exists() and not (workdir / "errors").exists()


def test_run_json_with_param_override(workdir):
    result = invoke("run", "flow.json", "--param", "min_total=400", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["status"] == "Complete"
    stages = body["stages"]
    assert stages["Orders_01"]["output_records"] == 199  # one malformed row
    assert stages["Orders_01"]["error_records"] == 1
    assert stages["Types_01"]["error_records"] == 3
    kept = pq.read_table(workdir / "out" / "orders.parquet")
    assert kept.num_rows == stages["Filter_01"]["output_records"]
    assert min(kept.column("total").to_pylist()) >= 400


def test_run_of_an_invalid_flow_is_exit_1_and_writes_nothing(workdir):
    result = invoke("run", "flow.json", "--param", "min_total=", "--json")
    # "total >= " is a broken condition: the filter fails, the run fails, no partial output.
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["status"] == "Failed"
    assert not (workdir / "out" / "orders.parquet").exists()


def test_stages_list_and_schema(workdir):
    listed = json.loads(invoke("stages", "list", "--json").stdout)
    by_name = {s["name"]: s for s in listed}
    for name in ("csv_file_origin", "field_mapper", "filter", "trash", "write_to_file", "discard"):
        assert by_name[name]["artifact"] == "flowport-core" and by_name[name]["scope"] == "SYSTEM"
    assert by_name["trash"]["label"] == "Trash"
    schema = json.loads(invoke("schema", "flow").stdout)
    assert "stages" in schema["properties"] and "edges" in schema["properties"]


def test_example_run_is_the_main_job_end_to_end(tmp_path):
    env = {**os.environ, "FLOWPORT_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "flowport.cli.main", "example", "run", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert body["status"] == "Complete"
    folder = tmp_path / "home" / "examples" / "orders"
    json_lines = (folder / "out" / "orders.jsonl").read_text().splitlines()
    parquet = pq.read_table(folder / "out" / "orders.parquet")
    assert len(json_lines) == parquet.num_rows == body["stages"]["Filter_01"]["output_records"] > 0
    error_files = list((folder / "errors").glob("*.jsonl"))
    assert len(error_files) == 1
    errors = [json.loads(line) for line in error_files[0].read_text().splitlines()]
    assert len(errors) == 4
    by_code = {}
    for e in errors:
        by_code.setdefault(e["code"], []).append(e)
    assert len(by_code["CSV_MALFORMED_ROW"]) == 1 and len(by_code["FIELD_MAPPER_CAST_FAILED"]) == 3
    bad_total = next(e for e in by_code["FIELD_MAPPER_CAST_FAILED"] if e["record"]["order_id"] == "17")
    assert bad_total["stage"] == "Types_01" and "total" in bad_total["message"]
    assert bad_total["record"]["total"] == "12,50x"  # the record as the origin read it
    assert bad_total["policy"] == "ORIGINAL_RECORD"


# The script ends its process without the interpreter's teardown (os._exit), after the exit handlers.
_SCRIPT_PROBE = """
import atexit, sys
marker, args = sys.argv[1], sys.argv[2:]
atexit.register(lambda: open(marker, "w").write("handlers ran"))


class Teardown:
    # Called when the interpreter tears __main__ down (builtins may be gone by then), which the script skips.
    def __del__(self, _open=open, _path=marker + ".teardown"):
        _open(_path, "w").write("torn down")


kept = Teardown()
sys.argv = ["flowport", *args]
from flowport.cli.main import script
script()
"""


@pytest.mark.parametrize(("args", "code", "shown"), [(["--version"], 0, "flowport "), (["nosuch"], 2, "")])
def test_the_script_runs_exit_handlers_flushes_its_output_and_keeps_the_exit_code(
    tmp_path: Path, args: list[str], code: int, shown: str
) -> None:
    marker = tmp_path / "marker"
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT_PROBE, str(marker), *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == code, done.stderr
    assert done.stdout.startswith(shown)
    assert marker.read_text() == "handlers ran"
    assert not (tmp_path / "marker.teardown").exists()  # ended by os._exit: no teardown
