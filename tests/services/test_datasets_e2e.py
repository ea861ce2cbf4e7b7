"""The seed's example pipelines compile and run against a Hawk-signed API into PostgreSQL.

The API is a real HTTP server on loopback that verifies every request's Hawk
signature (mohawk.Receiver) and pages its records with a ``next`` link, as
the seed's Data Hub does.
"""

from __future__ import annotations

import json
import textwrap
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import mohawk
import psycopg
import pytest
from tests.conftest import require_service
from typer.testing import CliRunner

from flowport.cli.main import app
from flowport.services import connections

HAWK_ID, HAWK_KEY = "data-flow", "hawk-S3cret-key-never-shown"
ROWS = [
    {
        "reference": f"ORD-{i:03d}",
        "company": {"name": f"Company {i % 7}"},
        "completed_on": f"2018-01-{(i % 28) + 1:02d}T10:00:00+00:00" if i % 3 else None,
        "delivery_date": f"2018-02-{(i % 28) + 1:02d}",
        "order_status": "complete" if i % 3 else "draft",
        "subtotal": i * 1000,
        "cancellation_reason": None,
    }
    for i in range(1, 24)
]
PAGE = 5


class _DataHub(BaseHTTPRequestHandler):
    requests: list[str] = []
    rejected = 0

    def log_message(self, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        try:
            mohawk.Receiver(
                lambda sender_id: {"id": HAWK_ID, "key": HAWK_KEY, "algorithm": "sha256"},
                self.headers.get("Authorization", ""),
                f"http://{self.headers['Host']}{self.path}",
                "GET",
                content=b"",
                content_type=self.headers.get("Content-Type", ""),
            )
        except Exception:
            type(self).rejected += 1
            self.send_response(401)
            self.end_headers()
            return
        type(self).requests.append(self.path)
        page = int(self.path.partition("page=")[2] or 1) if "page=" in self.path else 1
        chunk = ROWS[(page - 1) * PAGE : page * PAGE]
        has_next = page * PAGE < len(ROWS)
        base = f"http://{self.headers['Host']}/v4/dataset/omis-dataset"
        body = json.dumps(
            {"results": chunk, "next": f"{base}?page={page + 1}" if has_next else None}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def datahub() -> Iterator[str]:
    _DataHub.requests, _DataHub.rejected = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DataHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def datasets_db() -> Iterator[str]:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"fp_datasets_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _module(folder: Path, base_url: str) -> Path:
    (folder / "constants.py").write_text(f"DATAHUB_BASE_URL = {base_url!r}\n")
    path = folder / "omis_datasets.py"
    path.write_text(
        textwrap.dedent(
            """
            from datetime import datetime

            import constants


            class OMISDatasetPipeline:
                table_name = 'omis_dataset'
                source_url = '{}/v4/dataset/omis-dataset'.format(constants.DATAHUB_BASE_URL)
                target_db = 'datasets_db'
                source_connection = 'datahub'
                start_date = datetime.now().replace(day=1)
                # The seed's end_date (2019) is before its start_date (this month): refused now.
                end_date = datetime(2099, 12, 1)
                field_mapping = [
                    ('reference', 'omis_order_reference', 'character varying(100) PRIMARY KEY'),
                    ('company__name', 'company_name', 'character varying(255) NOT NULL'),
                    ('completed_on', 'completion_date', 'timestamp with time zone'),
                    ('delivery_date', 'delivery_date', 'date'),
                    ('order_status', 'order_status', 'text'),
                    ('subtotal', 'subtotal', 'integer'),
                    ('cancellation_reason__name', 'cancellation_reason', 'text'),
                ]


            class CompletedOMISOrderViewPipeline():
                view_name = 'completed_omis_orders'
                dataset_pipeline = OMISDatasetPipeline
                start_date = datetime(2017, 11, 1)
                end_date = datetime(2018, 2, 1)
                catchup = True
                fields = [
                    ('company_name', 'Company Name'),
                    ('subtotal::numeric/100', 'Subtotal'),
                    ('delivery_date', 'Delivery Date'),
                    ('completion_date', 'Completion Date'),
                ]
                where_clause = '''
                    order_status = 'complete' AND
                    date_trunc('month', completion_date)::DATE =
                    date_trunc('month', to_date('{{ ds }}', 'YYYY-MM-DD'));
                '''
                schedule_interval = '@monthly'


            class AllOMISViewPipeline:
                view_name = 'all_omis'
                dataset_pipeline = OMISDatasetPipeline
                fields = True


            class BrokenViewPipeline:
                view_name = 'broken'
                dataset_pipeline = OMISDatasetPipeline
                fields = 'everything'
            """
        )
    )
    return path


def test_seed_pipelines_run_against_a_hawk_api_into_postgresql(
    tmp_path: Path,
    datahub: str,
    datasets_db: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    connections.init_instance()
    connections.add_connection(
        {
            "name": "datasets_db",
            "vendor": "postgresql",
            "host": "127.0.0.1",
            "port": 5432,
            "params": {"defaultDatabase": datasets_db},
            "credentials": [{"username": "postgres"}],
        }
    )
    connections.add_connection(
        {
            "name": "datahub",
            "vendor": "http",
            "host": datahub,
            "credentialType": "hawk",
            "credentials": [{"username": HAWK_ID, "hawk_key": HAWK_KEY}],
        }
    )
    module = _module(tmp_path, datahub)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    compiled = runner.invoke(app, ["datasets", "compile", str(module), "--json"])
    # One broken class: reported (exit 1 for the whole module), the others compiled.
    assert compiled.exit_code == 1, compiled.output
    names = [f["name"] for f in json.loads(compiled.stdout)]
    assert names == ["OMISDatasetPipeline", "AllOMISViewPipeline", "CompletedOMISOrderViewPipeline"]
    assert compiled.stderr.startswith("Error: BrokenViewPipeline.fields must be True")

    result = runner.invoke(app, ["datasets", "run", str(module), "OMISDatasetPipeline", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["status"] == "Complete"
    assert body["stages"]["Load_01"]["input_records"] == len(ROWS)
    assert len(_DataHub.requests) == 5 and _DataHub.rejected == 0  # every page signed and accepted

    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=datasets_db) as conn:
        rows = conn.execute(
            "SELECT omis_order_reference, company_name, subtotal FROM omis_dataset ORDER BY 1"
        ).fetchall()
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'omis_dataset'"
            ).fetchall()
        )
    assert rows[0] == ("ORD-001", "Company 1", 1000) and len(rows) == len(ROWS)
    assert types["completion_date"] == "timestamp with time zone"
    assert types["delivery_date"] == "date"
    # The field_mapping's constraints exist on the target: a PRIMARY KEY, and NOT NULL where declared.
    assert _constraints(datasets_db, "omis_dataset") == {("PRIMARY KEY", "omis_order_reference")}
    assert _not_null(datasets_db, "omis_dataset") == {"omis_order_reference", "company_name"}

    # Running again replaces the table (no duplicates).
    again = runner.invoke(app, ["datasets", "run", str(module), "OMISDatasetPipeline", "--json"])
    assert again.exit_code == 0, again.output

    view = runner.invoke(
        app,
        ["datasets", "run", str(module), "CompletedOMISOrderViewPipeline", "--ds", "2018-01-31", "--json"],
    )
    assert view.exit_code == 0, view.output
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=datasets_db) as conn:
        count = conn.execute("SELECT count(*) FROM omis_dataset").fetchone()
        in_view = conn.execute('SELECT "Company Name", "Subtotal" FROM completed_omis_orders').fetchall()
    assert count == (len(ROWS),)
    expected = [r for r in ROWS if r["order_status"] == "complete" and r["completed_on"]]
    assert len(in_view) == len(expected) > 0

    # fields = True: a view of every dataset column under its own name.
    every = runner.invoke(app, ["datasets", "run", str(module), "AllOMISViewPipeline", "--json"])
    assert every.exit_code == 0, every.output
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=datasets_db) as conn:
        view_columns = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'all_omis' "
                "ORDER BY ordinal_position"
            ).fetchall()
        ]
    assert view_columns == [
        "omis_order_reference",
        "company_name",
        "completion_date",
        "delivery_date",
        "order_status",
        "subtotal",
        "cancellation_reason",
    ]

    # Views depend on the dataset's table now: it still reloads, twice, keeping them and its constraints.
    for _ in range(2):
        reload = runner.invoke(app, ["datasets", "run", str(module), "OMISDatasetPipeline", "--json"])
        assert reload.exit_code == 0, reload.output
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=datasets_db) as conn:
        assert conn.execute("SELECT count(*) FROM all_omis").fetchone() == (len(ROWS),)
        assert len(conn.execute("SELECT * FROM completed_omis_orders").fetchall()) == len(expected)
    assert _constraints(datasets_db, "omis_dataset") == {("PRIMARY KEY", "omis_order_reference")}
    assert _not_null(datasets_db, "omis_dataset") == {"omis_order_reference", "company_name"}
    assert all(HAWK_KEY not in text for text in (compiled.output, result.output, view.output, caplog.text))


def _constraints(database: str, table: str) -> set[tuple[str, str]]:
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=database) as conn:
        rows = conn.execute(
            "SELECT tc.constraint_type, kcu.column_name FROM information_schema.table_constraints tc "
            "JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = tc.constraint_name "
            "AND kcu.table_schema = tc.table_schema AND kcu.table_name = tc.table_name "
            "WHERE tc.table_name = %s AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE')",
            (table,),
        ).fetchall()
    return {(str(kind), str(column)) for kind, column in rows}


def _not_null(database: str, table: str) -> set[str]:
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=database) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND is_nullable = 'NO'",
            (table,),
        ).fetchall()
    return {str(r[0]) for r in rows}
