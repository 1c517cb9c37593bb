"""The shape of exported tables: what a schema file declares, in terms both ends understand.

A :class:`Schema` is what ``SHOW CREATE ALL TABLES`` output means once parsed: tables with
typed columns, primary keys, the parts PostgreSQL will get after the data is loaded, and a
note for every CockroachDB-only part that was dropped on the way. The snapshot builder reads
it to type and key the rows of a changefeed or EXPORT; the PostgreSQL translator and loader
write it out. Nothing here parses or prints SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# The families of CockroachDB types an export can hold (DESIGN 2.4: values in tree.AsJSON
# encoding). ``enum`` and ``array`` carry more in :class:`SqlType`.
TypeKind = Literal[
    "bool",
    "int",  # INT2/INT4/INT8 (width in ``SqlType.bits``)
    "float",  # FLOAT4/FLOAT8 (width in ``SqlType.bits``)
    "decimal",  # DECIMAL(p,s): precision and scale in ``SqlType``
    "string",  # STRING/TEXT/VARCHAR(n)/CHAR(n): length in ``SqlType.length``
    "bytes",
    "uuid",
    "date",
    "time",
    "timetz",
    "timestamp",
    "timestamptz",
    "interval",
    "inet",
    "jsonb",
    "bit",  # BIT(n)/VARBIT(n)
    "oid",
    "enum",  # a user-defined ENUM: its name in ``SqlType.enum``
    "array",  # of ``SqlType.element``
    "geometry",  # spatial types, carried as text (WKT/GeoJSON as exported)
]


@dataclass(frozen=True, order=True)
class QualifiedName:
    """``schema.name`` in a database; the database is None when the schema file does not say."""

    schema: str
    name: str
    database: str | None = None

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class SqlType:
    """One column type, as CockroachDB declared it and as PostgreSQL gets it."""

    kind: TypeKind
    cockroach: str  # as declared, normalised: "DECIMAL(10,2)", "STRING(20)", "INT8[]"
    postgres: str  # the PostgreSQL type: "numeric(10,2)", "varchar(20)", "bigint[]"
    bits: int | None = None  # int: 16/32/64; float: 32/64
    precision: int | None = None  # decimal, and the fractional seconds of time types
    scale: int | None = None  # decimal
    length: int | None = None  # string and bit types with a declared length
    element: SqlType | None = None  # array
    enum: QualifiedName | None = None  # enum


@dataclass(frozen=True)
class Column:
    name: str
    type: SqlType
    nullable: bool = True
    # NOT VISIBLE columns (``rowid``, ``crdb_region``): changefeeds carry some of them, EXPORT
    # never does; see Table.exported_columns.
    hidden: bool = False
    default: str | None = None  # a PostgreSQL expression, when one survives the translation
    computed: str | None = None  # the CockroachDB expression of a computed column, if any


@dataclass(frozen=True)
class Index:
    """An index or unique constraint created after the data is loaded."""

    name: str
    columns: tuple[str, ...]  # with " DESC" where the index is descending
    unique: bool = False
    where: str | None = None  # a partial index's predicate, in PostgreSQL


@dataclass(frozen=True)
class Constraint:
    """A foreign key or check constraint, created after the data is loaded."""

    name: str
    kind: Literal["foreign_key", "check", "unique"]
    definition: str  # PostgreSQL text after "ADD CONSTRAINT <name> "


@dataclass(frozen=True)
class Table:
    name: QualifiedName
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]  # column names in key order; never empty (rowid if implicit)
    indexes: tuple[Index, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    comment: str | None = None
    column_comments: tuple[tuple[str, str], ...] = ()
    # Column families as declared (name, columns); a changefeed with split_column_families
    # names its topics ``table+family``.
    families: tuple[tuple[str, tuple[str, ...]], ...] = ()
    notes: tuple[str, ...] = ()  # what was dropped or changed on the way to PostgreSQL

    def column(self, name: str) -> Column:
        """The column called ``name``; raises KeyError."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def visible_columns(self) -> tuple[Column, ...]:
        """The columns ``SELECT *`` and ``EXPORT`` return, in declaration order."""
        return tuple(c for c in self.columns if not c.hidden)


@dataclass(frozen=True)
class EnumType:
    name: QualifiedName
    values: tuple[str, ...]


@dataclass(frozen=True)
class Schema:
    """Every table (and enum) of a schema file, in the order the file declares them."""

    tables: tuple[Table, ...]
    enums: tuple[EnumType, ...] = ()
    notes: tuple[str, ...] = field(default=())  # notes about the file as a whole

    def table(self, name: str) -> Table:
        """The table ``name`` (``t``, ``schema.t`` or ``db.schema.t``); raises KeyError when
        no table, or more than one, answers to it."""
        parts = name.split(".")
        found = [
            t for t in self.tables
            if (len(parts) == 1 and t.name.name == parts[0])
            or (len(parts) == 2 and (t.name.schema, t.name.name) == tuple(parts))
            or (len(parts) == 3 and (t.name.database, t.name.schema, t.name.name)
                == tuple(parts))
        ]
        if len(found) != 1:
            raise KeyError(name)
        return found[0]
