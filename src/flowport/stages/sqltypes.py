"""SQL type names as users write them, mapped to DuckDB types.

Stages that convert values (the Field Mapper) accept both DuckDB and
PostgreSQL spellings, because flows are often written by people who think in
the type system of the database they load into. The declared text is kept in
the Arrow field metadata under :data:`SQL_TYPE_METADATA_KEY` so that SQL
destinations can later create tables with the type the user asked for, not
the (sometimes wider) DuckDB type used in flight.
"""

from __future__ import annotations

import re

__all__ = ["SQL_TYPE_METADATA_KEY", "SUPPORTED_SQL_TYPES", "sql_type_to_duckdb"]

SQL_TYPE_METADATA_KEY = b"flowport.sql_type"

SUPPORTED_SQL_TYPES = (
    "string, text, varchar[(n)], character varying[(n)], char[(n)], "
    "integer, int, bigint, smallint, double, double precision, float, real, "
    "numeric[(p[,s])], decimal[(p[,s])], boolean, bool, date, "
    "timestamp, timestamp with time zone, timestamptz, json"
)

# PostgreSQL's bare NUMERIC is unbounded; DuckDB's bare DECIMAL is (18,3) and
# would silently round. The widest DuckDB decimal with room for fractions is
# the closest faithful in-flight type.
_BARE_DECIMAL = "DECIMAL(38,10)"

_SIMPLE: dict[str, str] = {
    "string": "VARCHAR",
    "text": "VARCHAR",
    "varchar": "VARCHAR",
    "character varying": "VARCHAR",
    "char": "VARCHAR",
    "character": "VARCHAR",
    "bpchar": "VARCHAR",
    "integer": "INTEGER",
    "int": "INTEGER",
    "int4": "INTEGER",
    "bigint": "BIGINT",
    "int8": "BIGINT",
    "smallint": "SMALLINT",
    "int2": "SMALLINT",
    "double": "DOUBLE",
    "double precision": "DOUBLE",
    # PostgreSQL's FLOAT is 8 bytes while DuckDB's is 4: follow PostgreSQL,
    # losing precision silently is the worse surprise.
    "float": "DOUBLE",
    "float8": "DOUBLE",
    "real": "REAL",
    "float4": "REAL",
    "boolean": "BOOLEAN",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "timestamp without time zone": "TIMESTAMP",
    "datetime": "TIMESTAMP",
    "timestamp with time zone": "TIMESTAMPTZ",
    "timestamptz": "TIMESTAMPTZ",
    "json": "JSON",
    "jsonb": "JSON",
}

_LENGTH = re.compile(r"^(varchar|character varying|char|character|bpchar)\s*\(\s*\d+\s*\)$")
_DECIMAL = re.compile(r"^(numeric|decimal)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?$")
_TIMESTAMP_PRECISION = re.compile(r"^timestamp\s*\(\s*\d\s*\)\s*(with time zone|without time zone)?$")


def sql_type_to_duckdb(text: str) -> str:
    """The DuckDB type for a type written in DuckDB or PostgreSQL spelling.

    ``numeric(10,2)`` gives ``DECIMAL(10,2)``, ``character varying(20)`` gives
    ``VARCHAR``, ``timestamptz`` gives ``TIMESTAMPTZ``. Raises ``ValueError``
    naming the supported spellings for anything else.
    """
    normalised = " ".join(text.strip().lower().split())
    if normalised in _SIMPLE:
        return _SIMPLE[normalised]
    if _LENGTH.match(normalised):
        # DuckDB ignores VARCHAR lengths; the declared text keeps it for SQL targets.
        return "VARCHAR"
    match = _DECIMAL.match(normalised)
    if match:
        precision, scale = match.group(2), match.group(3)
        if precision is None:
            return _BARE_DECIMAL
        p, s = int(precision), int(scale or 0)
        if not 1 <= p <= 38:
            raise ValueError(f"type '{text}': precision must be between 1 and 38")
        if s > p:
            raise ValueError(f"type '{text}': scale must not exceed precision")
        return f"DECIMAL({p},{s})"
    match = _TIMESTAMP_PRECISION.match(normalised)
    if match:
        # DuckDB timestamps are microsecond precision whatever is asked.
        return "TIMESTAMPTZ" if match.group(1) == "with time zone" else "TIMESTAMP"
    raise ValueError(f"unknown type '{text}'; supported types: {SUPPORTED_SQL_TYPES}")
