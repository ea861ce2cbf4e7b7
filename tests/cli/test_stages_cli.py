"""``flowport stages list|describe``: every plugin whole, with its settings and restrictions."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from flowport.cli.main import app

runner = CliRunner()


def test_list_shows_restrictions_and_never_cuts_a_name() -> None:
    listed = json.loads(runner.invoke(app, ["stages", "list", "--json"]).stdout)
    by_name = {row["name"]: row for row in listed}
    assert by_name["sql_executor"]["restrictions"] == ["execute-sql", "network"]
    assert by_name["filter"]["restrictions"] == []
    narrow = runner.invoke(app, ["stages", "list"], env={"COLUMNS": "60"})
    assert narrow.exit_code == 0
    for name in by_name:
        assert name in narrow.stdout, name  # whole, on one line, never cut with '…'
    assert "…" not in narrow.stdout


def test_describe_prints_settings_defaults_restrictions_and_an_example() -> None:
    described = json.loads(runner.invoke(app, ["stages", "describe", "CSV File", "--json"]).stdout)
    assert described["name"] == "csv_file_origin" and described["restrictions"] == ["read-filesystem"]
    settings = {s["name"]: s for s in described["settings"]}
    assert settings["path"]["required"] is True and settings["path"]["type"] == "string"
    assert settings["delimiter"]["default"] == "," and settings["delimiter"]["required"] is False
    assert described["example"]["plugin"] == {"name": "csv_file_origin"}
    assert described["example"]["configuration"] == {"path": "<string>"}
    unknown = runner.invoke(app, ["stages", "describe", "no_such_stage"])
    assert unknown.exit_code == 2 and "no_such_stage" in unknown.output


def test_shell_completion_can_be_installed() -> None:
    assert "--install-completion" in runner.invoke(app, ["--help"]).stdout
