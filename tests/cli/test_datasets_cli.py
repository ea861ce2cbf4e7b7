"""``flowport datasets``: broken classes reported one by one, Airflow's logical date, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from flowport.cli.main import app
from flowport.services import connections
from flowport.services import datasets as service

runner = CliRunner()

# The seed's example as a user copies it: a comma missing inside field_mapping
# (line 12), and start_date (this month) after end_date (2019).
MODULE = '''
from __future__ import annotations

from datetime import datetime


class OMISDatasetPipeline:
    table_name = 'omis_dataset'
    source_url = 'http://datahub.example/v4/dataset/omis-dataset'
    target_db = 'datasets_db'
    field_mapping = [
        ('reference', 'omis_order_reference', 'character varying(100) PRIMARY KEY'),
        ('company__name', 'company_name', 'character varying(255) NOT NULL')
        ('completed_on', 'completion_date', 'timestamp with time zone'),
    ]


class CompletedOMISOrderViewPipeline:
    view_name = 'completed_omis_orders'
    dataset_pipeline = OMISDatasetPipeline
    fields = True


class LateDatasetPipeline:
    table_name = 'late'
    source_url = 'http://datahub.example/late'
    target_db = 'datasets_db'
    start_date = datetime.now().replace(day=1)
    end_date = datetime(2019, 12, 1)
    field_mapping = [('id', 'id', 'integer')]


class OrdersDatasetPipeline:
    table_name = 'orders'
    source_url = 'http://datahub.example/orders'
    target_db = 'datasets_db'
    note: SomethingNotDefinedAnywhere = 'annotations stay unevaluated (from __future__)'
    field_mapping = [
        ('id', 'order_id', 'integer PRIMARY KEY'),
        ('customer__name', 'customer', 'text NOT NULL'),
        ('placed', 'placed', 'date DEFAULT CURRENT_DATE'),
    ]


class MonthlyOrdersViewPipeline:
    view_name = 'monthly_orders'
    dataset_pipeline = OrdersDatasetPipeline
    fields = True
    schedule_interval = '@monthly'
    where_clause = """
        placed >= '{{ data_interval_start.date() }}' AND placed < '{{ data_interval_end.date() }}'
        AND '{{ ds }}' = '{{ macros.ds_format(ds_nodash, '%Y%m%d', '%Y-%m-%d') }}';
    """
'''
GOOD = ["OrdersDatasetPipeline", "MonthlyOrdersViewPipeline"]
BROKEN = ["OMISDatasetPipeline", "CompletedOMISOrderViewPipeline", "LateDatasetPipeline"]


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "datasets.py"
    path.write_text(textwrap.dedent(MODULE).lstrip())
    monkeypatch.chdir(tmp_path)
    # Thursday 3 December 2026, 10:00 UTC: the last complete month is November.
    monkeypatch.setattr(service, "now_utc", lambda: datetime(2026, 12, 3, 10, 0, tzinfo=UTC))
    return path


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    # Whatever happens, the user sees messages, never an exception.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def _error_lines(stderr: str) -> dict[str, str]:
    """``Error: Name ...`` / ``Warning: Name ...`` lines by class name."""
    found = {}
    for line in stderr.splitlines():
        level, _, message = line.partition(": ")
        if level in ("Error", "Warning"):
            found[message.split()[0].rstrip(":")] = line
    return found


def test_compile_reports_each_broken_class_and_still_compiles_the_others(module: Path) -> None:
    result = invoke("datasets", "compile", str(module), "--json")
    # The whole module was asked for and three classes are broken: exit 1, with what did compile.
    assert result.exit_code == 1
    flows = json.loads(result.stdout)
    assert [f["name"] for f in flows] == GOOD
    lines = _error_lines(result.stderr)
    assert sorted(lines) == sorted(BROKEN)
    assert lines["OMISDatasetPipeline"] == (
        "Error: OMISDatasetPipeline (line 12): TypeError: 'tuple' object is not callable "
        "(perhaps you missed a comma?)"
    )
    assert lines["CompletedOMISOrderViewPipeline"] == (
        "Error: CompletedOMISOrderViewPipeline (line 19): uses OMISDatasetPipeline, which is broken"
    )
    assert lines["LateDatasetPipeline"].startswith(
        "Error: LateDatasetPipeline: start_date 2026-12-01T"
    ) and lines["LateDatasetPipeline"].endswith(
        "is after end_date 2019-12-01; the pipeline would never run: move end_date later or remove it"
    )
    assert len(result.stderr.splitlines()) == 3  # one line each


def test_compiled_flows_carry_constraints_keys_and_the_default_logical_date(module: Path) -> None:
    result = invoke("datasets", "compile", str(module), "--json")
    dataset, view = json.loads(result.stdout)
    mapper, load = dataset["stages"][1]["configuration"], dataset["stages"][2]["configuration"]
    assert [f["type"] for f in mapper["fields"]] == [
        "integer PRIMARY KEY",
        "text NOT NULL",
        "date DEFAULT CURRENT_DATE",
    ]
    assert load["keys"] == ["order_id"] and load["mode"] == "replace"
    # No --ds: November 2026, the last complete @monthly interval at 2026-12-03T10:00Z; not today.
    assert view["parameters"] == {"ds": "2026-11-01"}
    [statement] = view["stages"][0]["configuration"]["statements"]
    assert statement == (
        'CREATE OR REPLACE VIEW "monthly_orders" AS SELECT "order_id", "customer", "placed" FROM "orders" '
        "WHERE placed >= '2026-11-01' AND placed < '2026-12-01'\n        AND '2026-11-01' = '2026-11-01'"
    )
    explicit = invoke(
        "datasets", "compile", str(module), "MonthlyOrdersViewPipeline", "--ds", "2018-01-01", "--json"
    )
    [flow] = json.loads(explicit.stdout)
    assert flow["parameters"] == {"ds": "2018-01-01"}
    assert "placed < '2018-02-01'" in flow["stages"][0]["configuration"]["statements"][0]


def test_text_output_shows_the_logical_date_of_views(module: Path) -> None:
    result = invoke("datasets", "compile", str(module), "MonthlyOrdersViewPipeline")
    assert result.exit_code == 0
    assert result.stdout.strip() == "MonthlyOrdersViewPipeline (ds 2026-11-01): View_01 (sql_executor)"


def test_compile_one_class_exits_by_that_class_only(module: Path) -> None:
    good = invoke("datasets", "compile", str(module), "OrdersDatasetPipeline", "--json")
    assert good.exit_code == 0
    assert [f["name"] for f in json.loads(good.stdout)] == ["OrdersDatasetPipeline"]
    # The others are still shown, as warnings.
    assert {name: line.split(":")[0] for name, line in _error_lines(good.stderr).items()} == {
        name: "Warning" for name in BROKEN
    }

    broken = invoke("datasets", "compile", str(module), "LateDatasetPipeline", "--json")
    assert broken.exit_code == 1
    assert json.loads(broken.stdout) == []
    assert _error_lines(broken.stderr)["LateDatasetPipeline"].startswith(
        "Error: LateDatasetPipeline: start_date"
    )

    unknown = invoke("datasets", "compile", str(module), "NoSuchPipeline")
    assert unknown.exit_code == 2
    assert "no pipeline 'NoSuchPipeline'" in unknown.stderr
    assert all(name in unknown.stderr for name in GOOD + BROKEN)


def test_run_a_broken_class_is_one_json_error_and_unknown_is_exit_2(module: Path) -> None:
    broken = invoke("datasets", "run", str(module), "OMISDatasetPipeline", "--json")
    assert broken.exit_code == 1
    assert json.loads(broken.stdout) == {
        "status": "Failed",
        "stages": {},
        "error": {
            "stage": None,
            "message": "OMISDatasetPipeline (line 12): TypeError: 'tuple' object is not callable "
            "(perhaps you missed a comma?)",
        },
    }
    unknown = invoke("datasets", "run", str(module), "Nope")
    assert unknown.exit_code == 2 and "no pipeline 'Nope'" in unknown.stderr


def test_run_a_view_while_other_classes_are_broken(
    module: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWPORT_DATA_DIR", str(tmp_path))
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("CREATE TABLE orders (order_id INTEGER, customer TEXT, placed DATE)")
        conn.execute(
            "INSERT INTO orders VALUES (1, 'a', '2026-10-31'), (2, 'b', '2026-11-01'), "
            "(3, 'c', '2026-11-30'), (4, 'd', '2026-12-01')"
        )
    connections.init_instance()
    connections.add_connection(
        {"name": "datasets_db", "vendor": "duckdb", "params": {"path": str(warehouse)}}
    )

    result = invoke("datasets", "run", str(module), "MonthlyOrdersViewPipeline", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "Complete"
    assert sorted(_error_lines(result.stderr)) == sorted(BROKEN)  # warned about, not blocking
    with duckdb.connect(str(warehouse)) as conn:
        rows = conn.execute("SELECT * FROM monthly_orders ORDER BY order_id").fetchall()
        columns = [d[0] for d in conn.execute("SELECT * FROM monthly_orders").description]
    # fields = True: every dataset column under its own name; November only (the default logical date).
    assert columns == ["order_id", "customer", "placed"]
    assert [r[0] for r in rows] == [2, 3]


def test_a_module_loaded_by_dotted_name_isolates_broken_classes_too(
    module: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "dotted_pkg_for_datasets"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "omis.py").write_text(module.read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    result = invoke("datasets", "compile", "dotted_pkg_for_datasets.omis", "OrdersDatasetPipeline", "--json")
    assert result.exit_code == 0, result.output
    assert [f["name"] for f in json.loads(result.stdout)] == ["OrdersDatasetPipeline"]
    assert "OMISDatasetPipeline (line 12)" in result.stderr


@pytest.mark.parametrize(
    ("source", "message"),
    [
        # The seed's own end_date = datetime(2019, 12, 01) is not Python 3.
        (
            "from datetime import datetime\n\nclass ADatasetPipeline:\n"
            "    end_date = datetime(2019, 12, 01)\n",
            "Error: 'bad.py' is not valid Python: leading zeros in decimal integer literals are not "
            "permitted; use an 0o prefix for octal integers (line 4)",
        ),
        # A statement other than a class fails the module: what follows may need it.
        (
            "import os\nimport constants_that_do_not_exist\n",
            "Error: Importing 'bad.py' failed at line 2: ModuleNotFoundError: "
            "No module named 'constants_that_do_not_exist'",
        ),
        ("x = 1\n", "Error: Module 'bad.py' defines no pipeline: class names must contain 'DatasetPipeline'"),
    ],
)
def test_a_module_that_cannot_load_is_one_line_without_traceback(
    tmp_path: Path, source: str, message: str
) -> None:
    (tmp_path / "bad.py").write_text(source)
    env = {**os.environ, "FLOWPORT_HOME": str(tmp_path / "home"), "COLUMNS": "80"}
    proc = subprocess.run(
        [sys.executable, "-m", "flowport.cli.main", "datasets", "compile", "bad.py"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith(message)
    assert "Traceback" not in proc.stderr


# --- the names before "datasets": flowport.pipelines and `flowport pipelines` -----------------------


def test_old_import_path_warns_once_and_gives_the_same_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    import flowport.datasets
    import flowport.pipelines

    monkeypatch.setattr(flowport.pipelines, "_warned", False)
    with pytest.warns(DeprecationWarning, match=r"flowport\.pipelines is deprecated") as caught:
        from flowport.pipelines import DatasetPipeline, ViewPipeline
    # Attributed to the importing line, not to the import machinery.
    assert [Path(w.filename).name for w in caught] == [Path(__file__).name]
    assert DatasetPipeline is flowport.datasets.DatasetPipeline
    assert ViewPipeline is flowport.datasets.ViewPipeline
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process: a second use does not warn again
        assert flowport.pipelines.ViewPipeline is ViewPipeline
    with pytest.raises(AttributeError):
        _ = flowport.pipelines.Nothing  # type: ignore[attr-defined]


def test_a_spec_file_on_the_old_import_path_compiles_with_one_warning_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flowport.pipelines

    monkeypatch.setattr(flowport.pipelines, "_warned", False)
    spec = tmp_path / "old_spec.py"
    spec.write_text(
        "from flowport.pipelines import DatasetPipeline\n\n\n"
        "class OrdersDatasetPipeline(DatasetPipeline):\n"
        "    table_name = 'orders'\n"
        "    source_url = 'http://datahub.example/orders'\n"
        "    target_db = 'datasets_db'\n"
        "    field_mapping = [('id', 'order_id', 'integer PRIMARY KEY')]\n"
    )
    result = invoke("datasets", "compile", str(spec), "--json")
    assert result.exit_code == 0, result.output
    assert [f["name"] for f in json.loads(result.stdout)] == ["OrdersDatasetPipeline"]
    [line] = result.stderr.splitlines()
    assert line.startswith(f"Warning: {spec}:1: flowport.pipelines is deprecated")


def test_the_old_command_name_now_points_to_datasets(module: Path) -> None:
    # `flowport pipelines` is orchestration now; the dataset commands' old spelling says where they went.
    assert " datasets " in invoke("--help").stdout
    old = invoke("pipelines", "compile", str(module), "OrdersDatasetPipeline")
    assert old.exit_code == 2
    assert "`flowport pipelines compile` is now `flowport datasets compile`" in old.stderr
