"""A dbt task runs a real dbt project (a model and a test) against PostgreSQL: dev target, then prod."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from tests.connections.live_servers import PG_HOST, PG_PORT, postgres_database
from tests.launchers import launched_with

from flowport.connections.secrets import SECRET_KEY_ENV
from flowport.services import connections, flow_records, instance, pipelines
from flowport.services.tasks.dbt import DBT_ENV, dbt_executable
from flowport.store.database import DATABASE_URL_ENV


@pytest.fixture(autouse=True)
def _initialized(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (DATABASE_URL_ENV, flow_records.DATA_DIR_ENV, SECRET_KEY_ENV):
        monkeypatch.delenv(name, raising=False)
    if dbt_executable() is None:
        reason = f"dbt is not installed: run `make setup` (it makes .venv-dbt) and set {DBT_ENV}"
        if os.environ.get("FLOWPORT_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    instance.init_instance()
    with launched_with("inline"):
        yield


def _project() -> str:
    folder = flow_records.data_dir() / "analytics"
    (folder / "models").mkdir(parents=True)
    (folder / "dbt_project.yml").write_text(
        "name: analytics\nversion: '1.0'\nconfig-version: 2\nprofile: warehouse\nmodel-paths: [models]\n"
    )
    (folder / "models" / "orders_by_country.sql").write_text(
        "select country, count(*) as orders from {{ source('raw', 'orders') }} group by country\n"
    )
    (folder / "models" / "schema.yml").write_text(
        "version: 2\n"
        "sources:\n  - name: raw\n    schema: public\n    tables: [{name: orders}]\n"
        "models:\n  - name: orders_by_country\n    columns:\n"
        "      - name: country\n        data_tests: [not_null, unique]\n"
    )
    return "analytics"


def test_a_dbt_task_builds_into_the_dev_then_the_prod_schema() -> None:
    role = f"dbt_runner_{uuid.uuid4().hex[:8]}"
    with postgres_database() as database:
        with psycopg.connect(
            host=PG_HOST, port=PG_PORT, user="postgres", dbname=database, autocommit=True
        ) as c:
            c.execute("CREATE TABLE public.orders (id int, country text)")
            c.execute("INSERT INTO public.orders VALUES (1, 'FR'), (2, 'FR'), (3, 'DE')")
            c.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'dbt-s3cret-pw' SUPERUSER")
        try:
            connections.add_connection(
                {
                    "name": "warehouse",
                    "vendor": "postgresql",
                    "host": PG_HOST,
                    "port": PG_PORT,
                    "params": {"defaultDatabase": database},
                    "credentials": [{"username": role, "password": "dbt-s3cret-pw"}],
                }
            )
            project = _project()
            pipeline = pipelines.create_pipeline(
                {
                    "name": "models",
                    "tasks": [
                        {
                            "name": "build",
                            "type": "dbt",
                            "command": "build",
                            "project_dir": project,
                            "targets": {
                                "dev": {"connection": "warehouse", "schema": "dbt_dev"},
                                "prod": {"connection": "warehouse", "schema": "analytics"},
                            },
                            "timeout": 300,
                        }
                    ],
                }
            )
            for target, schema in (("dev", "dbt_dev"), ("prod", "analytics")):
                started = pipelines.start_pipeline(pipeline["id"], overrides={"target": target})
                result = pipelines.get_run(started["id"])
                (task,) = result["tasks"]
                assert result["status"] == "Complete", task["log"][-2000:]
                assert f"schema {schema}" in task["message"]
                # The model ran and its tests passed; the password never shows.
                assert "PASS=3" in task["log"].replace(" ", "") and "dbt-s3cret-pw" not in json.dumps(result)
                with psycopg.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname=database) as c:
                    rows = c.execute(
                        f"SELECT country, orders FROM {schema}.orders_by_country ORDER BY 1"
                    ).fetchall()
                assert rows == [("DE", 1), ("FR", 2)]
            # The profile (with where the password comes from) was temporary: nothing left in the project.
            assert not list((flow_records.data_dir() / project).glob("**/profiles.yml"))
        finally:
            with psycopg.connect(
                host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres", autocommit=True
            ) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                c.execute(f"DROP ROLE IF EXISTS {role}")
