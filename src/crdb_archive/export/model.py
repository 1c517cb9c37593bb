"""The shape of exported tables: what a schema file declares, in terms both ends understand.

A :class:`Schema` is what ``SHOW CREATE ALL TABLES`` output means once parsed: tables with
typed columns, primary keys, the parts PostgreSQL will get after the data is loaded, and a
note for every CockroachDB-only part that was dropped on the way. The snapshot builder reads
it to type and key the rows of a changefeed or EXPORT; the PostgreSQL translator and loader
write it out. Nothing here parses or prints SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import quote

# Where an export bundle keeps its snapshots (DESIGN 3); its schema files are in the layout.
SNAPSHOT_DIR = "data/snapshot"


def snapshot_file_stem(name: QualifiedName) -> str:
    """``<schema>.<table>`` with each part percent-encoded where it holds anything but letters,
    digits, ``_``, ``-`` and ``~`` (so no ``/``, and ``.`` only between the two parts)."""
    def enc(part: str) -> str:
        return quote(part, safe="").replace(".", "%2E")
    return f"{enc(name.schema)}.{enc(name.name)}"


def snapshot_csv_path(name: QualifiedName) -> str:
    """The bundle path of a table's snapshot for PostgreSQL: gzip of ``COPY (FORMAT csv,
    HEADER true)`` input holding the visible columns in declaration order."""
    return f"{SNAPSHOT_DIR}/{snapshot_file_stem(name)}.csv.gz"


def snapshot_parquet_path(name: QualifiedName) -> str:
    """The bundle path of a table's snapshot in Parquet, typed from the schema."""
    return f"{SNAPSHOT_DIR}/{snapshot_file_stem(name)}.parquet"

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
class IndexKey:
    """One key of an index: a column, or an expression in PostgreSQL."""

    column: str | None = None
    expression: str | None = None  # PostgreSQL text, when the key is not a plain column
    descending: bool = False
    nulls: Literal["FIRST", "LAST"] | None = None


@dataclass(frozen=True)
class Index:
    """An index or unique constraint created after the data is loaded."""

    name: str
    columns: tuple[str, ...]  # with " DESC" where the index is descending
    unique: bool = False
    where: str | None = None  # a partial index's predicate, in PostgreSQL
    # The keys, structured (``columns`` is their display form); empty means ``columns``.
    keys: tuple[IndexKey, ...] = ()
    method: str | None = None  # "gin" for an inverted index; None is PostgreSQL's default
    include: tuple[str, ...] = ()  # CockroachDB's STORING columns
    comment: str | None = None


@dataclass(frozen=True)
class ForeignKey:
    """What a foreign key references, structured so that its target can be renamed."""

    columns: tuple[str, ...]
    table: QualifiedName
    ref_columns: tuple[str, ...]
    match: Literal["FULL", "SIMPLE"] | None = None
    on_delete: str | None = None  # "CASCADE", "SET NULL", "SET DEFAULT", "RESTRICT"...
    on_update: str | None = None


@dataclass(frozen=True)
class Constraint:
    """A foreign key or check constraint, created after the data is loaded."""

    name: str
    kind: Literal["foreign_key", "check", "unique"]
    definition: str  # PostgreSQL text after "ADD CONSTRAINT <name> "
    foreign_key: ForeignKey | None = None  # set for kind "foreign_key"
    not_valid: bool = False  # CockroachDB never validated it: created NOT VALID
    comment: str | None = None


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
    primary_key_name: str | None = None  # the constraint's name, when the file gives one
    primary_key_comment: str | None = None
    # ``LOCALITY`` as declared ("REGIONAL BY ROW", "GLOBAL", ...); for REGIONAL BY ROW the
    # region column, which CockroachDB puts in front of every index key, primary key included.
    locality: str | None = None
    region_column: str | None = None

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

    @property
    def postgres_primary_key(self) -> tuple[str, ...]:
        """The primary key PostgreSQL gets: CockroachDB's, unless it holds a hidden column
        (``rowid``), whose values an export does not carry; then none."""
        visible = {c.name for c in self.visible_columns}
        return self.primary_key if all(c in visible for c in self.primary_key) else ()


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

    def all_notes(self) -> tuple[str, ...]:
        """Every note, the file's first, then each table's led by its name."""
        return self.notes + tuple(f"{t.name}: {note}" for t in self.tables for note in t.notes)

    def restricted_to(self, names: Iterable[QualifiedName]) -> Schema:
        """Only the tables named, in file order; a foreign key to a table left out is
        dropped with a note. Raises KeyError naming a table the schema does not define."""
        wanted = set(names)
        missing = wanted - {t.name for t in self.tables}
        if missing:
            raise KeyError(str(min(missing)))
        tables = []
        for table in self.tables:
            if table.name not in wanted:
                continue
            kept = tuple(c for c in table.constraints
                         if c.foreign_key is None or c.foreign_key.table in wanted)
            notes = tuple(f"foreign key {c.name} not created: {c.foreign_key.table} is not "
                          "in this export" for c in table.constraints
                          if c.foreign_key is not None and c.foreign_key.table not in wanted)
            tables.append(replace(table, constraints=kept, notes=table.notes + notes))
        return replace(self, tables=tuple(tables))

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
