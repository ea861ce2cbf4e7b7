"""Named query parameters (``:name``) rewritten to each driver's placeholders.

Flows are often developed against SQLite or DuckDB and run against
PostgreSQL or MariaDB, so queries use one spelling for parameters whatever
the vendor: ``:name``. The values are handed to the driver as bound
parameters, never pasted into the text. The scanner skips string literals,
quoted identifiers, comments and PostgreSQL dollar quotes, and leaves ``::``
casts alone; ``\\:`` writes a literal colon.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

__all__ = ["ParamStyle", "bind_named", "strip_statement_end"]

ParamStyle = Literal["qmark", "format", "dollar"]
Segment = tuple[Literal["code", "quoted", "comment"], str]

_IDENT_START = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT = _IDENT_START | set("0123456789")


def _dollar_tag(sql: str, i: int) -> str | None:
    """The ``$tag$`` opening a dollar-quoted string at ``i``, if there is one."""
    j = i + 1
    while j < len(sql) and sql[j] in _IDENT and not (j == i + 1 and sql[j].isdigit()):
        j += 1
    if j < len(sql) and sql[j] == "$":
        return sql[i : j + 1]
    return None


def _segments(sql: str, backslash_escapes: bool) -> Iterator[Segment]:
    """``sql`` cut into code, quoted text (strings, identifiers, dollar quotes) and comments."""
    code: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        nxt = sql[i + 1] if i + 1 < n else ""
        end = -1
        kind: Literal["quoted", "comment"] = "quoted"
        if ch in "'\"`":
            escapes = backslash_escapes or (
                ch == "'" and i > 0 and sql[i - 1] in "eE" and (i < 2 or sql[i - 2] not in _IDENT)
            )
            j = i + 1
            while j < n:
                if escapes and sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            end = min(j + 1, n)
        elif (ch == "-" and nxt == "-") or (ch == "#" and backslash_escapes):
            kind = "comment"
            newline = sql.find("\n", i)
            end = n if newline < 0 else newline
        elif ch == "/" and nxt == "*":
            kind = "comment"
            close = sql.find("*/", i + 2)
            end = n if close < 0 else close + 2
        elif ch == "$" and not backslash_escapes and (i == 0 or sql[i - 1] not in _IDENT):
            tag = _dollar_tag(sql, i)
            if tag is not None:
                close = sql.find(tag, i + len(tag))
                end = n if close < 0 else close + len(tag)
        if end < 0:
            code.append(ch)
            i += 1
            continue
        if code:
            yield "code", "".join(code)
            code = []
        yield kind, sql[i:end]
        i = end
    if code:
        yield "code", "".join(code)


def _placeholder(style: ParamStyle, position: int) -> str:
    if style == "qmark":
        return "?"
    if style == "format":
        return "%s"
    return f"${position}"


def bind_named(
    sql: str,
    parameters: Mapping[str, Any],
    style: ParamStyle,
    *,
    backslash_escapes: bool = False,
    render: Callable[[int], str] | None = None,
) -> tuple[str, list[Any]]:
    """``sql`` with each ``:name`` replaced by a positional placeholder, and the values in order.

    ``backslash_escapes`` is MariaDB/MySQL's string syntax (``'it\\'s'``).
    With the ``format`` style, literal ``%`` signs are doubled as the drivers
    expect. ``ValueError`` when the query names a parameter that is not given,
    or a given parameter is not used (almost always a typo). ``render``
    replaces the style's placeholder for the n-th (1-based) parameter.
    """
    out: list[str] = []
    values: list[Any] = []
    used: set[str] = set()
    for kind, text in _segments(sql, backslash_escapes):
        if kind != "code":
            out.append(text.replace("%", "%%") if style == "format" else text)
            continue
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            nxt = text[i + 1] if i + 1 < n else ""
            if ch == "\\" and nxt == ":":
                out.append(":")
                i += 2
                continue
            if ch == ":" and nxt == ":":
                out.append("::")
                i += 2
                continue
            if ch == ":" and nxt in _IDENT_START and (i == 0 or text[i - 1] not in _IDENT):
                j = i + 1
                while j < n and text[j] in _IDENT:
                    j += 1
                name = text[i + 1 : j]
                if name not in parameters:
                    known = ", ".join(sorted(parameters)) or "none"
                    raise ValueError(
                        f"the query uses :{name} but no parameter '{name}' is given (given: {known})"
                    )
                values.append(parameters[name])
                used.add(name)
                out.append(render(len(values)) if render is not None else _placeholder(style, len(values)))
                i = j
                continue
            out.append("%%" if (ch == "%" and style == "format") else ch)
            i += 1
    unused = sorted(set(parameters) - used)
    if unused:
        raise ValueError(
            f"parameter(s) {', '.join(unused)} are not used by the query; reference them as :name"
        )
    return "".join(out), values


def strip_statement_end(sql: str, *, backslash_escapes: bool = False) -> str:
    """``sql`` without trailing semicolons, white space and comments.

    Drivers wrap a query (``COPY (...) TO STDOUT``, ``DECLARE ... FOR ...``):
    a final ``;`` or ``-- comment`` would break the wrapper.
    """
    segments = list(_segments(sql, backslash_escapes))
    while segments:
        kind, text = segments[-1]
        if kind == "comment":
            segments.pop()
            continue
        if kind == "code":
            trimmed = text.rstrip().rstrip(";").rstrip()
            while trimmed.endswith(";"):
                trimmed = trimmed[:-1].rstrip()
            if not trimmed:
                segments.pop()
                continue
            segments[-1] = ("code", trimmed)
        break
    return "".join(text for _, text in segments)
