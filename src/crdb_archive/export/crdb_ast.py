"""What the CockroachDB dialect's statement parser produces: one value per schema statement.

These are the statements ``SHOW CREATE ALL TABLES`` (and ``SHOW CREATE ALL TYPES``) print, as
parsed and before any translation: names are normalised (unquoted identifiers lower-cased, as
CockroachDB does), expressions are sqlglot trees, and every CockroachDB-only clause is kept as
its source text so that the translation can name what it drops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sqlglot import exp

Name = tuple[str, ...]  # a dotted name, e.g. ("public", "users") or ("db", "public", "mood")


@dataclass(frozen=True)
class TypeSpec:
    """A column type as written: ``DECIMAL(10,2)``, ``STRING[]``, ``public.mood``."""

    name: Name  # upper-cased for built-in names; as written for user-defined ones
    args: tuple[str, ...] = ()  # the parenthesised arguments: "10", "2", "POINT", "4326"
    array: bool = False
    quoted: bool = False  # a quoted name ("char")
    suffix: str = ""  # "WITH TIME ZONE", "DAY TO SECOND"
    collate: str | None = None


@dataclass
class ColumnDef:
    name: str
    type: TypeSpec
    line: int
    not_null: bool = False
    hidden: bool = False
    default: exp.Expr | None = None
    default_text: str | None = None
    computed: exp.Expr | None = None
    computed_text: str | None = None
    virtual: bool = False
    on_update_text: str | None = None
    identity_text: str | None = None
    family: str | None = None
    primary_key: bool = False
    unique: bool = False
    checks: list[CheckDef] = field(default_factory=list)
    references: ForeignKeyDef | None = None


@dataclass(frozen=True)
class IndexColumn:
    expression: exp.Expr  # a Column for a plain column
    text: str  # as written
    descending: bool = False
    nulls: str | None = None  # "FIRST" / "LAST" when written
    opclass: str | None = None


@dataclass
class IndexDef:
    name: str | None
    columns: list[IndexColumn]
    line: int
    table: Name | None = None  # set for CREATE INDEX
    unique: bool = False
    primary: bool = False
    constraint: bool = False  # UNIQUE (...) / CONSTRAINT x UNIQUE (...), not UNIQUE INDEX
    without_index: bool = False  # UNIQUE WITHOUT INDEX
    inverted: bool = False
    method: str | None = None  # USING GIN / BTREE ... in CREATE INDEX
    storing: list[str] = field(default_factory=list)
    where: exp.Expr | None = None
    where_text: str | None = None
    not_valid: bool = False
    # CockroachDB-only clauses, as written: "USING HASH WITH (bucket_count=8)", "NOT VISIBLE"...
    dropped: list[str] = field(default_factory=list)


@dataclass
class ForeignKeyDef:
    name: str | None
    columns: list[str]
    table: Name
    ref_columns: list[str]
    line: int
    match: str | None = None  # "FULL" / "SIMPLE"
    on_delete: str | None = None  # "CASCADE", "SET NULL", ...
    on_update: str | None = None
    not_valid: bool = False


@dataclass
class CheckDef:
    name: str | None
    expression: exp.Expr
    text: str
    line: int
    not_valid: bool = False


@dataclass(frozen=True)
class FamilyDef:
    name: str | None
    columns: tuple[str, ...]


Element = ColumnDef | IndexDef | ForeignKeyDef | CheckDef | FamilyDef


@dataclass
class CreateTable:
    name: Name
    line: int
    elements: list[Element]
    locality: str | None = None  # "REGIONAL BY ROW", "GLOBAL", ... as written
    region_column: str | None = None  # REGIONAL BY ROW [AS col]
    dropped: list[str] = field(default_factory=list)  # table-level CockroachDB-only clauses


@dataclass
class CreateIndex:
    index: IndexDef


@dataclass(frozen=True)
class CreateEnum:
    name: Name
    values: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class ValidateConstraint:
    table: Name
    name: str


@dataclass
class AlterTable:
    table: Name
    line: int
    actions: list[ForeignKeyDef | CheckDef | IndexDef | ValidateConstraint]


CommentTarget = Literal["TABLE", "COLUMN", "INDEX", "CONSTRAINT"]


@dataclass(frozen=True)
class Comment:
    target: CommentTarget
    table: Name
    detail: str | None  # the column, index or constraint
    text: str | None  # None for IS NULL
    line: int


@dataclass(frozen=True)
class Skipped:
    """A statement that defines nothing an export loads (a view, a sequence, a grant...)."""

    what: str  # "view public.v", "sequence public.s", "SET"
    line: int
    reason: str


Statement = CreateTable | CreateIndex | CreateEnum | AlterTable | Comment | Skipped
