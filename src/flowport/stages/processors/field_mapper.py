"""Field Mapper processor: choose, rename, un-nest and convert fields."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import field_validator, model_validator

from flowport.errors import StageError
from flowport.plugins.contract import (
    HIDDEN_PREFIX,
    ErrorBatch,
    FusedSql,
    Processor,
    StageConfig,
    StageOutput,
    setting,
)
from flowport.stages._duckdb import DuckSession, duckdb_message, quote_ident, sql_literal
from flowport.stages.sqltypes import SQL_TYPE_METADATA_KEY, sql_type_to_duckdb

__all__ = ["FieldMapper", "FieldMapperConfig", "FieldMapping"]

CAST_FAILED = "FIELD_MAPPER_CAST_FAILED"
PATH_SEPARATOR = "__"
# A value quoted in an error message is cut here: a huge text field would
# otherwise make every error record huge.
_MESSAGE_VALUE_CHARS = 200


class FieldMapping(StageConfig):
    """One output field: where it comes from, its name and its type."""

    source: str = setting(
        label="Source",
        description="Input column. 'a__b' reads field b of struct column a (unless a column is literally "
        "called 'a__b'). A missing column gives nulls.",
        min_length=1,
    )
    target: str | None = setting(
        None,
        label="Target",
        description="Output column name (default: the source with '__' replaced by '_').",
    )
    type: str | None = setting(
        None,
        label="Type",
        description="Type to convert to, in DuckDB or PostgreSQL spelling (text, integer, numeric(10,2), "
        "timestamptz, ...). Empty keeps the source type. Values that do not convert become error records. "
        "Constraints after the type (PRIMARY KEY, NOT NULL, UNIQUE, DEFAULT <literal>) are kept for SQL "
        "destinations that create the table.",
    )

    @field_validator("target", "type")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value if value is None or value.strip() else None

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        if value is not None:
            sql_type_to_duckdb(value)  # raises ValueError: a configuration error
        return value

    @property
    def output_name(self) -> str:
        """The output column name."""
        return self.target if self.target is not None else self.source.replace(PATH_SEPARATOR, "_")


class FieldMapperConfig(StageConfig):
    """Settings of the Field Mapper."""

    fields: list[FieldMapping] = setting(
        label="Fields",
        description="Output fields in order: [{source, target, type}]. Fields not listed are dropped.",
        min_length=1,
    )

    @model_validator(mode="after")
    def _distinct_targets(self) -> FieldMapperConfig:
        seen: set[str] = set()
        for mapping in self.fields:
            name = mapping.output_name
            if name.startswith(HIDDEN_PREFIX):
                raise ValueError(
                    f"target '{name}': names starting with '{HIDDEN_PREFIX}' belong to the engine"
                )
            if name in seen:
                raise ValueError(f"target '{name}' appears more than once")
            seen.add(name)
        return self


def resolve_path(schema: pa.Schema | pa.StructType, source: str) -> list[str] | None:
    """The column/field path ``source`` names in ``schema``, or None when it names nothing.

    A flat name wins; otherwise ``a__b__c`` is split at each ``__`` and the
    longest matching prefix is followed into struct fields (so a struct column
    literally named ``a__b`` is found too).
    """
    names = (
        schema.names
        if isinstance(schema, pa.Schema)
        else [schema.field(i).name for i in range(schema.num_fields)]
    )
    if source in names:
        return [source]
    parts = source.split(PATH_SEPARATOR)
    for cut in range(len(parts) - 1, 0, -1):
        head = PATH_SEPARATOR.join(parts[:cut])
        if head not in names:
            continue
        head_type = schema.field(head).type
        if not pa.types.is_struct(head_type):
            continue
        rest = resolve_path(head_type, PATH_SEPARATOR.join(parts[cut:]))
        if rest is not None:
            return [head, *rest]
    return None


class FieldMapper(Processor[FieldMapperConfig]):
    """Keeps only the listed fields, renamed, un-nested and converted.

    Hidden engine columns (``__fp_*``) always pass through. Conversions use
    ``TRY_CAST`` in one DuckDB query per batch; a record whose non-null value
    does not convert is sent to the error stage (code
    ``FIELD_MAPPER_CAST_FAILED``) as it came in, and the others go on.
    """

    name = "field_mapper"
    label = "Field Mapper"
    description = (
        "Selects, renames, un-nests (a__b) and converts fields; values that do not convert are errors."
    )
    config_model = FieldMapperConfig

    def open(self) -> None:
        """Parse the declared types once."""
        self._duck_types = [
            sql_type_to_duckdb(m.type) if m.type is not None else None for m in self.config.fields
        ]
        self._session: DuckSession | None = None

    def close(self) -> None:
        """Close the DuckDB connection."""
        if getattr(self, "_session", None) is not None:
            assert self._session is not None
            self._session.close()
            self._session = None

    def process(self, batch: pa.RecordBatch) -> StageOutput:
        """Map one batch."""
        if not hasattr(self, "_duck_types"):
            self.open()
        n = batch.num_rows
        paths = [resolve_path(batch.schema, m.source) for m in self.config.fields]
        columns: dict[int, Any] = {}
        for i, path in enumerate(paths):
            if path is None:
                columns[i] = pa.nulls(n, pa.string())
            elif len(path) == 1:
                columns[i] = batch.column(path[0])
            else:
                columns[i] = pc.struct_field(batch.column(path[0]), path[1:])

        # Fields keeping their type (no type given, or already of that type)
        # never go through DuckDB: Arrow takes the column as is.
        typed = [
            i
            for i, t in enumerate(self._duck_types)
            if t is not None and not (paths[i] is not None and _already(columns[i].type, t))
        ]
        failed: pa.Array[Any] | None = None
        messages: pa.Array[Any] | None = None
        if typed:
            converted = self._convert(batch, typed, paths)
            bad_masks = []
            for position, i in enumerate(typed):
                source, result = columns[i], converted.column(position)
                if paths[i] is not None and result.null_count > source.null_count:
                    bad_masks.append((i, pc.and_(pc.is_valid(source), pc.is_null(result))))
                columns[i] = result
            if bad_masks:
                failed, messages = self._messages(
                    bad_masks, [columns_before(batch, paths, i) for i, _ in bad_masks]
                )

        fields = []
        for i, mapping in enumerate(self.config.fields):
            column = columns[i]
            metadata = (
                {SQL_TYPE_METADATA_KEY: mapping.type.strip().encode()} if mapping.type is not None else None
            )
            fields.append(pa.field(mapping.output_name, column.type, metadata=metadata))
        arrays = [columns[i] for i in range(len(self.config.fields))]
        # Hidden columns (record lineage) pass through whatever the mapping says.
        for index, hidden_field in enumerate(batch.schema):
            if hidden_field.name.startswith(HIDDEN_PREFIX):
                fields.append(hidden_field)
                arrays.append(batch.column(index))
        output = pa.Table.from_arrays(arrays, schema=pa.schema(fields))

        if failed is None or messages is None:
            return StageOutput(records=output)
        bad_records = pa.Table.from_batches([batch.filter(failed)])
        codes = pa.repeat(pa.scalar(CAST_FAILED, pa.string()), len(messages))
        return StageOutput(
            records=output.filter(pc.invert(failed)),
            errors=ErrorBatch(bad_records, codes, messages),
        )

    def fused_sql(self, source: str, columns: list[str], carry: list[str], tag: str) -> FusedSql | None:
        """The mapping as one SELECT: TRY_CAST per field, a per-row error message, the input record on error.

        Only the first step after a text origin (CSV read as VARCHAR) is fused, so
        a VARCHAR target needs no cast.
        """
        if not hasattr(self, "_duck_types"):
            self.open()
        if carry:
            return None
        self._text_input = True
        available = set(columns)
        # Casts are computed once, in an inner SELECT; the outer one names
        # them, and only failing rows pay for building a message and a record.
        casts: list[str] = []
        selects: list[str] = []
        failures: list[tuple[str, str]] = []  # (condition, message)
        for position, (mapping, duck_type) in enumerate(
            zip(self.config.fields, self._duck_types, strict=True)
        ):
            target = quote_ident(mapping.output_name)
            if mapping.source in available:
                expr = quote_ident(mapping.source)
            elif PATH_SEPARATOR in mapping.source:
                return None  # nested paths need the input's struct types: not fused
            else:
                selects.append(f"CAST(NULL AS {duck_type or 'VARCHAR'}) AS {target}")
                continue
            if duck_type is None or (duck_type == "VARCHAR" and self._text_input):
                selects.append(f"{expr} AS {target}")
                continue
            value = quote_ident(f"{tag}v{position}")
            casts.append(f"TRY_CAST({expr} AS {duck_type}) AS {value}")
            selects.append(f"{value} AS {target}")
            head = sql_literal(f"field '{mapping.source}': cannot convert '")
            tail = sql_literal(f"' to {duck_type}")
            message = f"{head} || left(CAST({expr} AS VARCHAR), {_MESSAGE_VALUE_CHARS}) || {tail}"
            failures.append((f"({expr} IS NOT NULL AND {value} IS NULL)", message))
        error, record = f"{tag}err", f"{tag}in"
        packed = ", ".join(f"{quote_ident(c)} := {quote_ident(c)}" for c in columns)
        carried = "".join(f", {quote_ident(c)}" for c in carry)
        if failures:
            failed = " OR ".join(condition for condition, _ in failures)
            parts = ", ".join(f"CASE WHEN {condition} THEN {message} END" for condition, message in failures)
            error_expr = f"CASE WHEN {failed} THEN concat_ws('; ', {parts}) END"
            record_expr = f"CASE WHEN {failed} THEN struct_pack({packed}) END"
        else:
            error_expr = "CAST(NULL AS VARCHAR)"
            record_expr = f"CAST(NULL AS STRUCT({', '.join(f'{quote_ident(c)} VARCHAR' for c in columns)}))"
        inner = f"SELECT *{''.join(', ' + c for c in casts)} FROM ({source})"
        query = (
            f"SELECT {', '.join(selects)}{carried}, {error_expr} AS {quote_ident(error)}, "
            f"{record_expr} AS {quote_ident(record)} FROM ({inner})"
        )
        outputs = [m.output_name for m in self.config.fields]
        return FusedSql(
            query=query, columns=outputs, error_column=error, error_code=CAST_FAILED, input_column=record
        )

    def _messages(
        self, bad_masks: list[tuple[int, pa.Array[Any]]], sources: list[pa.Array[Any]]
    ) -> tuple[pa.Array[Any], pa.Array[Any]]:
        """Which rows failed, and one message per failed row naming every field that did not convert.

        Only the failing rows are looked at, so the happy path costs two
        vectorised null counts per converted field.
        """
        failed = bad_masks[0][1]
        for _, mask in bad_masks[1:]:
            failed = pc.or_(failed, mask)
        per_row: list[list[str]] | None = None
        for (i, mask), source in zip(bad_masks, sources, strict=True):
            mapping, duck_type = self.config.fields[i], self._duck_types[i]
            flags = mask.filter(failed).to_pylist()
            values = pc.cast(source.filter(failed), pa.string()).to_pylist()
            if per_row is None:
                per_row = [[] for _ in flags]
            for row, (flag, value) in enumerate(zip(flags, values, strict=True)):
                if flag:
                    shown = (value or "")[:_MESSAGE_VALUE_CHARS]
                    per_row[row].append(f"field '{mapping.source}': cannot convert '{shown}' to {duck_type}")
        assert per_row is not None
        return failed, pa.array(["; ".join(parts) for parts in per_row], pa.string())

    def _convert(self, batch: pa.RecordBatch, typed: list[int], paths: list[list[str] | None]) -> pa.Table:
        """Cast the typed fields with TRY_CAST in one DuckDB query (null where a value does not convert)."""
        # Only the needed top-level columns are handed to DuckDB, under
        # positional names, so user column names never need SQL quoting rules
        # beyond quote_ident and unrelated wide columns are not scanned.
        used: dict[str, str] = {}
        for i in typed:
            path = paths[i]
            if path is not None and path[0] not in used:
                used[path[0]] = f"c{len(used)}"
        selects: list[str] = []
        for position, i in enumerate(typed):
            duck_type, path = self._duck_types[i], paths[i]
            assert duck_type is not None
            if path is None:
                selects.append(f"CAST(NULL AS {duck_type}) AS v{position}")
                continue
            expr = quote_ident(used[path[0]])
            for part in path[1:]:
                expr = f"struct_extract({expr}, {sql_literal(part)})"
            selects.append(f"TRY_CAST({expr} AS {duck_type}) AS v{position}")
        query = f"SELECT {', '.join(selects)} FROM "
        if self._session is None:
            self._session = DuckSession(shared=True)
        try:
            if used:
                slim = pa.Table.from_arrays([batch.column(name) for name in used], names=list(used.values()))
                with self._session.registered("__fp_batch", slim):
                    result = self._session.table(query + "__fp_batch")
            else:
                result = self._session.table(query + f"range({batch.num_rows})")
        except duckdb.Error as exc:
            raise StageError(self.context.stage_name, duckdb_message(exc)) from exc
        if result.num_rows != batch.num_rows:  # pragma: no cover - would be a DuckDB bug
            raise StageError(self.context.stage_name, "type conversion lost rows")
        return result.combine_chunks()


def columns_before(batch: pa.RecordBatch, paths: list[list[str] | None], i: int) -> pa.Array[Any]:
    """The source values of field ``i`` as they came in (for error messages)."""
    path = paths[i]
    assert path is not None
    if len(path) == 1:
        return batch.column(path[0])
    nested: pa.Array[Any] = pc.struct_field(batch.column(path[0]), path[1:])
    return nested


_ARROW_FOR_DUCK = {
    "VARCHAR": (pa.string(), pa.large_string(), pa.string_view()),
    "INTEGER": (pa.int32(),),
    "BIGINT": (pa.int64(),),
    "SMALLINT": (pa.int16(),),
    "DOUBLE": (pa.float64(),),
    "REAL": (pa.float32(),),
    "BOOLEAN": (pa.bool_(),),
    "DATE": (pa.date32(),),
}


def _already(arrow_type: pa.DataType, duck_type: str) -> bool:
    """True when a column of ``arrow_type`` needs no conversion to ``duck_type``."""
    if duck_type in _ARROW_FOR_DUCK:
        return arrow_type in _ARROW_FOR_DUCK[duck_type]
    if duck_type.startswith("DECIMAL(") and pa.types.is_decimal(arrow_type):
        return f"DECIMAL({arrow_type.precision},{arrow_type.scale})" == duck_type.replace(" ", "")
    return False
