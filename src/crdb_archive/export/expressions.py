"""CockroachDB expressions (defaults, checks, index predicates) as PostgreSQL text, when they
mean the same thing there.

An expression survives only if every function in it is one PostgreSQL has with the same
meaning, it references no column the export leaves out, and sqlglot can write it for
PostgreSQL; otherwise the caller drops the part with a note naming the reason. Casts to enum
types are removed: PostgreSQL types a string literal from its context, and the enum may live
in another schema after loading.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

# Functions CockroachDB and PostgreSQL both have, with the same meaning.
PORTABLE_FUNCTIONS = frozenset({
    "abs", "age", "array_length", "array_lower", "array_position", "array_upper", "ascii",
    "bit_length", "btrim", "cardinality", "cbrt", "ceil", "ceiling", "char_length",
    "character_length", "chr", "clock_timestamp", "coalesce", "concat", "concat_ws",
    "current_date", "current_timestamp", "date_part", "date_trunc", "degrees", "div", "exp",
    "extract", "floor", "gen_random_uuid", "greatest", "initcap", "json_typeof",
    "jsonb_array_length", "jsonb_typeof", "least", "left", "length", "ln", "localtimestamp",
    "log", "lower", "lpad", "ltrim", "md5", "mod", "now", "nullif", "octet_length", "pi",
    "position", "power", "radians", "random", "regexp_replace", "repeat", "replace",
    "reverse", "right", "round", "rpad", "rtrim", "sign", "split_part", "sqrt",
    "starts_with", "statement_timestamp", "strpos", "substr", "substring", "timezone",
    "to_char", "transaction_timestamp", "translate", "trim", "trunc", "upper",
})

# Functions with no PostgreSQL equivalent that SHOW CREATE prints often: named in notes.
COCKROACHDB_FUNCTIONS = frozenset({
    "unique_rowid", "gen_random_ulid", "gateway_region", "default_to_database_primary_region",
    "rehome_row", "fnv32", "fnv64", "crc32c", "crc32ieee", "uuid_v4", "experimental_uuid_v4",
    "unordered_unique_rowid", "nextval", "currval", "to_english", "cluster_logical_timestamp",
})


@dataclass(frozen=True)
class Translation:
    """PostgreSQL text, or why there is none."""

    sql: str | None
    reason: str | None = None


def to_postgres(expression: exp.Expr, *, hidden: Collection[str] = ()) -> Translation:
    """The expression in PostgreSQL, unless it uses a CockroachDB-only function or one of the
    ``hidden`` columns (which the export does not carry)."""
    tree = expression.copy()
    for identifier in list(tree.find_all(exp.Identifier)):
        if not identifier.quoted:
            identifier.set("this", identifier.name.lower())
    for cast in list(tree.find_all(exp.Cast)):
        to = cast.args.get("to")
        if isinstance(to, exp.DataType) and to.this == exp.DType.USERDEFINED:
            if cast is tree:
                tree = cast.this
                tree.pop()
            else:
                cast.replace(cast.this)
    reason = _unportable(tree, hidden)
    if reason:
        return Translation(None, reason)
    for data_type in tree.find_all(exp.DataType):
        if data_type.is_type(exp.DType.TEXT) and data_type.expressions:
            data_type.set("this", exp.DType.VARCHAR)  # STRING(n)
    try:
        sql = tree.sql(dialect="postgres", identify=True, unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as error:
        return Translation(None, f"PostgreSQL has no equivalent ({error})")
    return Translation(sql)


def _unportable(tree: exp.Expr, hidden: Collection[str]) -> str | None:
    for node in tree.walk():
        if isinstance(node, exp.Anonymous):
            name = node.name.lower()
            if isinstance(node.parent, exp.Dot):
                return f"{node.parent.sql()}() is a CockroachDB function"
            if name in COCKROACHDB_FUNCTIONS:
                return f"{name}() is a CockroachDB function"
            if name not in PORTABLE_FUNCTIONS:
                return f"{name}() is not known to mean the same in PostgreSQL"
        elif isinstance(node, exp.Query):
            return "a subquery"
        elif isinstance(node, exp.Column) and node.name in hidden:
            return f"it uses the hidden column {node.name}, which is not exported"
        elif isinstance(node, exp.DataType) and node.is_type(
                exp.DType.GEOMETRY, exp.DType.GEOGRAPHY):
            return "PostgreSQL has no spatial types without PostGIS"
    return None
