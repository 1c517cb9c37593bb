"""The PostgreSQL DDL for a schema: what to create before loading, and what to add after.

Tables are created with their visible columns and a primary key where one survives; indexes,
unique keys, foreign keys, checks and comments come after the data, which is faster and keeps
the load independent of the order of tables. Every identifier is quoted. PostgreSQL names
indexes per schema, CockroachDB per table: an index name met twice in one target schema (or
longer than PostgreSQL's 63 bytes) is renamed, with a note.
"""

from __future__ import annotations

from dataclasses import dataclass

from crdb_archive.errors import BadInput
from crdb_archive.export.model import (
    Column,
    Constraint,
    Index,
    QualifiedName,
    Schema,
    SqlType,
    Table,
)
from crdb_archive.export.tables import foreign_key_definition, quote

# PostgreSQL truncates longer identifiers (NAMEDATALEN - 1), which could merge two names.
MAX_IDENTIFIER_BYTES = 63
# The line of PostgresDDL.script() between the creation and what comes after the data: a
# reader splits the file there (``sed '/^-- crdb-archive: load the data here/q'``).
LOAD_MARKER = "-- crdb-archive: load the data here"


@dataclass(frozen=True)
class PostgresDDL:
    """SQL statements (without the final semicolon) in the order they must run."""

    create: tuple[str, ...]
    after_load: tuple[str, ...]
    notes: tuple[str, ...]
    # Each table of the schema and the name it gets in PostgreSQL, in file order.
    targets: tuple[tuple[QualifiedName, QualifiedName], ...]
    types: tuple[QualifiedName, ...] = ()  # the enum types it creates, as named there

    def target(self, name: QualifiedName) -> QualifiedName:
        """Where table ``name`` goes; raises KeyError."""
        for source, target in self.targets:
            if source == name:
                return target
        raise KeyError(str(name))

    def script(self) -> str:
        """One SQL file: the creation, the line :data:`LOAD_MARKER` where the data goes, then
        the constraints, indexes and comments (which a load must not meet before its rows)."""
        notes = "".join(f"-- {' '.join(note.splitlines())}\n" for note in self.notes)
        return ("-- PostgreSQL DDL translated from CockroachDB's SHOW CREATE ALL TABLES.\n"
                "-- Run the part before the marker line, load each table's data (COPY ... FROM "
                "... (FORMAT csv, HEADER true)),\n-- then run the part after it.\n"
                f"{notes}\n" + "".join(f"{s};\n" for s in self.create)
                + f"\n{LOAD_MARKER}\n\n" + "".join(f"{s};\n" for s in self.after_load))


def qualified(name: QualifiedName) -> str:
    return f"{quote(name.schema)}.{quote(name.name)}"


def literal(text: str) -> str:
    """A PostgreSQL string literal (standard_conforming_strings, on since 9.1)."""
    return "'" + text.replace("'", "''") + "'"


def postgresql_ddl(schema: Schema, *, schema_name: str | None = None) -> PostgresDDL:
    """The DDL that recreates ``schema`` in PostgreSQL, every table and enum in the schema of
    its own name or all of them in ``schema_name``.

    Raises BadInput when two tables (or types) would get the same name, or a name is longer
    than PostgreSQL keeps.
    """
    return _Renderer(schema, schema_name).render()


class _Renderer:
    def __init__(self, schema: Schema, schema_name: str | None) -> None:
        self.schema = schema
        self.schema_name = schema_name
        self.notes: list[str] = list(schema.all_notes())
        self.relations: dict[str, set[str]] = {}  # names taken per target schema
        self.primary_keys: dict[QualifiedName, str] = {}  # table -> its key's name
        self.index_names: dict[tuple[QualifiedName, str], str] = {}  # as created

    def place(self, name: QualifiedName) -> QualifiedName:
        return QualifiedName(self.schema_name or name.schema, name.name)

    def render(self) -> PostgresDDL:
        targets = tuple((t.name, self.place(t.name)) for t in self.schema.tables)
        self._claim([(str(e.name), self.place(e.name)) for e in self.schema.enums]
                    + [(str(source), target) for source, target in targets])
        create: list[str] = [f"CREATE SCHEMA IF NOT EXISTS {quote(s)}"
                             for s in dict.fromkeys(t.schema for _, t in targets)
                             if s != "public"]
        for enum in self.schema.enums:
            values = ", ".join(literal(v) for v in enum.values)
            create.append(f"CREATE TYPE {qualified(self.place(enum.name))} AS ENUM ({values})")
        indexes: list[str] = []
        constraints: list[str] = []
        checks: list[str] = []
        comments: list[str] = []
        for table in self.schema.tables:
            target = self.place(table.name)
            create.append(self._create_table(table, target))
            indexes.extend(self._index(table, target, index) for index in table.indexes)
            for constraint in table.constraints:
                statement = self._constraint(target, constraint)
                (checks if constraint.kind == "check" else constraints).append(statement)
            comments.extend(self._comments(table, target))
        return PostgresDDL(tuple(create), tuple(indexes + constraints + checks + comments),
                           tuple(self.notes), targets,
                           tuple(self.place(e.name) for e in self.schema.enums))

    # --- names ---------------------------------------------------------------------------

    def _claim(self, names: list[tuple[str, QualifiedName]]) -> None:
        seen: dict[QualifiedName, str] = {}
        for source, target in names:
            _check_length(target.name, source)
            _check_length(target.schema, source)
            if target in seen:
                raise BadInput(f"{seen[target]} and {source} would both be {target} in "
                               "PostgreSQL (a type and a table share a namespace there too)")
            seen[target] = source
            self.relations.setdefault(target.schema, set()).add(target.name)

    def _relation_name(self, table: Table, target: QualifiedName, name: str, what: str) -> str:
        """``name``, or a free variant of it, for an index in ``target``'s schema."""
        taken = self.relations.setdefault(target.schema, set())
        chosen = name
        if chosen in taken or len(chosen.encode()) > MAX_IDENTIFIER_BYTES:
            base = f"{table.name.name}_{name}"
            chosen = _truncate(base)
            counter = 1
            while chosen in taken:
                suffix = f"_{counter}"
                chosen = _truncate(base, len(suffix)) + suffix
                counter += 1
            self.notes.append(f"{table.name}: {what} {name} created as {chosen}: index names "
                              "are unique per schema in PostgreSQL")
        taken.add(chosen)
        return chosen

    # --- statements ------------------------------------------------------------------------

    def _type(self, sql_type: SqlType) -> str:
        if sql_type.kind == "enum" and sql_type.enum is not None:
            return qualified(self.place(sql_type.enum))
        if sql_type.kind == "array" and sql_type.element is not None:
            return f"{self._type(sql_type.element)}[]"
        return sql_type.postgres

    def _column(self, column: Column) -> str:
        _check_length(column.name, f"column {column.name}")
        text = f"{quote(column.name)} {self._type(column.type)}"
        if not column.nullable:
            text += " NOT NULL"
        if column.default is not None:
            text += f" DEFAULT {column.default}"
        return text

    def _create_table(self, table: Table, target: QualifiedName) -> str:
        parts = [self._column(c) for c in table.visible_columns]
        if not parts:
            raise BadInput(f"table {table.name} has no visible column to load")
        key = table.postgres_primary_key
        if key:
            name = self._relation_name(table, target,
                                       table.primary_key_name or f"{target.name}_pkey",
                                       "primary key")
            parts.append(f"CONSTRAINT {quote(name)} PRIMARY KEY "
                         f"({', '.join(map(quote, key))})")
            self.primary_keys[table.name] = name
        body = ",\n    ".join(parts)
        return f"CREATE TABLE {qualified(target)} (\n    {body}\n)"

    def _index(self, table: Table, target: QualifiedName, index: Index) -> str:
        name = self._relation_name(table, target, index.name, "index")
        self.index_names[(table.name, index.name)] = name
        keys = []
        for key in index.keys:
            text = quote(key.column) if key.column else f"({key.expression})"
            if key.descending:
                text += " DESC"
            if key.nulls:
                text += f" NULLS {key.nulls}"
            keys.append(text)
        statement = f"CREATE {'UNIQUE ' if index.unique else ''}INDEX {quote(name)} ON " \
                    f"{qualified(target)}"
        if index.method:
            statement += f" USING {index.method}"
        statement += f" ({', '.join(keys)})"
        if index.include:
            statement += f" INCLUDE ({', '.join(map(quote, index.include))})"
        if index.where:
            statement += f" WHERE {index.where}"
        return statement

    def _constraint(self, target: QualifiedName, constraint: Constraint) -> str:
        definition = constraint.definition
        if constraint.foreign_key is not None:
            fk = constraint.foreign_key
            definition = foreign_key_definition(fk, self.place(fk.table))
        statement = f"ALTER TABLE {qualified(target)} ADD CONSTRAINT {quote(constraint.name)} " \
                    f"{definition}"
        return statement + (" NOT VALID" if constraint.not_valid else "")

    def _comments(self, table: Table, target: QualifiedName) -> list[str]:
        on = qualified(target)
        comments = []
        if table.comment is not None:
            comments.append(f"COMMENT ON TABLE {on} IS {literal(table.comment)}")
        for column, text in table.column_comments:
            comments.append(f"COMMENT ON COLUMN {on}.{quote(column)} IS {literal(text)}")
        primary_key = self.primary_keys.get(table.name)
        if table.primary_key_comment is not None and primary_key:
            comments.append(f"COMMENT ON CONSTRAINT {quote(primary_key)} ON {on} IS "
                            f"{literal(table.primary_key_comment)}")
        for index in table.indexes:
            if index.comment is not None:
                name = self.index_names[(table.name, index.name)]
                comments.append(f"COMMENT ON INDEX {quote(target.schema)}.{quote(name)} IS "
                                f"{literal(index.comment)}")
        for constraint in table.constraints:
            if constraint.comment is not None:
                comments.append(f"COMMENT ON CONSTRAINT {quote(constraint.name)} ON {on} IS "
                                f"{literal(constraint.comment)}")
        return comments


def _truncate(name: str, reserve: int = 0) -> str:
    limit = MAX_IDENTIFIER_BYTES - reserve
    encoded = name.encode()
    if len(encoded) <= limit:
        return name
    return encoded[:limit].decode(errors="ignore")


def _check_length(name: str, what: str) -> None:
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise BadInput(f"{what}: the name {name!r} is longer than PostgreSQL's "
                       f"{MAX_IDENTIFIER_BYTES} bytes")
