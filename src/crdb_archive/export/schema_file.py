"""The forms a ``SHOW CREATE ALL TABLES`` file comes in, unwrapped to plain SQL.

- plain statements, as the SQL shell prints them with ``--format=raw`` stripped, or as saved
  by hand;
- ``cockroach sql --format=csv`` or ``--format=tsv`` (the default when the output is not a
  terminal): a header row naming ``create_statement`` (``SHOW CREATE TABLE`` adds
  ``table_name``), then one statement per record, quoted over several lines (cockroach
  pkg/cli/clisqlexec/format_csv_tsv.go: Go's encoding/csv, comma or tab);
- the shell's table form as the docs show it: the ``create_statement`` header, a rule of
  dashes, each line indented by two spaces, and ``(N rows)`` at the end.

Line numbers in messages are those of the file, whatever its form.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Literal

from crdb_archive.text import count

Form = Literal["sql", "csv", "tsv", "table"]

COLUMN = "create_statement"


class MalformedSchemaFile(ValueError):
    """The file claims a form (a CSV header) that its content does not follow."""


@dataclass(frozen=True)
class SchemaText:
    """The SQL of a schema file, and for each of its lines the file's line number."""

    sql: str
    lines: tuple[int, ...]
    form: Form

    def file_line(self, line: int) -> int:
        """The file line of a 1-based line of ``sql``."""
        if 1 <= line <= len(self.lines):
            return self.lines[line - 1]
        return self.lines[-1] if self.lines else line


def unwrap(text: str) -> SchemaText:
    """Plain SQL from any of the forms above; raises MalformedSchemaFile."""
    text = text.removeprefix("\ufeff")
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return SchemaText("", (), "sql")
    header = lines[first]
    following = lines[first + 1] if first + 1 < len(lines) else ""
    if header.strip() == COLUMN and following.strip() and set(following.strip()) <= {"-", "+"}:
        return _from_table(lines, first)
    if _is_header(header):
        return _from_records(text, first, header)
    return SchemaText(text, tuple(range(1, len(lines) + 1)), "sql")


def _is_header(line: str) -> bool:
    names = [name.strip().strip('"') for name in line.replace("\t", ",").split(",")]
    return COLUMN in names and all(name.replace("_", "").isalnum() for name in names)


def _from_records(text: str, first: int, header: str) -> SchemaText:
    # One column looks the same in both forms, except that a CSV field with a comma is
    # quoted and a TSV one is not: reading a lone column tab-separated is right for both.
    delimiter = "," if "," in header and "\t" not in header else "\t"
    form: Form = "csv" if delimiter == "," else "tsv"
    rows = iter(text.splitlines(keepends=True)[first:])
    reader = csv.reader(rows, delimiter=delimiter, strict=True)
    try:
        names = next(reader)
        column = names.index(COLUMN)
        sql: list[str] = []
        mapping: list[int] = []
        while True:
            start = first + reader.line_num + 1
            try:
                record = next(reader)
            except StopIteration:
                break
            if not record or record == [""]:
                continue
            if len(record) != len(names):
                raise MalformedSchemaFile(
                    f"line {start}: {count(len(record), 'field')} where the header has "
                    f"{len(names)}")
            statement = record[column].rstrip()
            if not statement.endswith(";"):
                statement += ";"
            for offset, _ in enumerate(statement.split("\n")):
                mapping.append(start + offset)
            sql.append(statement)
    except csv.Error as error:
        raise MalformedSchemaFile(f"line {first + reader.line_num}: not valid {form.upper()} "
                                  f"({error})") from None
    return SchemaText("\n".join(sql), tuple(mapping), form)


def _from_table(lines: list[str], first: int) -> SchemaText:
    sql: list[str] = []
    mapping: list[int] = []
    for number in range(first + 2, len(lines)):
        line = lines[number]
        stripped = line.strip()
        if stripped.startswith("(") and stripped.endswith(("row)", "rows)")):
            break
        sql.append(line.removeprefix("  "))
        mapping.append(number + 1)
    return SchemaText("\n".join(sql), tuple(mapping), "table")
