"""Changefeed and EXPORT output written from an event history, and the tables it describes at
any time, computed from that history (never from the files).

The writer follows the documented formats: cloud-storage sink names
``<ts>-<session>-<node>-<sink>-<fileid:08x>-<topic>-<schemaid:x>.<ext>`` under daily, hourly or
flat partitions, ``<ts>.RESOLVED`` files, ndjson with the wrapped or bare envelope and
``tree.AsJSON`` values, ``format=csv`` and EXPORT CSV in ``FmtExport`` text, Parquet with
CockroachDB's column layout (timestamps as strings, ``__crdb__event_type``,
``__crdb__updated``), gzip and zstd.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import duckdb
import zstandard

from crdb_archive.export.hlc import Hlc
from crdb_archive.export.model import Column, QualifiedName, Schema, SqlType, Table

Row = dict[str, Any]


def sql_type(kind: str, cockroach: str, postgres: str, **extra: Any) -> SqlType:
    return SqlType(kind=kind, cockroach=cockroach, postgres=postgres, **extra)  # type: ignore[arg-type]


INT8 = sql_type("int", "INT8", "bigint", bits=64)
INT4 = sql_type("int", "INT4", "integer", bits=32)
STRING = sql_type("string", "STRING", "text")
BOOL = sql_type("bool", "BOOL", "boolean")
FLOAT8 = sql_type("float", "FLOAT8", "double precision", bits=64)
JSONB = sql_type("jsonb", "JSONB", "jsonb")
BYTES = sql_type("bytes", "BYTES", "bytea")
UUID = sql_type("uuid", "UUID", "uuid")
DATE = sql_type("date", "DATE", "date")
TIMESTAMP = sql_type("timestamp", "TIMESTAMP", "timestamp")
TIMESTAMPTZ = sql_type("timestamptz", "TIMESTAMPTZ", "timestamptz")
INTERVAL = sql_type("interval", "INTERVAL", "interval")
DECIMAL_ANY = sql_type("decimal", "DECIMAL", "numeric")
STRING_ARRAY = sql_type("array", "STRING[]", "text[]", element=STRING)
INT_ARRAY = sql_type("array", "INT8[]", "bigint[]", element=INT8)


def decimal(precision: int, scale: int) -> SqlType:
    return sql_type("decimal", f"DECIMAL({precision},{scale})", f"numeric({precision},{scale})",
                    precision=precision, scale=scale)


def table(name: str, columns: list[Column], key: tuple[str, ...], schema: str = "public",
          database: str = "shop", families: tuple[tuple[str, tuple[str, ...]], ...] = ()
          ) -> Table:
    return Table(name=QualifiedName(schema, name, database), columns=tuple(columns),
                 primary_key=key, families=families)


class JsonRaw(str):
    """A JSON fragment written as is (numbers with their scale, JSONB documents)."""


@dataclass(frozen=True)
class Event:
    """One row version: ``row`` None is a delete."""

    table: str
    key: tuple[Any, ...]
    row: Row | None
    ts: Hlc
    # A schema change's backfill re-emits a row at the change's time (``updated``) with the
    # MVCC timestamp of the row's last write (``mvcc_timestamp``).
    mvcc: Hlc | None = None

    def stamp(self, option: str | None) -> Hlc:
        return self.mvcc if option == "mvcc_timestamp" and self.mvcc is not None else self.ts


@dataclass
class History:
    """The truth: every committed version of every row, and the resolved timestamps."""

    schema: Schema
    events: list[Event] = field(default_factory=list)

    def put(self, table_name: str, row: Row, ts: Hlc, mvcc: Hlc | None = None) -> Event:
        t = self.schema.table(table_name)
        event = Event(table_name, tuple(row[k] for k in t.primary_key), dict(row), ts, mvcc)
        self.events.append(event)
        return event

    def delete(self, table_name: str, key: tuple[Any, ...], ts: Hlc) -> Event:
        event = Event(table_name, key, None, ts)
        self.events.append(event)
        return event

    def last_write(self, table_name: str, key: tuple[Any, ...], before: Hlc) -> Hlc:
        return max(e.ts for e in self.events
                   if e.table == table_name and e.key == key and e.ts < before)

    def model_at(self, at: Hlc | None) -> dict[str, dict[tuple[Any, ...], Row]]:
        """Per table, key -> row as of ``at`` (None: after everything)."""
        state: dict[str, dict[tuple[Any, ...], Row]] = {t.name.name: {} for t in
                                                         self.schema.tables}
        for event in sorted(self.events, key=lambda e: e.ts):
            if at is not None and event.ts > at:
                continue
            rows = state[event.table]
            if event.row is None:
                rows.pop(event.key, None)
            else:
                rows[event.key] = dict(event.row)
        return state


def hlc(seconds: int, logical: int = 0) -> Hlc:
    """A timestamp ``seconds`` after 2024-01-02 00:00 UTC."""
    return Hlc((1704153600 + seconds) * 1_000_000_000, logical)


# --- value encodings ----------------------------------------------------------------------


def _json_scalar(value: Any, t: SqlType) -> str:
    if value is None:
        return "null"
    kind = t.kind
    if kind == "jsonb":
        return str(value)  # a JSON document as text
    if kind == "bool":
        return "true" if value else "false"
    if kind in ("int", "decimal", "float"):
        return str(value)
    if kind == "bytes":
        return json.dumps("\\x" + bytes(value).hex())
    if kind == "timestamp":
        return json.dumps(value.isoformat())
    if kind == "timestamptz":
        return json.dumps(value.astimezone(UTC).isoformat().replace("+00:00", "Z"))
    return json.dumps(str(value), ensure_ascii=False)


def json_value(value: Any, t: SqlType) -> str:
    """``tree.AsJSON`` text of a value."""
    if t.kind == "array" and value is not None:
        if t.element is None:
            raise ValueError(f"array type {t.cockroach} without an element type")
        return "[" + ", ".join(_json_scalar(v, t.element) for v in value) + "]"
    return _json_scalar(value, t)


def _export_scalar(value: Any, t: SqlType) -> str:
    kind = t.kind
    if kind == "bool":
        return "true" if value else "false"
    if kind == "bytes":
        return "\\x" + bytes(value).hex()
    if kind == "timestamp":
        return str(value.isoformat(sep=" "))
    if kind == "timestamptz":
        return str(value.astimezone(UTC).isoformat(sep=" "))
    return str(value)


def export_text(value: Any, t: SqlType) -> str:
    """``FmtExport`` text of a value, NULL as the empty field."""
    if value is None:
        return ""
    if t.kind == "array":
        if t.element is None:
            raise ValueError(f"array type {t.cockroach} without an element type")
        items = []
        for v in value:
            if v is None:
                items.append("NULL")
            else:
                text = _export_scalar(v, t.element)
                items.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
        return "{" + ",".join(items) + "}"
    return _export_scalar(value, t)


# --- files ----------------------------------------------------------------------------------


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def partition(ts: Hlc, partitioning: str) -> str:
    stamp = ts.file_time()
    day = f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}/"
    return {"flat": "", "daily": day, "hourly": f"{day}{stamp[8:10]}/"}[partitioning]


@dataclass
class Feed:
    """A changefeed's sink output being written."""

    root: Path
    schema: Schema
    format: str = "ndjson"  # ndjson | csv | parquet
    envelope: str = "wrapped"  # wrapped | bare
    timestamp: str | None = "updated"  # updated | mvcc_timestamp | None
    compression: str = "none"  # none | gzip | zstd (ndjson, csv)
    partitioning: str = "daily"
    full_table_name: bool = False
    files: list[Path] = field(default_factory=list)

    def session(self, node: int = 1, sink: int = 1) -> Session:
        return Session(self, secrets.token_hex(8), node, sink)

    def topic(self, t: Table) -> str:
        return f"{t.name.database}.{t.name.schema}.{t.name.name}" if self.full_table_name \
            else t.name.name

    def resolved(self, ts: Hlc) -> Path:
        path = self.root / partition(ts, self.partitioning) / f"{ts.file_time()}.RESOLVED"
        path.parent.mkdir(parents=True, exist_ok=True)
        body: dict[str, Any] = {"resolved": ts.decimal()}
        if self.envelope == "bare":
            body = {"__crdb__": body}
        path.write_text(json.dumps(body))
        self.files.append(path)
        return path

    # encoders of one file's content
    def ndjson(self, t: Table, events: list[Event], columns: list[Column]) -> bytes:
        lines = []
        for e in events:
            ts = f'"{e.stamp(self.timestamp).decimal()}"'
            key = "[" + ", ".join(json_value(v, t.column(k).type)
                                  for v, k in zip(e.key, t.primary_key, strict=True)) + "]"
            if self.envelope == "wrapped":
                after = "null" if e.row is None else "{" + ", ".join(
                    f"{json.dumps(c.name)}: {json_value(e.row.get(c.name), c.type)}"
                    for c in columns) + "}"
                parts = [f'"after": {after}', f'"key": {key}']
                if self.timestamp:
                    parts.append(f'"{self.timestamp}": {ts}')
                lines.append("{" + ", ".join(parts) + "}")
            else:
                row = e.row if e.row is not None else dict(zip(t.primary_key, e.key,
                                                               strict=True))
                fields = [f"{json.dumps(c.name)}: {json_value(row.get(c.name), c.type)}"
                          for c in columns]
                if self.timestamp:
                    fields.append(f'"__crdb__": {{"{self.timestamp}": {ts}}}')
                lines.append("{" + ", ".join(fields) + "}")
        return ("\n".join(lines) + "\n").encode()

    def csv_body(self, events: list[Event], columns: list[Column]) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for e in events:
            if e.row is None:
                raise ValueError("format=csv changefeeds carry no deletes")
            writer.writerow([export_text(e.row.get(c.name), c.type) for c in columns])
        return out.getvalue().encode()


@dataclass
class Session:
    """One job session's sink: files numbered 0, 1, 2 ..."""

    feed: Feed
    session_id: str
    node: int
    sink: int
    next_id: int = 0

    def file(self, lower_bound: Hlc, table_name: str, events: list[Event], schema_id: int = 1,
             columns: list[str] | None = None, skip_id: bool = False) -> Path:
        """Write one data file; ``columns`` limits the columns (an older schema)."""
        feed = self.feed
        t = feed.schema.table(table_name)
        cols = [c for c in t.columns if columns is None or c.name in columns]
        if skip_id:
            self.next_id += 1
        file_id = self.next_id
        self.next_id += 1
        ext = {"ndjson": ".ndjson", "csv": ".csv", "parquet": ".parquet"}[feed.format]
        if feed.format != "parquet":
            ext += {"none": "", "gzip": ".gz", "zstd": ".zst"}[feed.compression]
        name = (f"{lower_bound.file_time()}-{self.session_id}-{self.node}-{self.sink}-"
                f"{file_id:08x}-{feed.topic(t)}-{schema_id:x}{ext}")
        path = feed.root / partition(lower_bound, feed.partitioning) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if feed.format == "ndjson":
            path.write_bytes(compress(feed.ndjson(t, events, cols), feed.compression))
        elif feed.format == "csv":
            path.write_bytes(compress(feed.csv_body(events, cols), feed.compression))
        else:
            write_parquet(path, t, events, cols, feed.timestamp)
        feed.files.append(path)
        return path


_DUCK_TYPES = {"int": "BIGINT", "bool": "BOOLEAN", "float": "DOUBLE", "bytes": "BLOB",
               "uuid": "UUID", "jsonb": "JSON"}


def _parquet_type(t: SqlType) -> str:
    if t.kind == "array":
        if t.element is None:
            raise ValueError(f"array type {t.cockroach} without an element type")
        return _parquet_type(t.element) + "[]"
    if t.kind == "decimal":
        return f"DECIMAL({t.precision or 38},{t.scale or 0})" if t.precision else "VARCHAR"
    return _DUCK_TYPES.get(t.kind, "VARCHAR")


def _parquet_value(value: Any, t: SqlType) -> Any:
    if value is None:
        return None
    if t.kind == "array":
        if t.element is None:
            raise ValueError(f"array type {t.cockroach} without an element type")
        return [_parquet_value(v, t.element) for v in value]
    if t.kind in ("timestamp", "timestamptz", "date", "interval"):
        return export_text(value, t)  # CockroachDB writes these as strings (schema.go)
    if t.kind == "decimal" and not t.precision:
        return str(value)
    if t.kind == "uuid":
        return str(value)
    if t.kind == "jsonb":
        return str(value)
    return value


def write_parquet(path: Path, t: Table, events: list[Event], columns: list[Column],
                  timestamp: str | None, export: bool = False) -> None:
    """CockroachDB's Parquet layout, written with DuckDB."""
    con = duckdb.connect()
    defs = [f'"{c.name}" {_parquet_type(c.type)}' for c in columns]
    if not export:
        defs.append('"__crdb__event_type" VARCHAR')
        if timestamp:
            defs.append(f'"__crdb__{timestamp}" VARCHAR')
    con.execute(f"CREATE TABLE t ({', '.join(defs)})")
    rows = []
    for e in events:
        row = e.row if e.row is not None else dict(zip(t.primary_key, e.key, strict=True))
        values = [_parquet_value(row.get(c.name), c.type) for c in columns]
        if not export:
            values.append("d" if e.row is None else "u")
            if timestamp:
                values.append(e.stamp(timestamp).decimal())
        rows.append(values)
    if rows:
        con.executemany(f"INSERT INTO t VALUES ({', '.join('?' for _ in defs)})", rows)
    con.execute(f"COPY t TO '{path}' (FORMAT parquet)")
    con.close()


def write_export(root: Path, t: Table, rows: list[Row], fmt: str, compression: str = "none",
                 chunk_rows: int = 1000, node: int = 1) -> list[Path]:
    """``EXPORT INTO CSV|PARQUET ... FROM TABLE``: the visible columns, in chunks."""
    export_id = secrets.token_hex(8)
    visible = list(t.visible_columns)
    paths = []
    for chunk, start in enumerate(range(0, max(len(rows), 1), chunk_rows)):
        part = rows[start:start + chunk_rows]
        base = root / f"export{export_id}-n{node}.{chunk}"
        if fmt == "csv":
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            for row in part:
                writer.writerow([export_text(row.get(c.name), c.type) for c in visible])
            path = Path(f"{base}.csv" + (".gz" if compression == "gzip" else ""))
            path.write_bytes(compress(out.getvalue().encode(), compression))
        else:
            path = Path(f"{base}.parquet")
            events = [Event(t.name.name, (), row, Hlc(0)) for row in part]
            write_parquet(path, t, events, visible, None, export=True)
        paths.append(path)
    return paths
