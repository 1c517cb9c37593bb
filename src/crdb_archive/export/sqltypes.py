"""How each column kind is typed by DuckDB, checked, written to Parquet and to PostgreSQL CSV.

The snapshot keeps every value as its exact text (:mod:`values`); this module builds the SQL
expressions that turn that text into

- the Parquet column: BOOL, SMALLINT/INTEGER/BIGINT, FLOAT/DOUBLE, DECIMAL(p,s) (p <= 38),
  VARCHAR, BLOB (from ``\\x`` hex), UUID, DATE, TIME, TIMESTAMP, TIMESTAMPTZ (UTC), JSON (the
  JSON text as written, Parquet's JSON logical type), BIGINT for OID, LIST of the element type
  for arrays; and VARCHAR (the text as CockroachDB wrote it) for TIMETZ, INTERVAL, INET,
  BIT, ENUM and spatial types, which Parquet has no faithful type for;
- the PostgreSQL CSV field: the text itself, which is already in PostgreSQL's input syntax
  (``\\x`` hex bytea, ISO timestamps with their offset, PostgreSQL interval syntax, JSON
  text), and arrays as ``{"a","b",NULL}`` literals.

A DECIMAL whose precision exceeds Parquet's 38 digits is written as VARCHAR; an unconstrained
DECIMAL is written as DECIMAL(38,s) with s the largest scale of the snapshot when every value
fits, as VARCHAR otherwise (:func:`decimal_plan` decides, the caller records a note).
"""

from __future__ import annotations

from dataclasses import dataclass

from crdb_archive.export.model import SqlType

MAX_PARQUET_DECIMAL = 38


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def is_array(sql_type: SqlType) -> bool:
    return sql_type.kind == "array"


def scalar_of(sql_type: SqlType) -> SqlType:
    """The element type of an array, the type itself otherwise."""
    if sql_type.kind == "array":
        if sql_type.element is None:
            raise ValueError(f"array type {sql_type.cockroach} without an element type")
        return sql_type.element
    return sql_type


def unconstrained_decimal(sql_type: SqlType) -> bool:
    return sql_type.kind == "decimal" and sql_type.precision is None


@dataclass(frozen=True)
class DecimalPlan:
    """How an unconstrained (or too wide) DECIMAL column is written to Parquet."""

    duck_type: str  # "DECIMAL(38,s)" or "VARCHAR"
    note: str | None


# The DuckDB type of each scalar kind whose type does not depend on its size or precision;
# any other kind (strings, enums, intervals, ...) is kept as text.
_FIXED_DUCK_TYPES = {
    "bool": "BOOLEAN", "bytes": "BLOB", "uuid": "UUID", "date": "DATE", "time": "TIME",
    "timestamp": "TIMESTAMP", "timestamptz": "TIMESTAMPTZ", "jsonb": "JSON", "oid": "BIGINT",
}


def scalar_duck_type(sql_type: SqlType, decimal: DecimalPlan | None = None) -> str:
    """The DuckDB (and so Parquet) type of one scalar kind."""
    kind = sql_type.kind
    if kind == "int":
        return {16: "SMALLINT", 32: "INTEGER"}.get(sql_type.bits or 64, "BIGINT")
    if kind == "float":
        return "FLOAT" if sql_type.bits == 32 else "DOUBLE"
    if kind == "decimal":
        return decimal.duck_type if decimal is not None else _decimal_duck_type(sql_type)
    return _FIXED_DUCK_TYPES.get(kind, "VARCHAR")


def _decimal_duck_type(sql_type: SqlType) -> str:
    """DECIMAL(p,s) when DuckDB's fits the precision, else text (digits kept exactly)."""
    precision = sql_type.precision
    if precision is None or precision > MAX_PARQUET_DECIMAL:
        return "VARCHAR"
    return f"DECIMAL({precision},{sql_type.scale or 0})"


def duck_type(sql_type: SqlType, decimal: DecimalPlan | None = None) -> str:
    """The DuckDB type of a column, arrays as LISTs."""
    if is_array(sql_type):
        return scalar_duck_type(scalar_of(sql_type), decimal) + "[]"
    return scalar_duck_type(sql_type, decimal)


def _scalar_typed(expr: str, sql_type: SqlType, decimal: DecimalPlan | None, strict: bool) -> str:
    target = scalar_duck_type(sql_type, decimal)
    cast = "CAST" if strict else "TRY_CAST"
    if sql_type.kind == "bytes":
        # '\x6869' is the hex bytea form CockroachDB writes; unhex takes the digits.
        check = f"regexp_full_match({expr}, '\\\\x([0-9a-fA-F]{{2}})*')"
        if strict:
            return f"unhex(substr({expr}, 3))"
        return f"CASE WHEN {check} THEN unhex(substr({expr}, 3)) END"
    if target == "VARCHAR":
        return expr
    return f"{cast}({expr} AS {target})"


def typed_expr(expr: str, sql_type: SqlType, decimal: DecimalPlan | None = None) -> str:
    """SQL turning the text ``expr`` into the column's Parquet type."""
    if is_array(sql_type):
        inner = _scalar_typed("e", scalar_of(sql_type), decimal, strict=True)
        return f"list_transform({expr}, lambda e: {inner})"
    return _scalar_typed(expr, sql_type, decimal, strict=True)


def invalid_expr(expr: str, sql_type: SqlType) -> str | None:
    """SQL that is true when the text ``expr`` is not a value of the type; None when any text
    is (strings and the kinds kept as text)."""
    scalar = scalar_of(sql_type)
    if scalar.kind == "decimal" and (scalar.precision or MAX_PARQUET_DECIMAL + 1) > (
            MAX_PARQUET_DECIMAL):
        # Wider than DuckDB's DECIMAL: any number (or NaN/Infinity) is a value.
        probe = "TRY_CAST(@v AS DOUBLE) IS NULL"
    elif scalar.kind == "bytes":
        probe = "NOT regexp_full_match(@v, '\\\\x([0-9a-fA-F]{2})*')"
    else:
        target = scalar_duck_type(scalar)
        if target == "VARCHAR":
            return None
        probe = f"TRY_CAST(@v AS {target}) IS NULL"
    if is_array(sql_type):
        test = probe.replace("@v", "e")
        return (f"({expr} IS NOT NULL AND "
                f"len(list_filter({expr}, lambda e: e IS NOT NULL AND {test})) > 0)")
    return f"({expr} IS NOT NULL AND {probe.replace('@v', expr)})"


def postgres_csv_expr(expr: str, sql_type: SqlType) -> str:
    """SQL giving the PostgreSQL COPY text of the value: the text itself, arrays as literals."""
    if not is_array(sql_type):
        return expr
    quoted = ("CASE WHEN e IS NULL THEN 'NULL' ELSE "
              "'\"' || replace(replace(e, '\\', '\\\\'), '\"', '\\\"') || '\"' END")
    return (f"CASE WHEN {expr} IS NULL THEN NULL ELSE "
            f"'{{' || array_to_string(list_transform({expr}, lambda e: {quoted}), ',') || '}}' END")


DECIMAL_TEXT = "^-?[0-9]+(\\.[0-9]+)?$"


def decimal_stats_sql(expr: str, relation: str) -> str:
    """SQL returning (all plain, max integer digits, max scale) of a DECIMAL text column."""
    plain = f"regexp_full_match({expr}, '{DECIMAL_TEXT}')"
    int_digits = f"length(ltrim(split_part(ltrim({expr}, '-'), '.', 1), '0'))"
    scale = f"CASE WHEN contains({expr}, '.') THEN length(split_part({expr}, '.', 2)) ELSE 0 END"
    return (f"SELECT coalesce(bool_and({plain}), true), coalesce(max({int_digits}), 0), "
            f"coalesce(max({scale}), 0) FROM {relation} WHERE {expr} IS NOT NULL")


def decimal_plan(column: str, all_plain: bool, int_digits: int, scale: int) -> DecimalPlan:
    """Parquet type of an unconstrained DECIMAL column from the snapshot's values."""
    if all_plain and int_digits + scale <= MAX_PARQUET_DECIMAL:
        return DecimalPlan(
            f"DECIMAL({MAX_PARQUET_DECIMAL},{scale})",
            f"column {column}: DECIMAL without a precision, written to Parquet as "
            f"DECIMAL({MAX_PARQUET_DECIMAL},{scale}) (the CSV keeps each value as written)")
    return DecimalPlan(
        "VARCHAR",
        f"column {column}: DECIMAL values beyond Parquet's {MAX_PARQUET_DECIMAL} digits (or "
        "NaN/Infinity), written to Parquet as text")
