"""Loading, compiling and running declarative dataset and view pipelines."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType

from flowport.errors import NotFound, ValidationFailed
from flowport.model.dataset_pipelines import (
    compile_dataset_pipeline,
    compile_view_pipeline,
    find_pipelines,
    is_dataset_pipeline,
)
from flowport.model.flow import Flow

__all__ = ["compile_module", "compile_pipeline", "load_module", "today_utc"]


def today_utc() -> date:
    """The default logical date: today in UTC (as Airflow, schedules run in UTC)."""
    return datetime.now(UTC).date()


def load_module(ref: str) -> ModuleType:
    """Import a pipelines module from a file path (``pipelines.py``) or a dotted module name."""
    path = Path(ref)
    if ref.endswith(".py") or path.is_file():
        if not path.is_file():
            raise NotFound(f"Pipelines module '{ref}' does not exist")
        name = f"flowport_pipelines_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ValidationFailed(f"'{ref}' cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        # Modules often import sibling modules (the seed's ``constants``).
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ValidationFailed(f"Importing '{ref}' failed: {type(exc).__name__}: {exc}") from exc
        finally:
            sys.path.remove(str(path.resolve().parent))
        return module
    try:
        return importlib.import_module(ref)
    except ImportError as exc:
        raise NotFound(f"Pipelines module '{ref}' cannot be imported: {exc}") from None


def compile_pipeline(cls: type, ds: date | None = None) -> Flow:
    """The flow of one pipeline class (view pipelines need the logical date ``ds``)."""
    if is_dataset_pipeline(cls):
        return compile_dataset_pipeline(cls)
    return compile_view_pipeline(cls, ds or today_utc())


def compile_module(module: ModuleType, ds: date | None = None) -> dict[str, Flow]:
    """Every pipeline of a module as a flow, dataset pipelines first (views read their tables)."""
    found = find_pipelines(vars(module))
    if not found:
        raise NotFound(
            f"Module '{module.__name__}' defines no pipeline: class names must contain 'DatasetPipeline' "
            "or 'ViewPipeline' (or subclass flowport.pipelines.DatasetPipeline / ViewPipeline)"
        )
    ordered = sorted(found.items(), key=lambda item: (not is_dataset_pipeline(item[1]), item[0]))
    return {name: compile_pipeline(cls, ds) for name, cls in ordered}
