"""Loading and compiling declarative datasets: modules of dataset and view pipeline classes.

One broken class does not block the others. A module is executed one
top-level statement at a time: a ``class`` statement that raises (the seed's
own example misses a comma inside ``field_mapping``) marks that class broken
and the module goes on; any other statement that raises (an ``import``, a
constant) fails the whole module, since what follows may need it. Then each
pipeline class is compiled on its own, and a class that does not compile is
reported with its message while the others compile. Every message starts
with the class name.
"""

from __future__ import annotations
import __future__

import ast
import importlib
import importlib.machinery
import importlib.util
import logging
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType

from flowport.errors import FlowportError, NotFound, ValidationFailed
from flowport.model.datasets import (
    compile_dataset_pipeline,
    compile_view_pipeline,
    compile_view_template,
    default_logical_date,
    find_dataset_classes,
    is_dataset_pipeline,
    is_view_pipeline,
)
from flowport.model.flow import Flow

__all__ = [
    "CompiledDatasets",
    "DatasetDeployment",
    "DatasetModule",
    "compile_class",
    "compile_module",
    "deployment_plan",
    "load_module",
    "now_utc",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetModule:
    """An imported datasets module and the classes whose definition raised (name → message)."""

    module: ModuleType
    broken: dict[str, str] = field(default_factory=dict)
    ref: str = ""  # as the user named it (a path or a dotted name)


@dataclass(frozen=True)
class CompiledDatasets:
    """The flows of a datasets module's classes that compile, and the message of each that does not."""

    flows: dict[str, Flow]
    errors: dict[str, str]

    @property
    def names(self) -> list[str]:
        """Every pipeline of the module, compiled or broken."""
        return [*self.flows, *(name for name in self.errors if name not in self.flows)]


def now_utc() -> datetime:
    """The current time in UTC (schedules run in UTC, as in Airflow)."""
    return datetime.now(UTC)


def _named(name: str, message: str) -> str:
    return message if message.startswith(name) else f"{name}: {message}"


def _line(exc: BaseException, filename: str, default: int) -> int:
    """The line of ``filename`` where ``exc`` was raised (the innermost frame in that file)."""
    line = default
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename and frame.lineno is not None:
            line = frame.lineno
    return line


def _execute(module: ModuleType, filename: str, ref: str) -> dict[str, str]:
    """Run a module's source statement by statement; the class statements that raise, by name."""
    try:
        source = Path(filename).read_bytes()
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise ValidationFailed(f"'{ref}' is not valid Python: {exc.msg} (line {exc.lineno})") from None
    except OSError as exc:
        raise NotFound(f"Datasets module '{ref}' cannot be read: {exc.strerror or exc}") from None
    broken: dict[str, str] = {}
    flags = 0
    namespace = module.__dict__
    for node in tree.body:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = compile(
                ast.Module(body=[node], type_ignores=[]), filename, "exec", flags=flags, dont_inherit=True
            )
        hints = {w.lineno: str(w.message).rsplit("; ", 1)[-1] for w in caught if w.category is SyntaxWarning}
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            for alias in node.names:
                feature = getattr(__future__, alias.name, None)
                flags |= getattr(feature, "compiler_flag", 0)
        try:
            exec(code, namespace)
        except Exception as exc:
            line = _line(exc, filename, node.lineno)
            # Python's own hint for the failing line ("perhaps you missed a comma?").
            hint = f" ({hints[line]})" if line in hints else ""
            if not isinstance(node, ast.ClassDef):
                raise ValidationFailed(
                    f"Importing '{ref}' failed at line {line}: {type(exc).__name__}: {exc}{hint}"
                ) from None
            _log.debug("Class %s of %s failed", node.name, ref, exc_info=True)
            if isinstance(exc, NameError) and exc.name in broken:
                broken[node.name] = f"{node.name} (line {line}): uses {exc.name}, which is broken"
            else:
                broken[node.name] = f"{node.name} (line {line}): {type(exc).__name__}: {exc}{hint}"
            namespace.pop(node.name, None)  # a class of the same name defined earlier is not this one
            continue
        for w in caught:  # the statement ran: its warnings are shown as Python shows them
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return broken


def _load_spec(spec: importlib.machinery.ModuleSpec, name: str, ref: str) -> DatasetModule:
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        if spec.origin and spec.origin.endswith(".py") and spec.has_location:
            broken = _execute(module, spec.origin, ref)
        else:  # compiled or extension modules: all or nothing
            assert spec.loader is not None
            spec.loader.exec_module(module)
            broken = {}
    except FlowportError:
        sys.modules.pop(name, None)
        raise
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ValidationFailed(f"Importing '{ref}' failed: {type(exc).__name__}: {exc}") from None
    return DatasetModule(module, broken, ref)


def load_module(ref: str) -> DatasetModule:
    """Import a datasets module from a file path (``datasets.py``) or a dotted module name."""
    path = Path(ref)
    if ref.endswith(".py") or path.is_file():
        if not path.is_file():
            raise NotFound(f"Datasets module '{ref}' does not exist")
        name = f"flowport_datasets_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ValidationFailed(f"'{ref}' cannot be imported as a Python module")
        # Modules often import sibling modules (the seed's ``constants``).
        folder = str(path.resolve().parent)
        sys.path.insert(0, folder)
        try:
            return _load_spec(spec, name, ref)
        finally:
            sys.path.remove(folder)
    if ref in sys.modules:
        return DatasetModule(sys.modules[ref], ref=ref)
    try:
        found = importlib.util.find_spec(ref)
    except (ImportError, ValueError) as exc:
        raise NotFound(f"Datasets module '{ref}' cannot be imported: {exc}") from None
    except Exception as exc:  # a parent package that raises while importing
        raise ValidationFailed(f"Importing '{ref}' failed: {type(exc).__name__}: {exc}") from None
    if found is None:
        raise NotFound(f"Datasets module '{ref}' cannot be imported: no module named '{ref}'")
    return _load_spec(found, ref, ref)


def compile_class(cls: type, ds: date | None = None, *, now: datetime | None = None) -> Flow:
    """The flow of one dataset or view pipeline class.

    A view pipeline renders its templates for the logical date ``ds``;
    without one, for the logical date of its schedule's last complete
    interval at ``now`` (default: the current time), as Airflow would.
    """
    if is_dataset_pipeline(cls):
        return compile_dataset_pipeline(cls)
    logical = ds if ds is not None else default_logical_date(cls, now or now_utc())
    return compile_view_pipeline(cls, logical)


def compile_module(
    loaded: DatasetModule | ModuleType, ds: date | None = None, *, now: datetime | None = None
) -> CompiledDatasets:
    """Every pipeline of a module as a flow (dataset pipelines first: views read their tables).

    A class that does not compile is reported in ``errors`` and the others
    still compile. Raises :class:`NotFound` when the module has no pipeline
    at all.
    """
    if isinstance(loaded, ModuleType):
        loaded = DatasetModule(loaded, ref=loaded.__name__)
    found = find_dataset_classes(vars(loaded.module))
    if not found and not loaded.broken:
        raise NotFound(
            f"Module '{loaded.ref or loaded.module.__name__}' defines no pipeline: class names must contain "
            "'DatasetPipeline' or 'ViewPipeline' (or subclass flowport.datasets.DatasetPipeline / "
            "ViewPipeline)"
        )
    when = now or now_utc()
    flows: dict[str, Flow] = {}
    errors: dict[str, str] = dict(loaded.broken)
    ordered = sorted(found.items(), key=lambda item: (not is_dataset_pipeline(item[1]), item[0]))
    for name, cls in ordered:
        try:
            flows[name] = compile_class(cls, ds, now=when)
        except FlowportError as exc:
            errors[name] = _named(name, exc.message)
        except Exception as exc:  # user code in a class (a property, a metaclass) raising anything
            _log.debug("Compiling %s failed", name, exc_info=True)
            errors[name] = f"{name}: {type(exc).__name__}: {exc}"
    return CompiledDatasets(flows, errors)


@dataclass(frozen=True)
class DatasetDeployment:
    """What ``flowport datasets deploy`` stores on a server for a datasets module.

    ``flows``: every class that compiles (a view's ``where_clause`` stays a
    template, rendered at each run for its logical date). ``pipelines``: one
    orchestration pipeline per dataset pipeline — its load, then each of its
    views for the same logical date — and one per view whose dataset is not
    in the module. ``schedules``: one per pipeline from its class's
    ``schedule_interval``, ``start_date``, ``end_date`` and ``catchup`` (none
    for ``schedule_interval = None``). ``warnings``: what the user should know.
    """

    flows: dict[str, Flow]
    pipelines: list[dict[str, object]]
    schedules: list[dict[str, object]]
    errors: dict[str, str]
    warnings: list[str]


_INTERVAL_PARAMETERS = {
    "ds": "${ds}",
    "data_interval_start": "${data_interval_start}",
    "data_interval_end": "${data_interval_end}",
}


def _when(value: object) -> str | None:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).isoformat()
    return None


def _schedule_of(cls: type, pipeline: str) -> dict[str, object] | None:
    interval = getattr(cls, "schedule_interval", "@daily")
    if interval is None:
        return None
    body: dict[str, object] = {
        "name": f"{pipeline} schedule",
        "pipeline": pipeline,
        "cron": interval,
        "timezone": "UTC",
        "catchup": bool(getattr(cls, "catchup", False)),
    }
    for key, attribute in (("startDate", "start_date"), ("endDate", "end_date")):
        when = _when(getattr(cls, attribute, None))
        if when is not None:
            body[key] = when
    return body


def deployment_plan(loaded: DatasetModule, *, now: datetime | None = None) -> DatasetDeployment:
    """The flows, pipelines and schedules that deploy a datasets module (see :class:`DatasetDeployment`)."""
    when = now or now_utc()
    found = find_dataset_classes(vars(loaded.module))
    if not found and not loaded.broken:
        raise NotFound(f"Module '{loaded.ref or loaded.module.__name__}' defines no pipeline")
    flows: dict[str, Flow] = {}
    errors: dict[str, str] = dict(loaded.broken)
    warnings_: list[str] = []
    for name, cls in sorted(found.items(), key=lambda item: (not is_dataset_pipeline(item[1]), item[0])):
        try:
            if is_dataset_pipeline(cls):
                flows[name] = compile_dataset_pipeline(cls)
            else:
                flows[name] = compile_view_template(cls, default_logical_date(cls, when))
        except FlowportError as exc:
            errors[name] = _named(name, exc.message)
        except Exception as exc:  # user code raising anything
            errors[name] = f"{name}: {type(exc).__name__}: {exc}"
    pipelines: list[dict[str, object]] = []
    schedules: list[dict[str, object]] = []
    views = {n: c for n, c in found.items() if is_view_pipeline(c) and n in flows}
    placed: set[str] = set()
    for name, cls in found.items():
        if not is_dataset_pipeline(cls) or name not in flows:
            continue
        tasks: list[dict[str, object]] = [{"name": "load", "type": "flow", "flow": name}]
        for view_name, view in sorted(views.items()):
            if getattr(view, "dataset_pipeline", None) is not cls:
                continue
            placed.add(view_name)
            tasks.append(
                {
                    "name": view_name,
                    "type": "flow",
                    "flow": view_name,
                    "after": ["load"],
                    "parameters": dict(_INTERVAL_PARAMETERS),
                }
            )
            if getattr(view, "schedule_interval", "@daily") != getattr(cls, "schedule_interval", "@daily"):
                warnings_.append(
                    f"{view_name} runs after {name} on {name}'s schedule "
                    f"({getattr(cls, 'schedule_interval', '@daily')}), not its own "
                    f"({getattr(view, 'schedule_interval', '@daily')})"
                )
        pipelines.append({"name": name, "description": f"Load {name}, then its views", "tasks": tasks})
        schedule = _schedule_of(cls, name)
        if schedule is not None:
            schedules.append(schedule)
    for view_name, view in sorted(views.items()):
        if view_name in placed:
            continue
        pipelines.append(
            {
                "name": view_name,
                "description": f"View {view_name}",
                "tasks": [
                    {
                        "name": view_name,
                        "type": "flow",
                        "flow": view_name,
                        "parameters": dict(_INTERVAL_PARAMETERS),
                    }
                ],
            }
        )
        schedule = _schedule_of(view, view_name)
        if schedule is not None:
            schedules.append(schedule)
    return DatasetDeployment(flows, pipelines, schedules, errors, warnings_)
