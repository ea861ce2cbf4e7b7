"""SQL type names as users write them, mapped to DuckDB types.

Stages that convert values (the Field Mapper) accept both DuckDB and
PostgreSQL spellings, because flows are often written by people who think in
the type system of the database they load into. The declared text is kept in
the Arrow field metadata under :data:`SQL_TYPE_METADATA_KEY` so that SQL
destinations can later create tables with the type the user asked for, not
the (sometimes wider) DuckDB type used in flight.

A declared type may be followed by column constraints, as in a ``CREATE
TABLE``: ``character varying(100) PRIMARY KEY``, ``integer NOT NULL
UNIQUE``, ``text DEFAULT 'n/a'``. :func:`split_declared` reads them into a
:class:`ColumnConstraints`; the values travel as they are and a SQL
destination that creates the table declares the constraints on it (and
turns records that violate them into error records).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "SQL_TYPE_METADATA_KEY",
    "SUPPORTED_CONSTRAINTS",
    "SUPPORTED_SQL_TYPES",
    "ColumnConstraints",
    "DefaultValue",
    "split_declared",
    "sql_type_to_duckdb",
]

SQL_TYPE_METADATA_KEY = b"flowport.sql_type"

SUPPORTED_SQL_TYPES = (
    "string, text, varchar[(n)], character varying[(n)], char[(n)], "
    "integer, int, bigint, smallint, double, double precision, float, real, "
    "numeric[(p[,s])], decimal[(p[,s])], boolean, bool, date, "
    "timestamp, timestamp with time zone, timestamptz, json"
)

SUPPORTED_CONSTRAINTS = (
    "PRIMARY KEY, NOT NULL, NULL, UNIQUE, DEFAULT <number, 'text', NULL, TRUE, FALSE, "
    "CURRENT_TIMESTAMP or CURRENT_DATE>, each optionally after CONSTRAINT <name>"
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


@dataclass(frozen=True)
class DefaultValue:
    """A literal column default: ``kind`` is number, text or keyword (NULL, TRUE, CURRENT_DATE...)."""

    kind: str
    value: str


@dataclass(frozen=True)
class ColumnConstraints:
    """The constraint clauses declared after a column's type.

    ``primary_key_name`` and ``unique_name`` are the names given with
    ``CONSTRAINT <name>`` (None: the database names the constraint).
    """

    primary_key: bool = False
    not_null: bool = False
    unique: bool = False
    default: DefaultValue | None = None
    primary_key_name: str | None = None
    unique_name: str | None = None

    @property
    def required(self) -> bool:
        """Whether the column refuses NULL (NOT NULL, or part of the primary key)."""
        return self.primary_key or self.not_null


# Words that end the type and start the constraint clauses (the unsupported ones are refused by name).
_UNSUPPORTED_CLAUSES = frozenset({"CHECK", "REFERENCES", "COLLATE", "GENERATED"})
_SUPPORTED_CLAUSES = frozenset({"PRIMARY", "NOT", "NULL", "UNIQUE", "DEFAULT", "CONSTRAINT"})
_CLAUSE_WORDS = _SUPPORTED_CLAUSES | _UNSUPPORTED_CLAUSES
_DEFAULT_KEYWORDS = frozenset({"NULL", "TRUE", "FALSE", "CURRENT_TIMESTAMP", "CURRENT_DATE"})
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
      | (?P<quoted>"(?:[^"]|"")+")
      | (?P<string>'(?:[^']|'')*')
      | (?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<other>\S)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """``text`` as (kind, token, start) triples; ``kind`` is the name of the matching group."""
    tokens: list[tuple[str, str, int]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # only whitespace is left
            break
        kind = match.lastgroup or "other"
        tokens.append((kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


def split_declared(text: str) -> tuple[str, ColumnConstraints]:
    """A declared column type and the constraints written after it.

    ``'character varying(100) PRIMARY KEY'`` gives ``('character varying(100)',
    ColumnConstraints(primary_key=True))``. Key words are read in any case;
    a constraint name in double quotes is taken as written, a bare one in
    lower case. Raises ``ValueError`` for clauses other than
    :data:`SUPPORTED_CONSTRAINTS` (``CHECK``, ``REFERENCES``... would have to
    be pasted into DDL as written, which is never done) and for
    contradictions such as ``NULL NOT NULL``.
    """
    tokens = _tokens(text)
    depth = 0
    start: int | None = None
    for index, (kind, token, _) in enumerate(tokens):
        if kind == "other" and token == "(":
            depth += 1
        elif kind == "other" and token == ")":
            depth -= 1
        elif depth == 0 and kind == "word" and token.upper() in _CLAUSE_WORDS:
            start = index
            break
    if start is None:
        return text.strip(), ColumnConstraints()
    base = text[: tokens[start][2]].strip()
    return base, _constraints(text, base, tokens[start:])


def _constraints(text: str, base: str, tokens: list[tuple[str, str, int]]) -> ColumnConstraints:
    words = [token.upper() if kind == "word" else "" for kind, token, _ in tokens]
    primary_key = not_null = nullable = unique = False
    default: DefaultValue | None = None
    primary_key_name = unique_name = None
    name: str | None = None
    i = 0

    def rest(at: int) -> str:
        return text[tokens[at][2] :].strip()

    while i < len(tokens):
        word = words[i]
        following = words[i + 1] if i + 1 < len(tokens) else ""
        if word == "CONSTRAINT":
            if name is not None or i + 1 >= len(tokens) or tokens[i + 1][0] not in ("word", "quoted"):
                raise ValueError(f"type '{text}': CONSTRAINT needs a name and then a constraint")
            kind, token, _ = tokens[i + 1]
            name = token[1:-1].replace('""', '"') if kind == "quoted" else token.lower()
            i += 2
            if i >= len(tokens):
                raise ValueError(f"type '{text}': CONSTRAINT {name} names no constraint")
            continue
        if word == "PRIMARY" and following == "KEY":
            primary_key, primary_key_name, i = True, name or primary_key_name, i + 2
        elif word == "NOT" and following == "NULL":
            not_null, i = True, i + 2
        elif word == "NULL":
            nullable, i = True, i + 1
        elif word == "UNIQUE":
            unique, unique_name, i = True, name or unique_name, i + 1
        elif word == "DEFAULT":
            if i + 1 >= len(tokens):
                raise ValueError(f"type '{text}': DEFAULT needs a value")
            kind, token, _ = tokens[i + 1]
            if kind == "number":
                default = DefaultValue("number", token)
            elif kind == "string":
                default = DefaultValue("text", token[1:-1].replace("''", "'"))
            elif kind == "word" and token.upper() in _DEFAULT_KEYWORDS:
                default = DefaultValue("keyword", token.upper())
            else:
                raise ValueError(
                    f"type '{text}': DEFAULT takes a literal (a number, 'text', NULL, TRUE, FALSE, "
                    f"CURRENT_TIMESTAMP or CURRENT_DATE), not '{rest(i + 1)}'"
                )
            i += 2
        elif word in _UNSUPPORTED_CLAUSES:
            raise ValueError(
                f"type '{text}': {word} is not supported in a declared type; supported constraints: "
                f"{SUPPORTED_CONSTRAINTS}"
            )
        else:
            raise ValueError(
                f"type '{text}': cannot read '{rest(i)}' after the type '{base}'; supported constraints: "
                f"{SUPPORTED_CONSTRAINTS}"
            )
        name = None
    if nullable and (not_null or primary_key):
        raise ValueError(f"type '{text}': NULL contradicts {'PRIMARY KEY' if primary_key else 'NOT NULL'}")
    return ColumnConstraints(
        primary_key=primary_key,
        not_null=not_null,
        unique=unique,
        default=default,
        primary_key_name=primary_key_name,
        unique_name=unique_name,
    )


def sql_type_to_duckdb(text: str) -> str:
    """The DuckDB type for a type written in DuckDB or PostgreSQL spelling.

    ``numeric(10,2)`` gives ``DECIMAL(10,2)``, ``character varying(20)`` gives
    ``VARCHAR``, ``timestamptz`` gives ``TIMESTAMPTZ``. Column constraints
    after the type (``integer NOT NULL``) are checked with
    :func:`split_declared` and left out of the result. Raises ``ValueError``
    naming the supported spellings for anything else.
    """
    text = split_declared(text)[0]
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
