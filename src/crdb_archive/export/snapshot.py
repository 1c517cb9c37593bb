"""The consistent snapshot of a changefeed or EXPORT output, per table, in Parquet and CSV.

    scan = scan_export(listing, schema, open_file)          # names and completeness
    snap = build_snapshot(scan, schema, source_dir=..., out_dir=..., work_dir=...,
                          as_of="latest", memory_limit="1GB", threads=2)

For each table the output holds rows for, ``out_dir`` receives

- ``<schema>.<table>.parquet``: the visible columns in declaration order, typed as
  :mod:`sqltypes` says, sorted by primary key;
- ``<schema>.<table>.csv.gz``: the same rows as PostgreSQL ``COPY ... (FORMAT csv, HEADER
  true)`` input: a header of column names, every non-NULL value quoted, NULL an empty unquoted
  field, each value in PostgreSQL's input syntax for ``SqlType.postgres``. ``\\copy t FROM
  PROGRAM 'gunzip -c t.csv.gz' (FORMAT csv, HEADER true)`` loads it.

Names are percent-encoded where they hold anything but letters, digits, ``_`` and ``-``.

The snapshot at T (a RESOLVED timestamp, :mod:`plan`): per table and primary key (the whole
CockroachDB key, hidden columns such as ``rowid`` or ``crdb_region`` included), the version with
the greatest timestamp <= T among the files before ``T.RESOLVED`` (ties: the later file, then
the later line); a delete removes the key; duplicates collapse. Without RESOLVED files the
output is taken as a whole: with timestamps the newest version wins; without them (CSV feeds,
timestamp-less ndjson) versions of one key must agree; an EXPORT must not hold a key twice.
A column absent from the winning version (written before the column was added, no backfill
yet at T) is NULL, and the table's notes say how many rows that touched.

Raises what :mod:`plan`, :mod:`staging` and :mod:`engine` raise, plus
:class:`~crdb_archive.errors.UnsupportedExport` (exit 2) when the output cannot give a snapshot
at a time (no ``updated`` or ``mvcc_timestamp`` option) or an EXPORT's table is not named, and
:class:`~crdb_archive.errors.MalformedExportData` (exit 1) for a value not of its column's
type, conflicting versions without timestamps, or a duplicate key in an EXPORT. On any error
the files it wrote in ``out_dir`` are removed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from crdb_archive.errors import MalformedExportData, UnsupportedExport
from crdb_archive.export import engine
from crdb_archive.export.consolidate import consolidate
from crdb_archive.export.hlc import Hlc
from crdb_archive.export.model import QualifiedName, Schema, Table, snapshot_file_stem
from crdb_archive.export.names import DataFormat
from crdb_archive.export.plan import SnapshotPlan, plan_snapshot
from crdb_archive.export.scan import ExportScan, Gap, SourceKind
from crdb_archive.export.sqltypes import (
    DecimalPlan,
    decimal_plan,
    decimal_stats_sql,
    duck_type,
    ident,
    invalid_expr,
    literal,
    postgres_csv_expr,
    scalar_of,
    typed_expr,
)
from crdb_archive.export.staging import (
    Envelope,
    FeedShape,
    Layout,
    StageWriter,
    TimestampField,
    detect_shape,
    stage_csv,
    stage_ndjson,
)
from crdb_archive.progress import ProgressCallback, ProgressEvent, no_progress
from crdb_archive.text import count

# A Parquet row group is built in memory: keep it well under any sensible memory limit.
ROW_GROUP_ROWS = 16384


@dataclass(frozen=True)
class SnapshotColumn:
    name: str
    postgres: str  # SqlType.postgres: the type the CSV values are input for
    parquet: str  # the DuckDB type written to Parquet (JSON, DECIMAL(10,2), BIGINT[] ...)


@dataclass(frozen=True)
class TableSnapshot:
    table: QualifiedName
    parquet: Path
    csv: Path
    columns: tuple[SnapshotColumn, ...]  # visible columns, declaration order
    primary_key: tuple[str, ...]
    row_count: int
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Snapshot:
    kind: SourceKind
    format: DataFormat
    envelope: Envelope | None  # ndjson changefeeds
    timestamp: TimestampField | None  # the changefeed option the versions are ordered by
    as_of: Hlc | None  # None: the output as a whole
    resolved_file: str | None
    tables: tuple[TableSnapshot, ...]
    gaps: tuple[Gap, ...]  # accepted with allow_gaps


def build_snapshot(
    scan: ExportScan,
    schema: Schema,
    *,
    source_dir: Path,
    out_dir: Path,
    work_dir: Path,
    as_of: str = "latest",
    memory_limit: str = "1GB",
    threads: int = 2,
    export_table: str | None = None,
    progress: ProgressCallback = no_progress,
) -> Snapshot:
    """Consolidate ``scan`` (files under ``source_dir``) into ``out_dir``; see the module."""
    plan = plan_snapshot(scan, as_of)
    tables = _tables(scan, schema, export_table)
    shape = _shape(scan, source_dir, plan)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    con = engine.connect(work_dir, memory_limit, threads)
    try:
        results = []
        for number, table in enumerate(tables):
            progress(ProgressEvent("snapshot", number, len(tables)))
            results.append(_one_table(con, scan, plan, shape, table, number, source_dir,
                                      out_dir, work_dir, written))
        progress(ProgressEvent("snapshot", len(tables), len(tables), finished=True))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    finally:
        con.close()
        for leftover in ("snapshot.duckdb", "snapshot.duckdb.wal"):
            (work_dir / leftover).unlink(missing_ok=True)
        shutil.rmtree(work_dir / "spill", ignore_errors=True)
        shutil.rmtree(work_dir / "stage", ignore_errors=True)
    return Snapshot(
        kind=scan.kind, format=scan.format,
        envelope=shape.envelope if shape and scan.format == "ndjson" else None,
        timestamp=shape.timestamp if shape else None,
        as_of=plan.as_of, resolved_file=plan.resolved_file, tables=tuple(results),
        gaps=scan.gaps)


def _tables(scan: ExportScan, schema: Schema, export_table: str | None) -> list[Table]:
    if scan.kind == "changefeed":
        return [schema.table(str(name)) for name in scan.table_names]
    if export_table is None:
        if len(schema.tables) != 1:
            raise UnsupportedExport(
                f"EXPORT files do not name their table and the schema has "
                f"{len(schema.tables)} tables: say which table the EXPORT is of")
        return [schema.tables[0]]
    try:
        return [schema.table(export_table)]
    except KeyError:
        raise UnsupportedExport(f"table {export_table!r} is not in the schema (or is not one "
                                "table)") from None


def _shape(scan: ExportScan, source_dir: Path, plan: SnapshotPlan) -> FeedShape | None:
    """The feed's envelope and timestamp option; refuses a point in time without timestamps."""
    if scan.kind == "export":
        return None
    first = scan.data_files[0]
    if scan.format == "ndjson":
        shape = detect_shape(source_dir / first.path, first.compression, first.path)
    elif scan.format == "parquet":
        shape = FeedShape("bare", _parquet_timestamp(source_dir / first.path, first.path))
    else:
        shape = FeedShape("bare", None)
    if plan.as_of is not None and shape.timestamp is None:
        if scan.format == "csv":
            raise UnsupportedExport(
                "a format=csv changefeed carries no timestamps (it needs initial_scan='only'), "
                "yet this one has RESOLVED files: it cannot give a snapshot at a time")
        raise UnsupportedExport(
            f"the {scan.format} changefeed was created without the updated (or "
            "mvcc_timestamp) option: its rows carry no timestamps, so no snapshot at a "
            "RESOLVED time can be made; archive it as a whole, without a snapshot, or "
            "recreate the changefeed WITH updated")
    return shape


def _parquet_timestamp(path: Path, shown: str) -> TimestampField | None:
    con = duckdb.connect()
    try:
        names = {str(row[0]) for row in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet({literal(str(path))})").fetchall()}
    except duckdb.Error as exc:
        raise MalformedExportData(
            f"{shown}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    finally:
        con.close()
    if "__crdb__updated" in names:
        return "updated"
    if "__crdb__mvcc_timestamp" in names:
        return "mvcc_timestamp"
    return None


def _one_table(con: duckdb.DuckDBPyConnection, scan: ExportScan, plan: SnapshotPlan,
               shape: FeedShape | None, table: Table, number: int, source_dir: Path,
               out_dir: Path, work_dir: Path, written: list[Path]) -> TableSnapshot:
    layout = Layout(table)
    events = f"ev{number}"
    engine.create_events(con, events, layout)
    key_known = scan.kind == "changefeed" or all(
        not table.column(name).hidden for name in table.primary_key)
    files, counts_notes = _load(con, scan, shape, layout, events, source_dir, work_dir,
                                key_known)
    _check_types(con, events, layout, files)
    cutoff = len(plan.data_files) if scan.kind == "changefeed" else len(files)
    snap = f"snap{number}"
    consolidate(con, events, snap, layout, plan.as_of, cutoff,
                timestamps=shape is not None and shape.timestamp is not None,
                export=scan.kind == "export", key_known=key_known)
    notes = list(counts_notes)
    notes.extend(_absent_notes(con, snap, layout))
    if not key_known:
        notes.append("the primary key (" + ", ".join(table.primary_key) + ") is hidden and "
                     "EXPORT leaves it out: rows are taken as written, unkeyed")
    stem = snapshot_file_stem(table.name)
    parquet, csv_path = out_dir / f"{stem}.parquet", out_dir / f"{stem}.csv.gz"
    written.extend((parquet, csv_path))
    columns = _write(con, snap, layout, parquet, csv_path, key_known, notes)
    count_row = con.execute(f"SELECT count(*) FROM {snap}").fetchone()
    con.execute(f"DROP TABLE {events}")
    con.execute(f"DROP TABLE {snap}")
    return TableSnapshot(
        table=table.name, parquet=parquet, csv=csv_path, columns=columns,
        primary_key=table.primary_key, row_count=int(count_row[0]) if count_row else 0,
        notes=tuple(notes))


def _load(con: duckdb.DuckDBPyConnection, scan: ExportScan, shape: FeedShape | None,
          layout: Layout, events: str, source_dir: Path, work_dir: Path,
          key_known: bool) -> tuple[list[str], list[str]]:
    """Stage and insert every file of the table; returns (paths by f, notes)."""
    stage_dir = work_dir / "stage"
    stage_dir.mkdir(exist_ok=True)
    staged = stage_dir / f"{events}.ndjson"
    writer = StageWriter(staged, layout)
    try:
        if scan.kind == "changefeed":
            paths = _load_changefeed(con, scan, shape, layout, events, source_dir, writer)
        else:
            paths = _load_export(con, scan, layout, events, source_dir, writer, key_known)
    finally:
        writer.close()
    engine.load_staged(con, events, layout, staged, writer.longest)
    staged.unlink()
    return paths, _load_notes(scan, layout, writer)


def _load_changefeed(con: duckdb.DuckDBPyConnection, scan: ExportScan,
                     shape: FeedShape | None, layout: Layout, events: str, source_dir: Path,
                     writer: StageWriter) -> list[str]:
    """Stage or insert the table's changefeed files; returns every data file's path by f."""
    topics = {t for t, name in scan.topics if name == layout.table.name}
    paths: list[str] = []
    for f, data in enumerate(scan.data_files):
        paths.append(data.path)
        if data.topic not in topics:
            continue
        local = source_dir / data.path
        family = data.family or ""
        if data.format == "ndjson" and shape is not None:
            stage_ndjson(local, data.compression, data.path, f, family, shape, writer)
        elif data.format == "csv":
            stage_csv(local, data.compression, data.path, f, "changefeed", writer, True)
        else:
            engine.load_parquet(con, events, layout, local, data.path, f, family,
                                shape.timestamp if shape else None, True)
    return paths


def _load_export(con: duckdb.DuckDBPyConnection, scan: ExportScan, layout: Layout,
                 events: str, source_dir: Path, writer: StageWriter,
                 key_known: bool) -> list[str]:
    """Stage or insert the EXPORT's files; returns their paths by f."""
    paths: list[str] = []
    for f, chunk in enumerate(scan.export_files):
        paths.append(chunk.path)
        local = source_dir / chunk.path
        if chunk.format == "csv":
            stage_csv(local, chunk.compression, chunk.path, f, "export", writer, key_known)
        else:
            engine.load_parquet(con, events, layout, local, chunk.path, f, "", None, key_known)
    return paths


def _load_notes(scan: ExportScan, layout: Layout, writer: StageWriter) -> list[str]:
    """What the snapshot's readers should know about how rows were read."""
    notes = []
    counts = writer.counts
    if counts.bare_all_null and not any(
            not c.nullable for i, c in enumerate(layout.columns) if i in layout.non_key):
        notes.append(
            f"envelope bare marks a delete only by NULL in every non-key column: "
            f"{count(counts.bare_all_null, 'such row version')} "
            f"{'was' if counts.bare_all_null == 1 else 'were'} taken as deletes")
    if scan.format == "csv" and any(scalar_of(c.type).kind == "string"
                                    for c in layout.table.visible_columns):
        notes.append("CSV source: an empty field is read as NULL (CockroachDB writes NULL and "
                     "the empty string alike)")
    return notes


def _check_types(con: duckdb.DuckDBPyConnection, events: str, layout: Layout,
                 paths: list[str]) -> None:
    checks = [(i, cond) for i, c in enumerate(layout.columns)
              if (cond := invalid_expr(f"c{i}", c.type)) is not None]
    bad = engine.first_invalid(con, events, checks)
    if bad is None:
        return
    f, n, i, text = bad
    where = "row" if paths[f].endswith(".parquet") else "line"
    column = layout.columns[i] if i >= 0 else None
    what = (f"column {column.name!r}: {text[:80]!r} is not a {column.type.cockroach}"
            if column else "a value that is not of its column's type")
    raise MalformedExportData(f"{paths[f]}: {where} {n}: {what}")


def _absent_notes(con: duckdb.DuckDBPyConnection, snap: str, layout: Layout) -> list[str]:
    row = con.execute(
        "SELECT " + ", ".join(f"count(*) FILTER (WHERE list_contains(a, {i}))"
                              for i in range(len(layout.columns))) + f" FROM {snap}").fetchone()
    notes = []
    for i, column in enumerate(layout.columns):
        missing = int(row[i]) if row else 0
        if missing and not column.hidden:
            notes.append(
                f"column {column.name}: {count(missing, 'row')} "
                f"{'was' if missing == 1 else 'were'} last written before the column "
                "existed (no backfill at the snapshot time): NULL there"
                + (", though the column is NOT NULL" if not column.nullable else ""))
    return notes


def _write(con: duckdb.DuckDBPyConnection, snap: str, layout: Layout, parquet: Path,
           csv_path: Path, key_known: bool, notes: list[str]) -> tuple[SnapshotColumn, ...]:
    visible = [(i, c) for i, c in enumerate(layout.columns) if not c.hidden]
    plans: dict[int, DecimalPlan] = {}
    for i, column in visible:
        scalar = scalar_of(column.type)
        if scalar.kind == "decimal" and (scalar.precision is None or scalar.precision > 38):
            stats = con.execute(decimal_stats_sql(
                f"c{i}" if scalar is column.type else "e", snap if scalar is column.type
                else f"(SELECT unnest(c{i}) AS e FROM {snap})")).fetchone()
            plan = (decimal_plan(column.name, bool(stats[0]), int(stats[1]), int(stats[2]))
                    if stats else decimal_plan(column.name, True, 0, 0))
            if scalar.precision is not None:
                plan = DecimalPlan("VARCHAR", f"column {column.name}: {scalar.cockroach} is "
                                   "wider than Parquet's 38 digits, written as text")
            plans[i] = plan
            if plan.note:
                notes.append(plan.note)
    if key_known:
        order = ", ".join(typed_expr(f"k{j}", layout.columns[i].type)
                          for j, i in enumerate(layout.key))
    else:
        order = "f, n"
    # Sort into a table first (a sort spills; a sort feeding COPY does not), then copy it in
    # that order.
    con.execute(f"CREATE TABLE {snap}_sorted AS SELECT * FROM {snap} ORDER BY {order}")
    typed = ", ".join(f"{typed_expr(f'c{i}', c.type, plans.get(i))} AS {ident(c.name)}"
                      for i, c in visible)
    texts = ", ".join(f"{postgres_csv_expr(f'c{i}', c.type)} AS {ident(c.name)}"
                      for i, c in visible)
    con.execute("SET preserve_insertion_order = true")
    try:
        con.execute(f"COPY (SELECT {typed} FROM {snap}_sorted) TO {literal(str(parquet))} "
                    f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_ROWS})")
        con.execute(f"COPY (SELECT {texts} FROM {snap}_sorted) TO {literal(str(csv_path))} "
                    "(FORMAT csv, HEADER true, NULL '', FORCE_QUOTE *, COMPRESSION gzip)")
    finally:
        con.execute("SET preserve_insertion_order = false")
    con.execute(f"DROP TABLE {snap}_sorted")
    return tuple(SnapshotColumn(c.name, c.type.postgres, duck_type(c.type, plans.get(i)))
                 for i, c in visible)
