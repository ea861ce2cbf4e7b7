"""Flow services: load, validate, preview and run flows.

The CLI (and later the API) call these functions; they own the order of
operations (parse → resolve parameters → validate → run) so that every
interface behaves the same.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowport.connections.spec import LOCAL_FILE_VENDORS, ConnectionLookup, ConnectionSpec
from flowport.engine import FlowRun, PreviewStage, RunContext, databases_ahead, preview_flow
from flowport.errors import FlowDocumentError, FlowInvalid, NotFound, ValidationFailed
from flowport.home import instance_home
from flowport.model.document import flow_from_text, flow_to_json, flow_to_yaml
from flowport.model.flow import Flow
from flowport.model.parameters import check_override_names, parameter_values, resolve_flow
from flowport.model.validation import ValidationResult, validate_flow
from flowport.plugins.contract import StageStateStore
from flowport.plugins.file_roots import FileRoots
from flowport.plugins.registry import PluginRegistry

__all__ = [
    "FlowInvalid",
    "databases_ahead",
    "load_flow",
    "plugin_registry",
    "preview",
    "reset_offsets",
    "save_flow",
    "start_run",
    "validate",
]


def plugin_registry() -> PluginRegistry:
    """The plugins of this instance: Flowport's Python environment plus the instance's artifact folders.

    Cached, and discovered again when an artifact is installed or removed
    (by this process or another): see :mod:`flowport.services.artifacts`.
    """
    # Imported here: the artifacts service is not needed to import this module.
    from flowport.services.artifacts import instance_registry

    return instance_registry()


def load_flow(path: str | Path) -> Flow:
    """Read a flow document (JSON or YAML) from a file."""
    file = Path(path)
    if not file.is_file():
        raise NotFound(f"Flow file '{file}' does not exist")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FlowDocumentError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return flow_from_text(text, source=str(file))


def save_flow(flow: Flow, path: str | Path) -> Path:
    """Write a flow as JSON, or YAML when the file name ends in .yaml/.yml."""
    file = Path(path)
    text = flow_to_yaml(flow) if file.suffix in {".yaml", ".yml"} else flow_to_json(flow)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(file)
    return file


def _values(
    flow: Flow,
    overrides: Mapping[str, str] | None,
    parameter_sets: Mapping[str, Mapping[str, str]] | None,
) -> dict[str, str]:
    # A typo in an override must not run the flow with the default silently.
    check_override_names(flow, overrides, parameter_sets)
    return parameter_values(flow, parameter_sets=parameter_sets, overrides=overrides)


def validate(
    flow: Flow,
    *,
    overrides: Mapping[str, str] | None = None,
    parameter_sets: Mapping[str, Mapping[str, str]] | None = None,
    registry: PluginRegistry | None = None,
    file_roots: FileRoots | None = None,
    base_dir: Path | None = None,
) -> ValidationResult:
    """Validate a flow against the installed plugins with the given parameter values.

    With ``file_roots``, every path setting is checked against them
    (``PATH_OUTSIDE_ROOTS``, ``PATH_PROTECTED``), relative paths starting
    at ``base_dir``.
    """
    # The check of a processor's SQL runs on the shared DuckDB database: opened on the other core
    # while the stage plugins are imported and checked.
    databases_ahead(spares=False)
    values = _values(flow, overrides, parameter_sets)
    reg = registry or plugin_registry()
    folder = base_dir or Path.cwd()
    result = validate_flow(flow, reg, values, check_path=_path_check(file_roots, folder))
    return _with_sql_issues(result, flow, values, reg, file_roots, folder)


def _with_sql_issues(
    result: ValidationResult,
    flow: Flow,
    values: Mapping[str, str],
    registry: PluginRegistry,
    file_roots: FileRoots | None,
    base_dir: Path,
) -> ValidationResult:
    """``result`` with the SQL_INVALID issues of a flow that is otherwise valid."""
    if not result.success:
        return result
    from flowport.engine.sql_check import check_sql

    context = RunContext(base_dir=base_dir, file_roots=file_roots or FileRoots())
    issues = check_sql(resolve_flow(flow, values), registry, context)
    return ValidationResult(success=not issues, issues=issues) if issues else result


def _path_check(file_roots: FileRoots | None, base_dir: Path | None) -> Any:
    if file_roots is None:
        return None
    from flowport.services.file_roots import path_check

    return path_check(file_roots, base_dir or Path.cwd())


def _checked(
    flow: Flow,
    overrides: Mapping[str, str] | None,
    parameter_sets: Mapping[str, Mapping[str, str]] | None,
    registry: PluginRegistry,
    file_roots: FileRoots | None = None,
    base_dir: Path | None = None,
) -> Flow:
    # The DuckDB databases of the check and of the run or preview that follows are made on the
    # other core while the stage plugins are imported and checked.
    databases_ahead()
    values = _values(flow, overrides, parameter_sets)
    folder = base_dir or Path.cwd()
    result = validate_flow(flow, registry, values, check_path=_path_check(file_roots, folder))
    result = _with_sql_issues(result, flow, values, registry, file_roots, folder)
    if not result.success:
        raise FlowInvalid(result)
    return resolve_flow(flow, values)


class _StoreLookupOnUse:
    """The instance's connections for a local run, read when a stage first asks for one.

    A flow without connections never touches the store. With a SQLite store
    (the default) a connection is read with ``sqlite3`` alone
    (:mod:`flowport.store.sqlite_read`): importing the store's SQLAlchemy
    models costs about a third of a second, which a destination that opens
    while the origin reads would otherwise wait for before loading a row.
    Anything else (another store, a store not at the current revision, a
    name that matches nothing, a connection to a local database file, whose
    path the file roots must check) goes through
    :class:`~flowport.services.connections.StoreConnectionLookup`.
    """

    def __init__(self) -> None:
        self._lookup: ConnectionLookup | None = None
        self._read: dict[str, ConnectionSpec] = {}
        self._lock = threading.Lock()

    def get(self, ref: str) -> ConnectionSpec:
        with self._lock:
            if ref in self._read:
                return self._read[ref]
            if self._lookup is None:
                spec = _read_from_sqlite_store(ref)
                if spec is not None:
                    self._read[ref] = spec
                    return spec
                from flowport.services.connections import StoreConnectionLookup

                self._lookup = StoreConnectionLookup()
        return self._lookup.get(ref)


def _read_from_sqlite_store(ref: str) -> ConnectionSpec | None:
    """Connection ``ref`` read straight from the instance's SQLite store; None: ask the store's services."""
    # Imported here: a flow of files only never touches the store (tests/cli/test_startup_imports.py).
    from flowport.connections.stored import spec_from_row
    from flowport.store.location import database_url, shipped_head, sqlite_file
    from flowport.store.sqlite_read import read_connection

    home = instance_home()
    path = sqlite_file(database_url(home))
    head = shipped_head() if path is not None else None
    if path is None or head is None:
        return None
    row = read_connection(path, ref, head)
    if row is None or row.vendor in LOCAL_FILE_VENDORS:
        return None
    # What StoreConnectionLookup checks beyond this concerns local files and PostgreSQL stores only.
    return spec_from_row(row, home)


def _resources(connections: ConnectionLookup | None) -> dict[str, Any]:
    # The lookup opens the metadata store only when a stage asks for a
    # connection, so file-only flows run without an initialized instance.
    return {"connections": connections if connections is not None else _StoreLookupOnUse()}


def _stage_state(flow: Flow, base_dir: Path) -> StageStateStore:
    # Imported here: the store costs start-up time that flows without state need not pay (it is
    # opened only when a stage loads or saves its state).
    from flowport.services.stage_state import StoreStageState

    return StoreStageState(flow.uuid, legacy_dir=base_dir)


def reset_offsets(
    flow: Flow,
    position: str,
    *,
    stages: list[str] | None = None,
    overrides: Mapping[str, str] | None = None,
    parameter_sets: Mapping[str, Mapping[str, str]] | None = None,
    base_dir: Path | None = None,
    connections: ConnectionLookup | None = None,
    file_roots: FileRoots | None = None,
    stage_state: StageStateStore | None = None,
) -> list[str]:
    """Move the offsets of the flow's streaming origins (``stages``: only those) to ``position``.

    Returns the names of the origins that were reset.

    Raises:
        NotFound: a named stage is not a streaming origin of the flow. StageError: an origin refused.
    """
    from flowport.engine.plan import build_plan
    from flowport.plugins.contract import Origin

    reg = plugin_registry()
    folder = base_dir or Path.cwd()
    resolved = resolve_flow(flow, _values(flow, overrides, parameter_sets))
    context = RunContext(
        base_dir=folder,
        resources=_resources(connections),
        file_roots=file_roots or FileRoots(),
        stage_state=stage_state or _stage_state(flow, folder),
    )
    planned, _ = build_plan(resolved, reg, context)
    origins = {p.name: p.plugin for p in planned if isinstance(p.plugin, Origin) and p.plugin.streaming}
    unknown = sorted(set(stages or []) - set(origins))
    if unknown:
        raise NotFound(
            f"{', '.join(unknown)}: not a streaming origin of flow '{flow.name}' "
            f"(its streaming origins: {', '.join(sorted(origins)) or 'none'})"
        )
    chosen = [name for name in origins if not stages or name in stages]
    for name in chosen:
        plugin = origins[name]
        plugin.open()
        try:
            plugin.reset(position)
        finally:
            plugin.close()
    return chosen


def preview(
    flow: Flow,
    *,
    rows: int = 10,
    overrides: Mapping[str, str] | None = None,
    parameter_sets: Mapping[str, Mapping[str, str]] | None = None,
    base_dir: Path | None = None,
    registry: PluginRegistry | None = None,
    connections: ConnectionLookup | None = None,
    file_roots: FileRoots | None = None,
) -> list[PreviewStage]:
    """Preview a valid flow on its first ``rows`` records; nothing is written.

    Stages find connections through ``connections`` (default: the instance's
    store) and open files inside ``file_roots`` only (default: unconfined,
    a local preview by the machine's own user).
    """
    if rows < 1:
        raise ValidationFailed(f"Preview needs at least one row, got {rows}")
    reg = registry or plugin_registry()
    folder = base_dir or Path.cwd()
    resolved = _checked(flow, overrides, parameter_sets, reg, file_roots, folder)
    context = RunContext(
        base_dir=folder,
        resources=_resources(connections),
        file_roots=file_roots or FileRoots(),
        # A preview reads where the last run stopped and saves nothing.
        stage_state=_stage_state(flow, folder),
    )
    return preview_flow(resolved, reg, context, rows=rows)


def start_run(
    flow: Flow,
    *,
    overrides: Mapping[str, str] | None = None,
    parameter_sets: Mapping[str, Mapping[str, str]] | None = None,
    base_dir: Path | None = None,
    registry: PluginRegistry | None = None,
    run_id: str | None = None,
    connections: ConnectionLookup | None = None,
    file_roots: FileRoots | None = None,
    stage_state: StageStateStore | None = None,
    resources: Mapping[str, Any] | None = None,
) -> FlowRun:
    """Validate a flow and start running it; raises FlowInvalid when it is not valid.

    Stages find connections through ``connections`` (default: the instance's
    store), open files inside ``file_roots`` only (default: unconfined, a
    local run by the machine's own user), and keep offsets in ``stage_state``
    (default: the instance's store, under the flow's uuid); ``resources``
    adds adapters for the stages (a streaming job's kept SQL connections).
    """
    reg = registry or plugin_registry()
    folder = base_dir or Path.cwd()
    resolved = _checked(flow, overrides, parameter_sets, reg, file_roots, folder)
    context = RunContext(
        base_dir=folder,
        resources={**_resources(connections), **(resources or {})},
        file_roots=file_roots or FileRoots(),
        stage_state=stage_state or _stage_state(flow, folder),
    )
    if run_id:
        context.run_id = run_id
    return FlowRun(resolved, reg, context).start()
