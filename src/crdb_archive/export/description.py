"""What an export bundle says about itself: the typed model of its crdb-archive.json.

Built once from what the archive found (the scan, the snapshot, the schema) and rendered to
JSON here, valid against ``bundle-manifest.schema.json`` (its ``kind: "export"`` branch); the
bag-info.txt labels and RESTORE.md come from the same model. Readers of bundles (the loader,
inspect, jobs) read the JSON, so old and new writers stay comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crdb_archive import __version__
from crdb_archive.bundle import layout
from crdb_archive.export.hlc import Hlc
from crdb_archive.export.model import POSTGRESQL_SQL_PATH, SCHEMA_SQL_PATH

EXPORT_DIR = "data/export"


@dataclass(frozen=True)
class ColumnDescription:
    """One visible column: its type in CockroachDB, in PostgreSQL and in the Parquet file."""

    name: str
    cockroach_type: str
    postgres_type: str
    parquet_type: str
    nullable: bool

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "cockroach_type": self.cockroach_type,
                "postgres_type": self.postgres_type, "parquet_type": self.parquet_type,
                "nullable": self.nullable}


@dataclass(frozen=True)
class TableDescription:
    """One table of the snapshot, named as the schema file names it."""

    schema: str
    table: str
    columns: tuple[ColumnDescription, ...]
    primary_key: tuple[str, ...]  # CockroachDB's, hidden columns (rowid) included
    rows: int
    parquet: str  # bundle paths
    csv: str
    notes: tuple[str, ...]

    @property
    def name(self) -> str:
        """``<schema>.<table>``: its key in crdb-archive.json."""
        return f"{self.schema}.{self.table}"

    def to_json(self) -> dict[str, Any]:
        return {"columns": [c.to_json() for c in self.columns],
                "primary_key": list(self.primary_key), "rows": self.rows,
                "files": {"parquet": self.parquet, "csv": self.csv},
                "notes": list(self.notes)}


@dataclass(frozen=True)
class ExportDescription:
    """crdb-archive.json of an export bundle."""

    name: str
    created: str  # RFC 3339, UTC
    source: str  # secrets removed
    source_kind: str  # changefeed | export
    format: str  # ndjson | csv | parquet
    envelope: str | None  # wrapped | bare, ndjson changefeeds
    timestamp: str | None  # updated | mvcc_timestamp: what orders the row versions
    as_of: Hlc | None  # None: the output taken as a whole
    resolved_file: str | None  # bundle path of T.RESOLVED
    partitioning: str | None  # flat | daily | hourly, changefeeds
    gaps: tuple[str, ...]  # lost files accepted with --allow-gaps
    files: int  # source files, all of them in data/export/
    bytes: int
    files_after_as_of: int  # changefeed data files at or after T.RESOLVED: kept, not used
    tables: tuple[TableDescription, ...]
    notes: tuple[str, ...]  # about the schema as a whole
    warnings: tuple[str, ...]

    def table(self, name: str) -> TableDescription:
        """The table ``<schema>.<table>``; raises KeyError."""
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables)

    def to_json(self) -> dict[str, Any]:
        """The description as crdb-archive.json holds it."""
        as_of = None if self.as_of is None else {"hlc": self.as_of.decimal(),
                                                  "time": self.as_of.iso()}
        return {
            "format": "crdb-archive-bundle",
            "format_version": layout.FORMAT_VERSION,
            "kind": "export",
            "name": self.name,
            "created": self.created,
            "software": f"crdb-archive {__version__}",
            "export": {
                "source": self.source,
                "source_kind": self.source_kind,
                "format": self.format,
                "envelope": self.envelope,
                "timestamp": self.timestamp,
                "as_of": as_of,
                "resolved_file": self.resolved_file,
                "partitioning": self.partitioning,
                "gaps": list(self.gaps),
                "payload_dir": EXPORT_DIR,
                "files": self.files,
                "bytes": self.bytes,
                "files_after_as_of": self.files_after_as_of,
                "schema_file": SCHEMA_SQL_PATH,
                "postgresql_file": POSTGRESQL_SQL_PATH,
                "tables": {t.name: t.to_json() for t in self.tables},
                "notes": list(self.notes),
            },
            "warnings": list(self.warnings),
        }

    def bag_info(self) -> list[tuple[str, str]]:
        """bag-info.txt labels after the standard ones."""
        what = "changefeed output" if self.source_kind == "changefeed" else "EXPORT output"
        when = (f"as of {self.as_of.iso()} (HLC {self.as_of.decimal()})" if self.as_of
                else "taken as a whole")
        info = [
            ("External-Identifier", self.name),
            ("External-Description",
             f"CockroachDB {what} ({self.format}) with its schema and a snapshot {when} in "
             "Parquet and PostgreSQL CSV; needs no CockroachDB to read"),
            ("Bundle-Kind", "export"),
            ("Export-Source", self.source),
            ("Export-Source-Kind", self.source_kind),
            ("Export-Format", self.format),
        ]
        if self.as_of is not None:
            info += [("Export-As-Of", self.as_of.decimal()),
                     ("Export-As-Of-Time", self.as_of.iso())]
        info += [("Export-Tables", str(len(self.tables))),
                 ("Export-Rows", str(self.total_rows)),
                 ("Bundle-Format", f"crdb-archive {layout.FORMAT_VERSION}")]
        return info
