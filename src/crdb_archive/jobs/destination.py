"""Where a job keeps its bundles, in any storage, behind the few verbs a job needs.

A job lists the bundles in its destination (each with the time that orders it, the source it
came from, and any Object Lock retention), checks and verifies them, deletes what retention
lets go, and holds its lock there.

Completeness is read from what is present: a directory bundle is complete once its
``tagmanifest-sha256.txt`` is there (written last, or renamed into place with the rest), a tar
bundle once its object is. Where trees are not published whole (object stores), a directory
without its tag manifest is an interrupted upload (or one in progress): reported, never deleted
here.

A tar keeps its description at its end. Where it is a file here, that is read by seeking; in an
object store it would take a download of the whole tar (and, in GLACIER or DEEP_ARCHIVE, a
restore first), so a job records what it knows of each tar it writes there in a small index
object, ``.crdb-archive-index/<name>.tar.json``, kept in the default storage class under the
tar's own retention lock.

A directory bundle is deleted under a marker object ``.deleting-<name>``, tag manifest first,
so that an interrupted delete never leaves a bundle that looks complete, and the next run
finishes it. (Earlier versions renamed a local bundle to ``.deleting-<name>`` before removing
it; such a leftover is finished too.) A deleted bundle's fixity records (jobs/fixity.py) go
with it: they describe nothing any more, and a bundle written again under its name must start
as never verified.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from crdb_archive import __version__
from crdb_archive.backup.layout import subdir_end_time
from crdb_archive.bundle import layout
from crdb_archive.bundle.description import Description, ExportDescription
from crdb_archive.bundle.publish import bundle_key
from crdb_archive.bundle.reader import DirReader, open_bundle_in
from crdb_archive.bundle.retrieve import read_description
from crdb_archive.bundle.verify import VerifyReport, verify_reader
from crdb_archive.bundle.writer import Guard, unguarded
from crdb_archive.errors import BadInput, CrdbArchiveError, StorageError
from crdb_archive.jobs.fixity import FIXITY_DIR
from crdb_archive.jobs.lock import JobLock
from crdb_archive.progress import ProgressCallback, no_progress
from crdb_archive.storage.base import ObjectInfo, Prefix, Storage, WriteOptions, open_storage
from crdb_archive.storage.places import check_destination_location
from crdb_archive.storage.uri import parse_location
from crdb_archive.times import utc_iso

if TYPE_CHECKING:
    from crdb_archive.bundle.signature import AllowedSigners

INDEX_DIR = ".crdb-archive-index"
DELETING_PREFIX = ".deleting-"
_INDEX_SUFFIX = ".tar.json"
_MAX_INDEX_RECORD = 64 << 10


@dataclass(frozen=True)
class StoredBundle:
    """A complete bundle in a destination, as its description tells it.

    ``time`` orders bundles for retention: the backup's end time, else the end time its
    subdirectory is named after, else the bundle's creation. ``problem`` says why the
    description could not be read; such a bundle belongs to no job and is never deleted.
    """

    name: str
    location: str
    form: Literal["dir", "tar"]
    time: dt.datetime | None
    source: str | None
    version: str | None
    created: dt.datetime | None = None
    retain_until: dt.datetime | None = None
    problem: str | None = None
    kind: Literal["backup", "export"] | None = None
    signing_key: str | None = None  # the fingerprint of the key that signed it, if known

    def locked(self, now: dt.datetime) -> bool:
        """Under Object Lock retention at ``now``: the store itself would refuse a delete."""
        return self.retain_until is not None and self.retain_until > now


@dataclass(frozen=True)
class Checked:
    """A check's report, and why it checked less than asked (``limited``), if it did."""

    report: VerifyReport
    limited: str | None = None


@dataclass
class Scan:
    """One listing of the destination's top level, sorted into what a job cares about."""

    dirs: dict[str, bool] = field(default_factory=dict)  # name -> complete
    unfinished: list[str] = field(default_factory=list)  # dirs with no tag manifest
    tars: dict[str, ObjectInfo] = field(default_factory=dict)
    records: set[str] = field(default_factory=set)
    deleting: set[str] = field(default_factory=set)  # marker objects
    renamed: list[str] = field(default_factory=list)  # dirs renamed away to be deleted


def open_destination(uri: str, *, endpoint_url: str | None = None) -> Destination:
    """The destination a job spec names, nothing written yet; raises BadInput for a malformed
    one, or a local one that is not a directory."""
    check_destination_location(parse_location(uri))
    return Destination(open_storage(uri, endpoint_url=endpoint_url), uri)


class Destination:
    """Bundles as ``<name>/`` trees and ``<name>.tar`` objects at the top of ``storage``.

    ``uri`` is what the spec names (parameters included), given to archive to write there.
    """

    def __init__(self, storage: Storage, uri: str) -> None:
        self.storage = storage
        self.uri = uri

    @property
    def display(self) -> str:
        """The destination for messages, without credentials."""
        return self.storage.display()

    @property
    def archive_target(self) -> str:
        """What archive_backup is given as ``dest`` to write new bundles here."""
        return self.uri

    def close(self) -> None:
        """Release connections."""
        self.storage.close()

    def check_write_options(self, options: WriteOptions | None) -> None:
        """Raise BadInput before anything is written when ``options`` cannot be honoured."""
        if options is not None:
            self.storage.check_write_options(options)

    def lock(self, job: str) -> JobLock:
        """The lock that keeps two runs of ``job`` apart."""
        return JobLock(self.storage, job)

    # --- finding bundles -------------------------------------------------------------------

    def scan(self) -> Scan:
        """One listing of the top level: bundles complete and not, records, deletes under
        way; raises StorageError."""
        scan = Scan()
        for entry in self.storage.list_level():
            name = entry.name if isinstance(entry, Prefix) else entry.key
            if isinstance(entry, Prefix):
                if name == INDEX_DIR:
                    scan.records = {info.key.removeprefix(f"{INDEX_DIR}/").removesuffix(
                        _INDEX_SUFFIX) for info in self.storage.list(INDEX_DIR)
                        if info.key.endswith(_INDEX_SUFFIX) and info.key.count("/") == 1}
                elif name.startswith(DELETING_PREFIX):
                    scan.renamed.append(name)
                elif not name.startswith("."):  # staging areas and anything else hidden
                    self._scan_dir(scan, name)
            elif name.startswith(DELETING_PREFIX):
                scan.deleting.add(name.removeprefix(DELETING_PREFIX))
            elif name.endswith(".tar") and not name.startswith("."):
                scan.tars[name.removesuffix(".tar")] = entry
        return scan

    def _scan_dir(self, scan: Scan, name: str) -> None:
        if self.storage.exists(f"{name}/{layout.TAGMANIFEST_SHA256}"):
            scan.dirs[name] = True
        elif self.storage.publishes_atomically:
            # Renamed into place whole: without a tag manifest it is damaged, or not a
            # bundle; it is one when it says so.
            if self.storage.exists(f"{name}/{layout.BAGIT_TXT}"):
                scan.dirs[name] = False
        elif any(True for _ in self.storage.list(name)):
            scan.unfinished.append(name)

    def bundles(self) -> list[StoredBundle]:
        """Every complete bundle, readable or not; raises StorageError."""
        scan = self.scan()
        found = [self._describe_dir(name) for name in sorted(scan.dirs)
                 if name not in scan.deleting]
        found += [self._describe_tar(name, name in scan.records)
                  for name in sorted(scan.tars)]
        return found

    def incomplete(self) -> list[str]:
        """Names of bundles that are partly there (an interrupted upload); never deleted here."""
        scan = self.scan()
        return sorted(name for name in scan.unfinished if name not in scan.deleting)

    def read_record(self, name: str) -> StoredBundle:
        """What the job record of the tar ``name`` says (a problem when there is none, or it
        cannot be read)."""
        return self._describe_tar(name, True)

    def _describe_dir(self, name: str) -> StoredBundle:
        location = self.storage.display(name)
        try:
            # Its top level only: the tag files, not a listing of every payload object.
            tree = self.storage.child(name)
            top = [e for e in tree.list_level() if isinstance(e, ObjectInfo)]
            description = read_description(DirReader(tree, top))
            info = self.storage.stat(f"{name}/{layout.TAGMANIFEST_SHA256}")
        except CrdbArchiveError as error:
            return StoredBundle(name, location, "dir", None, None, None, problem=str(error))
        return described(name, location, "dir", description,
                         info.retain_until if info is not None else None)

    def _describe_tar(self, name: str, recorded: bool) -> StoredBundle:
        key = bundle_key(name, "tar")
        location = self.storage.display(key)
        if not recorded and self.storage.local_paths() is not None:
            try:
                reader = open_bundle_in(self.storage, key)
                return described(name, location, "tar", read_description(reader))
            except CrdbArchiveError as error:
                return StoredBundle(name, location, "tar", None, None, None, problem=str(error))
        if not recorded:
            return StoredBundle(
                name, location, "tar", None, None, None,
                problem=f"no job record {INDEX_DIR}/{name}{_INDEX_SUFFIX} (a tar in object "
                "storage keeps its description at its end, which is not read to list it); "
                "the next run that selects its backup records it")
        try:
            record = _parse_record(self.storage.read_bytes(_index_key(name),
                                                           limit=_MAX_INDEX_RECORD))
            info = self.storage.stat(key)
        except CrdbArchiveError as error:
            return StoredBundle(name, location, "tar", None, None, None, problem=str(error))
        if record is None or record.get("bundle") != name:
            return StoredBundle(name, location, "tar", None, None, None,
                                problem=f"{self.storage.display(_index_key(name))} is not a "
                                "job record of this bundle")
        version = record.get("version")
        source = record.get("source")
        signing_key = record.get("signing_key")
        kind = record.get("kind")
        return StoredBundle(
            name=name, location=location, form="tar", time=parse_time(record.get("time")),
            source=source if isinstance(source, str) else None,
            version=version if isinstance(version, str) else None,
            created=parse_time(record.get("created")),
            retain_until=info.retain_until if info is not None else None,
            kind="backup" if kind == "backup" else ("export" if kind == "export" else None),
            signing_key=signing_key if isinstance(signing_key, str) else None,
        )

    def remember(self, bundle: StoredBundle) -> None:
        """Record what a job knows of a bundle it wrote, where the bundle alone would not tell
        it cheaply: a tar that is not a file here. Raises StorageError when it cannot be
        written."""
        if bundle.form != "tar" or self.storage.local_paths() is not None:
            return
        info = self.storage.stat(bundle_key(bundle.name, "tar"))
        if info is None:
            raise StorageError(f"{bundle.location} vanished before its job record was written")
        record = {
            "bundle": bundle.name,
            "form": "tar",
            "source": bundle.source,
            "time": utc_iso(bundle.time),
            "version": bundle.version,
            "created": utc_iso(bundle.created),
            "kind": bundle.kind,
            "signing_key": bundle.signing_key,
            "recorded_by": f"crdb-archive {__version__}",
        }
        # The record lives exactly as long as its tar may: same lock, same date.
        options = None
        if info.lock_mode in ("GOVERNANCE", "COMPLIANCE") and info.retain_until is not None:
            options = WriteOptions(None, "GOVERNANCE" if info.lock_mode == "GOVERNANCE"
                                   else "COMPLIANCE", info.retain_until)
        self.storage.put_bytes(_index_key(bundle.name),
                               (json.dumps(record, indent=2) + "\n").encode(), options=options)

    # --- checking --------------------------------------------------------------------------

    def check(self, location: str, *, full: bool,
              progress: ProgressCallback = no_progress,
              allowed: AllowedSigners | None = None) -> Checked:
        """Verify the bundle at ``location``: ``full`` reads every digest, otherwise presence
        and sizes only; with ``allowed``, it must be validly signed by a key it lists."""
        key = self._key(location)
        reader = open_bundle_in(self.storage, key)
        cold = reader.cold()
        if not cold:
            return Checked(verify_reader(reader, fast=not full, progress=progress,
                                         allowed=allowed))
        classes = ", ".join(sorted({o.storage_class or "an archive class" for o in cold}))
        restore = (f"request a restore (crdb-archive restore-request {reader.display} --days "
                   "7) to verify every digest")
        if reader.form == "dir":
            # Tag files are kept in the default class, so the quick check still reads them.
            report = verify_reader(reader, fast=True, progress=progress, allowed=allowed)
            limited = None if not full else (
                f"the payload of {reader.display} is in {classes}: its tag files, the presence "
                f"and size of every file were checked, not the digests; {restore}")
            return Checked(report, limited)
        report = VerifyReport(reader.display, "tar", "fast")
        info = self.storage.stat(key)
        if info is None:
            report.add(key, "missing", "the tar object is gone")
        else:
            report.bytes = info.size
        return Checked(report, f"{reader.display} is in {classes}: only its presence and size "
                       f"were checked; {restore}")

    def key_of(self, location: str) -> str:
        """The key below the destination of a bundle at ``location`` (name, or name.tar);
        raises BadInput for a location elsewhere."""
        return self._key(location)

    def _key(self, location: str) -> str:
        root = self.storage.display().rstrip("/") + "/"
        if not location.startswith(root):
            raise BadInput(f"{location} is not below {self.storage.display()}")
        return location.removeprefix(root).rstrip("/")

    # --- deleting --------------------------------------------------------------------------

    def delete(self, bundle: StoredBundle) -> None:
        """Delete a bundle so that it never stays half-present under its name."""
        now = dt.datetime.now(dt.UTC)
        if bundle.locked(now):
            raise StorageError(f"{bundle.location} is under Object Lock retention until "
                               f"{utc_iso(bundle.retain_until)}; not deleted")
        if bundle.form == "tar":
            # The tar first: a record without its tar is cleared later, never the reverse.
            self.storage.delete(bundle_key(bundle.name, "tar"))
            self._forget_checks(bundle_key(bundle.name, "tar"))
            self.storage.delete(_index_key(bundle.name))
            return
        marker = f"{DELETING_PREFIX}{bundle.name}"
        self.storage.put_bytes(marker, b"")
        self._finish_delete(bundle.name)

    def _forget_checks(self, key: str) -> None:
        # The fixity records of a bundle that is gone describe nothing, and a bundle written
        # again under its name must start as never verified. Records kept by a bucket's
        # retention stay; an audit reports them as stale.
        with contextlib.suppress(StorageError):
            self.storage.delete_tree(f"{FIXITY_DIR}/{key}/")

    def _finish_delete(self, name: str) -> None:
        # The tag manifest first: from then on the bundle reads as incomplete, never as whole.
        self.storage.delete(f"{name}/{layout.TAGMANIFEST_SHA256}")
        self.storage.delete_tree(f"{name}/")
        self._forget_checks(name)
        self.storage.delete(f"{DELETING_PREFIX}{name}")

    def clear_leftovers(self, *, guard: Guard = unguarded) -> list[str]:
        """Finish deletes an earlier run started, each after ``guard``; returns the names
        removed."""
        scan = self.scan()
        finished = []
        for name in sorted(scan.deleting):
            guard(f"finishing the delete of {name}")
            if name in scan.dirs or name in scan.unfinished:
                self._finish_delete(name)
                finished.append(name)
            else:
                # A marker kept by a bucket's default retention marks nothing; leave it.
                with contextlib.suppress(StorageError):
                    self.storage.delete(f"{DELETING_PREFIX}{name}")
        for renamed in scan.renamed:
            name = renamed.removeprefix(DELETING_PREFIX).removesuffix(".tar")
            guard(f"finishing the delete of {name}")
            self.storage.delete_tree(f"{renamed}/")
            self._forget_checks(renamed.removeprefix(DELETING_PREFIX))
            finished.append(name)
        for name in sorted(scan.records - set(scan.tars)):
            guard(f"deleting the job record of {name}")
            self._forget_checks(bundle_key(name, "tar"))
            # A record retained by Object Lock as long as its tar was is harmless.
            with contextlib.suppress(StorageError):
                self.storage.delete(_index_key(name))
        return finished


def described(name: str, location: str, form: Literal["dir", "tar"],
              description: Description,
              retain_until: dt.datetime | None = None) -> StoredBundle:
    """The StoredBundle that a bundle's crdb-archive.json describes."""
    if isinstance(description, ExportDescription):
        source, version = description.source, None
    else:
        source, version = description.backup.source, description.cockroachdb.version
    return StoredBundle(
        name=name, location=location, form=form, time=bundle_time(description), source=source,
        version=version, created=parse_time(description.created), retain_until=retain_until,
        kind=description.kind)


def bundle_time(description: Description) -> dt.datetime | None:
    """The time that orders a bundle: backup end time, else its subdirectory's, else creation;
    for an export bundle, the snapshot's time, else creation."""
    created = parse_time(description.created)
    if isinstance(description, ExportDescription):
        as_of = description.as_of
        return (parse_time(as_of.iso()) if as_of is not None else None) or created
    backup = description.backup
    end = parse_time(backup.end_time)
    if end is not None:
        return end
    from_subdir = subdir_end_time(backup.subdir) if backup.subdir is not None else None
    return from_subdir or created


def parse_time(text: object) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


def _index_key(name: str) -> str:
    return f"{INDEX_DIR}/{name}{_INDEX_SUFFIX}"


def _parse_record(content: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


