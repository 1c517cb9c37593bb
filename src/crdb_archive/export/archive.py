"""The second main job: changefeed or EXPORT output in, one verified export bundle out.

read the schema -> list the source and check it is complete (names, file ids, RESOLVED files)
-> choose T -> find an existing bundle of that snapshot, or: stage the files once, build the
snapshot in scratch space, and write the bundle atomically with the backup bundles' writer.

Nothing is written under the bundle's name before the completeness checks and the snapshot
have succeeded; a failure leaves nothing in the destination.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from crdb_archive.archive_backup import existing_signature_warnings
from crdb_archive.archive_request import ArchiveRequest, check_destination
from crdb_archive.backup.keys import PASSPHRASE_ENV
from crdb_archive.binaries import DEFAULT_PLATFORM
from crdb_archive.bundle import layout
from crdb_archive.bundle.description import ExportDescription, from_json
from crdb_archive.bundle.layout import POSTGRESQL_SQL_PATH, SCHEMA_SQL_PATH
from crdb_archive.bundle.model import render, schema_problems
from crdb_archive.bundle.publish import (
    BundleStaging,
    bundle_exists,
    bundle_key,
    clear_incomplete,
)
from crdb_archive.bundle.reader import BundleReader, open_bundle_in
from crdb_archive.bundle.verify import verify_reader
from crdb_archive.bundle.writer import (
    DescribeCallback,
    Guard,
    Payload,
    PayloadItem,
    PayloadResult,
    WrittenBundle,
    unguarded,
)
from crdb_archive.errors import BadInput, DamagedBundle, InvalidSchema
from crdb_archive.export.ddl import parse_schema
from crdb_archive.export.hlc import Hlc
from crdb_archive.export.model import Schema
from crdb_archive.export.options import ExportOptions
from crdb_archive.export.plan import SnapshotPlan, plan_snapshot
from crdb_archive.export.postgres import postgresql_ddl
from crdb_archive.export.restore_doc import render_export_restore_md
from crdb_archive.export.scan import ExportScan, scan_export
from crdb_archive.export.snapshot import Snapshot, build_snapshot
from crdb_archive.export.snapshot_description import describe_snapshot
from crdb_archive.export.source_files import ExportSource, open_export_source
from crdb_archive.progress import ProgressCallback, no_progress
from crdb_archive.sources import recorded_source, source_key
from crdb_archive.storage.base import Storage, WriteOptions, open_storage
from crdb_archive.text import count
from crdb_archive.times import basic, basic_nanos

if TYPE_CHECKING:
    from crdb_archive.storage.receipts import Receipt

SCHEMA_LIMIT = 64 << 20  # a schema file larger than this is not SHOW CREATE output
NAME_PREFIX = "crdb-export"


@dataclass(frozen=True)
class ExportArchiveResult:
    bundle: str  # a path, or a URI without secrets
    name: str
    source_kind: str
    format: str
    as_of: Hlc | None
    tables: dict[str, int]
    files: int
    bytes: int
    seconds: float
    created: bool
    warnings: list[str] = field(default_factory=list)
    # What the uploads computed of each object written (object stores), for confirming them.
    receipts: tuple[Receipt, ...] = ()
    tags_at: int | None = None  # a tar's: where its tag files start

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "name": self.name,
            "kind": "export",
            "source_kind": self.source_kind,
            "format": self.format,
            "as_of": self.as_of.to_json() if self.as_of else None,
            "tables": self.tables,
            "files": self.files,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "created": self.created,
            "warnings": self.warnings,
        }


# Writes the bundle from its payload, bag-info labels and description callback.
WriteBundle = Callable[
    [Payload, Sequence[tuple[str, str]], DescribeCallback], WrittenBundle
]


def archive_export(
    request: ArchiveRequest,
    options: ExportOptions,
    *,
    progress: ProgressCallback = no_progress,
    guard: Guard | None = None,
) -> ExportArchiveResult:
    """Archive the changefeed or EXPORT output at ``request.source`` into an export bundle.

    Raises BadInput (2) for a missing or unreadable --schema, options of backups, or a bad
    destination; InvalidSchema (2); UnrecognisedExportSource, UnsupportedExport, InvalidAsOf
    (2); IncompleteExport and MalformedExportData (1) when the output is not complete or
    damaged; DamagedBundle (1) when a bundle of that name exists and is damaged or is of
    another snapshot; StorageError, NeedsRestoreFromColdStorage (3).
    """
    started = time.monotonic()
    _refuse_backup_options(request)
    write_options = check_destination(request)
    schema_bytes, schema = read_schema_file(options.schema)
    with open_export_source(request.source,
                            endpoint_url=request.source_endpoint_url) as source:
        scan = scan_export(source.listing, schema, source.open_small,
                           allow_gaps=options.allow_gaps)
        plan = plan_snapshot(scan, options.as_of)
        name = request.name or export_bundle_name(source, scan, plan)
        if not layout.is_valid_name(name):
            raise BadInput(f"bundle name {name!r} is not a portable file name "
                           "(letters, digits, '._+-', no leading dot)")
        job = _ExportArchiving(request, options, source, scan, plan, schema, schema_bytes,
                               name, started, progress, guard or unguarded)
        # Not created yet: the staging area makes what it needs, and removes it on failure.
        with open_storage(str(request.dest),
                          endpoint_url=request.dest_endpoint_url) as storage:
            if write_options is not None:
                storage.check_write_options(write_options)
            return job.to_storage(storage, write_options)


@dataclass(frozen=True)
class PlannedExport:
    """The bundle an archive of the output would write, known from names alone."""

    name: str
    source: str  # as the bundle records it
    as_of: Hlc | None
    time: dt.datetime | None  # what orders the bundle: T, else the output's newest time


def plan_export_bundle(source: str, *, as_of: str = "latest", allow_gaps: bool = False,
                       endpoint_url: str | None = None) -> PlannedExport:
    """Name the bundle of ``source`` at ``as_of`` as :func:`archive_export` would, from the
    listing and RESOLVED files only. Raises what the scan and the plan raise, StorageError.
    """
    with open_export_source(source, endpoint_url=endpoint_url) as opened:
        scan = scan_export(opened.listing, None, opened.open_small, allow_gaps=allow_gaps)
        plan = plan_snapshot(scan, as_of)
        name = export_bundle_name(opened, scan, plan)
        return PlannedExport(name, recorded_source(opened.identity), plan.as_of,
                             _wall_time(_snapshot_time(opened, scan, plan)))


def read_schema_file(path: Path | None) -> tuple[bytes, Schema]:
    """The schema file's bytes (kept verbatim) and what it declares; raises BadInput,
    InvalidSchema."""
    if path is None:
        raise BadInput("changefeed and EXPORT output need --schema FILE: the output of SHOW "
                       "CREATE ALL TABLES for the exported tables")
    try:
        with path.open("rb") as stream:
            content = stream.read(SCHEMA_LIMIT + 1)
    except OSError as error:
        raise BadInput(f"cannot read the schema file {path}: {error.strerror or error}") \
            from None
    if len(content) > SCHEMA_LIMIT:
        raise InvalidSchema(f"{path} is larger than {SCHEMA_LIMIT >> 20} MiB: not SHOW CREATE "
                            "output")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSchema(f"{path} is not UTF-8 text") from None
    return content, parse_schema(text, source=str(path))


def _refuse_backup_options(request: ArchiveRequest) -> None:
    given = [flag for flag, set_ in (
        ("--subdir", request.subdir is not None),
        ("--version", request.version not in (None, "", "auto")),
        ("--force-version", request.force_version),
        ("--platform", tuple(request.platforms) != (DEFAULT_PLATFORM,)),
        ("--mirror", request.mirror is not None),
        ("--with-incrementals", request.with_incrementals),
        ("--kms", bool(request.keys.kms)),
        # A passphrase in the environment may serve other runs; a file was given for this one.
        ("--encryption-passphrase-file", request.keys.passphrase is not None
         and PASSPHRASE_ENV not in (request.keys.passphrase_source or "")),
    ) if set_]
    if given:
        raise BadInput(f"{given[0]} applies to backups, not to changefeed or EXPORT output")


def export_bundle_name(source: ExportSource, scan: ExportScan, plan: SnapshotPlan) -> str:
    """``crdb-export-<source digest>-<T>``: the same source and snapshot time always give the
    same name, so a re-run finds its bundle.

    T is the snapshot's resolved timestamp (ISO 8601 basic, UTC, nanoseconds, and the logical
    counter when it is not 0); for output taken as a whole, the newest data file's time (a
    changefeed) or the newest file's modification time (EXPORT).
    """
    digest = hashlib.sha256(source.identity.encode("utf-8")).hexdigest()[:8]
    time = _snapshot_time(source, scan, plan)
    if isinstance(time, Hlc):
        when = _basic(time)
    elif time is not None:
        when = basic(time, fraction="none")
    else:
        when = "undated"
    return f"{NAME_PREFIX}-{digest}-{when}"


def _snapshot_time(source: ExportSource, scan: ExportScan,
                   plan: SnapshotPlan) -> Hlc | dt.datetime | None:
    if plan.as_of is not None:
        return plan.as_of
    if scan.kind == "changefeed" and scan.data_files:
        return max(f.time for f in scan.data_files)
    if source.newest_mtime is not None:
        return dt.datetime.fromtimestamp(int(source.newest_mtime), dt.UTC)
    return None


def _wall_time(time: Hlc | dt.datetime | None) -> dt.datetime | None:
    if isinstance(time, Hlc):
        return dt.datetime.fromtimestamp(time.wall // 1_000_000_000, dt.UTC)
    return time


def _basic(time: Hlc) -> str:
    return basic_nanos(time.wall) + (f"-{time.logical}" if time.logical else "")


class _ExportArchiving:
    """One export archive run, once the source is scanned and T chosen."""

    def __init__(self, request: ArchiveRequest, options: ExportOptions, source: ExportSource,
                 scan: ExportScan, plan: SnapshotPlan, schema: Schema, schema_bytes: bytes,
                 name: str, started: float, progress: ProgressCallback, guard: Guard) -> None:
        self.request = request
        self.options = options
        self.source = source
        self.scan = scan
        self.plan = plan
        self.schema = schema
        self.schema_bytes = schema_bytes
        self.name = name
        self.started = started
        self.progress = progress
        self.guard = guard
        self.warnings: list[str] = [f"lost changefeed file accepted (--allow-gaps): "
                                    f"{gap.describe()}" for gap in scan.gaps]

    def to_storage(self, storage: Storage, options: WriteOptions | None) -> ExportArchiveResult:
        fmt = self.request.format
        if bundle_exists(storage, self.name, fmt):
            reader = open_bundle_in(storage, bundle_key(self.name, fmt))
            # Reading back what is not on this host would download it: a quick check there.
            return self._existing(reader, quick=not reader.local_reads)
        self.warnings += clear_incomplete(storage, self.name, fmt, guard=self.guard)
        with BundleStaging(storage, self.name, fmt) as staging:
            return self._make(staging.scratch, lambda payload, info, describe: staging.write(
                payload, bag_info=info, describe=describe, options=options,
                progress=self.progress, guard=self.guard, sign_key=self.request.sign_key))

    def _make(self, scratch: Path, write: WriteBundle) -> ExportArchiveResult:
        source_dir = self.source.local_copy(scratch / "source", self.progress)
        snapshot = build_snapshot(
            self.scan, self.schema, source_dir=source_dir, out_dir=scratch / "snapshot",
            work_dir=scratch / "work", as_of=self.options.as_of,
            memory_limit=self.options.memory_limit, export_table=self.options.table,
            progress=self.progress)
        restricted = self.schema.restricted_to(t.table for t in snapshot.tables)
        ddl = postgresql_ddl(restricted)
        postgresql = scratch / "postgresql.sql"
        postgresql.write_text(ddl.script(), encoding="utf-8")
        description = describe_snapshot(
            name=self.name, source=recorded_source(self.source.identity), scan=self.scan,
            plan=self.plan,
            snapshot=snapshot, schema=restricted, ddl_notes=ddl.notes,
            warnings=self.warnings)
        raw_files = [item.path for item in self.source.payload()]

        def describe(result: PayloadResult) -> dict[str, bytes]:
            document = description.to_json()
            problems = schema_problems(document)
            if problems:  # a defect in this module, never the user's input
                raise RuntimeError(f"bundle description breaks its schema: {problems[0]}")
            return {layout.DESCRIPTION: render(document),
                    layout.RESTORE_MD: render_export_restore_md(
                        description, raw_files, signing_key=self.request.signing_key)}

        schema_copy = scratch / "schema.sql"
        schema_copy.write_bytes(self.schema_bytes)
        payload = [*self.source.payload(), _file_item(SCHEMA_SQL_PATH, schema_copy),
                   _file_item(POSTGRESQL_SQL_PATH, postgresql)]
        payload += _snapshot_items(snapshot, description)
        written = write(payload, description.bag_info(), describe)
        return dataclasses.replace(
            self._result(written.location, written.payload.files, written.payload.bytes,
                         {t.name: t.rows for t in description.tables}, created=True),
            receipts=written.receipts,
            tags_at=written.payload.tags_at)

    def _existing(self, reader: BundleReader, *, quick: bool) -> ExportArchiveResult:
        """A bundle of this name exists: sound and of this snapshot means done."""
        report = verify_reader(reader, fast=quick, progress=self.progress)
        if not report.ok:
            raise DamagedBundle(
                f"bundle {reader.display} already exists and is damaged "
                f"({count(len(report.problems), 'problem')}, first: {report.problems[0]}); move it "
                "aside and run again")
        recorded = _export_description(report.description)
        as_of = recorded.as_of.decimal() if recorded and recorded.as_of else None
        wanted = self.plan.as_of.decimal() if self.plan.as_of else None
        same_source = (recorded is not None
                       and source_key(recorded.source) == source_key(self.source.identity))
        if recorded is None or not same_source or as_of != wanted:
            raise DamagedBundle(
                f"bundle {reader.display} already exists and holds another snapshot "
                f"({recorded.source if recorded else 'not an export'} as of {as_of}); choose "
                "another --name")
        if quick:
            self.warnings.append(f"{reader.display} exists; its tag files, file presence and "
                                 "sizes were checked (run `crdb-archive verify` for every "
                                 "digest)")
        self.warnings += existing_signature_warnings(reader.display, report.signature,
                                                     self.request.signing_key)
        tables = {t.name: t.rows for t in recorded.tables}
        return self._result(reader.display, report.files, report.bytes, tables, created=False)

    def _result(self, location: str, files: int, size: int, tables: dict[str, int], *,
                created: bool) -> ExportArchiveResult:
        return ExportArchiveResult(
            bundle=location, name=self.name, source_kind=self.scan.kind,
            format=self.scan.format, as_of=self.plan.as_of, tables=tables, files=files,
            bytes=size, seconds=time.monotonic() - self.started, created=created,
            warnings=self.warnings)


def _export_description(document: dict[str, Any] | None) -> ExportDescription | None:
    """The description of a bundle found already written (and verified), when it is an export
    bundle's; raises DamagedBundle for one the schema accepts but the model does not."""
    if document is None:
        return None
    described = from_json(document)
    return described if isinstance(described, ExportDescription) else None


def _snapshot_items(snapshot: Snapshot, description: ExportDescription) -> list[PayloadItem]:
    items = []
    for table in snapshot.tables:
        described = description.table(str(table.table))
        items.append(_file_item(described.parquet, table.parquet))
        items.append(_file_item(described.csv, table.csv))
    return items


def _file_item(path: str, local: Path) -> PayloadItem:
    return PayloadItem(path=path, size=local.stat().st_size,
                       open=functools.partial(_open_read, local), local_source=str(local))


def _open_read(path: Path) -> IO[bytes]:
    return path.open("rb")
