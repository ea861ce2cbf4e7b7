"""``flowport datasets deploy``: a datasets module registered on a real server runs on its schedule —
the dataset's load, then its view for the same logical date (the view's template rendered for it)."""

from __future__ import annotations

import json
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from tests.sdk.flowport_server import ADMIN_PASSWORD, Server
from tests.services.test_datasets_e2e import HAWK_ID, HAWK_KEY, ROWS, datahub, datasets_db  # noqa: F401
from typer.testing import CliRunner

from flowport.sdk import Client

runner = CliRunner()


def _module(folder: Path, base_url: str, start: datetime) -> Path:
    path = folder / "deployed_datasets.py"
    path.write_text(
        textwrap.dedent(
            f"""
            from datetime import datetime

            class DeployedOrdersDatasetPipeline:
                table_name = 'deployed_orders'
                source_url = '{base_url}/v4/dataset/omis-dataset'
                target_db = 'deploy_db'
                source_connection = 'deploy_hub'
                start_date = datetime({start.year}, {start.month}, {start.day})
                field_mapping = [
                    ('reference', 'reference', 'character varying(100) PRIMARY KEY'),
                    ('order_status', 'order_status', 'text'),
                    ('completed_on', 'completed_on', 'timestamp with time zone'),
                ]

            class DeployedCompletedViewPipeline:
                view_name = 'deployed_completed'
                dataset_pipeline = DeployedOrdersDatasetPipeline
                fields = [('reference', 'Reference')]
                where_clause = "order_status = 'complete' AND completed_on < '{{{{ ds }}}}'::date"

            class DeployedBrokenViewPipeline:
                view_name = 'broken'
                dataset_pipeline = DeployedOrdersDatasetPipeline
                fields = 'everything'
            """
        )
    )
    return path


def test_a_deployed_module_runs_its_load_then_its_view_on_schedule(
    server: Server,
    admin: Client,
    tmp_path: Path,
    datahub: str,  # noqa: F811
    datasets_db: str,  # noqa: F811
) -> None:
    admin.request(
        "POST",
        "/v4/connections",
        json={
            "name": "deploy_db",
            "vendor": "postgresql",
            "host": "127.0.0.1",
            "port": 5432,
            "params": {"defaultDatabase": datasets_db},
            "credentials": [{"username": "postgres"}],
        },
    )
    admin.request(
        "POST",
        "/v4/connections",
        json={
            "name": "deploy_hub",
            "vendor": "http",
            "host": datahub,
            "credentialType": "hawk",
            "credentials": [{"username": HAWK_ID, "hawk_key": HAWK_KEY}],
        },
    )
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    module = _module(tmp_path, datahub, today - timedelta(days=5))
    login = runner.invoke(
        app_cli(),
        ["login", "--url", server.url, "--user", "admin", "--password-stdin"],
        input=ADMIN_PASSWORD + "\n",
    )
    assert login.exit_code == 0, login.output
    deployed = runner.invoke(app_cli(), ["datasets", "deploy", str(module), "--json"])
    # The broken class is reported (exit 1) and left out; the others are deployed.
    assert deployed.exit_code == 1, deployed.output
    assert "DeployedBrokenViewPipeline.fields must be True" in deployed.stderr
    body = json.loads(deployed.stdout)
    assert [f["name"] for f in body["flows"]] == [
        "DeployedOrdersDatasetPipeline",
        "DeployedCompletedViewPipeline",
    ]
    (pipeline,) = body["pipelines"]
    (schedule,) = body["schedules"]
    yesterday = (today - timedelta(days=1)).date().isoformat()
    # catchup is off (Airflow 3): the next run is for the latest complete day.
    assert schedule["nextLogicalDate"].startswith(yesterday)
    tasks = admin.pipelines.get(pipeline["id"]).document["tasks"]
    assert [(t["name"], t.get("after", [])) for t in tasks] == [
        ("load", []),
        ("DeployedCompletedViewPipeline", ["load"]),
    ]
    # The server's scheduler (in-process) runs it: the load, then the view for the same logical date.
    run = _wait_for_run(admin, schedule["id"])
    assert run["status"] == "Complete", run
    assert run["logicalDate"].startswith(yesterday) and run["parameters"]["ds"] == yesterday
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=datasets_db) as conn:
        loaded = conn.execute("SELECT count(*) FROM deployed_orders").fetchone()
        definition = conn.execute("SELECT pg_get_viewdef('deployed_completed'::regclass)").fetchone()
        in_view = conn.execute("SELECT count(*) FROM deployed_completed").fetchone()
    assert loaded == (len(ROWS),)
    assert definition is not None and yesterday in definition[0]
    assert in_view == (len([r for r in ROWS if r["order_status"] == "complete" and r["completed_on"]]),)
    # Deploying again updates in place: the same ids, no second schedule.
    again = json.loads(runner.invoke(app_cli(), ["datasets", "deploy", str(module), "--json"]).stdout)
    assert [s["id"] for s in again["schedules"]] == [schedule["id"]]
    assert {f["action"] for f in again["flows"]} == {"updated"}


def app_cli() -> Any:
    from flowport.cli.main import app

    return app


def _wait_for_run(client: Client, schedule_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        runs = client.get_json(f"/v4/schedules/{schedule_id}/runs")["data"]
        if runs and runs[0]["status"] in ("Complete", "Failed", "Canceled"):
            return dict(client.get_json(f"/v4/pipelineRuns/{runs[0]['id']}"))
        assert time.monotonic() < deadline, runs
        time.sleep(0.5)
