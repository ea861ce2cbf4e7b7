"""Declarative dataset and view pipelines, compiled to flows.

The classes of the seed (``dataset-pipelines-airflow.txt``) work as written
there: a class whose name contains ``DatasetPipeline`` and that has
``table_name``, ``source_url``, ``target_db`` and ``field_mapping`` is a
dataset pipeline; a class whose name contains ``ViewPipeline`` and that has
``view_name``, ``dataset_pipeline`` and ``fields`` is a view pipeline.
Subclassing :class:`DatasetPipeline` or :class:`ViewPipeline` is optional
and only documents the attributes.

A dataset pipeline compiles to ``http_api_origin`` (JSON pages with a
``results`` list and a ``next`` link, as the seed's API) → ``field_mapper``
(``field_mapping`` gives source field, column and type; ``a__b`` reads nested
fields) → ``sql_table_destination`` in ``replace`` mode (staging table
swapped in one transaction: the seed's copy-table step, done atomically).
A view pipeline compiles to a ``sql_executor`` that (re)creates the view,
its ``where_clause`` rendered as a Jinja template with ``ds``.

Flowport-specific optional attributes: ``source_connection`` (an ``http``
connection holding the API's credentials, e.g. Hawk), ``records_path``
(default ``results``), ``next_field`` (default ``next``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import jinja2

from flowport.errors import ValidationFailed
from flowport.model.flow import Flow

__all__ = [
    "DatasetPipeline",
    "ViewPipeline",
    "compile_dataset_pipeline",
    "compile_view_pipeline",
    "find_pipelines",
    "is_dataset_pipeline",
    "is_view_pipeline",
    "split_column_type",
]

_CONSTRAINTS = re.compile(
    r"\s+(PRIMARY\s+KEY|NOT\s+NULL|NULL|UNIQUE|DEFAULT\s+.+|REFERENCES\s+.+|CHECK\s*\(.+\))\s*$",
    re.IGNORECASE,
)


class DatasetPipeline:
    """Optional base of a dataset pipeline (attributes as in the seed)."""

    table_name: str
    source_url: str
    target_db: str
    field_mapping: list[tuple[str, str, str]]
    start_date: datetime | date | None = None
    end_date: datetime | date | None = None
    schedule_interval: str = "@daily"
    source_connection: str | None = None
    records_path: str = "results"
    next_field: str = "next"


class ViewPipeline:
    """Optional base of a view pipeline (attributes as in the seed)."""

    view_name: str
    dataset_pipeline: type
    fields: list[tuple[str, str]]
    where_clause: str = ""
    start_date: datetime | date | None = None
    end_date: datetime | date | None = None
    catchup: bool = False
    schedule_interval: str = "@daily"


def is_dataset_pipeline(obj: Any) -> bool:
    """True for a class that is a dataset pipeline (by base class or by the seed's naming rule)."""
    if not isinstance(obj, type) or obj is DatasetPipeline:
        return False
    return issubclass(obj, DatasetPipeline) or (
        "DatasetPipeline" in obj.__name__ and all(hasattr(obj, a) for a in ("table_name", "field_mapping"))
    )


def is_view_pipeline(obj: Any) -> bool:
    """True for a class that is a view pipeline."""
    if not isinstance(obj, type) or obj is ViewPipeline:
        return False
    return issubclass(obj, ViewPipeline) or (
        "ViewPipeline" in obj.__name__ and all(hasattr(obj, a) for a in ("view_name", "dataset_pipeline"))
    )


def find_pipelines(namespace: dict[str, Any]) -> dict[str, type]:
    """The dataset and view pipeline classes in a module's namespace, by class name."""
    return {
        name: obj
        for name, obj in namespace.items()
        if (is_dataset_pipeline(obj) or is_view_pipeline(obj)) and not name.startswith("_")
    }


def split_column_type(declared: str) -> tuple[str, list[str]]:
    """``'character varying(100) PRIMARY KEY'`` → ``('character varying(100)', ['PRIMARY KEY'])``."""
    text = declared.strip()
    constraints: list[str] = []
    while True:
        match = _CONSTRAINTS.search(text)
        if not match:
            break
        constraints.insert(0, " ".join(match.group(1).split()).upper())
        text = text[: match.start()].rstrip()
    return text, constraints


def _required(cls: type, names: Iterable[str]) -> None:
    missing = [n for n in names if not hasattr(cls, n)]
    if missing:
        raise ValidationFailed(f"{cls.__name__} has no {', '.join(missing)}: add these class attributes")


def _when(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, date | datetime) else None


def _schedule(cls: type) -> dict[str, Any]:
    return {
        "interval": getattr(cls, "schedule_interval", "@daily"),
        "start_date": _when(getattr(cls, "start_date", None)),
        "end_date": _when(getattr(cls, "end_date", None)),
        "catchup": bool(getattr(cls, "catchup", False)),
        "timezone": "UTC",
    }


def compile_dataset_pipeline(cls: type) -> Flow:
    """The flow a dataset pipeline class stands for."""
    _required(cls, ("table_name", "source_url", "target_db", "field_mapping"))
    fields: list[dict[str, Any]] = []
    keys: list[str] = []
    for i, entry in enumerate(cls.field_mapping):  # type: ignore[attr-defined]
        if not isinstance(entry, tuple | list) or len(entry) not in (2, 3):
            raise ValidationFailed(
                f"{cls.__name__}.field_mapping[{i}] must be (source field, column, type and constraints), "
                f"got {entry!r}"
            )
        source, column = str(entry[0]), str(entry[1])
        declared = str(entry[2]) if len(entry) == 3 else ""
        column_type, constraints = split_column_type(declared) if declared else ("", [])
        spec: dict[str, Any] = {"source": source, "target": column}
        if column_type:
            spec["type"] = column_type
        fields.append(spec)
        if "PRIMARY KEY" in constraints:
            keys.append(column)
    origin: dict[str, Any] = {
        "url": str(cls.source_url),  # type: ignore[attr-defined]
        "records_path": getattr(cls, "records_path", "results"),
        "pagination": {"style": "next_link", "next_field": getattr(cls, "next_field", "next")},
    }
    if getattr(cls, "source_connection", None):
        origin["connection"] = cls.source_connection  # type: ignore[attr-defined]
    destination: dict[str, Any] = {
        "connection": str(cls.target_db),  # type: ignore[attr-defined]
        "table": str(cls.table_name),  # type: ignore[attr-defined]
        "mode": "replace",
    }
    if keys:
        destination["keys"] = keys
    return Flow.model_validate(
        {
            "uuid": _stable_uuid(cls),
            "name": cls.__name__,
            "description": f"Dataset pipeline: {cls.source_url} -> {cls.target_db}.{cls.table_name}",  # type: ignore[attr-defined]
            "configuration": {"schedule": _schedule(cls)},
            "stages": [
                {
                    "name": "Fetch_01",
                    "label": "Fetch API pages",
                    "plugin": {"name": "http_api_origin"},
                    "configuration": origin,
                },
                {
                    "name": "Map_01",
                    "label": "Map fields",
                    "plugin": {"name": "field_mapper"},
                    "configuration": {"fields": fields},
                },
                {
                    "name": "Load_01",
                    "label": f"Load {cls.table_name}",  # type: ignore[attr-defined]
                    "plugin": {"name": "sql_table_destination"},
                    "configuration": destination,
                },
            ],
            "edges": [{"from": "Fetch_01", "to": "Map_01"}, {"from": "Map_01", "to": "Load_01"}],
        }
    )


def _stable_uuid(cls: type) -> str:
    # The same class compiles to the same flow uuid, so packages and
    # deployments recognise it across compiles.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"flowport:pipeline:{cls.__name__}"))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def compile_view_pipeline(cls: type, ds: date) -> Flow:
    """The flow that (re)creates a view pipeline's view for the logical date ``ds``."""
    _required(cls, ("view_name", "dataset_pipeline", "fields"))
    dataset = cls.dataset_pipeline  # type: ignore[attr-defined]
    _required(dataset, ("table_name", "target_db"))
    columns = []
    for i, entry in enumerate(cls.fields):  # type: ignore[attr-defined]
        if not isinstance(entry, tuple | list) or len(entry) != 2:
            raise ValidationFailed(f"{cls.__name__}.fields[{i}] must be (expression, alias), got {entry!r}")
        columns.append(f"{entry[0]} AS {_quote(str(entry[1]))}")
    try:
        where = (
            jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
            .from_string(getattr(cls, "where_clause", "") or "")
            .render(ds=ds.isoformat(), ds_nodash=ds.strftime("%Y%m%d"), params=getattr(cls, "params", {}))
            .strip()
            .rstrip(";")
            .strip()
        )
    except jinja2.TemplateError as exc:
        raise ValidationFailed(f"{cls.__name__}.where_clause is not a valid template: {exc}") from None
    statement = (
        f"CREATE OR REPLACE VIEW {_quote(str(cls.view_name))} AS SELECT {', '.join(columns)} "  # type: ignore[attr-defined]
        f"FROM {_quote(str(dataset.table_name))}"
    )
    if where:
        statement += f" WHERE {where}"
    return Flow.model_validate(
        {
            "uuid": _stable_uuid(cls),
            "name": cls.__name__,
            "description": f"View pipeline: {cls.view_name} over {dataset.table_name} for {ds.isoformat()}",  # type: ignore[attr-defined]
            "configuration": {"schedule": _schedule(cls)},
            "parameters": {"ds": ds.isoformat()},
            "stages": [
                {
                    "name": "View_01",
                    "label": f"Create view {cls.view_name}",  # type: ignore[attr-defined]
                    "plugin": {"name": "sql_executor"},
                    "configuration": {"connection": str(dataset.target_db), "statements": [statement]},
                },
            ],
        }
    )
