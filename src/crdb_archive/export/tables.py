"""One table of a schema file, assembled statement by statement into the typed model.

Every CockroachDB-only part met on the way is dropped here with a note that says what it was
and why it is gone; what remains is what PostgreSQL gets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from sqlglot import exp

from crdb_archive.export import crdb_ast as ast
from crdb_archive.export.expressions import to_postgres
from crdb_archive.export.model import (
    Column,
    Constraint,
    EnumType,
    ForeignKey,
    Index,
    IndexKey,
    QualifiedName,
    Table,
)
from crdb_archive.export.types import UnknownType, translate_type

# The error to raise for a message about a line of the file.
Fail = Callable[[int, str], Exception]

_HIDDEN_WHY = {
    "rowid": "CockroachDB's implicit row id",
    "crdb_region": "the region of a REGIONAL BY ROW table",
}
_TABLE_CLAUSES = {
    "PARTITION": "PostgreSQL has no CockroachDB partitioning",
    "INTERLEAVE": "interleaving is CockroachDB storage layout",
    "WITH": "CockroachDB storage parameters",
}


def quote(name: str) -> str:
    """A PostgreSQL identifier, always quoted."""
    return '"' + name.replace('"', '""') + '"'


def _hidden_note(column: str) -> str:
    why = _HIDDEN_WHY.get(column)
    if why is None and column.startswith("crdb_internal_") and "_shard_" in column:
        why = "the shard of a hash-sharded index"
    detail = f" ({why})" if why else ""
    return f"column {column} not loaded: hidden (NOT VISIBLE){detail}; an export does not " \
           "carry hidden columns"


@dataclass
class TableBuilder:
    name: QualifiedName
    statement: ast.CreateTable
    fail: Fail
    columns: list[Column] = field(default_factory=list)
    hidden: set[str] = field(default_factory=set)
    primary_key: tuple[str, ...] = ()
    primary_key_name: str | None = None
    primary_key_comment: str | None = None
    indexes: list[Index] = field(default_factory=list)
    constraints: list[Constraint] = field(default_factory=list)
    pending_keys: list[tuple[ast.ForeignKeyDef, str]] = field(default_factory=list)
    families: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    comment: str | None = None
    column_comments: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    validated: dict[str, int] = field(default_factory=dict)  # VALIDATE CONSTRAINT -> line
    declared: set[str] = field(default_factory=set)  # every constraint name, kept or not

    # --- CREATE TABLE -----------------------------------------------------------------------

    def add_definition(self, enums: Mapping[tuple[str, str], EnumType]) -> None:
        statement = self.statement
        columns = [e for e in statement.elements if isinstance(e, ast.ColumnDef)]
        self.hidden = {c.name for c in columns if c.hidden}
        names = [c.name for c in columns]
        for duplicate in {n for n in names if names.count(n) > 1}:
            raise self.fail(statement.line, f"table {self.name} declares column {duplicate} twice")
        for column in columns:
            self._add_column(column, enums)
        for element in statement.elements:
            self._add_element(element)
        self._note_dropped(statement)
        if not self.primary_key:
            self._key_by_rowid(names)

    def _add_element(self, element: object) -> None:
        """A table element other than a column: key, index, check, foreign key, family."""
        if isinstance(element, ast.IndexDef) and element.primary:
            self._set_primary_key(element)
        elif isinstance(element, ast.IndexDef):
            self.add_index(element)
        elif isinstance(element, ast.CheckDef):
            self.add_check(element)
        elif isinstance(element, ast.ForeignKeyDef):
            self.add_foreign_key(element)
        elif isinstance(element, ast.FamilyDef):
            self.families.append((element.name or "", element.columns))

    def _note_dropped(self, statement: ast.CreateTable) -> None:
        """Notes for what PostgreSQL has no place for: families, locality, other clauses."""
        if self.families:
            listed = ", ".join(f"{n or '(unnamed)'} ({', '.join(c)})" for n, c in self.families)
            self.notes.append(f"column families dropped: {listed}; PostgreSQL stores a row "
                              "together")
        if statement.locality:
            self.notes.append(f"LOCALITY {statement.locality} dropped: PostgreSQL has no "
                              "multi-region placement")
        for clause in statement.dropped:
            why = _TABLE_CLAUSES.get(clause.split(None, 1)[0].upper(), "CockroachDB-only")
            self.notes.append(f"{clause} dropped: {why}")

    def _key_by_rowid(self, names: list[str]) -> None:
        """CockroachDB keys a table without a primary key by a hidden rowid column."""
        if "rowid" not in names:
            self.columns.append(Column("rowid", translate_type(ast.TypeSpec(("INT8",)), {})[0],
                                       nullable=False, hidden=True))
            self.hidden.add("rowid")
        self.primary_key = ("rowid",)

    def _add_column(self, column: ast.ColumnDef,
                    enums: Mapping[tuple[str, str], EnumType]) -> None:
        try:
            sql_type, type_notes = translate_type(column.type, enums)
        except UnknownType as error:
            raise self.fail(column.line,
                            f"column {column.name} of {self.name}: {error}") from None
        default = None
        if column.hidden:
            self.notes.append(_hidden_note(column.name))
        else:
            self.notes.extend(f"column {column.name}: {note}" for note in type_notes)
            default = self._default(column)
            self.notes.extend(f"column {column.name}: {note}" for note in _dropped_parts(column))
        self.columns.append(Column(column.name, sql_type, nullable=not column.not_null,
                                   hidden=column.hidden, default=default,
                                   computed=column.computed_text))
        if column.primary_key:
            self.primary_key = (column.name,)
        if column.unique:
            key = ast.IndexColumn(exp.column(column.name, quoted=True), column.name)
            self.add_index(ast.IndexDef(None, [key], column.line, unique=True, constraint=True))
        for check in column.checks:
            self.add_check(check)
        if column.references is not None:
            self.add_foreign_key(column.references)

    def _default(self, column: ast.ColumnDef) -> str | None:
        """The column's DEFAULT in PostgreSQL, or None (with a note when it is dropped)."""
        if column.default is None:
            return None
        translated = to_postgres(column.default, hidden=self.hidden)
        if translated.sql is None:
            self.notes.append(f"column {column.name}: DEFAULT {column.default_text} dropped: "
                              f"{translated.reason}")
        return translated.sql

    def _set_primary_key(self, index: ast.IndexDef) -> None:
        keys = []
        for key in index.columns:
            if not isinstance(key.expression, exp.Column):
                raise self.fail(index.line,
                                f"primary key of {self.name}: {key.text} is not a column")
            keys.append(_column_name(key.expression))
        self.primary_key = tuple(keys)
        self.primary_key_name = index.name
        for clause in index.dropped:
            self.notes.append(f"primary key: {clause} dropped; PostgreSQL gets a plain key")

    # --- indexes and constraints --------------------------------------------------------

    def column_type(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def add_index(self, index: ast.IndexDef) -> None:
        name = index.name or _default_index_name(self.name.name, index)
        self.declared.add(name)
        label = f"index {name}"
        try:
            keys = self._index_keys(index, label)
            method = self._index_method(index, keys)
            where = self._predicate(index)
        except _NotCreated as skipped:
            self.notes.append(f"{label} not created: {skipped}")
            return
        include = tuple(c for c in index.storing if c not in self.hidden)
        if method == "gin" and include:
            self.notes.append(f"{label}: STORING ({', '.join(include)}) dropped: a GIN index "
                              "cannot include columns")
            include = ()
        for clause in index.dropped:
            self.notes.append(f"{label}: {clause} dropped; PostgreSQL gets a plain index")
        if index.without_index:
            self.notes.append(f"{label}: UNIQUE WITHOUT INDEX is enforced with a unique index "
                              "in PostgreSQL")
        display = tuple((k.column or f"({k.expression})") + (" DESC" if k.descending else "")
                        for k in keys)
        self.indexes.append(Index(name, display, unique=index.unique, where=where,
                                  keys=tuple(keys), method=method, include=include))

    def _index_keys(self, index: ast.IndexDef, label: str) -> list[IndexKey]:
        """The index's keys in PostgreSQL; raises _NotCreated for one it cannot have, and
        the schema's error for a column the table lacks."""
        keys: list[IndexKey] = []
        for key in index.columns:
            if isinstance(key.expression, exp.Column) and not key.expression.table:
                column = _column_name(key.expression)
                if self.column_type(column) is None:
                    raise self.fail(index.line, f"{label} of {self.name}: no column {column}")
                if column in self.hidden:
                    raise _NotCreated(f"it uses the hidden column {column}, which is not "
                                      "exported")
                keys.append(IndexKey(column=column, descending=key.descending,
                                     nulls=key.nulls))  # type: ignore[arg-type]
                continue
            translated = to_postgres(key.expression, hidden=self.hidden)
            if translated.sql is None:
                raise _NotCreated(f"its key {key.text}: {translated.reason}")
            keys.append(IndexKey(expression=translated.sql, descending=key.descending,
                                 nulls=key.nulls))  # type: ignore[arg-type]
        return keys

    def _index_method(self, index: ast.IndexDef, keys: list[IndexKey]) -> str | None:
        """The PostgreSQL index method (an inverted index is GIN); raises _NotCreated."""
        if index.inverted or index.method == "gin":
            kinds = {c.type.kind for k in keys if k.column and (c := self.column_type(k.column))}
            if any(k.expression for k in keys) or not kinds <= {"jsonb", "array"} or \
                    any(k.opclass for k in index.columns):
                raise _NotCreated("an inverted index is translated only on JSONB and array "
                                  "columns")
            return "gin"
        if index.method not in (None, "btree", "hash"):
            raise _NotCreated(f"index method {index.method}")
        if any(k.opclass for k in index.columns):
            raise _NotCreated("operator classes are not translated")
        return index.method

    def _predicate(self, index: ast.IndexDef) -> str | None:
        """A partial index's WHERE in PostgreSQL; raises _NotCreated."""
        if index.where is None:
            return None
        translated = to_postgres(index.where, hidden=self.hidden)
        if translated.sql is None:
            raise _NotCreated(f"its predicate {index.where_text}: {translated.reason}")
        return translated.sql

    def add_check(self, check: ast.CheckDef) -> None:
        name = check.name or f"check_{'_'.join(_columns_in(check.expression)) or 'expr'}"
        self.declared.add(name)
        translated = to_postgres(check.expression, hidden=self.hidden)
        if translated.sql is None:
            self.notes.append(f"check {name} ({check.text}) not created: {translated.reason}")
            return
        self.constraints.append(Constraint(name, "check", f"CHECK ({translated.sql})",
                                           not_valid=check.not_valid))

    def add_foreign_key(self, fk: ast.ForeignKeyDef) -> None:
        name = fk.name or f"{self.name.name}_{'_'.join(fk.columns)}_fkey"
        self.declared.add(name)
        self.pending_keys.append((fk, name))

    def validate(self, name: str, line: int) -> None:
        self.validated[name] = line

    def build(self) -> Table:
        for name, line in self.validated.items():
            if name not in self.declared:
                raise self.fail(line, f"VALIDATE CONSTRAINT {name}: {self.name} has no such "
                                      "constraint")
        constraints = tuple(
            c if c.name not in self.validated or not c.not_valid
            else Constraint(c.name, c.kind, c.definition, c.foreign_key, False, c.comment)
            for c in self.constraints)
        table = Table(self.name, tuple(self.columns), self.primary_key,
                      indexes=tuple(self.indexes), constraints=constraints,
                      comment=self.comment, column_comments=tuple(self.column_comments.items()),
                      families=tuple(self.families), notes=tuple(self.notes),
                      primary_key_name=self.primary_key_name,
                      primary_key_comment=self.primary_key_comment,
                      locality=self.statement.locality,
                      region_column=self.statement.region_column)
        if not table.postgres_primary_key:
            hidden = ", ".join(c for c in self.primary_key if c in self.hidden)
            table = replace(table, notes=(
                *table.notes,
                f"no primary key: CockroachDB's ({', '.join(self.primary_key)}) holds the "
                f"hidden column {hidden}, whose values an export does not carry"))
        return table


def foreign_key_definition(fk: ForeignKey, table: QualifiedName) -> str:
    """``FOREIGN KEY (...) REFERENCES "schema"."table" (...) ...`` for ``table``."""
    text = (f"FOREIGN KEY ({', '.join(map(quote, fk.columns))}) REFERENCES "
            f"{quote(table.schema)}.{quote(table.name)} "
            f"({', '.join(map(quote, fk.ref_columns))})")
    if fk.match == "FULL":
        text += " MATCH FULL"
    if fk.on_delete:
        text += f" ON DELETE {fk.on_delete}"
    if fk.on_update:
        text += f" ON UPDATE {fk.on_update}"
    return text


def _column_name(column: exp.Column) -> str:
    identifier = column.this
    if isinstance(identifier, exp.Identifier) and not identifier.quoted:
        return identifier.name.lower()
    return column.name


def _columns_in(expression: exp.Expr) -> list[str]:
    seen: list[str] = []
    for column in expression.find_all(exp.Column):
        name = _column_name(column)
        if name not in seen:
            seen.append(name)
    return seen


def _default_index_name(table: str, index: ast.IndexDef) -> str:
    # CockroachDB's own naming: <table>_<columns>_key for unique ones, _idx otherwise.
    parts = [_column_name(k.expression) if isinstance(k.expression, exp.Column) else "expr"
             for k in index.columns]
    return f"{table}_{'_'.join(parts)}_{'key' if index.unique else 'idx'}"


class _NotCreated(Exception):
    """An index PostgreSQL does not get, and why (a note, not an error)."""


def _dropped_parts(column: ast.ColumnDef) -> list[str]:
    """Notes for the parts of a visible column PostgreSQL does not get."""
    notes = []
    if column.computed_text:
        kind = "VIRTUAL" if column.virtual else "STORED"
        notes.append(f"computed AS ({column.computed_text}) {kind}; loaded as a plain column "
                     "holding the exported values")
    if column.on_update_text:
        notes.append(f"ON UPDATE {column.on_update_text} dropped: PostgreSQL has no ON UPDATE "
                     "expressions")
    if column.identity_text:
        notes.append(f"{column.identity_text} dropped: the identity's sequence state is not "
                     "exported")
    return notes
