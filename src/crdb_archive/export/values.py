"""One value of a changefeed or EXPORT row, brought to its exact text.

Every input format ends up as text per column (and a list of texts for an ARRAY) before DuckDB
types it, because text is the only form that loses nothing:

- JSON (ndjson changefeeds) uses CockroachDB's ``tree.AsJSON`` encoding: INT and DECIMAL as
  JSON numbers (DECIMAL keeping its scale, ``25.50``), FLOAT as a number or ``"NaN"`` /
  ``"Infinity"``, BYTES as a ``\\x``-hex string (``DataConversionConfig{}`` is the default hex
  format), TIMESTAMP/TIMESTAMPTZ/DATE/TIME/INTERVAL/UUID/INET/ENUM as strings, JSONB as JSON,
  arrays as JSON arrays. Numbers are parsed as their literal digits (:class:`JsonNumber`):
  DuckDB's own JSON parser reads numbers as doubles and would lose DECIMAL digits and the
  exact text of JSONB numbers;
- CSV (``EXPORT`` and ``format=csv`` changefeeds) holds ``tree.FmtExport`` text: already
  PostgreSQL-compatible scalars, arrays as ``{a,"b c",NULL}`` literals.

Raises :class:`ValueError` with a short reason; callers add the file and line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from crdb_archive.export.model import SqlType

Text = str | list[str | None] | None

_STRING_KINDS = frozenset({
    "string", "bytes", "uuid", "date", "time", "timetz", "timestamp", "timestamptz",
    "interval", "inet", "bit", "enum",
})
_FLOAT_WORDS = frozenset({"NaN", "Infinity", "-Infinity", "+Infinity"})


class JsonNumber(str):
    """A JSON number kept as its literal text."""

    __slots__ = ()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(line: str) -> Any:
    """Parse one JSON document keeping numbers as :class:`JsonNumber`; raises ValueError."""
    return json.loads(line, parse_float=JsonNumber, parse_int=JsonNumber,
                      parse_constant=_reject_constant)


def dumps_exact(value: Any) -> str:
    """JSON text of a parsed value, numbers as written, in CockroachDB's ``{"a": 1}`` layout."""
    return "".join(_dump_parts(value))


def _dump_parts(value: Any) -> Iterator[str]:
    if isinstance(value, JsonNumber):
        yield str.__str__(value)
    elif isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield (", " if i else "") + json.dumps(key, ensure_ascii=False) + ": "
            yield from _dump_parts(item)
        yield "}"
    elif isinstance(value, list):
        yield "["
        for i, item in enumerate(value):
            if i:
                yield ", "
            yield from _dump_parts(item)
        yield "]"
    else:
        yield json.dumps(value, ensure_ascii=False)


def from_json(value: Any, sql_type: SqlType) -> Text:
    """The text of a ``tree.AsJSON`` value of ``sql_type``; raises ValueError."""
    if value is None:
        return None
    if sql_type.kind == "array":
        if not isinstance(value, list):
            raise ValueError("an ARRAY value that is not a JSON array")
        element = sql_type.element
        if element is None or element.kind == "array":
            raise ValueError("an ARRAY type without a scalar element type")
        return [_scalar_from_json(item, element) for item in value]
    return _scalar_from_json(value, sql_type)


def _scalar_from_json(value: Any, sql_type: SqlType) -> str | None:
    if value is None:
        return None
    kind = sql_type.kind
    for kinds, convert in _FROM_JSON:
        if kind in kinds:
            return convert(value, sql_type)
    if kind in _STRING_KINDS:
        return _json_string(value, sql_type)
    raise ValueError(f"a column of unknown kind {kind!r}")


def _json_bool(value: Any, _: SqlType) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    raise ValueError("a BOOL value that is not true or false")


def _json_integer(value: Any, sql_type: SqlType) -> str:
    if not isinstance(value, JsonNumber) or not _is_integer(value):
        raise ValueError(f"an {sql_type.cockroach} value that is not a JSON integer")
    return str.__str__(value)


def _json_number(value: Any, sql_type: SqlType) -> str:
    if isinstance(value, JsonNumber):
        return str.__str__(value)
    if isinstance(value, str) and value in _FLOAT_WORDS:
        return value
    raise ValueError(f"a {sql_type.cockroach} value that is not a JSON number")


def _json_string(value: Any, sql_type: SqlType) -> str:
    if isinstance(value, str) and not isinstance(value, JsonNumber):
        return value
    raise ValueError(f"a {sql_type.cockroach} value that is not a JSON string")


# How a JSON value of each kind becomes its text; JSONB and geometry keep their JSON.
_FROM_JSON: tuple[tuple[tuple[str, ...], Callable[[Any, SqlType], str]], ...] = (
    (("jsonb",), lambda value, _: dumps_exact(value)),
    (("bool",), _json_bool),
    (("int", "oid"), _json_integer),
    (("float", "decimal"), _json_number),
    (("geometry",), lambda value, _: value if isinstance(value, str) else dumps_exact(value)),
)


def _is_integer(text: str) -> bool:
    digits = text[1:] if text.startswith("-") else text
    return digits.isdigit()


def from_csv(field: str, sql_type: SqlType) -> Text:
    """The text of one ``FmtExport`` CSV field; the empty field is NULL (EXPORT's default
    ``nullas``). Raises ValueError for an ARRAY field that is not an array literal."""
    if field == "":
        return None
    if sql_type.kind == "array":
        return parse_array_literal(field)
    return field


def parse_array_literal(text: str) -> list[str | None]:
    """``{a,"b, c",NULL,"NULL"}`` -> ``["a", "b, c", None, "NULL"]``; raises ValueError.

    One dimension, as CockroachDB arrays are.
    """
    if len(text) < 2 or text[0] != "{" or text[-1] != "}":
        raise ValueError("an ARRAY value that is not a {...} literal")
    body = text[1:-1]
    items: list[str | None] = []
    if body == "":
        return items
    i = 0
    while True:
        if i < len(body) and body[i] == '"':
            item, i = _quoted_element(body, i + 1)
            items.append(item)
        else:
            end = body.find(",", i)
            end = len(body) if end < 0 else end
            raw = body[i:end].strip()
            if raw == "" or '"' in raw or "{" in raw:
                raise ValueError("an ARRAY literal with a malformed element")
            items.append(None if raw.upper() == "NULL" else raw)
            i = end
        if i >= len(body):
            return items
        if body[i] != ",":
            raise ValueError("an ARRAY literal with text after a quoted element")
        i += 1


def _quoted_element(body: str, i: int) -> tuple[str, int]:
    """The quoted element whose text starts at ``body[i]`` (after its quote), and where the
    literal goes on after its closing quote; raises ValueError."""
    chars: list[str] = []
    while i < len(body):
        ch = body[i]
        if ch == '"':
            return "".join(chars), i + 1
        if ch == "\\":
            if i + 1 >= len(body):
                raise ValueError("an ARRAY literal ending in a backslash")
            chars.append(body[i + 1])
            i += 2
        else:
            chars.append(ch)
            i += 1
    raise ValueError("an ARRAY literal with an unterminated quote")
