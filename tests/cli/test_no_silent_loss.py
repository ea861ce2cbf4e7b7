"""No silent data loss through the CLI: error thresholds, loads that publish nothing, strict parameters."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.connections.live_servers import PG_HOST, PG_PORT, postgres_database
from typer.testing import CliRunner

from flowport.cli.main import app

runner = CliRunner()

CSV = "id,total\n1,10\n2,x\n3,30\n4,y\n5,50\n6,60\n7,70\n8,80\n9,90\n10,100\n"
BAD_EVERYWHERE = "id,total\n1,a\n2,b\n"


def _flow(target: dict[str, Any], **configuration: Any) -> dict[str, Any]:
    return {
        "name": "Loader",
        "configuration": configuration,
        "parameters": {"min_total": "0"},
        "error_stage": {"plugin": {"name": "write_to_file"}, "configuration": {"directory": "errors"}},
        "stages": [
            {"name": "Orders_01", "plugin": {"name": "csv_file_origin"}, "configuration": {"path": "in.csv"}},
            {
                "name": "Types_01",
                "plugin": {"name": "field_mapper"},
                "configuration": {
                    "fields": [
                        {"source": "id", "target": "id", "type": "integer"},
                        {"source": "total", "target": "total", "type": "integer"},
                    ]
                },
            },
            {
                "name": "Filter_01",
                "plugin": {"name": "filter"},
                "configuration": {"condition": "total >= ${min_total}"},
            },
            target,
        ],
        "edges": [
            {"from": "Orders_01", "to": "Types_01"},
            {"from": "Types_01", "to": "Filter_01"},
            {"from": "Filter_01", "to": target["name"]},
        ],
    }


_PARQUET = {
    "name": "Out_01",
    "plugin": {"name": "parquet_file_destination"},
    "configuration": {"path": "out.parquet"},
}


def _run(folder: Path, document: dict[str, Any], csv: str, *params: str) -> tuple[int, dict[str, Any]]:
    (folder / "in.csv").write_text(csv, encoding="utf-8")
    (folder / "flow.json").write_text(json.dumps(document), encoding="utf-8")
    args = ["run", str(folder / "flow.json"), "--json"]
    for param in params:
        args += ["--param", param]
    result = runner.invoke(app, args, catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    previous = pa.table({"id": [41, 42], "total": [1, 2]})
    pq.write_table(previous, tmp_path / "out.parquet")
    return tmp_path


def _previous_file_kept(folder: Path) -> bool:
    return pq.read_table(folder / "out.parquet").to_pydict() == {"id": [41, 42], "total": [1, 2]}


def test_a_run_that_rejects_every_record_fails_and_keeps_the_previous_file(workdir: Path) -> None:
    code, result = _run(workdir, _flow(_PARQUET), BAD_EVERYWHERE)
    assert code == 1
    assert result["status"] == "Failed"
    message = result["error"]["message"]
    assert "No record reached a destination" in message and "2 were rejected" in message
    assert "Types_01" in message and "'a'" in message  # the first errors, with their stage
    assert _previous_file_kept(workdir)
    errors = list((workdir / "errors").glob("*.jsonl"))
    assert len(errors) == 1 and len(errors[0].read_text().splitlines()) == 2  # kept for inspection


def test_a_filter_that_drops_everything_fails_unless_told_an_empty_result_is_fine(workdir: Path) -> None:
    clean = "id,total\n1,10\n2,20\n"
    code, result = _run(workdir, _flow(_PARQUET), clean, "min_total=1000")
    assert code == 1 and "read 2 records and every one was filtered out" in result["error"]["message"]
    assert _previous_file_kept(workdir)
    code, result = _run(workdir, _flow(_PARQUET), CSV, "min_total=1000")
    assert "2 were rejected as error records and the other 8 filtered out" in result["error"]["message"]
    code, result = _run(workdir, _flow(_PARQUET, fail_on_no_output=False), clean, "min_total=1000")
    assert code == 0 and result["status"] == "Complete"
    assert pq.read_table(workdir / "out.parquet").num_rows == 0


@pytest.mark.parametrize(
    ("configuration", "fails"),
    [
        ({"max_error_records": 1}, True),
        ({"max_error_records": 2}, False),
        ({"max_error_percent": 10}, True),  # 2 of 10 = 20%
        ({"max_error_percent": 20}, False),
        ({}, False),
    ],
)
def test_error_thresholds_fail_the_run_before_anything_is_published(
    workdir: Path, configuration: dict[str, Any], fails: bool
) -> None:
    code, result = _run(workdir, _flow(_PARQUET, **configuration), CSV)
    if fails:
        assert code == 1 and result["status"] == "Failed"
        assert result["error"]["stage"] == "Types_01"
        assert "rejected 2 of 10 records" in result["error"]["message"]
        assert _previous_file_kept(workdir)
    else:
        assert code == 0 and result["status"] == "Complete"
        assert pq.read_table(workdir / "out.parquet").column("id").to_pylist() == [1, 3, 5, 6, 7, 8, 9, 10]


def test_the_run_as_a_whole_has_the_same_limit(workdir: Path) -> None:
    # The origin rejects one malformed row and the mapper two values: 2 per stage, 3 for the run.
    csv = CSV + '11,"unterminated\n'
    code, result = _run(workdir, _flow(_PARQUET, max_error_records=2), csv)
    assert code == 1
    assert result["error"]["message"].startswith("The run rejected 3 of the 11 records")
    assert _previous_file_kept(workdir)


def test_a_typo_in_a_parameter_is_a_usage_error(workdir: Path) -> None:
    (workdir / "in.csv").write_text(CSV, encoding="utf-8")
    (workdir / "flow.json").write_text(json.dumps(_flow(_PARQUET)), encoding="utf-8")
    for command in ("run", "validate", "preview"):
        result = runner.invoke(app, [command, str(workdir / "flow.json"), "--param", "min_totl=400"])
        assert result.exit_code == 2, (command, result.output)
        assert "did you mean 'min_total'" in result.output
    assert _previous_file_kept(workdir)


def _checksum(dsn: dict[str, Any], table: str) -> tuple[int, str]:
    with psycopg.connect(**dsn) as conn:
        rows = conn.execute(f"SELECT id, total FROM {table} ORDER BY id").fetchall()
    return len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()


def test_an_all_rejected_run_leaves_a_postgresql_replace_target_unchanged(workdir: Path) -> None:
    with postgres_database("flowport_loss") as name:
        dsn = {"host": PG_HOST, "port": PG_PORT, "user": "postgres", "dbname": name}
        with psycopg.connect(**dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE orders (id integer, total integer)")
            conn.execute("INSERT INTO orders VALUES (41, 1), (42, 2)")
        before = _checksum(dsn, "orders")
        assert runner.invoke(app, ["init"]).exit_code == 0
        added = runner.invoke(
            app,
            [
                "connections",
                "add",
                "warehouse",
                "--vendor",
                "postgresql",
                "--host",
                PG_HOST,
                "--port",
                str(PG_PORT),
                "--database",
                name,
                "--user",
                "postgres",
            ],
        )
        assert added.exit_code == 0, added.output
        target = {
            "name": "Load_01",
            "plugin": {"name": "sql_table_destination"},
            "configuration": {"connection": "warehouse", "table": "orders", "mode": "replace"},
        }
        code, result = _run(workdir, _flow(target), BAD_EVERYWHERE)
        assert code == 1 and result["status"] == "Failed"
        assert _checksum(dsn, "orders") == before == (2, before[1])
        code, result = _run(workdir, _flow(target), CSV)
        assert code == 0, result
        assert _checksum(dsn, "orders")[0] == 8


def test_an_unexpected_error_is_one_line_and_its_traceback_goes_to_the_log(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from flowport.cli import main as cli_main
    from flowport.services import flows
    from flowport.services.settings import settings

    def broken(path: Any) -> Any:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(flows, "load_flow", broken)
    monkeypatch.setattr("sys.argv", ["flowport", "validate", "flow.json"])
    with pytest.raises(SystemExit) as exited:
        cli_main.main()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "second line" not in err
    log = settings().home / "logs" / "flowport.log"
    assert "unexpected RuntimeError: disk on fire" in " ".join(err.split())
    assert str(log) in "".join(err.split())  # rich may wrap the long path
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "disk on fire" in text
