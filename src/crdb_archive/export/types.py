"""CockroachDB column types and the PostgreSQL types an export loads them into.

CockroachDB prints canonical names (``INT8``, ``STRING(20)``, ``DECIMAL(10,2)``, ``FLOAT8``,
``BYTES``, ``TIMESTAMPTZ(3)``, ``INT8[]``, ``public.mood``); files written by hand may use the
aliases CockroachDB accepts (``INT`` is ``INT8`` there, not PostgreSQL's ``int4``). Types
PostgreSQL has no built-in equivalent for are carried as text, with a note.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from crdb_archive.export.crdb_ast import TypeSpec
from crdb_archive.export.model import EnumType, QualifiedName, SqlType, TypeKind


class UnknownType(ValueError):
    """A type name neither CockroachDB nor this translation knows."""


@dataclass(frozen=True)
class _Builtin:
    kind: TypeKind
    postgres: str
    bits: int | None = None
    parameters: str = ""  # "length", "precision", "precision_scale", "": what (n) means
    canonical: str | None = None  # CockroachDB's own spelling, when it prints another name
    note: str | None = None


_INT64 = _Builtin("int", "bigint", 64, canonical="INT8")
_FLOAT64 = _Builtin("float", "double precision", 64, canonical="FLOAT8")
_TEXT = _Builtin("string", "text", canonical="STRING")
_SPATIAL = "PostgreSQL has no spatial types without PostGIS: loaded as text"

_BUILTINS: dict[str, _Builtin] = {
    "BOOL": _Builtin("bool", "boolean"),
    "BOOLEAN": _Builtin("bool", "boolean", canonical="BOOL"),
    "INT2": _Builtin("int", "smallint", 16),
    "SMALLINT": _Builtin("int", "smallint", 16, canonical="INT2"),
    "INT4": _Builtin("int", "integer", 32),
    # INT and INTEGER mean INT8 in CockroachDB (default_int_size = 8).
    "INT": _INT64, "INTEGER": _INT64, "INT8": _INT64, "INT64": _INT64, "BIGINT": _INT64,
    "FLOAT4": _Builtin("float", "real", 32),
    "REAL": _Builtin("float", "real", 32, canonical="FLOAT4"),
    "FLOAT8": _FLOAT64, "FLOAT": _FLOAT64, "DOUBLE PRECISION": _FLOAT64,
    "DECIMAL": _Builtin("decimal", "numeric", parameters="precision_scale"),
    "NUMERIC": _Builtin("decimal", "numeric", parameters="precision_scale",
                        canonical="DECIMAL"),
    "DEC": _Builtin("decimal", "numeric", parameters="precision_scale", canonical="DECIMAL"),
    "STRING": _Builtin("string", "text", parameters="length"),
    "TEXT": _TEXT,
    "VARCHAR": _Builtin("string", "varchar", parameters="length"),
    "CHARACTER VARYING": _Builtin("string", "varchar", parameters="length",
                                  canonical="VARCHAR"),
    "CHAR VARYING": _Builtin("string", "varchar", parameters="length", canonical="VARCHAR"),
    "CHAR": _Builtin("string", "char", parameters="length"),
    "CHARACTER": _Builtin("string", "char", parameters="length", canonical="CHAR"),
    "NAME": _Builtin("string", "name"),
    "CITEXT": _Builtin("string", "text", note="citext needs a PostgreSQL extension: loaded "
                                              "as case-sensitive text"),
    "BYTES": _Builtin("bytes", "bytea"),
    "BYTEA": _Builtin("bytes", "bytea", canonical="BYTES"),
    "BLOB": _Builtin("bytes", "bytea", canonical="BYTES"),
    "UUID": _Builtin("uuid", "uuid"),
    "DATE": _Builtin("date", "date"),
    "TIME": _Builtin("time", "time", parameters="precision"),
    "TIMETZ": _Builtin("timetz", "timetz", parameters="precision"),
    "TIMESTAMP": _Builtin("timestamp", "timestamp", parameters="precision"),
    "TIMESTAMPTZ": _Builtin("timestamptz", "timestamptz", parameters="precision"),
    "INTERVAL": _Builtin("interval", "interval", parameters="precision"),
    "INET": _Builtin("inet", "inet"),
    "JSONB": _Builtin("jsonb", "jsonb"),
    "JSON": _Builtin("jsonb", "jsonb", canonical="JSONB"),
    "BIT": _Builtin("bit", "bit", parameters="length"),
    "VARBIT": _Builtin("bit", "varbit", parameters="length"),
    "BIT VARYING": _Builtin("bit", "varbit", parameters="length", canonical="VARBIT"),
    "OID": _Builtin("oid", "oid"),
    "TSVECTOR": _Builtin("string", "tsvector"),
    "TSQUERY": _Builtin("string", "tsquery"),
    "PG_LSN": _Builtin("string", "pg_lsn"),
    "REFCURSOR": _Builtin("string", "text", note="refcursor values are loaded as text"),
    "GEOMETRY": _Builtin("geometry", "text", note=_SPATIAL),
    "GEOGRAPHY": _Builtin("geometry", "text", note=_SPATIAL),
    "BOX2D": _Builtin("geometry", "text", note=_SPATIAL),
    "VECTOR": _Builtin("string", "text", note="vector needs the pgvector extension: loaded "
                                              "as text"),
}
for _name in ("REGCLASS", "REGPROC", "REGPROCEDURE", "REGTYPE", "REGNAMESPACE", "REGROLE"):
    _BUILTINS[_name] = _Builtin("string", "text", note=f"{_name} values are object names "
                                                       "there: loaded as text")
_SERIALS = {"SERIAL": "INT8", "SERIAL2": "INT2", "SMALLSERIAL": "INT2", "SERIAL4": "INT4",
            "SERIAL8": "INT8", "BIGSERIAL": "INT8"}


def translate_type(spec: TypeSpec, enums: Mapping[tuple[str, str], EnumType]
                   ) -> tuple[SqlType, list[str]]:
    """The typed column type for ``spec``, and notes on what changed on the way.

    ``enums`` are the enum types the file defines, by (schema, name). Raises UnknownType.
    """
    notes: list[str] = []
    element = _scalar(spec, enums, notes)
    if spec.collate:
        notes.append(f"collation {spec.collate} dropped: PostgreSQL collations have other "
                     "names")
    if not spec.array:
        return element, notes
    return SqlType("array", f"{element.cockroach}[]", f"{element.postgres}[]",
                   element=element), notes


def _scalar(spec: TypeSpec, enums: Mapping[tuple[str, str], EnumType],
            notes: list[str]) -> SqlType:
    if spec.quoted or len(spec.name) > 1:
        return _user_defined(spec, enums, notes)
    name = spec.name[0]
    if name == '"CHAR"' or (spec.quoted and name.lower() == "char"):
        return SqlType("string", '"char"', '"char"')
    name = _builtin_name(spec, name, notes)
    builtin = _BUILTINS.get(name)
    if builtin is None:
        if (("public", name.lower())) in enums:
            return _user_defined(TypeSpec(("public", name.lower())), enums, notes)
        raise UnknownType(f"unknown type {name}")
    if builtin.note:
        notes.append(builtin.note)
    if name == "FLOAT" and spec.args:
        # FLOAT(n): up to 24 binary digits is FLOAT4, as in PostgreSQL.
        small = _int(spec.args[0], spec) <= 24
        return SqlType("float", "FLOAT4" if small else "FLOAT8",
                       "real" if small else "double precision", bits=32 if small else 64)
    sized = _sized(name, builtin, spec)
    cockroach, postgres = sized.cockroach, sized.postgres
    if name == "INTERVAL" and spec.suffix:
        # Interval fields (DAY TO SECOND): PostgreSQL spells them the same way.
        postgres = postgres.replace("interval", f"interval {spec.suffix.lower()}", 1)
        cockroach = f"INTERVAL {spec.suffix}" + cockroach.removeprefix("INTERVAL")
    elif name in ("GEOMETRY", "GEOGRAPHY", "VECTOR") and spec.args:
        cockroach = f"{cockroach}({','.join(spec.args)})"
    return SqlType(builtin.kind, cockroach, postgres, bits=builtin.bits,
                   precision=sized.precision, scale=sized.scale, length=sized.length)


def _builtin_name(spec: TypeSpec, name: str, notes: list[str]) -> str:
    """The built-in type a name stands for: SERIAL is an integer, TIMESTAMP WITH TIME ZONE
    is TIMESTAMPTZ."""
    if name in _SERIALS:
        notes.append(f"{name} is {_SERIALS[name]} with a CockroachDB-generated default; "
                     "the default is not kept")
        name = _SERIALS[name]
    if spec.suffix == "WITH TIME ZONE" and name in ("TIMESTAMP", "TIME"):
        name = f"{name}TZ"
    return name


@dataclass(frozen=True)
class _Sized:
    """A built-in type with its arguments applied: both spellings and the sizes."""

    cockroach: str
    postgres: str
    precision: int | None = None
    scale: int | None = None
    length: int | None = None


def _sized(name: str, builtin: _Builtin, spec: TypeSpec) -> _Sized:
    """Length, precision and scale from the type's arguments; raises UnknownType for
    arguments the type does not take."""
    cockroach = builtin.canonical or name
    postgres = builtin.postgres
    args = spec.args
    if builtin.parameters == "length" and args:
        length = _int(args[0], spec)
        base = "varchar" if postgres == "text" else postgres  # STRING(n)
        return _Sized(f"{cockroach}({length})", f"{base}({length})", length=length)
    if builtin.parameters == "length" and name in ("CHAR", "CHARACTER", "BIT"):
        # CHAR and BIT alone are one character or bit wide, as in PostgreSQL
        return _Sized(cockroach, f"{postgres}(1)", length=1)
    if builtin.parameters == "precision_scale" and args:
        precision = _int(args[0], spec)
        scale = _int(args[1], spec) if len(args) > 1 else 0
        written = f"DECIMAL({precision},{scale})" if len(args) > 1 else f"DECIMAL({precision})"
        return _Sized(written, f"numeric({precision},{scale})", precision, scale)
    if builtin.parameters == "precision" and args:
        precision = _int(args[0], spec)
        return _Sized(f"{cockroach}({precision})", f"{postgres}({precision})", precision)
    if args and builtin.kind != "geometry" and name != "VECTOR":
        raise UnknownType(f"type {name} takes no arguments")
    return _Sized(cockroach, postgres)


def _user_defined(spec: TypeSpec, enums: Mapping[tuple[str, str], EnumType],
                  notes: list[str]) -> SqlType:
    parts = spec.name
    schema, name = (parts[-2], parts[-1]) if len(parts) >= 2 else ("public", parts[-1])
    database = parts[-3] if len(parts) >= 3 else None
    written = ".".join(parts)
    enum = enums.get((schema, name))
    if enum is None:
        if spec.quoted and len(parts) == 1:
            raise UnknownType(f'unknown type "{parts[0]}"')
        notes.append(f"type {written} is not defined in the schema file (SHOW CREATE ALL TYPES "
                     "prints it): loaded as text")
        return SqlType("string", written, "text")
    qualified = QualifiedName(schema, name, database)
    return SqlType("enum", written, f'"{schema}"."{name}"', enum=qualified)


def _int(text: str, spec: TypeSpec) -> int:
    try:
        return int(text)
    except ValueError:
        raise UnknownType(f"type {' '.join(spec.name)} takes numbers, not {text!r}") from None
