"""Small export bundles for the loader tests, written with the real bundle writer.

A bundle holds ``data/schema/schema.sql`` (the schema file verbatim), one
``data/snapshot/<schema>.<table>.csv.gz`` per table and ``export.tables`` row counts in
crdb-archive.json. The CSV here is the test's own encoding of its rows in PostgreSQL input
syntax, so that a loaded table can be compared with the rows it was made from.
"""

from __future__ import annotations

import datetime as dt
import decimal
import gzip
import io
import ipaddress
import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from crdb_archive.bundle import layout
from crdb_archive.bundle.publish import write_bundle
from crdb_archive.bundle.writer import (
    BundleFormat,
    DescribeCallback,
    PayloadItem,
    PayloadResult,
)
from crdb_archive.storage.base import Storage, open_storage

Row = tuple[object, ...]


def pg_text(value: object) -> str:
    """A value in PostgreSQL's input syntax for its column type."""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, dt.timedelta):
        return f"{value.total_seconds()} seconds"
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, list):
        return "{" + ",".join("NULL" if v is None else
                              '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
                              for v in value) + "}"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (int, str, decimal.Decimal, uuid.UUID, dt.date,
                          ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    raise TypeError(f"no PostgreSQL text for {value!r}")


def snapshot_csv(columns: Sequence[str], rows: Sequence[Row]) -> bytes:
    """COPY (FORMAT csv, HEADER true) input: NULL is an empty unquoted field, every value
    is quoted (an empty string then stays distinct from NULL)."""
    def field(value: object) -> str:
        return "" if value is None else '"' + pg_text(value).replace('"', '""') + '"'

    lines = [",".join('"' + c.replace('"', '""') + '"' for c in columns)]
    lines.extend(",".join(field(v) for v in row) for row in rows)
    return ("\n".join(lines) + "\n").encode()


def _item(path: str, content: bytes) -> PayloadItem:
    return PayloadItem(path, len(content), lambda: io.BytesIO(content))


def export_payload(schema_sql: str, snapshots: Mapping[str, bytes]) -> list[PayloadItem]:
    """The payload: the schema file and each table's gzipped CSV (keyed "schema.table")."""
    items = [_item("data/schema/schema.sql", schema_sql.encode())]
    for table, csv_bytes in snapshots.items():
        items.append(_item(f"data/snapshot/{table}.csv.gz", gzip.compress(csv_bytes, mtime=0)))
    return items


def describer(rows: Mapping[str, int]) -> DescribeCallback:
    def describe(_: PayloadResult) -> dict[str, bytes]:
        description = {"kind": "export", "export": {"tables": {
            name: {"rows": count} for name, count in rows.items()}}}
        return {layout.DESCRIPTION: json.dumps(description, indent=2).encode(),
                layout.RESTORE_MD: b"# Restore\n\nLoad with crdb-archive load.\n"}
    return describe


def write_export_bundle(dest: Path | Storage, name: str, schema_sql: str,
                        snapshots: Mapping[str, bytes], rows: Mapping[str, int],
                        fmt: BundleFormat = "dir",
                        payload: list[PayloadItem] | None = None) -> str:
    """Write the bundle on disk or in ``dest`` storage; returns where it is."""
    items = payload if payload is not None else export_payload(schema_sql, snapshots)
    storage = open_storage(str(dest)) if isinstance(dest, Path) else dest
    written = write_bundle(storage, name, items, bag_info=[], describe=describer(rows),
                           fmt=fmt)
    return written.location
