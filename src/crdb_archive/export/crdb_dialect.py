"""A sqlglot dialect for the DDL CockroachDB prints: PostgreSQL plus CockroachDB's additions.

Statements (``CREATE TABLE``, ``CREATE INDEX``, ``CREATE TYPE ... AS ENUM``, ``ALTER TABLE ...
ADD CONSTRAINT | VALIDATE CONSTRAINT``, ``COMMENT ON``) are parsed by the grammar below (with
:mod:`crdb_elements` and :mod:`crdb_grammar`) into
:mod:`crdb_ast` values; expressions inside them (defaults, checks, computed columns, partial
index predicates) by sqlglot's PostgreSQL expression parser, taught CockroachDB's ``:::`` type
annotation. The grammar follows what ``SHOW CREATE`` prints (cockroach pkg/sql/sem/tree
``CreateTable.Format``): ``FAMILY``, inline ``INDEX`` / ``UNIQUE INDEX`` / ``INVERTED INDEX``,
``NOT VISIBLE``, ``USING HASH``, ``STORING``, ``LOCALITY``, ``PARTITION BY``, ``INTERLEAVE IN
PARENT``, ``AS (...) STORED | VIRTUAL``, ``ON UPDATE``, ``COMMENT ON INDEX t@i``.
"""

from __future__ import annotations

from typing import ClassVar

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.tokenizer_core import Token, TokenType

from crdb_archive.export import crdb_ast as ast
from crdb_archive.export.crdb_elements import ElementGrammar

_SKIPPED_COMMANDS = ("SET", "USE", "GRANT", "REVOKE", "BEGIN", "COMMIT", "SHOW")


class Parsed(exp.Expression):
    """Carries one :mod:`crdb_ast` statement through sqlglot's parse loop."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True}


class CockroachDB(Postgres):
    """PostgreSQL's dialect with CockroachDB's tokens and schema statements."""

    class Tokenizer(Postgres.Tokenizer):
        # ``x:::T`` is CockroachDB's type annotation; for a translation it reads as a cast.
        # CockroachDB's type names, for casts inside expressions (column types are read by
        # the statement grammar from the tokens' text).
        KEYWORDS: ClassVar = {
            **Postgres.Tokenizer.KEYWORDS,
            ":::": TokenType.DCOLON,
            "BYTES": TokenType.VARBINARY,
            "BOOL": TokenType.BOOLEAN,
            "INT2": TokenType.SMALLINT,
            "INT4": TokenType.INT,
            "INT64": TokenType.BIGINT,
            "FLOAT4": TokenType.FLOAT,
            "FLOAT8": TokenType.DOUBLE,
        }

    class Parser(ElementGrammar):
        def _parse_statement(self) -> exp.Expr | None:
            if not self._curr:
                return None
            first = self._curr
            word = first.text.upper()
            self._advance()
            if first.token_type == TokenType.SEMICOLON:
                return None  # a chunk holding only a trailing comment
            statement: ast.Statement
            if word == "CREATE" and first.token_type != TokenType.IDENTIFIER:
                statement = self._crdb_create(first)
            elif word == "ALTER" and first.token_type != TokenType.IDENTIFIER:
                statement = self._crdb_alter(first)
            elif word == "COMMENT" and first.token_type != TokenType.IDENTIFIER:
                statement = self._crdb_comment(first)
            elif word in _SKIPPED_COMMANDS and first.token_type != TokenType.IDENTIFIER:
                self._crdb_skip_rest()
                statement = ast.Skipped(word, first.line, "a session or privilege statement")
            else:
                raise self._crdb_error(f"{first.text} is not a schema statement", first)
            return self.expression(Parsed(this=statement))

        # --- CREATE ---------------------------------------------------------------------

        def _crdb_create(self, first: Token) -> ast.Statement:
            self._crdb_word("OR", "REPLACE")
            if self._crdb_word("TABLE"):
                return self._crdb_create_table(first)
            unique = self._crdb_word("UNIQUE")
            inverted = self._crdb_word("INVERTED")
            if self._crdb_word("INDEX"):
                return ast.CreateIndex(self._crdb_create_index(first, unique, inverted))
            if unique or inverted:
                raise self._crdb_error("expected INDEX")
            if self._crdb_word("TYPE"):
                return self._crdb_create_type(first)
            for kind in (("MATERIALIZED", "VIEW"), ("VIEW",), ("SEQUENCE",), ("SCHEMA",),
                         ("DATABASE",), ("FUNCTION",), ("PROCEDURE",), ("TRIGGER",),
                         ("ROLE",), ("USER",), ("STATISTICS",), ("POLICY",)):
                if self._crdb_word(*kind):
                    what = " ".join(kind).lower()
                    self._crdb_word("IF", "NOT", "EXISTS")
                    name = ".".join(self._crdb_name()) if self._curr else ""
                    self._crdb_skip_rest()
                    return ast.Skipped(f"{what} {name}".strip(), first.line,
                                       _SKIP_REASONS.get(what, "not part of a table's data"))
            raise self._crdb_error("expected TABLE, INDEX or TYPE after CREATE", self._curr)

        def _crdb_create_table(self, first: Token) -> ast.CreateTable:
            self._crdb_word("IF", "NOT", "EXISTS")
            name = self._crdb_name()
            if self._crdb_peek("AS"):
                raise self._crdb_error("CREATE TABLE ... AS is not a table definition", self._curr)
            elements = self._crdb_wrapped(self._crdb_table_element)
            table = ast.CreateTable(name, first.line, elements)
            while self._curr:
                start = self._curr
                if self._crdb_word("LOCALITY"):
                    self._crdb_locality(table)
                    table.locality = self._crdb_text(start).split(None, 1)[1]
                elif self._crdb_word("PARTITION", "BY") or \
                        self._crdb_word("PARTITION", "ALL", "BY"):
                    self._crdb_partition()
                elif self._crdb_word("INTERLEAVE", "IN", "PARENT"):
                    self._crdb_name()
                    self._crdb_balanced()
                elif self._crdb_word("WITH"):
                    self._crdb_balanced()
                else:
                    raise self._crdb_error(f"unexpected {self._curr.text!r} after the table's "
                                     "columns", self._curr)
                if start.text.upper() != "LOCALITY":
                    table.dropped.append(self._crdb_text(start))
            return table

        def _crdb_locality(self, table: ast.CreateTable) -> None:
            if self._crdb_word("GLOBAL"):
                return
            if not self._crdb_word("REGIONAL"):
                raise self._crdb_error("expected GLOBAL or REGIONAL after LOCALITY", self._curr)
            if self._crdb_word("BY", "ROW"):
                table.region_column = self._crdb_ident() if self._crdb_word("AS") \
                    else "crdb_region"
                return
            self._crdb_word("BY", "TABLE")
            if self._crdb_word("IN") and not self._crdb_word("PRIMARY", "REGION"):
                self._crdb_ident()

        def _crdb_create_index(self, first: Token, unique: bool,
                               inverted: bool) -> ast.IndexDef:
            self._crdb_word("CONCURRENTLY")
            self._crdb_word("IF", "NOT", "EXISTS")
            name = None if self._crdb_peek("ON") else self._crdb_ident()
            if not self._crdb_word("ON"):
                raise self._crdb_error("expected ON after the index name", self._curr)
            table = self._crdb_name()
            method = self._crdb_ident().lower() if self._crdb_word("USING") else None
            index = self._crdb_index_body(name, first.line)
            index.table = table
            index.unique = unique
            index.inverted = inverted
            index.method = index.method or method
            self._crdb_end()
            return index

        # --- CREATE TYPE, ALTER TABLE, COMMENT ON -------------------------------------------

        def _crdb_create_type(self, first: Token) -> ast.Statement:
            self._crdb_word("IF", "NOT", "EXISTS")
            name = self._crdb_name()
            if not self._crdb_word("AS", "ENUM"):
                self._crdb_skip_rest()
                return ast.Skipped(f"type {'.'.join(name)}", first.line,
                                   "only enum types are translated")
            values = self._crdb_wrapped(self._crdb_string)
            self._crdb_end()
            return ast.CreateEnum(name, tuple(values), first.line)

        def _crdb_alter(self, first: Token) -> ast.Statement:
            if not self._crdb_word("TABLE"):
                self._crdb_skip_rest()
                return ast.Skipped(self._crdb_text(first), first.line,
                                   "only ALTER TABLE ... ADD | VALIDATE CONSTRAINT is "
                                   "translated")
            self._crdb_word("IF", "EXISTS")
            table = self._crdb_name()
            alter = ast.AlterTable(table, first.line, [])
            while True:
                start = self._curr
                if self._crdb_word("ADD"):
                    name = self._crdb_ident() if self._crdb_word("CONSTRAINT") else None
                    element = self._crdb_constraint(name, first.line)
                    if isinstance(element, ast.FamilyDef | ast.ColumnDef):
                        raise self._crdb_error("expected a constraint", start)
                    alter.actions.append(element)
                elif self._crdb_word("VALIDATE", "CONSTRAINT"):
                    alter.actions.append(ast.ValidateConstraint(table, self._crdb_ident()))
                elif self._crdb_word("CONFIGURE", "ZONE") or self._crdb_word("SET", "LOCALITY") \
                        or self._crdb_word("PARTITION", "BY") or \
                        self._crdb_word("PARTITION", "ALL", "BY"):
                    self._crdb_skip_rest()
                    return ast.Skipped(self._crdb_text(first), first.line,
                                       "CockroachDB placement, not part of the data")
                else:
                    raise self._crdb_error("expected ADD CONSTRAINT or VALIDATE CONSTRAINT",
                                     self._curr)
                if not self._match(TokenType.COMMA):
                    break
            self._crdb_end()
            return alter

        def _crdb_comment(self, first: Token) -> ast.Statement:
            if not self._crdb_word("ON"):
                raise self._crdb_error("expected ON after COMMENT", self._curr)
            target = self._curr.text.upper() if self._curr else ""
            self._advance()
            detail: str | None = None
            if target == "TABLE":
                table = self._crdb_name()
            elif target == "COLUMN":
                parts = self._crdb_name()
                if len(parts) < 2:
                    raise self._crdb_error("expected table.column after COMMENT ON COLUMN", first)
                table, detail = parts[:-1], parts[-1]
            elif target == "INDEX":
                table = self._crdb_name()
                if not self._match(TokenType.PARAMETER):
                    raise self._crdb_error("expected table@index after COMMENT ON INDEX",
                                           self._curr)
                detail = self._crdb_ident()
            elif target == "CONSTRAINT":
                detail = self._crdb_ident()
                if not self._crdb_word("ON"):
                    raise self._crdb_error("expected ON after the constraint name", self._curr)
                table = self._crdb_name()
            else:
                self._crdb_skip_rest()
                return ast.Skipped(self._crdb_text(first), first.line,
                                   "comments on tables, columns, indexes and constraints "
                                   "are translated")
            if not self._crdb_word("IS"):
                raise self._crdb_error("expected IS", self._curr)
            text = None if self._crdb_word("NULL") else self._crdb_string()
            self._crdb_end()
            kind: ast.CommentTarget = target  # type: ignore[assignment]
            return ast.Comment(kind, table, detail, text, first.line)


_SKIP_REASONS = {
    "view": "an export carries table data; the view's query is in schema.sql",
    "materialized view": "an export carries table data; the view's query is in schema.sql",
    "sequence": "an export does not carry a sequence's current value",
    "schema": "schemas are created as the tables need them",
}

