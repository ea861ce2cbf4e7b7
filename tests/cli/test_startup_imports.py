"""Which heavy libraries a light command imports (issue 16: a CLI that starts instantly).

Each command runs in a fresh interpreter, as the ``flowport`` script runs it,
and reports ``sys.modules`` when it ends. No timing is asserted: the import
set is what makes start-up slow, and it does not depend on the machine.
With those imports inside the command bodies, every command's ``--help``
must still render (Typer resolves the signatures' annotations); each
carries an example (issue 10). ``flowport --help`` imports none of the
sub-commands' modules: it lists them from a table (``flowport.cli.lazy``)
and shows what Typer would show with them all imported.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

# What the probe runs: the CLI's entry point with the given arguments, then the modules it loaded.
_PROBE = """
import json, sys
out, args = sys.argv[1], sys.argv[2:]
sys.argv = ["flowport", *args]
from flowport.cli.main import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
with open(out, "w", encoding="utf-8") as handle:
    json.dump({"code": code, "modules": sorted(sys.modules)}, handle)
"""

# Database drivers, the store, the HTTP client, the API server and the data plane.
SERVER_SIDE = ("sqlalchemy", "alembic", "psycopg", "pymysql", "fastapi", "starlette", "uvicorn")
DATA_PLANE = ("duckdb", "pyarrow")
HTTP_CLIENT = ("httpx",)
# Flowport's own layers that pull those in.
FLOWPORT_HEAVY = (
    "flowport.store",
    "flowport.engine",
    "flowport.sdk",
    "flowport.api",
    "flowport.services.jobs",
    # pydantic-settings alone costs ~0.2 s: the CLI reads the instance's settings only when a command runs.
    "flowport.services.settings",
)
# What no local command needs unless it talks to the store or a server.
NO_STORE = ("flowport.store", "flowport.sdk", "flowport.api")
# What the top-level help needs none of: the models (pydantic; Typer 0.29 converts option values with it,
# the help option exits before), rich's Markdown and syntax renderers (typer.rich_utils imports them).
NOT_FOR_HELP = (
    "sqlalchemy",
    "duckdb",
    "pyarrow",
    "httpx",
    "fastapi",
    "pydantic",
    "markdown_it",
    "rich.markdown",
    "pygments",
    "typer.rich_utils",
)


def _run(
    tmp_path: Path, *args: str, code: int = 0, env: dict[str, str] | None = None
) -> tuple[set[str], str]:
    """The modules ``flowport ARGS`` loaded, and what it printed on stdout."""
    report = tmp_path / f"modules-{len(list(tmp_path.glob('modules-*')))}.json"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(report), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert report.is_file(), done.stderr
    data: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    assert data["code"] == code, (
        f"flowport {' '.join(args)} exited {data['code']}: {done.stdout}{done.stderr}"
    )
    return set(data["modules"]), done.stdout


def _imports(tmp_path: Path, *args: str) -> set[str]:
    return _run(tmp_path, *args)[0]


def _cli_modules(modules: set[str]) -> list[str]:
    return sorted(name for name in modules if name.startswith("flowport.cli."))


def _command_modules() -> set[str]:
    """The modules of the commands and groups the top-level group imports on use."""
    from flowport.cli.main import FlowportGroup

    return {entry.target.partition(":")[0] for entry in FlowportGroup.lazy_commands}


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(name for name in names if name in modules)


@pytest.fixture
def file_flow(tmp_path: Path) -> Path:
    """The shipped example flow (CSV file → processors → JSON and Parquet files): no connection."""
    folder = resources.files("flowport") / "examples" / "orders"
    for name in ("flow.json", "orders.csv"):
        with resources.as_file(folder / name) as source:
            shutil.copyfile(source, tmp_path / name)
    return tmp_path / "flow.json"


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["connections", "add", "--help"],
        ["flows", "run", "--help"],
        ["deployments", "import", "--help"],
        ["server", "--help"],
        ["stages", "--help"],
    ],
    ids=" ".join,
)
def test_help_imports_no_heavy_library(tmp_path: Path, args: list[str]) -> None:
    modules = _imports(tmp_path, *args)
    assert _loaded(modules, SERVER_SIDE + DATA_PLANE + HTTP_CLIENT + FLOWPORT_HEAVY) == []


@pytest.mark.parametrize(("args", "code"), [(["--help"], 0), ([], 2)], ids=["--help", "no arguments"])
def test_top_level_help_imports_no_command_module(tmp_path: Path, args: list[str], code: int) -> None:
    modules, shown = _run(tmp_path, *args, code=code)
    assert _cli_modules(modules) == ["flowport.cli.lazy", "flowport.cli.main"]
    assert _loaded(modules, NOT_FOR_HELP) == []
    assert "connections" in shown and "Connections to databases" in shown


@pytest.mark.parametrize(
    ("args", "module"),
    [(["connections", "--help"], "flowport.cli.connections"), (["login", "--help"], "flowport.cli.flows")],
    ids=" ".join,
)
def test_a_command_imports_its_own_module_only(tmp_path: Path, args: list[str], module: str) -> None:
    modules = _imports(tmp_path, *args)
    assert module in modules
    assert sorted(_command_modules() & modules) == [module]


def test_completing_a_top_level_name_imports_no_command_module(tmp_path: Path) -> None:
    completing = {"_FLOWPORT_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "flowport con"}
    modules, shown = _run(tmp_path, env=completing)
    assert '"connections":"Connections to databases' in shown
    assert _cli_modules(modules) == ["flowport.cli.lazy", "flowport.cli.main"]
    # Below a group, its commands are completed: the group's module is imported then.
    completing["_TYPER_COMPLETE_ARGS"] = "flowport connections "
    modules, shown = _run(tmp_path, env=completing)
    assert '"add":' in shown and "flowport.cli.connections" in modules


def test_the_table_shows_each_command_s_own_help() -> None:
    import importlib
    import inspect

    import typer

    from flowport.cli.main import FlowportGroup, app

    group = typer.main.get_command(app)
    assert isinstance(group, FlowportGroup)
    names = group.list_commands(typer.Context(group))
    assert len(names) == len(set(names))
    for entry in FlowportGroup.lazy_commands:
        module, _, attribute = entry.target.partition(":")
        target = getattr(importlib.import_module(module), attribute)
        assert isinstance(target, typer.Typer) == entry.group, entry.name
        command = group.commands[entry.name]
        own = inspect.cleandoc(command.short_help or command.help or "").split("\n\n")[0].replace("\n", " ")
        assert entry.help == own, entry.name
        assert isinstance(command, typer.core.TyperGroup) == entry.group


@pytest.mark.parametrize("color", [False, True], ids=["plain", "color"])
@pytest.mark.parametrize("columns", ["60", "100", "200"])
def test_top_level_help_is_what_typer_shows(
    monkeypatch: pytest.MonkeyPatch, columns: str, color: bool
) -> None:
    """The help rendered from the table is Typer's own rendering of the group with every command imported."""
    import typer
    from typer import rich_utils

    from flowport.cli.main import app

    monkeypatch.setenv("COLUMNS", columns)
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    monkeypatch.setattr(rich_utils, "MAX_WIDTH", None)
    for name in ("FORCE_COLOR", "NO_COLOR", "GITHUB_ACTIONS", "PY_COLORS", "_TYPER_FORCE_DISABLE_TERMINAL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(rich_utils, "FORCE_TERMINAL", True if color else None)
    if color:
        monkeypatch.setenv("FORCE_COLOR", "1")
        monkeypatch.setenv("TERM", "xterm-256color")

    def shown(render: Any) -> str:
        out = io.StringIO()
        with redirect_stdout(out):
            render()
        return out.getvalue()

    group = typer.main.get_command(app)
    ctx = typer.Context(group, info_name="flowport")
    from_table = shown(lambda: group.format_help(ctx, ctx.make_formatter()))
    for name in group.list_commands(ctx):
        group.get_command(ctx, name)  # every module imported
    by_typer = shown(lambda: rich_utils.rich_format_help(obj=group, ctx=ctx, markup_mode="rich"))
    assert from_table == by_typer
    assert ("\x1b[" in from_table) == color
    assert shown(lambda: group.format_help(ctx, ctx.make_formatter())) == by_typer


def test_stages_list_imports_no_store_nor_server(tmp_path: Path) -> None:
    # The plugin classes are imported to list them: their contracts use pyarrow, which is expected.
    modules = _imports(tmp_path, "stages", "list", "--json")
    assert _loaded(modules, SERVER_SIDE + NO_STORE) == []


def test_stages_list_imports_no_http_client(tmp_path: Path) -> None:
    modules = _imports(tmp_path, "stages", "list", "--json")
    assert _loaded(modules, HTTP_CLIENT) == []


def test_validate_of_a_file_flow_imports_no_store_nor_http(tmp_path: Path, file_flow: Path) -> None:
    # Validation binds the SQL of filters and expressions with DuckDB over Arrow: those are expected.
    modules = _imports(tmp_path, "validate", str(file_flow), "--json")
    assert _loaded(modules, SERVER_SIDE + HTTP_CLIENT + NO_STORE) == []


# What a run or validation of a JSON flow document never uses: the YAML parser, the helpers of the
# commands that talk to a server (`--param` is parsed without them), and with --json the console's
# renderer (rich: the result is one JSON document).
NOT_FOR_A_JSON_FLOW = ("yaml", "flowport.cli.remote", "rich.console")


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_json_flow_needs_no_yaml_parser_nor_server_helpers(
    tmp_path: Path, file_flow: Path, command: str
) -> None:
    modules = _imports(tmp_path, command, str(file_flow), "--param", "min_total=25", "--json")
    assert _loaded(modules, NOT_FOR_A_JSON_FLOW) == []


def test_a_yaml_flow_still_validates(tmp_path: Path, file_flow: Path) -> None:
    import yaml

    document = tmp_path / "flow.yaml"
    document.write_text(yaml.safe_dump(json.loads(file_flow.read_text(encoding="utf-8"))), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "flowport.cli.main", "validate", str(document), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "FLOWPORT_HOME": str(tmp_path / "home")},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["success"] is True


def test_run_of_a_file_flow_opens_no_store(tmp_path: Path, file_flow: Path) -> None:
    # No stage of the example asks for a connection or keeps state: the store (SQLAlchemy and its
    # models, ~0.3 s) is imported only by the first stage that does, in the run's own thread.
    modules, shown = _run(tmp_path, "run", str(file_flow), "--json")
    assert json.loads(shown)["status"] == "Complete"
    assert _loaded(modules, SERVER_SIDE + HTTP_CLIENT + NO_STORE) == []
    assert "flowport.services.connections" not in modules


def _commands() -> list[list[str]]:
    import typer

    from flowport.cli.main import app

    def walk(command: Any, path: list[str]) -> list[list[str]]:
        children = getattr(command, "commands", None)
        if children is None:
            return [path]
        return [found for name, child in sorted(children.items()) for found in walk(child, [*path, name])]

    return walk(typer.main.get_command(app), [])


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_every_help_renders_with_an_example(command: list[str]) -> None:
    # Typer resolves the signatures' annotations when it builds a command: with the heavy imports
    # moved into the command bodies, every signature must still resolve from its module's globals.
    from typer.testing import CliRunner

    from flowport.cli.main import app

    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout and "Example:" in result.stdout


def test_run_that_looks_a_connection_up_imports_no_migration_tool_nor_server(
    tmp_path: Path, file_flow: Path
) -> None:
    # The store is checked to be current before the look-up by its version row alone: Alembic (with Mako
    # and Pygments, ~0.2 s) is for `flowport init`. A local run needs no API server nor HTTP client either.
    _imports(tmp_path, "init", "--json")
    _imports(
        tmp_path, "connections", "add", "out", "--vendor", "sqlite", "--database", str(tmp_path / "out.db")
    )
    flow = json.loads(file_flow.read_text(encoding="utf-8"))
    origin = flow["stages"][0]  # the example's CSV file origin, straight into a table of a SQLite file
    load = {
        "name": "Load",
        "plugin": {"name": "sql_table_destination"},
        "configuration": {"connection": "out", "table": "orders", "mode": "replace"},
    }
    flow["stages"] = [origin, load]
    flow["edges"] = [{"from": origin["name"], "to": "Load"}]
    document = tmp_path / "to_sqlite.json"
    document.write_text(json.dumps(flow), encoding="utf-8")
    modules = _imports(tmp_path, "run", str(document), "--json")
    assert "flowport.services.connections" in modules  # the look-up did happen
    assert _loaded(modules, ("alembic", "mako", "fastapi", "starlette", "uvicorn", "flowport.api")) == []
    assert _loaded(modules, (*HTTP_CLIENT, "flowport.sdk")) == []
