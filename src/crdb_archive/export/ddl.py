"""Read a ``SHOW CREATE ALL TABLES`` file into the typed :class:`~model.Schema`.

The file is parsed with the CockroachDB sqlglot dialect (:mod:`crdb_dialect`), in any of the
forms :mod:`schema_file` knows. Tables come from ``CREATE TABLE``; ``CREATE TYPE ... AS ENUM``
(``SHOW CREATE ALL TYPES``), ``CREATE INDEX``, ``ALTER TABLE ... ADD CONSTRAINT`` and ``COMMENT
ON`` add to them; views, sequences and other statements that hold no table data are noted and
left out.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

from sqlglot.errors import ErrorLevel, ParseError, SqlglotError, TokenError

from crdb_archive.errors import InvalidSchema
from crdb_archive.export import crdb_ast as ast
from crdb_archive.export.crdb_dialect import CockroachDB, Parsed
from crdb_archive.export.model import (
    Constraint,
    EnumType,
    ForeignKey,
    Index,
    QualifiedName,
    Schema,
)
from crdb_archive.export.schema_file import MalformedSchemaFile, SchemaText, unwrap
from crdb_archive.export.tables import TableBuilder, foreign_key_definition
from crdb_archive.text import count

_Commentable = TypeVar("_Commentable", Index, Constraint)
_SILENT = frozenset({"SET", "USE", "BEGIN", "COMMIT", "SHOW"})


def parse_schema(text: str, *, source: str) -> Schema:
    """The schema a ``SHOW CREATE ALL TABLES`` file (plain, csv or tsv) declares.

    ``source`` names the file in messages. Raises InvalidSchema (exit 2) with one line naming
    the file line of the statement that cannot be read or translated.
    """
    try:
        unwrapped = unwrap(text)
    except MalformedSchemaFile as error:
        raise InvalidSchema(f"{source}: {error}") from None
    return _Reader(unwrapped, source).read()


class _Reader:
    def __init__(self, text: SchemaText, source: str) -> None:
        self.text = text
        self.source = source
        self.enums: dict[tuple[str, str], EnumType] = {}
        self.tables: dict[tuple[str, str], TableBuilder] = {}
        self.notes: list[str] = []

    def fail(self, line: int, message: str) -> InvalidSchema:
        return InvalidSchema(f"{self.source}: line {self.text.file_line(line)}: {message}")

    def read(self) -> Schema:
        statements = self._statements()
        for statement in statements:
            if isinstance(statement, ast.CreateEnum):
                self._add_enum(statement)
        for statement in statements:
            if isinstance(statement, ast.CreateTable):
                self._add_table(statement)
        for statement in statements:
            self._apply(statement)
        for builder in self.tables.values():
            self._resolve_foreign_keys(builder)
        if not self.tables:
            raise InvalidSchema(f"{self.source}: defines no table (expected SHOW CREATE ALL "
                                "TABLES output)")
        return Schema(tuple(b.build() for b in self.tables.values()),
                      tuple(self.enums.values()), tuple(self.notes))

    def _statements(self) -> list[ast.Statement]:
        dialect = CockroachDB()
        try:
            tokens = dialect.tokenize(self.text.sql)
            parsed = dialect.parser(error_level=ErrorLevel.IMMEDIATE).parse(tokens,
                                                                            self.text.sql)
        except ParseError as error:
            detail = error.errors[0] if error.errors else {}
            line = int(detail.get("line") or 1)
            near = str(detail.get("highlight") or "").strip()
            description = str(detail.get("description") or "cannot parse").splitlines()[0]
            raise self.fail(line, f"{description}" + (f" (near {near!r})" if near else "")) \
                from None
        except TokenError as error:
            raise InvalidSchema(f"{self.source}: not readable as SQL: "
                                f"{str(error).splitlines()[0]}") from None
        except SqlglotError as error:
            raise InvalidSchema(f"{self.source}: cannot parse: "
                                f"{str(error).splitlines()[0]}") from None
        except RecursionError:
            raise InvalidSchema(f"{self.source}: an expression is nested too deeply to "
                                "read") from None
        return [p.this for p in parsed if isinstance(p, Parsed)]

    # --- names ------------------------------------------------------------------------

    def _qualified(self, name: ast.Name, line: int) -> QualifiedName:
        if len(name) == 1:
            return QualifiedName("public", name[0])
        if len(name) == 2:
            return QualifiedName(name[0], name[1])
        if len(name) == 3:
            return QualifiedName(name[1], name[2], name[0])
        raise self.fail(line, f"{'.'.join(name)} is not a table name")

    def _table(self, name: ast.Name, line: int) -> TableBuilder:
        qualified = self._qualified(name, line)
        builder = self.tables.get((qualified.schema, qualified.name))
        if builder is None:
            raise self.fail(line, f"table {qualified} is not created in this file")
        return builder

    # --- statements -------------------------------------------------------------------

    def _add_enum(self, statement: ast.CreateEnum) -> None:
        name = self._qualified(statement.name, statement.line)
        if (name.schema, name.name) in self.enums:
            raise self.fail(statement.line, f"type {name} is created twice")
        if len(set(statement.values)) != len(statement.values):
            raise self.fail(statement.line, f"type {name} repeats a value")
        self.enums[(name.schema, name.name)] = EnumType(name, statement.values)

    def _add_table(self, statement: ast.CreateTable) -> None:
        name = self._qualified(statement.name, statement.line)
        if (name.schema, name.name) in self.tables:
            raise self.fail(statement.line, f"table {name} is created twice")
        builder = TableBuilder(name, statement, self.fail)
        self.tables[(name.schema, name.name)] = builder
        builder.add_definition(self.enums)

    def _apply(self, statement: ast.Statement) -> None:
        if isinstance(statement, ast.CreateIndex):
            index = statement.index
            self._table(index.table or (), index.line).add_index(index)
        elif isinstance(statement, ast.AlterTable):
            builder = self._table(statement.table, statement.line)
            for action in statement.actions:
                if isinstance(action, ast.ValidateConstraint):
                    builder.validate(action.name, statement.line)
                elif isinstance(action, ast.ForeignKeyDef):
                    builder.add_foreign_key(action)
                elif isinstance(action, ast.CheckDef):
                    builder.add_check(action)
                elif action.primary:
                    raise self.fail(statement.line,
                                    "ALTER TABLE ... ADD PRIMARY KEY is not supported")
                else:
                    builder.add_index(action)
        elif isinstance(statement, ast.Comment):
            self._comment(statement)
        elif isinstance(statement, ast.Skipped) and statement.what not in _SILENT:
            line = self.text.file_line(statement.line)
            self.notes.append(f"line {line}: {statement.what} not created: {statement.reason}")

    def _comment(self, comment: ast.Comment) -> None:
        builder = self._table(comment.table, comment.line)
        text = comment.text
        if comment.target == "TABLE":
            builder.comment = text
            return
        detail = comment.detail or ""
        if comment.target == "COLUMN":
            self._column_comment(builder, comment.line, detail, text)
        else:
            _object_comment(builder, comment.target, detail, text)

    def _column_comment(self, builder: TableBuilder, line: int, column: str,
                        text: str | None) -> None:
        if builder.column_type(column) is None:
            raise self.fail(line, f"comment on column {column}: {builder.name} has no such "
                                  "column")
        if column in builder.hidden:
            builder.notes.append(f"comment on the hidden column {column} dropped")
        elif text is None:
            builder.column_comments.pop(column, None)
        else:
            builder.column_comments[column] = text

    def _resolve_foreign_keys(self, builder: TableBuilder) -> None:
        for fk, name in builder.pending_keys:
            target = self._qualified(fk.table, fk.line)
            referenced = self.tables.get((target.schema, target.name))
            label = f"foreign key {name}"
            if referenced is None:
                builder.notes.append(f"{label} not created: {target} is not in the schema file")
                continue
            ref_columns = tuple(fk.ref_columns) or referenced.primary_key
            for column in fk.columns:
                if builder.column_type(column) is None:
                    raise self.fail(fk.line, f"{label} of {builder.name}: no column {column}")
            for column in ref_columns:
                if referenced.column_type(column) is None:
                    raise self.fail(fk.line, f"{label} of {builder.name}: {target} has no column "
                                       f"{column}")
            hidden = [c for c in fk.columns if c in builder.hidden] + \
                     [c for c in ref_columns if c in referenced.hidden]
            if hidden:
                builder.notes.append(f"{label} not created: it uses the hidden column "
                                     f"{hidden[0]}, which is not exported")
                continue
            if len(ref_columns) != len(fk.columns):
                raise self.fail(fk.line, f"{label} of {builder.name}: "
                                         f"{count(len(fk.columns), 'column')} reference "
                                         f"{len(ref_columns)}")
            key = ForeignKey(tuple(fk.columns), target, ref_columns,
                             "FULL" if fk.match == "FULL" else None, fk.on_delete,
                             fk.on_update)
            not_valid = fk.not_valid and name not in builder.validated
            builder.constraints.append(Constraint(name, "foreign_key",
                                                  foreign_key_definition(key, target),
                                                  foreign_key=key, not_valid=not_valid))


def _with_comment(item: _Commentable, text: str | None) -> _Commentable:
    return replace(item, comment=text)


def _object_comment(builder: TableBuilder, target: str, detail: str,
                    text: str | None) -> None:
    """A comment on an index or constraint of the table: kept on what PostgreSQL gets,
    noted as dropped otherwise."""
    if detail == builder.primary_key_name and target == "CONSTRAINT":
        builder.primary_key_comment = text
    elif detail == builder.primary_key_name:
        builder.notes.append(f"comment on the primary key's index {detail} dropped: the "
                             "comment on its constraint is kept")
    elif target == "INDEX" and any(i.name == detail for i in builder.indexes):
        builder.indexes = [i if i.name != detail else _with_comment(i, text)
                           for i in builder.indexes]
    elif target == "CONSTRAINT" and any(c.name == detail for c in builder.constraints):
        builder.constraints = [c if c.name != detail else _with_comment(c, text)
                               for c in builder.constraints]
    elif target == "CONSTRAINT" and any(n == detail for _, n in builder.pending_keys):
        builder.notes.append(f"comment on foreign key {detail} dropped: only comments on "
                             "checks, indexes and keys are translated")
    else:
        builder.notes.append(f"comment on {target.lower()} {detail} dropped: it is not "
                             "created in PostgreSQL")
