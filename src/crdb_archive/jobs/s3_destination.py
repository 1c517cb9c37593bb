"""A job's bundles below an ``s3://bucket/prefix``: found, checked, deleted, locked there.

Nothing can be renamed into place in S3, so completeness is read from what is present: a
directory bundle is complete once its ``tagmanifest-sha256.txt`` is there (written last), a tar
bundle once its object is (one multipart upload). A tar keeps its description at its end, and
in GLACIER or DEEP_ARCHIVE it cannot be read at all without a restore, so a job records what it
knows of each tar it writes in a small index object, ``.crdb-archive-index/<name>.tar.json``,
kept in the default storage class under the tar's own Object Lock retention.

A directory bundle is deleted tag manifest first, under a marker object ``.deleting-<name>``, so
that an interrupted delete never leaves a bundle that looks complete and is finished by the
next run, while an interrupted upload (no marker) is only reported: it may be an upload still
in progress.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from crdb_archive import __version__
from crdb_archive.bundle import layout
from crdb_archive.bundle.reader import open_bundle_in
from crdb_archive.bundle.remote import bundle_key
from crdb_archive.bundle.retrieve import read_description
from crdb_archive.bundle.verify import VerifyReport, verify_reader
from crdb_archive.bundle.writer import Guard, unguarded
from crdb_archive.errors import BadInput, CrdbArchiveError, StorageError
from crdb_archive.jobs.destination import (
    Checked,
    StoredBundle,
    described,
    parse_time,
)
from crdb_archive.jobs.lock import JobLock
from crdb_archive.jobs.s3_lock import S3JobLock
from crdb_archive.progress import ProgressCallback, no_progress
from crdb_archive.storage.base import ObjectInfo, Storage, WriteOptions, open_storage
from crdb_archive.storage.uri import parse_location

INDEX_DIR = ".crdb-archive-index"
DELETING_PREFIX = ".deleting-"
_INDEX_SUFFIX = ".tar.json"
_MAX_INDEX_RECORD = 64 << 10


@dataclass
class _Scan:
    """One listing of the prefix, sorted into what a job cares about."""

    dirs: dict[str, bool] = field(default_factory=dict)  # name -> has its tag manifest
    tars: dict[str, ObjectInfo] = field(default_factory=dict)
    records: set[str] = field(default_factory=set)
    deleting: set[str] = field(default_factory=set)


class S3Destination:
    """Bundles as ``<name>/`` prefixes and ``<name>.tar`` objects below one S3 prefix."""

    def __init__(self, storage: Storage, uri: str, endpoint_url: str | None) -> None:
        self.storage = storage
        self.uri = uri
        self.endpoint_url = endpoint_url

    @classmethod
    def open(cls, uri: str, *, endpoint_url: str | None = None) -> S3Destination:
        """The destination at ``uri``; raises BadInput for a malformed one."""
        return cls(open_storage(uri, endpoint_url=endpoint_url), uri, endpoint_url)

    @property
    def display(self) -> str:
        return self.storage.display()

    @property
    def archive_target(self) -> str:
        return self.uri  # with its parameters: archive_backup opens the same bucket with them

    def close(self) -> None:
        self.storage.close()

    def check_write_options(self, options: WriteOptions | None) -> None:
        if options is not None:
            self.storage.check_write_options(options)

    # --- finding bundles -------------------------------------------------------------------

    def _scan(self) -> _Scan:
        scan = _Scan()
        for info in self.storage.list():
            top, nested, rest = info.key.partition("/")
            if top == INDEX_DIR and rest.endswith(_INDEX_SUFFIX) and "/" not in rest:
                scan.records.add(rest.removesuffix(_INDEX_SUFFIX))
            elif top.startswith(DELETING_PREFIX) and not nested:
                scan.deleting.add(top.removeprefix(DELETING_PREFIX))
            elif top.startswith("."):  # locks and anything else hidden
                continue
            elif nested:
                complete = scan.dirs.get(top, False) or rest == layout.TAGMANIFEST_SHA256
                scan.dirs[top] = complete
            elif top.endswith(".tar"):
                scan.tars[top.removesuffix(".tar")] = info
        return scan

    def bundles(self) -> list[StoredBundle]:
        scan = self._scan()
        found = [self._describe_dir(name) for name, complete in sorted(scan.dirs.items())
                 if complete and name not in scan.deleting]
        found += [self._describe_tar(name, name in scan.records)
                  for name in sorted(scan.tars)]
        return found

    def incomplete(self) -> list[str]:
        scan = self._scan()
        return sorted(name for name, complete in scan.dirs.items()
                      if not complete and name not in scan.deleting)

    def _describe_dir(self, name: str) -> StoredBundle:
        location = self.storage.display(name)
        try:
            description = read_description(open_bundle_in(self.storage, name))
            info = self.storage.stat(f"{name}/{layout.TAGMANIFEST_SHA256}")
        except CrdbArchiveError as error:
            return StoredBundle(name, location, "dir", None, None, None, problem=str(error))
        return described(name, location, "dir", description,
                         info.retain_until if info is not None else None)

    def _describe_tar(self, name: str, recorded: bool) -> StoredBundle:
        key = bundle_key(name, "tar")
        location = self.storage.display(key)
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
        return StoredBundle(
            name=name, location=location, form="tar", time=parse_time(record.get("time")),
            source=source if isinstance(source, str) else None,
            version=version if isinstance(version, str) else None,
            created=parse_time(record.get("created")),
            retain_until=info.retain_until if info is not None else None,
        )

    def remember(self, bundle: StoredBundle) -> None:
        """Write the index record of a tar bundle; directory bundles describe themselves.

        Raises StorageError when it cannot be written.
        """
        if bundle.form != "tar":
            return
        info = self.storage.stat(bundle_key(bundle.name, "tar"))
        if info is None:
            raise StorageError(f"{bundle.location} vanished before its job record was written")
        record = {
            "bundle": bundle.name,
            "form": "tar",
            "source": bundle.source,
            "time": _iso(bundle.time),
            "version": bundle.version,
            "created": _iso(bundle.created),
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
              progress: ProgressCallback = no_progress) -> Checked:
        key = self._key(location)
        reader = open_bundle_in(self.storage, key)
        cold = reader.cold()
        if not cold:
            return Checked(verify_reader(reader, fast=not full, progress=progress))
        classes = ", ".join(sorted({o.storage_class or "an archive class" for o in cold}))
        restore = (f"request a restore (crdb-archive restore-request {reader.display} --days "
                   "7) to verify every digest")
        if reader.form == "dir":
            # Tag files are kept in the default class, so the quick check still reads them.
            report = verify_reader(reader, fast=True, progress=progress)
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

    def _key(self, location: str) -> str:
        root = self.storage.display().rstrip("/") + "/"
        if not location.startswith(root):
            raise BadInput(f"{location} is not below {self.storage.display()}")
        return location.removeprefix(root).rstrip("/")

    # --- deleting --------------------------------------------------------------------------

    def delete(self, bundle: StoredBundle) -> None:
        now = dt.datetime.now(dt.UTC)
        if bundle.locked(now):
            raise StorageError(f"{bundle.location} is under Object Lock retention until "
                               f"{_iso(bundle.retain_until)}; not deleted")
        if bundle.form == "tar":
            # The tar first: a record without its tar is cleared later, never the reverse.
            self.storage.delete(bundle_key(bundle.name, "tar"))
            self.storage.delete(_index_key(bundle.name))
            return
        marker = f"{DELETING_PREFIX}{bundle.name}"
        self.storage.put_bytes(marker, b"")
        self._finish_delete(bundle.name)

    def _finish_delete(self, name: str) -> None:
        # The tag manifest first: from then on the bundle reads as incomplete, never as whole.
        self.storage.delete(f"{name}/{layout.TAGMANIFEST_SHA256}")
        self.storage.delete_tree(f"{name}/")
        self.storage.delete(f"{DELETING_PREFIX}{name}")

    def clear_leftovers(self, *, guard: Guard = unguarded) -> list[str]:
        scan = self._scan()
        finished = []
        for name in sorted(scan.deleting):
            guard(f"finishing the delete of {name}")
            if name in scan.dirs:
                self._finish_delete(name)
                finished.append(name)
            else:
                # A marker kept by a bucket's default retention marks nothing; leave it.
                with contextlib.suppress(StorageError):
                    self.storage.delete(f"{DELETING_PREFIX}{name}")
        for name in sorted(scan.records - set(scan.tars)):
            guard(f"deleting the job record of {name}")
            # A record retained by Object Lock as long as its tar was is harmless.
            with contextlib.suppress(StorageError):
                self.storage.delete(_index_key(name))
        return finished

    # --- locking ---------------------------------------------------------------------------

    def lock(self, job: str) -> JobLock:
        return S3JobLock(parse_location(self.uri), job, endpoint_url=self.endpoint_url)


def _index_key(name: str) -> str:
    return f"{INDEX_DIR}/{name}{_INDEX_SUFFIX}"


def _parse_record(content: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None

