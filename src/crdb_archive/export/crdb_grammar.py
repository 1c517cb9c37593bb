"""The pieces of the CockroachDB statement grammar: keywords, names, lists, expressions, types.

A parser mixin over sqlglot's PostgreSQL parser; :mod:`crdb_dialect` builds the statements
from these. Errors are sqlglot ParseErrors carrying the line and column of the token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlglot import exp
from sqlglot.errors import ParseError
from sqlglot.parsers.postgres import PostgresParser
from sqlglot.tokenizer_core import Token, TokenType

from crdb_archive.export import crdb_ast as ast

T = TypeVar("T")

_NOT_WORDS = frozenset({TokenType.IDENTIFIER, TokenType.STRING, TokenType.BYTE_STRING,
                        TokenType.NATIONAL_STRING, TokenType.HEREDOC_STRING})
_INTERVAL_FIELDS = frozenset({"YEAR", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND", "TO"})


class GrammarBase(PostgresParser):
    """Keywords, names, parenthesised lists, expressions with their source text, types."""

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

    def _crdb_end(self) -> None:
        if self._curr:
            raise self._crdb_error(f"unexpected {self._curr.text!r}", self._curr)

    def _crdb_string(self) -> str:
        token = self._curr
        if not token or token.token_type not in (TokenType.STRING, TokenType.BYTE_STRING,
                                                 TokenType.NATIONAL_STRING):
            raise self._crdb_error("expected a string", token)
        self._advance()
        return token.text

    def _crdb_partition(self) -> None:
        """After PARTITION [ALL] BY: LIST|RANGE (cols) (PARTITION ...), or NOTHING."""
        if self._crdb_word("NOTHING"):
            return
        if not (self._crdb_word("LIST") or self._crdb_word("RANGE")):
            raise self._crdb_error("expected LIST, RANGE or NOTHING", self._curr)
        self._crdb_balanced()
        if self._match(TokenType.L_PAREN, advance=False):
            self._crdb_balanced()

    # --- types ------------------------------------------------------------------------------

    def _crdb_type(self) -> ast.TypeSpec:
        token = self._curr
        if not token:
            raise self._crdb_error("expected a type")
        quoted = token.token_type == TokenType.IDENTIFIER
        name = self._crdb_type_name(quoted)
        word = name[0] if len(name) == 1 else ""
        args: list[str] = []
        if self._match(TokenType.L_PAREN, advance=False):
            args = self._crdb_wrapped(self._crdb_type_arg)
        suffix: list[str] = []
        if word in ("TIMESTAMP", "TIME"):
            if self._crdb_word("WITH", "TIME", "ZONE"):
                suffix.append("WITH TIME ZONE")
            elif self._crdb_word("WITHOUT", "TIME", "ZONE"):
                suffix.append("WITHOUT TIME ZONE")
        elif word == "INTERVAL":
            suffix = self._crdb_interval_fields()
            if suffix and self._match(TokenType.L_PAREN, advance=False):
                args = self._crdb_wrapped(self._crdb_type_arg)
        array = self._crdb_array_marks()
        collate = self._crdb_ident() if self._crdb_word("COLLATE") else None
        return ast.TypeSpec(name, tuple(args), array, quoted, " ".join(suffix), collate)

    def _crdb_type_name(self, quoted: bool) -> ast.Name:
        """A type's name, its words joined (DOUBLE PRECISION, CHARACTER VARYING) and an
        unquoted one upper-cased."""
        words = self._curr.text.upper().split()
        if not quoted and len(words) > 1:  # DOUBLE PRECISION, CHARACTER VARYING
            self._advance()
            name: ast.Name = (" ".join(words),)
        else:
            name = self._crdb_name()
        if len(name) == 1 and not quoted:
            name = (name[0].upper(),)
        word = name[0] if len(name) == 1 else ""
        if word == "DOUBLE" and self._crdb_word("PRECISION"):
            return ("DOUBLE PRECISION",)
        if word in ("CHARACTER", "CHAR", "BIT") and self._crdb_word("VARYING"):
            return (f"{word} VARYING",)
        return name

    def _crdb_interval_fields(self) -> list[str]:
        """INTERVAL's fields (DAY TO SECOND), upper-cased."""
        fields = []
        while self._curr and self._curr.text.upper() in _INTERVAL_FIELDS and \
                self._curr.token_type != TokenType.IDENTIFIER:
            fields.append(self._curr.text.upper())
            self._advance()
        return fields

    def _crdb_array_marks(self) -> bool:
        """Whether ``[]`` (any number of times) or ARRAY follows: an array type."""
        array = False
        while self._match(TokenType.L_BRACKET):
            if not self._match(TokenType.R_BRACKET):
                raise self._crdb_error("expected ] in an array type", self._curr)
            array = True
        return self._crdb_word("ARRAY") or array

    def _crdb_type_arg(self) -> str:
        negative = self._match(TokenType.DASH)
        token = self._curr
        if not token or token.token_type in (TokenType.COMMA, TokenType.R_PAREN):
            raise self._crdb_error("expected a type argument")
        self._advance()
        return ("-" if negative else "") + token.text.upper()
