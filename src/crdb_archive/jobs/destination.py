"""Where a job keeps its bundles, behind the few verbs a job needs.

A job lists the bundles in its destination (each with the time that orders it, the source it
came from, and any Object Lock retention), checks and verifies them, deletes what retention
lets go, and holds its lock there. :class:`LocalDestination` does this on a directory,
:class:`~crdb_archive.jobs.s3_destination.S3Destination` below an ``s3://`` prefix.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from crdb_archive.backup.layout import subdir_end_time
from crdb_archive.bundle.reader import open_bundle
from crdb_archive.bundle.retrieve import read_description
from crdb_archive.bundle.verify import VerifyReport, verify_bundle
from crdb_archive.bundle.writer import Guard, unguarded
from crdb_archive.errors import BadInput, CrdbArchiveError, StorageError
from crdb_archive.jobs.lock import JobLock, LocalJobLock
from crdb_archive.progress import ProgressCallback, no_progress
from crdb_archive.storage.base import WriteOptions
from crdb_archive.storage.local import fsync_directory
from crdb_archive.storage.places import require_directory
from crdb_archive.storage.uri import parse_location

# A bundle being deleted is renamed to this hidden prefix first, so that an interrupted
# delete never leaves half a bundle under the bundle's own name.
DELETING_PREFIX = ".deleting-"


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

    def locked(self, now: dt.datetime) -> bool:
        """Under Object Lock retention at ``now``: the store itself would refuse a delete."""
        return self.retain_until is not None and self.retain_until > now


@dataclass(frozen=True)
class Checked:
    """A check's report, and why it checked less than asked (``limited``), if it did."""

    report: VerifyReport
    limited: str | None = None


class Destination(Protocol):
    """The verbs a job needs from where its bundles live."""

    @property
    def display(self) -> str:
        """The destination for messages, without credentials."""

    @property
    def archive_target(self) -> str | Path:
        """What archive_backup is given as ``dest`` to write new bundles here."""

    def check_write_options(self, options: WriteOptions | None) -> None:
        """Raise BadInput before anything is written when ``options`` cannot be honoured."""

    def bundles(self) -> list[StoredBundle]:
        """Every complete bundle, readable or not; raises StorageError."""

    def incomplete(self) -> list[str]:
        """Names of bundles that are partly there (an interrupted upload); never deleted here."""

    def remember(self, bundle: StoredBundle) -> None:
        """Record what a job knows of a bundle it wrote, where the bundle alone would not tell
        it cheaply (a tar in object storage keeps its description at its end)."""

    def check(self, location: str, *, full: bool,
              progress: ProgressCallback = no_progress) -> Checked:
        """Verify the bundle at ``location``: ``full`` reads every digest, otherwise presence
        and sizes only."""

    def delete(self, bundle: StoredBundle) -> None:
        """Delete a bundle so that it never stays half-present under its name."""

    def clear_leftovers(self, *, guard: Guard = unguarded) -> list[str]:
        """Finish deletes an earlier run started, each after ``guard``; returns the names
        removed."""

    def lock(self, job: str) -> JobLock:
        """The lock that keeps two runs of ``job`` apart."""

    def close(self) -> None:
        """Release connections."""


def open_destination(uri: str, *, endpoint_url: str | None = None) -> Destination:
    """The destination a job spec names, nothing written yet; raises BadInput for a malformed
    one, or a local one that is not a directory."""
    location = parse_location(uri)
    if location.scheme == "s3":
        from crdb_archive.jobs.s3_destination import S3Destination  # noqa: PLC0415 - cycle

        return S3Destination.open(uri, endpoint_url=endpoint_url)
    if location.scheme != "file":
        raise BadInput(f"{location.redacted}: a job destination is a directory or s3://")
    require_directory(location.local_path)
    return LocalDestination(location.local_path)


class LocalDestination:
    """Bundles as directories and ``.tar`` files in one local directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def display(self) -> str:
        return str(self.root)

    @property
    def archive_target(self) -> Path:
        return self.root

    def check_write_options(self, options: WriteOptions | None) -> None:
        if options is not None:
            raise BadInput(f"{self.root} is a local directory: storage class and Object Lock "
                           "apply only to s3:// destinations")

    def incomplete(self) -> list[str]:
        return []  # a local bundle is staged under a hidden name and renamed when complete

    def remember(self, bundle: StoredBundle) -> None:
        """Nothing to record: a local bundle's description is read from the bundle."""

    def close(self) -> None:
        """Nothing to release."""

    def bundles(self) -> list[StoredBundle]:
        try:
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        except OSError as error:
            raise StorageError(f"cannot list {self.root}: {error.strerror}") from None
        found = []
        for entry in entries:
            if entry.name.startswith("."):  # staging, deletes in progress, locks
                continue
            path = Path(entry.path)
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not (path / "bagit.txt").is_file():
                        continue
                    form: Literal["dir", "tar"] = "dir"
                elif entry.is_file(follow_symlinks=False) and entry.name.endswith(".tar"):
                    form = "tar"
                else:
                    continue
            except OSError as error:
                raise StorageError(f"cannot read {path}: {error.strerror}") from None
            found.append(self._describe(path, form))
        return found

    def _describe(self, path: Path, form: Literal["dir", "tar"]) -> StoredBundle:
        name = path.name.removesuffix(".tar") if form == "tar" else path.name
        try:
            description = read_description(open_bundle(path))
        except CrdbArchiveError as error:
            return StoredBundle(name, str(path), form, None, None, None, problem=str(error))
        return described(name, str(path), form, description)

    def check(self, location: str, *, full: bool,
              progress: ProgressCallback = no_progress) -> Checked:
        return Checked(verify_bundle(Path(location), fast=not full, progress=progress))

    def delete(self, bundle: StoredBundle) -> None:
        path = Path(bundle.location)
        doomed = path.with_name(DELETING_PREFIX + path.name)
        try:
            _remove(doomed)
            path.rename(doomed)
            fsync_directory(self.root)
            _remove(doomed)
        except OSError as error:
            raise StorageError(f"cannot delete {path}: {error.strerror or error}") from None

    def clear_leftovers(self, *, guard: Guard = unguarded) -> list[str]:
        try:
            doomed = [p for p in self.root.iterdir() if p.name.startswith(DELETING_PREFIX)]
        except FileNotFoundError:
            return []
        except OSError as error:
            raise StorageError(f"cannot list {self.root}: {error.strerror}") from None
        removed = []
        for path in sorted(doomed):
            name = path.name.removeprefix(DELETING_PREFIX).removesuffix(".tar")
            guard(f"finishing the delete of {name}")
            try:
                _remove(path)
            except OSError as error:
                raise StorageError(
                    f"cannot finish deleting {path}: {error.strerror or error}") from None
            removed.append(name)
        return removed

    def lock(self, job: str) -> JobLock:
        return LocalJobLock(self.root, job)


def described(name: str, location: str, form: Literal["dir", "tar"],
              description: dict[str, Any],
              retain_until: dt.datetime | None = None) -> StoredBundle:
    """The StoredBundle that a bundle's crdb-archive.json describes."""
    if description.get("kind") == "export":
        export: dict[str, Any] = description.get("export") or {}
        return StoredBundle(
            name=name, location=location, form=form, time=bundle_time(description),
            source=export.get("source"), version=None,
            created=parse_time(description.get("created")), retain_until=retain_until)
    backup: dict[str, Any] = description.get("backup") or {}
    return StoredBundle(
        name=name,
        location=location,
        form=form,
        time=bundle_time(description),
        source=backup.get("source"),
        version=(description.get("cockroachdb") or {}).get("version"),
        created=parse_time(description.get("created")),
        retain_until=retain_until,
    )


def bundle_time(description: dict[str, Any]) -> dt.datetime | None:
    """The time that orders a bundle: backup end time, else its subdirectory's, else creation;
    for an export bundle, the snapshot's time, else creation."""
    if description.get("kind") == "export":
        as_of = (description.get("export") or {}).get("as_of") or {}
        return parse_time(as_of.get("time")) or parse_time(description.get("created"))
    backup = description.get("backup") or {}
    end = parse_time(backup.get("end_time"))
    if end is not None:
        return end
    subdir = backup.get("subdir")
    if isinstance(subdir, str):
        from_subdir = subdir_end_time(subdir)
        if from_subdir is not None:
            return from_subdir
    return parse_time(description.get("created"))


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


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
