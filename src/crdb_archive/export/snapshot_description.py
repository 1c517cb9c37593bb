"""The description of an export bundle, from what the archive found: the scan, the snapshot
and the schema it was typed with."""

from __future__ import annotations

import datetime as dt

from crdb_archive.bundle.description_export import (
    EXPORT_DIR,
    ColumnDescription,
    ExportDescription,
    TableDescription,
)
from crdb_archive.export.model import Schema, snapshot_csv_path, snapshot_parquet_path
from crdb_archive.export.plan import SnapshotPlan
from crdb_archive.export.scan import ExportScan
from crdb_archive.export.snapshot import Snapshot
from crdb_archive.times import utc_iso


def describe_snapshot(*, name: str, source: str, scan: ExportScan, plan: SnapshotPlan,
                      snapshot: Snapshot, schema: Schema, ddl_notes: tuple[str, ...],
                      warnings: list[str]) -> ExportDescription:
    """The model of crdb-archive.json; ``schema`` holds exactly the snapshot's tables."""
    tables = []
    for taken in snapshot.tables:
        table = schema.table(str(taken.table))
        columns = tuple(
            ColumnDescription(c.name, table.column(c.name).type.cockroach, c.postgres,
                              c.parquet, table.column(c.name).nullable)
            for c in taken.columns)
        tables.append(TableDescription(
            schema=taken.table.schema, table=taken.table.name, columns=columns,
            primary_key=taken.primary_key, rows=taken.row_count,
            parquet=snapshot_parquet_path(taken.table), csv=snapshot_csv_path(taken.table),
            notes=table.notes + taken.notes))
    # Table notes are with their tables; the rest (the file's own, renamed indexes) here.
    table_notes = {f"{t.name}: {note}" for t in schema.tables for note in t.notes}
    notes = tuple(n for n in ddl_notes if n not in table_notes)
    return ExportDescription(
        name=name,
        created=utc_iso(dt.datetime.now(dt.UTC)),
        source=source,
        source_kind=scan.kind,
        format=scan.format,
        envelope=snapshot.envelope,
        timestamp=snapshot.timestamp,
        as_of=plan.as_of,
        resolved_file=f"{EXPORT_DIR}/{plan.resolved_file}" if plan.resolved_file else None,
        partitioning=scan.partitioning,
        gaps=tuple(gap.describe() for gap in scan.gaps),
        files=len(scan.sizes),
        bytes=sum(size for _, size in scan.sizes),
        files_after_as_of=plan.excluded_files,
        tables=tuple(tables),
        notes=notes,
        warnings=tuple(warnings),
    )
