"""Validate ndjson and CSV files line by line and stage their rows as exact text for DuckDB.

Each line (or CSV record) is parsed, checked for its format and envelope, and written to a
staging file as one JSON object of strings, which DuckDB reads without loss::

    {"a": [<absent columns>], "f": <file>, "n": <line>, "w": <wall>, "l": <logical>,
     "d": <delete>, "fam": <family>, "k": [<key texts>], "c": {"c<i>": <text> | [<texts>]}}

Python holds one line at a time; DuckDB does everything else. A column missing from a line
(rows written under an older schema, before a column was added) is absent from ``c`` and
becomes NULL and is listed in ``a`` for the snapshot's notes.

Raises :class:`~crdb_archive.errors.MalformedExportData` (exit 1) naming the file and line of
the first broken line or damaged compressed stream, and
:class:`~crdb_archive.errors.UnsupportedExport` (exit 2) for rows the schema cannot describe
(an unknown column, a key of the wrong length).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import zstandard

from crdb_archive.errors import MalformedExportData, UnsupportedExport
from crdb_archive.export.hlc import Hlc
from crdb_archive.export.model import Column, Table
from crdb_archive.export.names import Compression
from crdb_archive.export.values import Text, from_csv, from_json, loads
from crdb_archive.text import count as words
from crdb_archive.text import size

Envelope = Literal["wrapped", "bare"]
TimestampField = Literal["updated", "mvcc_timestamp"]
MAX_LINE = 256 * 1024 * 1024  # a line longer than this is refused rather than buffered
_META = "__crdb__"


class Layout:
    """A table's columns as the snapshot numbers them (``c0``..), and its key."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.columns: tuple[Column, ...] = table.columns
        self._index = {column.name: i for i, column in enumerate(table.columns)}
        positions = []
        for name in table.primary_key:
            if name not in self._index:
                raise UnsupportedExport(
                    f"table {table.name}: primary key column {name!r} is not a column")
            positions.append(self._index[name])
        self.key: tuple[int, ...] = tuple(positions)  # primary key columns, in key order
        self.non_key: frozenset[int] = frozenset(range(len(self.columns))) - set(positions)

    def index(self, name: str) -> int | None:
        return self._index.get(name)


@dataclass
class StageCounts:
    """What staging saw of one table, for the notes."""

    rows: int = 0
    deletes: int = 0
    bare_all_null: int = 0  # bare rows taken as deletes


@dataclass(frozen=True)
class FeedShape:
    """The envelope and timestamp option of an ndjson feed, from its first line."""

    envelope: Envelope
    timestamp: TimestampField | None


@contextmanager
def open_text(path: Path, compression: Compression) -> Iterator[IO[bytes]]:
    """A binary stream of the decompressed file."""
    with path.open("rb") as raw:
        if compression == "gzip":
            with gzip.GzipFile(fileobj=raw) as stream:
                yield stream  # type: ignore[misc]
        elif compression == "zstd":
            with zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as z:
                yield io.BufferedReader(z)
        else:
            yield raw


_STREAM_ERRORS = (OSError, EOFError, zlib.error, zstandard.ZstdError)


def iter_lines(path: Path, compression: Compression, shown: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line; raises MalformedExportData for a damaged stream."""
    number = 0
    try:
        with open_text(path, compression) as stream:
            while True:
                raw = stream.readline(MAX_LINE + 1)
                if not raw:
                    return
                number += 1
                if len(raw) > MAX_LINE:
                    raise MalformedExportData(f"{shown}: line {number}: longer than "
                                              f"{size(MAX_LINE)}")
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise MalformedExportData(
                        f"{shown}: line {number}: not UTF-8") from None
                yield number, text.rstrip("\r\n") if text.endswith("\n") else text
    except _STREAM_ERRORS as exc:
        raise MalformedExportData(
            f"{shown}: damaged {compression} stream after line {number} ({exc})") from None


def detect_shape(path: Path, compression: Compression, shown: str) -> FeedShape:
    """The envelope and timestamp option, from the first line of an ndjson file."""
    for number, line in iter_lines(path, compression, shown):
        try:
            obj = loads(line)
        except ValueError as exc:
            raise MalformedExportData(f"{shown}: line {number}: not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise MalformedExportData(f"{shown}: line {number}: not a JSON object")
        wrapped = "after" in obj
        meta = obj if wrapped else obj.get(_META)
        timestamp: TimestampField | None = None
        if isinstance(meta, dict):
            # ``updated`` orders the versions of a row as they were emitted, backfills
            # included; ``mvcc_timestamp`` alone ties a backfill with the write it repeats.
            if "updated" in meta:
                timestamp = "updated"
            elif "mvcc_timestamp" in meta:
                timestamp = "mvcc_timestamp"
        return FeedShape("wrapped" if wrapped else "bare", timestamp)
    raise MalformedExportData(f"{shown}: empty data file")


class StageWriter:
    """Writes staged rows of one table to one file."""

    def __init__(self, path: Path, layout: Layout) -> None:
        self.path = path
        self.layout = layout
        self.counts = StageCounts()
        self.longest = 0  # bytes of the longest staged line: DuckDB's reader must hold it
        self._key = layout.key
        self._out = path.open("w", encoding="utf-8")

    def close(self) -> None:
        self._out.close()

    def write(self, f: int, n: int, ts: Hlc | None, delete: bool, family: str,
              key: list[str | None], values: dict[int, Text]) -> None:
        self.counts.rows += 1
        absent = [] if delete else [i for i in range(len(self.layout.columns)) if i not in values]
        if delete:
            self.counts.deletes += 1
        record: dict[str, Any] = {"a": absent,
            "f": f, "n": n, "w": ts.wall if ts else None, "l": ts.logical if ts else None,
            "d": delete, "fam": family, "k": key,
            "c": {f"c{i}": v for i, v in values.items()},
        }
        line = json.dumps(record, ensure_ascii=True, separators=(",", ":"))
        self.longest = max(self.longest, len(line) + 1)
        self._out.write(line)
        self._out.write("\n")

    def key_from_values(self, values: dict[int, Text], shown: str, n: int) -> list[str | None]:
        key: list[str | None] = []
        for i in self._key:
            value = values.get(i)
            if value is None or isinstance(value, list):
                raise MalformedExportData(
                    f"{shown}: line {n}: primary key column {self.layout.columns[i].name!r} "
                    "is missing or NULL")
            key.append(value)
        return key


def stage_ndjson(path: Path, compression: Compression, shown: str, f: int, family: str,
                 shape: FeedShape, writer: StageWriter) -> None:
    """Validate and stage every line of one ndjson changefeed file."""
    layout = writer.layout
    for n, line in iter_lines(path, compression, shown):
        try:
            obj = loads(line)
        except ValueError as exc:
            raise MalformedExportData(f"{shown}: line {n}: not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise MalformedExportData(f"{shown}: line {n}: not a JSON object")
        if shape.envelope == "wrapped":
            _stage_wrapped(obj, shown, f, n, family, shape, writer)
        else:
            _stage_bare(obj, shown, f, n, family, shape, writer, layout)


def _timestamp(meta: dict[str, Any], shape: FeedShape, shown: str, n: int) -> Hlc | None:
    if shape.timestamp is None:
        if "updated" in meta or "mvcc_timestamp" in meta:
            raise MalformedExportData(f"{shown}: line {n}: a timestamp the first line lacked")
        return None
    raw = meta.get(shape.timestamp)
    if not isinstance(raw, str):
        raise MalformedExportData(f"{shown}: line {n}: no {shape.timestamp} timestamp")
    try:
        return Hlc.parse_decimal(raw)
    except ValueError:
        raise MalformedExportData(
            f"{shown}: line {n}: {shape.timestamp} {raw!r} is not an HLC timestamp") from None


def _values(row: dict[str, Any], writer: StageWriter, shown: str, n: int) -> dict[int, Text]:
    values: dict[int, Text] = {}
    for name, value in row.items():
        i = writer.layout.index(name)
        if i is None:
            raise UnsupportedExport(
                f"{shown}: line {n}: column {name!r} is not in the schema of table "
                f"{writer.layout.table.name}")
        try:
            values[i] = from_json(value, writer.layout.columns[i].type)
        except ValueError as exc:
            raise MalformedExportData(f"{shown}: line {n}: column {name!r}: {exc}") from None
    return values


def _stage_wrapped(obj: dict[str, Any], shown: str, f: int, n: int, family: str,
                   shape: FeedShape, writer: StageWriter) -> None:
    if "after" not in obj:
        raise MalformedExportData(f"{shown}: line {n}: no \"after\" field (wrapped envelope)")
    after = obj["after"]
    if after is not None and not isinstance(after, dict):
        raise MalformedExportData(f"{shown}: line {n}: \"after\" is neither an object nor null")
    ts = _timestamp(obj, shape, shown, n)
    raw_key = obj.get("key")
    values = _values(after, writer, shown, n) if after is not None else {}
    if isinstance(raw_key, list):
        key_columns = writer.layout.key
        if len(raw_key) != len(key_columns):
            raise UnsupportedExport(
                f"{shown}: line {n}: the key has {words(len(raw_key), 'value')}, the primary key "
                f"of {writer.layout.table.name} {len(key_columns)}")
        key: list[str | None] = []
        for value, i in zip(raw_key, key_columns, strict=True):
            try:
                text = from_json(value, writer.layout.columns[i].type)
            except ValueError as exc:
                raise MalformedExportData(f"{shown}: line {n}: key: {exc}") from None
            key.append(text if isinstance(text, str) else None)
    elif after is None:
        raise MalformedExportData(f"{shown}: line {n}: a delete without a \"key\"")
    else:
        key = writer.key_from_values(values, shown, n)
    writer.write(f, n, ts, after is None, family, key, values)


def _stage_bare(obj: dict[str, Any], shown: str, f: int, n: int, family: str,
                shape: FeedShape, writer: StageWriter, layout: Layout) -> None:
    meta = obj.pop(_META, {})
    if not isinstance(meta, dict):
        raise MalformedExportData(f"{shown}: line {n}: \"{_META}\" is not an object")
    ts = _timestamp(meta, shape, shown, n)
    values = _values(obj, writer, shown, n)
    key = writer.key_from_values(values, shown, n)
    # encoder_json.go writes a bare delete as the row with its key and every other column
    # NULL (emitDeletedRowAsNull is false for bare): that is the only sign of a delete.
    others = [i for i in values if i in layout.non_key]
    delete = bool(others) and all(values[i] is None for i in others)
    if delete:
        writer.counts.bare_all_null += 1
    writer.write(f, n, ts, delete, family, key, values)


def csv_columns(table: Table, count: int, shown: str, n: int, source: str) -> tuple[int, ...]:
    """Which columns a CSV record of ``count`` fields holds, by position.

    EXPORT writes ``SELECT *``: the visible columns. A ``format=csv`` changefeed writes every
    column of the row (``encoder_csv.go`` ``ForEachColumn``), hidden ones included, virtual
    computed columns excluded.
    """
    everything = tuple(range(len(table.columns)))
    visible = tuple(i for i, c in enumerate(table.columns) if not c.hidden)
    stored = tuple(i for i, c in enumerate(table.columns) if c.computed is None)
    candidates = (visible, everything, stored) if source == "export" else (
        everything, stored, visible)
    for candidate in candidates:
        if len(candidate) == count:
            return candidate
    raise MalformedExportData(
        f"{shown}: line {n}: {words(count, 'field')}; table {table.name} has "
        f"{len(visible)} visible of {words(len(everything), 'column')}")


def stage_csv(path: Path, compression: Compression, shown: str, f: int, source: str,
              writer: StageWriter, key_known: bool) -> None:
    """Validate and stage every record of one CSV file (EXPORT or ``format=csv`` feed)."""
    layout = writer.layout
    positions: tuple[int, ...] | None = None
    try:
        with open_text(path, compression) as binary:
            text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
            reader = csv.reader(text, strict=True)
            line = 1
            for record in reader:
                if positions is None:
                    positions = csv_columns(layout.table, len(record), shown, line, source)
                elif len(record) != len(positions):
                    raise MalformedExportData(
                        f"{shown}: line {line}: {words(len(record), 'field')}, the file's first "
                        f"record has {len(positions)}")
                values: dict[int, Text] = {}
                for i, raw in zip(positions, record, strict=True):
                    try:
                        values[i] = from_csv(raw, layout.columns[i].type)
                    except ValueError as exc:
                        raise MalformedExportData(
                            f"{shown}: line {line}: column {layout.columns[i].name!r}: {exc}"
                        ) from None
                key: list[str | None] = (writer.key_from_values(values, shown, line)
                                         if key_known else [f"{f}:{line}"])
                writer.write(f, line, None, False, "", key, values)
                line = reader.line_num + 1
    except csv.Error as exc:
        raise MalformedExportData(f"{shown}: line {reader.line_num}: broken CSV ({exc})") from None
    except UnicodeDecodeError:
        raise MalformedExportData(f"{shown}: not UTF-8 text") from None
    except _STREAM_ERRORS as exc:
        raise MalformedExportData(f"{shown}: damaged {compression} stream ({exc})") from None
