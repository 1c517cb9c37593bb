"""A sqlglot dialect for the DDL CockroachDB prints: PostgreSQL plus CockroachDB's additions.

Statements (``CREATE TABLE``, ``CREATE INDEX``, ``CREATE TYPE ... AS ENUM``, ``ALTER TABLE ...
ADD CONSTRAINT | VALIDATE CONSTRAINT``, ``COMMENT ON``) are parsed by the grammar below into
:mod:`crdb_ast` values; expressions inside them (defaults, checks, computed columns, partial
index predicates) by sqlglot's PostgreSQL expression parser, taught CockroachDB's ``:::`` type
annotation. The grammar follows what ``SHOW CREATE`` prints (cockroach pkg/sql/sem/tree
``CreateTable.Format``): ``FAMILY``, inline ``INDEX`` / ``UNIQUE INDEX`` / ``INVERTED INDEX``,
``NOT VISIBLE``, ``USING HASH``, ``STORING``, ``LOCALITY``, ``PARTITION BY``, ``INTERLEAVE IN
PARENT``, ``AS (...) STORED | VIRTUAL``, ``ON UPDATE``, ``COMMENT ON INDEX t@i``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, TypeVar

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError
from sqlglot.parsers.postgres import PostgresParser
from sqlglot.tokenizer_core import Token, TokenType

from crdb_archive.export import crdb_ast as ast

T = TypeVar("T")

_ACTIONS = ("CASCADE", "RESTRICT", "SET NULL", "SET DEFAULT", "NO ACTION")
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

    class Parser(PostgresParser):
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

        # --- small pieces ---------------------------------------------------------------

        def _crdb_error(self, message: str, token: Token | None = None) -> ParseError:
            """sqlglot's error for ``message`` at ``token``, with its line and context."""
            try:
                self.raise_error(message, token or self._curr)
            except ParseError as error:
                return error
            return ParseError(message)  # raise_error only collects below ErrorLevel.IMMEDIATE

        def _crdb_word(self, *words: str, advance: bool = True) -> bool:
            """Match a keyword sequence; the tokenizer may have merged some of its words into
            one token ("PRIMARY KEY", "PARTITION BY"). Never matches a quoted identifier."""
            index = self._index
            position = 0
            while position < len(words):
                token = self._curr
                parts = tuple(token.text.upper().split()) if token else ()
                if not token or token.token_type in _NOT_WORDS or not parts or \
                        parts != words[position:position + len(parts)]:
                    self._retreat(index)
                    return False
                position += len(parts)
                self._advance()
            if not advance:
                self._retreat(index)
            return True

        def _crdb_peek(self, *words: str) -> bool:
            return self._crdb_word(*words, advance=False)

        def _crdb_ident(self) -> str:
            token = self._curr
            if not token:
                raise self._crdb_error("expected a name")
            if token.token_type == TokenType.IDENTIFIER:
                self._advance()
                return token.text
            text = token.text
            if text and (text[0].isalpha() or text[0] == "_") and all(
                    c.isalnum() or c in "_$" for c in text):
                self._advance()
                return text.lower()  # unquoted names fold to lower case, as in CockroachDB
            raise self._crdb_error(f"expected a name, found {text!r}", token)

        def _crdb_name(self) -> ast.Name:
            parts = [self._crdb_ident()]
            while self._match(TokenType.DOT):
                parts.append(self._crdb_ident())
            return tuple(parts)

        def _crdb_wrapped(self, item: Callable[[], T]) -> list[T]:
            if not self._match(TokenType.L_PAREN):
                raise self._crdb_error("expected (")
            items: list[T] = []
            if not self._match(TokenType.R_PAREN):
                items.append(item())
                while self._match(TokenType.COMMA):
                    items.append(item())
                if not self._match(TokenType.R_PAREN):
                    raise self._crdb_error("expected )")
            return items

        def _crdb_text(self, start: Token) -> str:
            """The source text from ``start`` to the last token consumed."""
            return self.sql[start.start:self._prev.end + 1]

        def _crdb_expression(self, bitwise: bool = False) -> tuple[exp.Expr, str]:
            start = self._curr
            expression = self._parse_bitwise() if bitwise else self._parse_disjunction()
            if expression is None:
                raise self._crdb_error("expected an expression", start)
            return expression, self._crdb_text(start)

        def _crdb_balanced(self) -> None:
            """Skip one parenthesised group, nested ones included."""
            if not self._match(TokenType.L_PAREN):
                raise self._crdb_error("expected (")
            depth = 1
            while depth:
                if not self._curr:
                    raise self._crdb_error("unbalanced parentheses")
                if self._curr.token_type == TokenType.L_PAREN:
                    depth += 1
                elif self._curr.token_type == TokenType.R_PAREN:
                    depth -= 1
                self._advance()

        def _crdb_skip_rest(self) -> None:
            while self._curr:
                self._advance()

        def _crdb_skip_until(self, stops: tuple[str, ...]) -> None:
            """Skip tokens (and whole parenthesised groups) up to a stop word, a comma or
            a closing parenthesis at this level."""
            while self._curr and self._curr.token_type not in (TokenType.COMMA,
                                                               TokenType.R_PAREN):
                if self._curr.text.upper() in stops and \
                        self._curr.token_type != TokenType.IDENTIFIER:
                    return
                if self._curr.token_type == TokenType.L_PAREN:
                    self._crdb_balanced()
                else:
                    self._advance()

        def _crdb_end(self) -> None:
            if self._curr:
                raise self._crdb_error(f"unexpected {self._curr.text!r}", self._curr)

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

        def _crdb_partition(self) -> None:
            """After PARTITION [ALL] BY: LIST|RANGE (cols) (PARTITION ...), or NOTHING."""
            if self._crdb_word("NOTHING"):
                return
            if not (self._crdb_word("LIST") or self._crdb_word("RANGE")):
                raise self._crdb_error("expected LIST, RANGE or NOTHING", self._curr)
            self._crdb_balanced()
            if self._match(TokenType.L_PAREN, advance=False):
                self._crdb_balanced()

        # --- table elements -------------------------------------------------------------

        def _crdb_table_element(self) -> ast.Element:
            token = self._curr
            if not token:
                raise self._crdb_error("unexpected end of statement")
            line = token.line
            if token.token_type == TokenType.IDENTIFIER:
                return self._crdb_column()
            name: str | None = None
            if self._crdb_word("CONSTRAINT"):
                name = self._crdb_ident()
                return self._crdb_constraint(name, line)
            if self._crdb_peek("PRIMARY", "KEY") or self._crdb_peek("UNIQUE") or \
                    self._crdb_peek("CHECK") or self._crdb_peek("FOREIGN", "KEY"):
                return self._crdb_constraint(None, line)
            if self._crdb_word("INDEX"):
                return self._crdb_index(line)
            if self._crdb_word("INVERTED", "INDEX"):
                return self._crdb_index(line, inverted=True)
            if self._crdb_word("VECTOR", "INDEX"):
                index = self._crdb_index(line)
                index.dropped.append("VECTOR INDEX")
                return index
            if self._crdb_peek("FAMILY") and self._next and \
                    self._next.token_type in (TokenType.IDENTIFIER, TokenType.VAR,
                                              TokenType.L_PAREN) and \
                    not self._crdb_peek("FAMILY", "FAMILY"):
                self._advance()
                family = None if self._match(TokenType.L_PAREN, advance=False) \
                    else self._crdb_ident()
                return ast.FamilyDef(family, tuple(self._crdb_wrapped(self._crdb_ident)))
            if self._crdb_peek("LIKE"):
                raise self._crdb_error("CREATE TABLE ... (LIKE ...) is not supported", token)
            return self._crdb_column()

        def _crdb_constraint(self, name: str | None, line: int) -> ast.Element:
            if self._crdb_word("PRIMARY", "KEY"):
                index = self._crdb_index_body(name, line)
                index.primary = True
                return index
            if self._crdb_word("UNIQUE"):
                if self._crdb_word("WITHOUT", "INDEX"):
                    index = self._crdb_index_body(name, line)
                    index.without_index = True
                elif self._crdb_word("INDEX"):
                    return self._crdb_index(line, unique=True)
                else:
                    index = self._crdb_index_body(name, line)
                    index.constraint = True
                index.unique = True
                return index
            if self._crdb_word("CHECK"):
                return self._crdb_check(name, line)
            if self._crdb_word("FOREIGN", "KEY"):
                columns = self._crdb_wrapped(self._crdb_ident)
                return self._crdb_references(name, columns, line)
            raise self._crdb_error("expected PRIMARY KEY, UNIQUE, CHECK or FOREIGN KEY", self._curr)

        def _crdb_check(self, name: str | None, line: int) -> ast.CheckDef:
            if not self._match(TokenType.L_PAREN):
                raise self._crdb_error("expected ( after CHECK")
            expression, text = self._crdb_expression()
            if not self._match(TokenType.R_PAREN):
                raise self._crdb_error("expected ) after the CHECK expression", self._curr)
            check = ast.CheckDef(name, expression, text, line)
            check.not_valid = self._crdb_word("NOT", "VALID")
            return check

        def _crdb_references(self, name: str | None, columns: list[str],
                             line: int) -> ast.ForeignKeyDef:
            if not self._crdb_word("REFERENCES"):
                raise self._crdb_error("expected REFERENCES", self._curr)
            table = self._crdb_name()
            ref_columns = self._crdb_wrapped(self._crdb_ident) \
                if self._match(TokenType.L_PAREN, advance=False) else []
            fk = ast.ForeignKeyDef(name, columns, table, ref_columns, line)
            while True:
                if self._crdb_word("MATCH"):
                    fk.match = self._crdb_ident().upper()
                elif self._crdb_word("ON", "DELETE"):
                    fk.on_delete = self._crdb_action()
                elif self._crdb_word("ON", "UPDATE"):
                    fk.on_update = self._crdb_action()
                elif self._crdb_word("NOT", "VALID"):
                    fk.not_valid = True
                else:
                    return fk

        def _crdb_action(self) -> str:
            for action in _ACTIONS:
                if self._crdb_word(*action.split()):
                    return action
            raise self._crdb_error("expected a referential action", self._curr)

        def _crdb_index(self, line: int, *, unique: bool = False,
                        inverted: bool = False) -> ast.IndexDef:
            name = None if self._match(TokenType.L_PAREN, advance=False) \
                else self._crdb_ident()
            index = self._crdb_index_body(name, line)
            index.unique = unique
            index.inverted = inverted
            return index

        def _crdb_index_body(self, name: str | None, line: int) -> ast.IndexDef:
            index = ast.IndexDef(name, self._crdb_wrapped(self._crdb_index_column), line)
            self._crdb_index_trailer(index)
            return index

        def _crdb_index_column(self) -> ast.IndexColumn:
            start = self._curr
            expression, _ = self._crdb_expression(bitwise=True)
            text = self._crdb_text(start)
            opclass = None
            if self._curr and self._curr.token_type == TokenType.VAR and \
                    self._curr.text.upper() not in ("ASC", "DESC", "NULLS"):
                opclass = self._crdb_ident()
            descending = self._crdb_word("DESC")
            if not descending:
                self._crdb_word("ASC")
            nulls = None
            if self._crdb_word("NULLS"):
                nulls = "FIRST" if self._crdb_word("FIRST") else \
                    "LAST" if self._crdb_word("LAST") else None
                if nulls is None:
                    raise self._crdb_error("expected FIRST or LAST after NULLS", self._curr)
            return ast.IndexColumn(expression, text, descending, nulls, opclass)

        def _crdb_index_trailer(self, index: ast.IndexDef) -> None:
            while self._curr:
                start = self._curr
                if self._crdb_word("USING", "HASH"):
                    if self._crdb_word("WITH", "BUCKET_COUNT"):
                        self._match(TokenType.EQ)
                        self._advance()
                    elif self._crdb_peek("WITH"):
                        self._advance()
                        self._crdb_balanced()
                elif self._crdb_word("USING"):
                    index.method = self._crdb_ident().lower()
                    continue
                elif self._crdb_word("STORING") or self._crdb_word("COVERING") or \
                        self._crdb_word("INCLUDE"):
                    index.storing = self._crdb_wrapped(self._crdb_ident)
                    continue
                elif self._crdb_word("WHERE"):
                    index.where, index.where_text = self._crdb_expression()
                    continue
                elif self._crdb_word("NOT", "VISIBLE") or self._crdb_word("VISIBLE"):
                    pass
                elif self._crdb_word("VISIBILITY"):
                    self._advance()
                elif self._crdb_word("PARTITION", "BY") or \
                        self._crdb_word("PARTITION", "ALL", "BY"):
                    self._crdb_partition()
                elif self._crdb_word("INTERLEAVE", "IN", "PARENT"):
                    self._crdb_name()
                    self._crdb_balanced()
                elif self._crdb_word("WITH"):
                    self._crdb_balanced()
                elif self._crdb_word("NOT", "VALID"):
                    index.not_valid = True
                    continue
                else:
                    return
                index.dropped.append(self._crdb_text(start))

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

        # --- columns --------------------------------------------------------------------

        def _crdb_column(self) -> ast.ColumnDef:
            line = self._curr.line
            name = self._crdb_ident()
            column = ast.ColumnDef(name, self._crdb_type(), line)
            while self._curr and self._curr.token_type not in (TokenType.COMMA,
                                                               TokenType.R_PAREN):
                self._crdb_column_qualifier(column)
            return column

        def _crdb_column_qualifier(self, column: ast.ColumnDef) -> None:
            start = self._curr
            constraint = self._crdb_ident() if self._crdb_word("CONSTRAINT") else None
            if self._crdb_word("NOT", "NULL"):
                column.not_null = True
            elif self._crdb_word("NULL"):
                column.not_null = False
            elif self._crdb_word("NOT", "VISIBLE"):
                column.hidden = True
            elif self._crdb_word("DEFAULT"):
                column.default, column.default_text = self._crdb_expression(bitwise=True)
            elif self._crdb_word("ON", "UPDATE"):
                _, column.on_update_text = self._crdb_expression(bitwise=True)
            elif self._crdb_word("GENERATED", "ALWAYS", "AS", "IDENTITY") or \
                    self._crdb_word("GENERATED", "BY", "DEFAULT", "AS", "IDENTITY"):
                if self._match(TokenType.L_PAREN, advance=False):
                    self._crdb_balanced()
                column.identity_text = self._crdb_text(start)
            elif self._crdb_word("GENERATED", "ALWAYS", "AS") or self._crdb_word("AS"):
                if not self._match(TokenType.L_PAREN):
                    raise self._crdb_error("expected ( after AS", self._curr)
                column.computed, column.computed_text = self._crdb_expression()
                if not self._match(TokenType.R_PAREN):
                    raise self._crdb_error("expected ) after the computed expression", self._curr)
                column.virtual = self._crdb_word("VIRTUAL")
                if not column.virtual:
                    self._crdb_word("STORED")
            elif self._crdb_word("PRIMARY", "KEY"):
                column.primary_key = True
                holder = ast.IndexDef(constraint, [], column.line)
                self._crdb_index_trailer(holder)
            elif self._crdb_word("UNIQUE"):
                column.unique = True
                self._crdb_word("WITHOUT", "INDEX")
            elif self._crdb_word("CHECK"):
                column.checks.append(self._crdb_check(constraint, column.line))
            elif self._crdb_peek("REFERENCES"):
                column.references = self._crdb_references(constraint, [column.name],
                                                          column.line)
            elif self._crdb_word("COLLATE"):
                self._crdb_ident()
            elif self._crdb_word("CREATE"):
                self._crdb_word("IF", "NOT", "EXISTS")
                self._crdb_word("FAMILY")
                column.family = self._crdb_ident() if self._curr and \
                    self._curr.token_type not in (TokenType.COMMA, TokenType.R_PAREN) else None
            elif self._crdb_word("FAMILY"):
                column.family = self._crdb_ident()
            else:
                raise self._crdb_error(f"unexpected {self._curr.text!r} in the definition of "
                                 f"column {column.name}", self._curr)

        def _crdb_type(self) -> ast.TypeSpec:
            token = self._curr
            if not token:
                raise self._crdb_error("expected a type")
            quoted = token.token_type == TokenType.IDENTIFIER
            words = token.text.upper().split()
            if not quoted and len(words) > 1:  # DOUBLE PRECISION, CHARACTER VARYING
                self._advance()
                name: ast.Name = (" ".join(words),)
            else:
                name = self._crdb_name()
            if len(name) == 1 and not quoted:
                name = (name[0].upper(),)
            word = name[0] if len(name) == 1 else ""
            suffix: list[str] = []
            if word == "DOUBLE" and self._crdb_word("PRECISION"):
                name = ("DOUBLE PRECISION",)
            elif word in ("CHARACTER", "CHAR", "BIT") and self._crdb_word("VARYING"):
                name = (f"{word} VARYING",)
            word = name[0] if len(name) == 1 else ""
            args: list[str] = []
            if self._match(TokenType.L_PAREN, advance=False):
                args = self._crdb_wrapped(self._crdb_type_arg)
            if word in ("TIMESTAMP", "TIME"):
                if self._crdb_word("WITH", "TIME", "ZONE"):
                    suffix.append("WITH TIME ZONE")
                elif self._crdb_word("WITHOUT", "TIME", "ZONE"):
                    suffix.append("WITHOUT TIME ZONE")
            elif word == "INTERVAL":
                while self._curr and self._curr.text.upper() in _INTERVAL_FIELDS and \
                        self._curr.token_type != TokenType.IDENTIFIER:
                    suffix.append(self._curr.text.upper())
                    self._advance()
                if suffix and self._match(TokenType.L_PAREN, advance=False):
                    args = self._crdb_wrapped(self._crdb_type_arg)
            array = False
            while self._match(TokenType.L_BRACKET):
                if not self._match(TokenType.R_BRACKET):
                    raise self._crdb_error("expected ] in an array type", self._curr)
                array = True
            if self._crdb_word("ARRAY"):
                array = True
            collate = self._crdb_ident() if self._crdb_word("COLLATE") else None
            return ast.TypeSpec(name, tuple(args), array, quoted, " ".join(suffix), collate)

        def _crdb_type_arg(self) -> str:
            negative = self._match(TokenType.DASH)
            token = self._curr
            if not token or token.token_type in (TokenType.COMMA, TokenType.R_PAREN):
                raise self._crdb_error("expected a type argument")
            self._advance()
            return ("-" if negative else "") + token.text.upper()

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

        def _crdb_string(self) -> str:
            token = self._curr
            if not token or token.token_type not in (TokenType.STRING, TokenType.BYTE_STRING,
                                                     TokenType.NATIONAL_STRING):
                raise self._crdb_error("expected a string", token)
            self._advance()
            return token.text

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


_NOT_WORDS = frozenset({TokenType.IDENTIFIER, TokenType.STRING, TokenType.BYTE_STRING,
                        TokenType.NATIONAL_STRING, TokenType.HEREDOC_STRING})
_INTERVAL_FIELDS = frozenset({"YEAR", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND", "TO"})
_SKIP_REASONS = {
    "view": "an export carries table data; the view's query is in schema.sql",
    "materialized view": "an export carries table data; the view's query is in schema.sql",
    "sequence": "an export does not carry a sequence's current value",
    "schema": "schemas are created as the tables need them",
}

