"""What an archive run is asked to do (source, destination, release, binaries, storage options)
and what it answers; the destination checked before anything is written."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crdb_archive.backup.keys import NO_KEYS, EncryptionKeys
from crdb_archive.binaries import DEFAULT_PLATFORM
from crdb_archive.bundle.writer import BundleFormat
from crdb_archive.errors import BadInput
from crdb_archive.storage.base import LockMode, WriteOptions
from crdb_archive.storage.places import check_destination_location, overlap_problem
from crdb_archive.storage.uri import parse_location

if TYPE_CHECKING:
    from crdb_archive.bundle.signature import SigningKey


@dataclass(frozen=True)
class ArchiveRequest:
    source: str
    dest: str | Path
    subdir: str | None = None
    version: str | None = None  # None or "auto": read it from the backup
    force_version: bool = False
    platforms: Sequence[str] = (DEFAULT_PLATFORM,)
    mirror: str | None = None
    name: str | None = None
    format: BundleFormat = "dir"
    with_incrementals: bool = False
    cache_dir: Path | None = None
    use_cache: bool = True
    # Each end's endpoint (an S3-compatible store, an emulator): they may be different clouds.
    source_endpoint_url: str | None = None
    dest_endpoint_url: str | None = None
    storage_class: str | None = None
    object_lock_mode: LockMode | None = None
    object_lock_days: int | None = None
    retain_until: dt.datetime | None = None
    # Open an encrypted backup's manifest, so that its version is read rather than given.
    keys: EncryptionKeys = field(default=NO_KEYS, repr=False)
    # Signs each new bundle's tag manifest (loaded and checked before anything is written).
    sign_key: SigningKey | None = field(default=None, repr=False)

    @property
    def signing_key(self) -> str | None:
        """The fingerprint of the key new bundles are signed with, if any."""
        return self.sign_key.fingerprint if self.sign_key is not None else None

    def write_options(self, now: dt.datetime) -> WriteOptions | None:
        """Storage class and Object Lock for the bundle's objects; raises BadInput."""
        options = WriteOptions(self.storage_class, self.object_lock_mode, self._retain(now))
        return None if options.is_default else options

    def _retain(self, now: dt.datetime) -> dt.datetime | None:
        """Until when Object Lock retains the bundle's objects; raises BadInput."""
        if self.object_lock_mode is None:
            if self.object_lock_days is not None or self.retain_until is not None:
                raise BadInput("--object-lock-days and --retain-until need "
                               "--object-lock-mode GOVERNANCE or COMPLIANCE")
            return None
        if (self.object_lock_days is None) == (self.retain_until is None):
            raise BadInput("--object-lock-mode needs exactly one of --object-lock-days N or "
                           "--retain-until DATE")
        if self.object_lock_days is not None:
            if self.object_lock_days <= 0:
                raise BadInput("--object-lock-days must be > 0")
            return now + dt.timedelta(days=self.object_lock_days)
        retain = self.retain_until
        if retain is not None and retain.tzinfo is None:
            retain = retain.replace(tzinfo=dt.UTC)
        if retain is not None and retain <= now:
            raise BadInput(f"--retain-until {retain.date()} is not in the future")
        return retain


@dataclass(frozen=True)
class ArchiveResult:
    bundle: str  # a path, or a URI without secrets
    name: str
    version: str
    platforms: list[str]
    files: int
    bytes: int
    seconds: float
    created: bool
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "name": self.name,
            "kind": "backup",
            "version": self.version,
            "platforms": self.platforms,
            "files": self.files,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "created": self.created,
            "warnings": self.warnings,
        }


def check_destination(request: ArchiveRequest) -> WriteOptions | None:
    """The write options, with the destination checked before anything is written.

    Raises BadInput for storage options on a local destination, a destination inside the
    source (or the source itself), and a local destination that is not a directory.
    """
    options = request.write_options(dt.datetime.now(dt.UTC))
    check_destination_location(parse_location(str(request.dest)), options)
    problem = overlap_problem(request.source, str(request.dest),
                              source_endpoint_url=request.source_endpoint_url,
                              dest_endpoint_url=request.dest_endpoint_url)
    if problem is not None:
        raise BadInput(problem)
    return options
