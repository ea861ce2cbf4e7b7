"""Every built-in stage plugin honours the plugin contract's declarative part."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from flowport.model.flow import StageKind
from flowport.plugins.contract import Destination, ErrorSink, Origin, Processor, StageConfig

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
ENTRY_POINTS: dict[str, str] = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"][
    "flowport.stages"
]


def load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


KINDS = {
    "csv_file_origin": (Origin, StageKind.ORIGIN),
    "json_file_origin": (Origin, StageKind.ORIGIN),
    "parquet_file_origin": (Origin, StageKind.ORIGIN),
    "field_mapper": (Processor, StageKind.PROCESSOR),
    "filter": (Processor, StageKind.PROCESSOR),
    "expression": (Processor, StageKind.PROCESSOR),
    "sql": (Processor, StageKind.PROCESSOR),
    "dedupe": (Processor, StageKind.PROCESSOR),
    "csv_file_destination": (Destination, StageKind.DESTINATION),
    "json_file_destination": (Destination, StageKind.DESTINATION),
    "parquet_file_destination": (Destination, StageKind.DESTINATION),
    "trash": (Destination, StageKind.DESTINATION),
    "discard": (ErrorSink, StageKind.ERROR),
    "write_to_file": (ErrorSink, StageKind.ERROR),
}

# Other stage groups (SQL databases, ...) are tested with their own code.
PLUGINS = {name: load(ENTRY_POINTS[name]) for name in KINDS if name in ENTRY_POINTS}


def test_every_stage_of_this_group_has_its_entry_point() -> None:
    assert set(PLUGINS) == set(KINDS)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_plugin_declares_name_kind_label_description(name: str) -> None:
    cls = PLUGINS[name]
    base, kind = KINDS[name]
    assert issubclass(cls, base)
    assert cls.name == name
    assert cls.kind == kind
    assert cls.label.strip() and cls.description.strip()
    assert cls.__doc__ and cls.__doc__.strip()
    assert issubclass(cls.config_model, StageConfig) and cls.config_model is not StageConfig


def test_labels_are_unique() -> None:
    # Across every entry point that loads: the registry also finds plugins by label.
    loaded = []
    for target in ENTRY_POINTS.values():
        try:
            loaded.append(load(target))
        except ImportError:
            continue  # a stage group still being written
    labels = [cls.label.lower() for cls in loaded]
    assert len(labels) == len(set(labels))
    assert PLUGINS["trash"].label == "Trash" and PLUGINS["write_to_file"].label == "Write to File"


def models_of(model: type[BaseModel]) -> list[type[BaseModel]]:
    """``model`` and the nested configuration models of its list fields."""
    found = [model]
    for field in model.model_fields.values():
        for arg in getattr(field.annotation, "__args__", ()):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                found.extend(models_of(arg))
    return found


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_setting_has_label_and_description(name: str) -> None:
    for model in models_of(PLUGINS[name].config_model):
        for field_name, field in model.model_fields.items():
            assert field.title, f"{model.__name__}.{field_name} has no label"
            assert field.description, f"{model.__name__}.{field_name} has no description"


@pytest.mark.parametrize("name", sorted(KINDS))
def test_config_rejects_unknown_keys(name: str) -> None:
    with pytest.raises(ValidationError, match="no_such_setting"):
        PLUGINS[name].config_model(no_such_setting=1)
