"""Table elements of CockroachDB's CREATE TABLE: columns and their qualifiers, primary keys,
inline INDEX / UNIQUE INDEX / INVERTED INDEX with their trailing clauses, checks, foreign keys
and column families."""

from __future__ import annotations

from sqlglot.tokenizer_core import Token, TokenType

from crdb_archive.export import crdb_ast as ast
from crdb_archive.export.crdb_grammar import GrammarBase

_ACTIONS = ("CASCADE", "RESTRICT", "SET NULL", "SET DEFAULT", "NO ACTION")


class ElementGrammar(GrammarBase):
    """The inside of ``CREATE TABLE (...)`` and the constraints ALTER TABLE adds."""

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
                self._crdb_hash_sharding()
            elif self._crdb_index_kept(index):
                continue
            elif not self._crdb_index_dropped():
                return
            index.dropped.append(self._crdb_text(start))

    def _crdb_hash_sharding(self) -> None:
        """The options of USING HASH, consumed: PostgreSQL has no hash-sharded indexes."""
        if self._crdb_word("WITH", "BUCKET_COUNT"):
            self._match(TokenType.EQ)
            self._advance()
        elif self._crdb_peek("WITH"):
            self._advance()
            self._crdb_balanced()

    def _crdb_index_kept(self, index: ast.IndexDef) -> bool:
        """An index clause PostgreSQL has too, read into ``index``; False for none."""
        if self._crdb_word("USING"):
            index.method = self._crdb_ident().lower()
        elif self._crdb_word("STORING") or self._crdb_word("COVERING") or \
                self._crdb_word("INCLUDE"):
            index.storing = self._crdb_wrapped(self._crdb_ident)
        elif self._crdb_word("WHERE"):
            index.where, index.where_text = self._crdb_expression()
        elif self._crdb_word("NOT", "VALID"):
            index.not_valid = True
        else:
            return False
        return True

    def _crdb_index_dropped(self) -> bool:
        """A CockroachDB-only index clause, consumed; False for none."""
        if self._crdb_word("NOT", "VISIBLE") or self._crdb_word("VISIBLE"):
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
        else:
            return False
        return True

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
        if not (self._crdb_column_value(column) or self._crdb_generated(column, start)
                or self._crdb_column_constraint(column, constraint)):
            raise self._crdb_error(f"unexpected {self._curr.text!r} in the definition of "
                                   f"column {column.name}", self._curr)

    def _crdb_column_value(self, column: ast.ColumnDef) -> bool:
        """Nullability, visibility, DEFAULT, ON UPDATE; False for none of them."""
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
        else:
            return False
        return True

    def _crdb_generated(self, column: ast.ColumnDef, start: Token) -> bool:
        """An identity (GENERATED ... AS IDENTITY) or a computed column (AS (...)); False
        for neither."""
        if self._crdb_word("GENERATED", "ALWAYS", "AS", "IDENTITY") or \
                self._crdb_word("GENERATED", "BY", "DEFAULT", "AS", "IDENTITY"):
            if self._match(TokenType.L_PAREN, advance=False):
                self._crdb_balanced()
            column.identity_text = self._crdb_text(start)
            return True
        if not (self._crdb_word("GENERATED", "ALWAYS", "AS") or self._crdb_word("AS")):
            return False
        if not self._match(TokenType.L_PAREN):
            raise self._crdb_error("expected ( after AS", self._curr)
        column.computed, column.computed_text = self._crdb_expression()
        if not self._match(TokenType.R_PAREN):
            raise self._crdb_error("expected ) after the computed expression", self._curr)
        column.virtual = self._crdb_word("VIRTUAL")
        if not column.virtual:
            self._crdb_word("STORED")
        return True

    def _crdb_column_constraint(self, column: ast.ColumnDef, constraint: str | None) -> bool:
        """A key, check, reference, collation or family of the column; False for none."""
        if self._crdb_word("PRIMARY", "KEY"):
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
            return False
        return True
