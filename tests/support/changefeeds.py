"""The tests' model of changefeed and EXPORT output: the writers of
:mod:`crdb_archive.demo.changefeeds` (from an event history the test defines), and what DuckDB
and the csv module give back for each model value, computed from that history and the types
(never from the files).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from crdb_archive.demo.changefeeds import (
    BOOL,
    BYTES,
    DATE,
    DECIMAL_ANY,
    FLOAT8,
    INT4,
    INT8,
    INT_ARRAY,
    INTERVAL,
    JSONB,
    STRING,
    STRING_ARRAY,
    TIMESTAMP,
    TIMESTAMPTZ,
    UUID,
    Event,
    Feed,
    History,
    JsonRaw,
    Row,
    Session,
    compress,
    decimal,
    export_text,
    hlc,
    json_value,
    partition,
    sql_type,
    table,
    write_export,
    write_parquet,
)
from crdb_archive.export.model import SqlType

__all__ = [
    "BOOL", "BYTES", "DATE", "DECIMAL_ANY", "Event", "FLOAT8", "Feed", "History", "INT4", "INT8",
    "INTERVAL", "INT_ARRAY", "JSONB", "JsonRaw", "Row", "STRING", "STRING_ARRAY", "Session",
    "TIMESTAMP", "TIMESTAMPTZ", "UUID", "compress", "csv_value", "decimal", "expected_csv_value",
    "expected_parquet_value", "export_text", "hlc", "json_value", "parse_array_text", "partition",
    "sql_type", "table", "write_export", "write_parquet",
]


# --- the model, as DuckDB and the csv module give values back ------------------------------


def expected_parquet_value(value: Any, t: SqlType) -> Any:
    """What DuckDB returns from the snapshot Parquet for a model value."""
    if value is None:
        return None
    kind = t.kind
    if kind == "array":
        assert t.element is not None
        return [expected_parquet_value(v, t.element) for v in value]
    if kind == "decimal":
        return Decimal(str(value))
    if kind == "jsonb":
        return str(value)
    if kind == "bytes":
        return bytes(value)
    if kind == "uuid":
        return uuid.UUID(str(value))
    if kind == "timestamptz":
        return value.astimezone(UTC)
    return value


def parse_array_text(text: str) -> list[str | None]:
    """A PostgreSQL array literal of quoted or NULL elements (as the snapshot CSV writes)."""
    assert text[0] == "{"
    assert text[-1] == "}"
    items: list[str | None] = []
    i, body = 0, text[1:-1]
    while i < len(body):
        if body.startswith("NULL", i):
            items.append(None)
            i += 4
        else:
            assert body[i] == '"'
            i += 1
            chars = []
            while body[i] != '"':
                if body[i] == "\\":
                    i += 1
                chars.append(body[i])
                i += 1
            i += 1
            items.append("".join(chars))
        if i < len(body):
            assert body[i] == ","
            i += 1
    return items


def _csv_bytes(text: str) -> bytes:
    assert text.startswith("\\x")
    return bytes.fromhex(text[2:])


# How a CSV field of each kind reads back; any other kind stays text.
_CSV_SCALARS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "decimal": Decimal,
    "float": float,
    "bool": {"true": True, "false": False}.__getitem__,
    "bytes": _csv_bytes,
    "jsonb": lambda text: json.loads(text, parse_float=Decimal),
    "uuid": uuid.UUID,
    "timestamptz": lambda text: datetime.fromisoformat(text).astimezone(UTC),
    "timestamp": datetime.fromisoformat,
    "date": date.fromisoformat,
}


def _csv_scalar(text: str, t: SqlType) -> Any:
    read = _CSV_SCALARS.get(t.kind)
    return text if read is None else read(text)


def csv_value(text: str, t: SqlType) -> Any:
    """A snapshot CSV field read back (the empty field is NULL: no model value is '')."""
    if text == "":
        return None
    if t.kind == "array":
        assert t.element is not None
        return [None if v is None else _csv_scalar(v, t.element) for v in parse_array_text(text)]
    return _csv_scalar(text, t)


def expected_csv_value(value: Any, t: SqlType) -> Any:
    if value is None:
        return None
    if t.kind == "array":
        assert t.element is not None
        return [expected_csv_value(v, t.element) for v in value]
    if t.kind == "jsonb":
        return json.loads(str(value), parse_float=Decimal)
    if t.kind == "decimal":
        return Decimal(str(value))
    if t.kind == "bytes":
        return bytes(value)
    if t.kind == "uuid":
        return uuid.UUID(str(value))
    if t.kind == "timestamptz":
        return value.astimezone(UTC)
    return value
