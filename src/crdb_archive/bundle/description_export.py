"""What an export bundle says about itself: the typed model of its crdb-archive.json.

Built once from what the archive found (the scan, the snapshot, the schema) and rendered to
JSON here, valid against ``bundle-manifest.schema.json`` (its ``kind: "export"`` branch); the
bag-info.txt labels and RESTORE.md come from the same model. Readers of bundles (the loader,
inspect, jobs) read it back with :func:`crdb_archive.bundle.description.from_json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from crdb_archive.bundle import layout
from crdb_archive.bundle.description_fields import FORMAT, SOFTWARE, Fields, damaged
from crdb_archive.export.hlc import Hlc

EXPORT_DIR = "data/export"
SOURCE_KINDS = ("changefeed", "export")
FORMATS = ("ndjson", "csv", "parquet")
ENVELOPES = ("wrapped", "bare", None)
TIMESTAMPS = ("updated", "mvcc_timestamp", None)
PARTITIONINGS = ("flat", "daily", "hourly", None)


@dataclass(frozen=True)
class ColumnDescription:
    """One visible column: its type in CockroachDB, in PostgreSQL and in the Parquet file."""

    name: str
    cockroach_type: str
    postgres_type: str
    parquet_type: str
    nullable: bool

    @classmethod
    def read(cls, f: Fields) -> ColumnDescription:
        return cls(f.text("name"), f.text("cockroach_type"), f.text("postgres_type"),
                   f.text("parquet_type"), f.flag("nullable"))

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

    @classmethod
    def read(cls, name: str, f: Fields) -> TableDescription:
        schema, dot, table = name.partition(".")
        if not dot:
            raise damaged(f.path, "a table is keyed <schema>.<table>")
        files = f.object("files", lambda g: (g.text("parquet"), g.text("csv")))
        return cls(schema=schema, table=table,
                   columns=f.objects("columns", ColumnDescription.read),
                   primary_key=f.texts("primary_key"), rows=f.count("rows"),
                   parquet=files[0], csv=files[1], notes=f.texts("notes"))

    def to_json(self) -> dict[str, Any]:
        return {"columns": [c.to_json() for c in self.columns],
                "primary_key": list(self.primary_key), "rows": self.rows,
                "files": {"parquet": self.parquet, "csv": self.csv},
                "notes": list(self.notes)}


@dataclass(frozen=True)
class ExportDescription:
    """crdb-archive.json of an export bundle (``kind: "export"``)."""

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
    software: str = SOFTWARE

    kind: ClassVar[Literal["export"]] = "export"

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
            "format": FORMAT,
            "format_version": layout.FORMAT_VERSION,
            "kind": "export",
            "name": self.name,
            "created": self.created,
            "software": self.software,
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
                "schema_file": layout.SCHEMA_SQL_PATH,
                "postgresql_file": layout.POSTGRESQL_SQL_PATH,
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


def read_export(f: Fields, *, software: str) -> ExportDescription:
    """The export description the top-level object ``f`` holds; raises DamagedBundle."""
    return ExportDescription(name=f.text("name"), created=f.text("created"),
                             warnings=f.texts("warnings"), software=software,
                             **f.object("export", _export_fields))


def _export_fields(f: Fields) -> dict[str, Any]:
    for key, path in (("payload_dir", EXPORT_DIR), ("schema_file", layout.SCHEMA_SQL_PATH),
                      ("postgresql_file", layout.POSTGRESQL_SQL_PATH)):
        if f.text(key) != path:
            raise damaged(f.where(key), f"expected {path}")
    return {
        "source": f.text("source"), "source_kind": f.choice("source_kind", SOURCE_KINDS),
        "format": f.choice("format", FORMATS), "envelope": f.choice("envelope", ENVELOPES),
        "timestamp": f.choice("timestamp", TIMESTAMPS),
        "as_of": f.object_or_none("as_of", _as_of),
        "resolved_file": f.text_or_none("resolved_file"),
        "partitioning": f.choice("partitioning", PARTITIONINGS), "gaps": f.texts("gaps"),
        "files": f.count("files"), "bytes": f.count("bytes"),
        "files_after_as_of": f.count("files_after_as_of"),
        "tables": f.keyed("tables", TableDescription.read), "notes": f.texts("notes"),
    }


def _as_of(f: Fields) -> Hlc:
    """``export.as_of``: the HLC, whose wall time ``time`` must be."""
    text = f.text("hlc")
    try:
        hlc = Hlc.parse_decimal(text)
    except ValueError:
        hlc = None
    if hlc is None or hlc.decimal() != text:
        raise damaged(f.where("hlc"), "not an HLC timestamp (<wall nanos>.<10-digit logical>)")
    if f.text("time") != hlc.iso():
        raise damaged(f.where("time"), f"{f.data['time']} is not the time of "
                                       f"{f.where('hlc')} ({hlc.iso()})")
    return hlc
