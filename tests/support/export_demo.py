"""The shop database of :mod:`crdb_archive.demo.shop` for the export bundle tests: its EXPORT,
a check that its schema file and model agree, and the rows each reader must give back.

The truth of every table at any time comes from the :class:`History`, never from the files.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg

from crdb_archive.demo.shop import (
    CUSTOMERS,
    ORDERS,
    RESOLVED,
    SCHEMA,
    SCHEMA_SQL,
    customer,
    order,
    write_shop_changefeed,
)
from crdb_archive.export.ddl import parse_schema
from crdb_archive.export.hlc import Hlc
from support.changefeeds import (
    History,
    expected_parquet_value,
    write_export,
)

__all__ = [
    "CUSTOMERS", "ORDERS", "RESOLVED", "SCHEMA", "SCHEMA_SQL", "check_schema_file", "customer",
    "expected_parquet_rows", "expected_rows", "loaded_rows", "order", "parquet_rows",
    "write_shop_changefeed", "write_shop_export",
]


def check_schema_file() -> None:
    """The schema file declares exactly the tables of the model (names, types, keys)."""
    parsed = parse_schema(SCHEMA_SQL, source="schema.sql")
    for model, read in zip(SCHEMA.tables, parsed.tables, strict=True):
        assert (model.name.schema, model.name.name) == (read.name.schema, read.name.name)
        assert model.primary_key == read.primary_key
        assert [(c.name, c.type.cockroach, c.nullable) for c in model.columns] == \
            [(c.name, c.type.cockroach, c.nullable) for c in read.columns]


def write_shop_export(root: Path, history: History, at: Hlc, *, fmt: str = "csv",
                      compression: str = "none") -> list[Path]:
    """``EXPORT INTO CSV|PARQUET ... FROM TABLE customers AS OF SYSTEM TIME at``."""
    rows = list(history.model_at(at)["customers"].values())
    root.mkdir(parents=True, exist_ok=True)
    return write_export(root, CUSTOMERS, rows, fmt, compression=compression, chunk_rows=4)


# --- comparing what was loaded or written with the model ------------------------------------


def _pg_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "decimal":
        return Decimal(str(value))
    if kind == "jsonb":
        return json.loads(str(value))
    return value


def expected_rows(history: History, at: Hlc | None, name: str) -> list[tuple[Any, ...]]:
    """The rows of table ``name`` at ``at`` as PostgreSQL gives them back, by primary key."""
    t = SCHEMA.table(name)
    rows = history.model_at(at)[name]
    return [tuple(_pg_value(rows[key].get(c.name), c.type.kind) for c in t.visible_columns)
            for key in sorted(rows)]


def expected_parquet_rows(history: History, at: Hlc | None, name: str) -> list[tuple[Any, ...]]:
    """The rows of table ``name`` at ``at`` as DuckDB reads them from the Parquet snapshot."""
    t = SCHEMA.table(name)
    rows = history.model_at(at)[name]
    return [tuple(expected_parquet_value(rows[key].get(c.name), c.type)
                  for c in t.visible_columns) for key in sorted(rows)]


def loaded_rows(connection: psycopg.Connection[tuple[Any, ...]], name: str,
                schema: str = "public") -> list[tuple[Any, ...]]:
    """Every row of a loaded table, in primary key order."""
    t = SCHEMA.table(name)
    columns = ", ".join(f'"{c.name}"' for c in t.visible_columns)
    key = ", ".join(f'"{k}"' for k in t.primary_key)
    return connection.execute(
        f'SELECT {columns} FROM "{schema}"."{name}" ORDER BY {key}').fetchall()


def parquet_rows(path: Path) -> list[tuple[Any, ...]]:
    """A snapshot file read by DuckDB (its own connection, UTC)."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(f"SELECT * FROM read_parquet('{path}')").fetchall()
    finally:
        con.close()
