"""Declarative datasets: the seed's dataset and view pipeline classes, compiled to flows.

("Datasets" is this feature's name in Flowport — ``flowport.datasets``,
``flowport datasets compile|run`` — so that "pipelines" names orchestration
pipelines, DAGs of tasks. The classes keep the seed's names.)

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
The third element of a ``field_mapping`` entry is passed to the field
mapper's ``type`` exactly as declared, constraints included
(``'character varying(100) PRIMARY KEY'``), so that the SQL destination
creates the column with its constraints; the ``PRIMARY KEY`` column also
becomes the destination's ``keys``.

A view pipeline compiles to a ``sql_executor`` that (re)creates the view.
``fields = True`` selects every column of the dataset's ``field_mapping``
under its own name (the seed: "the view will be created by using regarding
dataset fields"). Its ``where_clause`` is a Jinja template rendered with
Airflow's context for the logical date: ``ds``, ``ds_nodash``, ``ts``,
``ts_nodash``, ``logical_date`` (and its old name ``execution_date``),
``data_interval_start``, ``data_interval_end``, ``params`` and ``macros``
(``macros.datetime``, ``macros.timedelta``, ``macros.dateutil``,
``macros.ds_add``, ``macros.ds_format``). Times are UTC, as in Airflow.

Without an explicit logical date, a view uses the one Airflow's scheduler
would have run last: the start of the latest interval of its
``schedule_interval`` that has ended, within ``start_date`` and
``end_date`` (:func:`default_logical_date`).

Flowport-specific optional attributes: ``source_connection`` (an ``http``
connection holding the API's credentials, e.g. Hawk), ``records_path``
(default ``results``), ``next_field`` (default ``next``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import dateutil
import dateutil.relativedelta
import jinja2
import jinja2.sandbox
from croniter import croniter

from flowport.errors import ValidationFailed
from flowport.model.flow import Flow

__all__ = [
    "SCHEDULE_PRESETS",
    "DatasetPipeline",
    "ViewPipeline",
    "airflow_context",
    "compile_dataset_pipeline",
    "compile_view_pipeline",
    "compile_view_template",
    "cron_expression",
    "data_interval",
    "default_logical_date",
    "find_dataset_classes",
    "is_dataset_pipeline",
    "is_view_pipeline",
    "render_sql_template",
    "split_column_type",
    "template_context",
]

# Airflow's presets (``@once`` and ``None`` have no interval: see cron_expression).
SCHEDULE_PRESETS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

# Words that start a column constraint clause after the type
# (PostgreSQL's column_constraint, plus COLLATE which also ends the type).
_CLAUSE_STARTS = frozenset(
    {"PRIMARY", "NOT", "NULL", "UNIQUE", "DEFAULT", "REFERENCES", "CHECK", "CONSTRAINT"}
    | {"COLLATE", "GENERATED"}
)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
      | (?P<quoted>'(?:[^']|'')*'?|"(?:[^"]|"")*"?)
      | (?P<other>.)
    )""",
    re.VERBOSE | re.DOTALL,
)


class DatasetPipeline:
    """Optional base of a dataset pipeline (attributes as in the seed)."""

    table_name: str
    source_url: str
    target_db: str
    field_mapping: list[tuple[str, str, str]]
    start_date: datetime | date | None = None
    end_date: datetime | date | None = None
    schedule_interval: str | None = "@daily"
    source_connection: str | None = None
    records_path: str = "results"
    next_field: str = "next"


class ViewPipeline:
    """Optional base of a view pipeline (attributes as in the seed)."""

    view_name: str
    dataset_pipeline: type
    fields: list[tuple[str, str]] | bool
    where_clause: str = ""
    start_date: datetime | date | None = None
    end_date: datetime | date | None = None
    catchup: bool = False
    schedule_interval: str | None = "@daily"


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


def find_dataset_classes(namespace: dict[str, Any]) -> dict[str, type]:
    """The dataset and view pipeline classes in a module's namespace, by class name."""
    return {
        name: obj
        for name, obj in namespace.items()
        if (is_dataset_pipeline(obj) or is_view_pipeline(obj)) and not name.startswith("_")
    }


# --- column types and constraints -------------------------------------------------------------


def _tokens(text: str) -> list[tuple[str, int, int]]:
    """Top-level tokens of ``text`` as (upper-cased word or '', start, end); a (...) group is one token."""
    tokens: list[tuple[str, int, int]] = []
    position, depth, group_start = 0, 0, 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # only trailing whitespace is left
            break
        position = match.end()
        start = match.start(match.lastgroup or 0)
        other = match.group("other")
        if other == "(":
            if depth == 0:
                group_start = start
            depth += 1
            continue
        if other == ")" and depth > 0:
            depth -= 1
            if depth == 0:
                tokens.append(("", group_start, position))
            continue
        if depth == 0:
            word = match.group("word")
            tokens.append((word.upper() if word else "", start, position))
    if depth > 0:  # an unclosed parenthesis: the rest is one group
        tokens.append(("", group_start, len(text)))
    return tokens


def _starts_clause(tokens: list[tuple[str, int, int]], i: int) -> bool:
    word = tokens[i][0]
    before = tokens[i - 1][0] if i > 0 else ""
    after = tokens[i + 1][0] if i + 1 < len(tokens) else ""
    if word == "PRIMARY":
        return after == "KEY"
    if word == "NOT":
        return after == "NULL"  # not NOT DEFERRABLE, NULLS NOT DISTINCT
    if word in ("NULL", "DEFAULT"):
        return before not in ("SET", "BY")  # ON DELETE SET NULL, GENERATED BY DEFAULT
    return word in _CLAUSE_STARTS


def split_column_type(declared: str) -> tuple[str, list[str]]:
    """``'character varying(100) PRIMARY KEY'`` → ``('character varying(100)', ['PRIMARY KEY'])``.

    Constraint clauses (``PRIMARY KEY``, ``NOT NULL``, ``NULL``, ``UNIQUE``,
    ``DEFAULT expr``, ``REFERENCES t (c) ...``, ``CHECK (...)``,
    ``CONSTRAINT name ...``, ``COLLATE ...``, ``GENERATED ...``) are split off
    the type in order; their key words are upper-cased, the rest (literals,
    names, expressions) is kept as written. Quotes and parentheses are
    respected, so ``DEFAULT 'not null'`` is one clause.
    """
    text = declared.strip()
    tokens = _tokens(text)
    starts: list[int] = []
    keywords: set[int] = set()
    named = False  # after CONSTRAINT name, the constraint itself belongs to the same clause
    i = 0
    while i < len(tokens):
        if not tokens[i][0] or not _starts_clause(tokens, i):
            i += 1
            continue
        word = tokens[i][0]
        width = 2 if word in ("PRIMARY", "NOT") else 1
        keywords.update(range(i, i + width))
        if not named:
            starts.append(i)
        named = word == "CONSTRAINT"
        # DEFAULT's expression and CONSTRAINT's name take at least one token (DEFAULT NULL).
        i += width + (1 if word in ("DEFAULT", "CONSTRAINT") else 0)
    if not starts:
        return text, []
    clauses: list[str] = []
    for number, first in enumerate(starts):
        stop = starts[number + 1] if number + 1 < len(starts) else len(tokens)
        pieces: list[str] = []
        for k in range(first, stop):
            word, begin, end = tokens[k]
            if pieces and begin > tokens[k - 1][2]:
                pieces.append(" ")
            pieces.append(word if k in keywords else text[begin:end])
        clauses.append("".join(pieces))
    return text[: tokens[starts[0]][1]].rstrip(), clauses


def _declares(constraints: list[str], kind: str) -> bool:
    for clause in constraints:
        words = clause.split()
        if words[0] == "CONSTRAINT":
            words = words[2:]
        if " ".join(words[: len(kind.split())]) == kind:
            return True
    return False


# --- checking a class ---------------------------------------------------------------------------


def _required(cls: type, names: Iterable[str]) -> None:
    missing = [n for n in names if not hasattr(cls, n)]
    if missing:
        raise ValidationFailed(f"{cls.__name__} has no {', '.join(missing)}: add these class attributes")


def _text(cls: type, name: str) -> str:
    value = getattr(cls, name)
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(f"{cls.__name__}.{name} must be a non-empty string, got {value!r}")
    return value


def _utc(value: datetime | date) -> datetime:
    """A date or datetime as an aware UTC datetime (naive values are UTC, as in Airflow)."""
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _bound(cls: type, name: str) -> datetime | None:
    value = getattr(cls, name, None)
    if value is None:
        return None
    if not isinstance(value, date):
        raise ValidationFailed(
            f"{cls.__name__}.{name} must be a datetime or a date (or None), got {type(value).__name__} "
            f"{value!r}"
        )
    return _utc(value)


def _dates(cls: type) -> tuple[datetime | None, datetime | None]:
    start, end = _bound(cls, "start_date"), _bound(cls, "end_date")
    if start is not None and end is not None and start > end:
        raise ValidationFailed(
            f"{cls.__name__}: start_date {_show(start)} is after end_date {_show(end)}; the pipeline would "
            "never run: move end_date later or remove it"
        )
    return start, end


def _show(when: datetime) -> str:
    return when.date().isoformat() if when.time() == datetime.min.time() else when.isoformat()


def cron_expression(cls: type) -> str | None:
    """The cron expression of a class's ``schedule_interval`` (None for ``@once`` and ``None``)."""
    interval = getattr(cls, "schedule_interval", "@daily")
    if interval is None or interval == "@once":
        return None
    if isinstance(interval, str):
        expression = SCHEDULE_PRESETS.get(interval.strip().lower(), interval.strip())
        if croniter.is_valid(expression):
            return expression
    raise ValidationFailed(
        f"{cls.__name__}.schedule_interval must be a cron expression ('0 6 * * *'), a preset "
        f"({', '.join(SCHEDULE_PRESETS)}), '@once' or None; got {interval!r}"
    )


def _schedule(cls: type) -> dict[str, Any]:
    # Clear errors for an unknown interval and for dates out of order.
    cron_expression(cls)
    _dates(cls)
    return {
        "interval": getattr(cls, "schedule_interval", "@daily"),
        "start_date": _when(getattr(cls, "start_date", None)),
        "end_date": _when(getattr(cls, "end_date", None)),
        "catchup": bool(getattr(cls, "catchup", False)),
        "timezone": "UTC",
    }


def _when(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, date | datetime) else None


# --- logical dates and the template context ------------------------------------------------------


def _tick_at_or_before(expression: str, when: datetime) -> datetime:
    tick: datetime = croniter(expression, when + timedelta(microseconds=1)).get_prev(datetime)
    return tick.astimezone(UTC).replace(fold=0)


def _tick_at_or_after(expression: str, when: datetime) -> datetime:
    tick: datetime = croniter(expression, when - timedelta(microseconds=1)).get_next(datetime)
    return tick.astimezone(UTC).replace(fold=0)


def _tick_after(expression: str, when: datetime) -> datetime:
    tick: datetime = croniter(expression, when).get_next(datetime)
    return tick.astimezone(UTC).replace(fold=0)


def default_logical_date(cls: type, now: datetime) -> datetime:
    """The logical date Airflow's scheduler would have run last at ``now`` (UTC).

    For a cron schedule: the start of the latest interval that has ended by
    ``now`` (``@daily`` at 2026-12-03T10:00 gives 2026-12-02T00:00), no later
    than the last interval starting at or before ``end_date``. ``@once``
    gives ``start_date``; ``None`` (manual runs only) gives ``now``. Raises
    :class:`ValidationFailed` when no interval within ``start_date`` has
    ended yet.
    """
    now = _utc(now)
    start, end = _dates(cls)
    expression = cron_expression(cls)
    if expression is None:
        if getattr(cls, "schedule_interval", "@daily") == "@once" and start is not None:
            if start > now:
                raise ValidationFailed(
                    f"{cls.__name__} runs once at its start_date {_show(start)}, which has not come yet: "
                    "pass a logical date (--ds YYYY-MM-DD)"
                )
            return start
        return now
    last_end = _tick_at_or_before(expression, now)
    logical = _tick_at_or_before(expression, last_end - timedelta(microseconds=1))
    if end is not None and logical > end:
        logical = _tick_at_or_before(expression, end)
    if start is not None and logical < start:
        first = _tick_at_or_after(expression, start)
        interval = getattr(cls, "schedule_interval", "@daily")
        raise ValidationFailed(
            f"{cls.__name__} has no complete '{interval}' interval yet at {_show(now)} (the first one runs "
            f"from {_show(first)} to {_show(_tick_after(expression, first))}): "
            "pass a logical date (--ds YYYY-MM-DD)"
        )
    return logical


def data_interval(cls: type, logical: datetime) -> tuple[datetime, datetime]:
    """Airflow's ``(data_interval_start, data_interval_end)`` for a logical date.

    The interval starts at the logical date and ends at the schedule's next
    tick after it; without an interval (``@once``, ``None``) both are the
    logical date.
    """
    start = _utc(logical)
    expression = cron_expression(cls)
    if expression is None:
        return start, start
    return start, _tick_after(expression, start)


def _ds_add(ds: str, days: int) -> str:
    return (date.fromisoformat(ds) + timedelta(days=days)).isoformat()


def _ds_format(ds: str, input_format: str, output_format: str) -> str:
    return datetime.strptime(ds, input_format).strftime(output_format)


def template_context(cls: type, logical: datetime | date) -> dict[str, Any]:
    """The Jinja context of a pipeline's templated SQL, as Airflow's for the same logical date."""
    start, end = data_interval(cls, _utc(logical))
    return airflow_context(start, end, getattr(cls, "params", None))


def airflow_context(
    start: datetime, end: datetime, params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Airflow's Jinja context for the data interval ``[start, end)``: ``ds``, ``ts``, ``macros`` ..."""
    start, end = _utc(start), _utc(end)
    return {
        "ds": start.date().isoformat(),
        "ds_nodash": start.strftime("%Y%m%d"),
        "ts": start.isoformat(),
        "ts_nodash": start.strftime("%Y%m%dT%H%M%S"),
        "logical_date": start,
        "execution_date": start,
        "data_interval_start": start,
        "data_interval_end": end,
        "params": dict(params or {}),
        "macros": SimpleNamespace(
            datetime=datetime,
            timedelta=timedelta,
            dateutil=dateutil,
            relativedelta=dateutil.relativedelta.relativedelta,
            ds_add=_ds_add,
            ds_format=_ds_format,
        ),
    }


# --- compiling ----------------------------------------------------------------------------------


def _field_mapping(cls: type) -> list[tuple[str, str, str]]:
    """``field_mapping`` checked: (source, column, declared type with constraints or '')."""
    mapping = cls.field_mapping  # type: ignore[attr-defined]
    if not isinstance(mapping, list | tuple) or not mapping:
        raise ValidationFailed(
            f"{cls.__name__}.field_mapping must be a non-empty list of (source field, column, type and "
            f"constraints), got {mapping!r}"
        )
    entries: list[tuple[str, str, str]] = []
    for i, entry in enumerate(mapping):
        if (
            not isinstance(entry, tuple | list)
            or len(entry) not in (2, 3)
            or not all(isinstance(part, str) for part in entry)
        ):
            raise ValidationFailed(
                f"{cls.__name__}.field_mapping[{i}] must be (source field, column, type and constraints), "
                f"got {entry!r}"
            )
        declared = entry[2].strip() if len(entry) == 3 else ""
        if declared and not split_column_type(declared)[0]:
            raise ValidationFailed(
                f"{cls.__name__}.field_mapping[{i}] ({entry[1]!r}): {declared!r} names no column type "
                "before its constraints"
            )
        entries.append((entry[0], entry[1], declared))
    return entries


def compile_dataset_pipeline(cls: type) -> Flow:
    """The flow a dataset pipeline class stands for."""
    _required(cls, ("table_name", "source_url", "target_db", "field_mapping"))
    table, url, target_db = _text(cls, "table_name"), _text(cls, "source_url"), _text(cls, "target_db")
    schedule = _schedule(cls)
    fields: list[dict[str, Any]] = []
    keys: list[str] = []
    for source, column, declared in _field_mapping(cls):
        spec: dict[str, Any] = {"source": source, "target": column}
        if declared:
            # The whole declaration, constraints included: the SQL destination creates them.
            spec["type"] = declared
            if _declares(split_column_type(declared)[1], "PRIMARY KEY"):
                keys.append(column)
        fields.append(spec)
    if len(keys) > 1:
        raise ValidationFailed(
            f"{cls.__name__}.field_mapping declares PRIMARY KEY on {len(keys)} columns "
            f"({', '.join(keys)}); a table has one primary key: keep PRIMARY KEY on one column "
            "(and UNIQUE or NOT NULL on the others)"
        )
    origin: dict[str, Any] = {
        "url": url,
        "records_path": getattr(cls, "records_path", "results"),
        "pagination": {"style": "next_link", "next_field": getattr(cls, "next_field", "next")},
    }
    if getattr(cls, "source_connection", None):
        origin["connection"] = cls.source_connection  # type: ignore[attr-defined]
    destination: dict[str, Any] = {"connection": target_db, "table": table, "mode": "replace"}
    if keys:
        destination["keys"] = keys
    return Flow.model_validate(
        {
            "uuid": _stable_uuid(cls),
            "name": cls.__name__,
            "description": f"Dataset pipeline: {url} -> {target_db}.{table}",
            "configuration": {"schedule": schedule},
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
                    "label": f"Load {table}",
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
    # The name says "pipeline" from before the rename to datasets: changing it would change every uuid.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"flowport:pipeline:{cls.__name__}"))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _view_columns(cls: type, dataset: type) -> list[str]:
    fields = cls.fields  # type: ignore[attr-defined]
    if fields is True:
        # The seed: "the view will be created by using regarding dataset fields".
        _required(dataset, ("field_mapping",))
        try:
            mapping = _field_mapping(dataset)
        except ValidationFailed as exc:
            raise ValidationFailed(
                f"{cls.__name__}.fields = True selects the columns of {dataset.__name__}, whose "
                f"field_mapping is not valid: {exc.message}"
            ) from None
        return [_quote(column) for _, column, _ in mapping]
    if not isinstance(fields, list | tuple) or not fields:
        raise ValidationFailed(
            f"{cls.__name__}.fields must be True (every column of the dataset) or a non-empty list of "
            f"(expression, alias), got {fields!r}"
        )
    columns = []
    for i, entry in enumerate(fields):
        if (
            not isinstance(entry, tuple | list)
            or len(entry) != 2
            or not all(isinstance(part, str) for part in entry)
        ):
            raise ValidationFailed(f"{cls.__name__}.fields[{i}] must be (expression, alias), got {entry!r}")
        columns.append(f"{entry[0]} AS {_quote(entry[1])}")
    return columns


def render_sql_template(template: str, context: Mapping[str, Any]) -> str:
    """Render templated SQL in Jinja's sandbox (no attribute starting with ``_``, no unsafe calls).

    Raises:
        jinja2.TemplateError: a syntax error, an undefined name, or what the sandbox refuses.
    """
    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False
    )
    return environment.from_string(template).render(**context)


def _render(cls: type, template: str, context: dict[str, Any]) -> str:
    try:
        return render_sql_template(template, context)
    except jinja2.TemplateError as exc:
        raise ValidationFailed(f"{cls.__name__}.where_clause is not a valid template: {exc}") from None
    except Exception as exc:  # a macro raising (strptime with a wrong format, ...)
        raise ValidationFailed(
            f"{cls.__name__}.where_clause could not be rendered: {type(exc).__name__}: {exc}"
        ) from None


def compile_view_pipeline(cls: type, ds: date | datetime) -> Flow:
    """The flow that (re)creates a view pipeline's view for the logical date ``ds``.

    A ``date`` is midnight UTC of that day; a ``datetime`` is taken as the
    exact logical date (hourly schedules).
    """
    _required(cls, ("view_name", "dataset_pipeline", "fields"))
    view = _text(cls, "view_name")
    dataset = cls.dataset_pipeline  # type: ignore[attr-defined]
    if not isinstance(dataset, type):
        raise ValidationFailed(
            f"{cls.__name__}.dataset_pipeline must be a dataset pipeline class, got {dataset!r}"
        )
    _required(dataset, ("table_name", "target_db"))
    table, target_db = _text(dataset, "table_name"), _text(dataset, "target_db")
    schedule = _schedule(cls)
    columns = _view_columns(cls, dataset)
    context = template_context(cls, ds)
    where_clause = getattr(cls, "where_clause", "") or ""
    if not isinstance(where_clause, str):
        raise ValidationFailed(f"{cls.__name__}.where_clause must be a string, got {where_clause!r}")
    where = _render(cls, where_clause, context).strip().rstrip(";").strip()
    statement = f"CREATE OR REPLACE VIEW {_quote(view)} AS SELECT {', '.join(columns)} FROM {_quote(table)}"
    if where:
        statement += f" WHERE {where}"
    return Flow.model_validate(
        {
            "uuid": _stable_uuid(cls),
            "name": cls.__name__,
            "description": f"View pipeline: {view} over {table} for {context['ds']}",
            "configuration": {"schedule": schedule},
            "parameters": {"ds": context["ds"]},
            "stages": [
                {
                    "name": "View_01",
                    "label": f"Create view {view}",
                    "plugin": {"name": "sql_executor"},
                    "configuration": {"connection": target_db, "statements": [statement]},
                },
            ],
        }
    )


def compile_view_template(cls: type, ds: date | datetime) -> Flow:
    """The flow of a view pipeline for any logical date: its ``where_clause`` stays a template that the
    SQL Executor renders at run time with the run's ``ds`` and data interval (a scheduled run passes
    its own; ``ds`` is the default). Checked by rendering it once for ``ds``."""
    checked = compile_view_pipeline(cls, ds)  # every error a render for ``ds`` would raise, raised now
    where_clause = (getattr(cls, "where_clause", "") or "").strip().rstrip(";").strip()
    view = _text(cls, "view_name")
    table = _text(cls.dataset_pipeline, "table_name")  # type: ignore[attr-defined]
    columns = _view_columns(cls, cls.dataset_pipeline)  # type: ignore[attr-defined]
    statement = f"CREATE OR REPLACE VIEW {_quote(view)} AS SELECT {', '.join(columns)} FROM {_quote(table)}"
    if where_clause:
        statement += f" WHERE {where_clause}"
    start, end = data_interval(cls, _utc(ds))
    document = checked.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["description"] = f"View pipeline: {view} over {table} (for the run's logical date)"
    document["parameters"] = {
        "ds": start.date().isoformat(),
        "data_interval_start": start.isoformat(),
        "data_interval_end": end.isoformat(),
    }
    stage = document["stages"][0]
    stage["configuration"] = {
        **stage["configuration"],
        "statements": [statement],
        "template": True,
        "template_context": {
            "data_interval_start": "${data_interval_start}",
            "data_interval_end": "${data_interval_end}",
        },
        "template_params": dict(getattr(cls, "params", None) or {}),
    }
    return Flow.model_validate(document)
