"""The main job: a backup in, one verified archive bundle out.

inspect the backup -> settle the version -> fetch and verify the official release archive(s)
-> write the bundle atomically (or find that it already exists and is sound).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crdb_archive import __version__
from crdb_archive.archive_payload import backup_payload
from crdb_archive.backup import BackupInfo, inspect_backup
from crdb_archive.backup.keys import NO_KEYS, EncryptionKeys
from crdb_archive.binaries import (
    DEFAULT_PLATFORM,
    FetchedArchive,
    Mirror,
    PublishedChecksum,
    archive_name,
    fetch_published_checksum,
    fetch_release_archive,
    resolve_mirror,
)
from crdb_archive.binaries.platforms import check_platform, resolve_release
from crdb_archive.bundle import layout
from crdb_archive.bundle.model import render, schema_problems
from crdb_archive.bundle.naming import backup_bundle_names
from crdb_archive.bundle.publish import (
    BundleStaging,
    bundle_exists,
    bundle_key,
    clear_incomplete,
)
from crdb_archive.bundle.reader import BundleReader, open_bundle_in
from crdb_archive.bundle.restore_doc import render_restore_md
from crdb_archive.bundle.signature_check import SignatureStatus
from crdb_archive.bundle.verify import verify_reader
from crdb_archive.bundle.writer import (
    BundleFormat,
    DescribeCallback,
    Guard,
    PayloadItem,
    PayloadResult,
    WrittenBundle,
    unguarded,
)
from crdb_archive.errors import (
    BadInput,
    DamagedBundle,
    EncryptedBackup,
    NetworkError,
    VersionConflict,
)
from crdb_archive.progress import ProgressCallback, no_progress
from crdb_archive.sources import KindChoice, recognise_source, recorded_source
from crdb_archive.storage.base import LockMode, Storage, WriteOptions, open_storage
from crdb_archive.storage.places import check_destination_location, overlap_problem
from crdb_archive.storage.uri import parse_location, redact
from crdb_archive.times import utc_iso
from crdb_archive.versions import VersionSpec, release_index

if TYPE_CHECKING:
    from crdb_archive.bundle.signature import SigningKey
    from crdb_archive.export.archive import ExportArchiveResult, ExportOptions

# Warn when the binaries of the backup's major disappear from the download site within this.
BINARY_REMOVAL_WARNING_DAYS = 180


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
        if self.object_lock_mode is None:
            if self.object_lock_days is not None or self.retain_until is not None:
                raise BadInput("--object-lock-days and --retain-until need "
                               "--object-lock-mode GOVERNANCE or COMPLIANCE")
            retain = None
        elif (self.object_lock_days is None) == (self.retain_until is None):
            raise BadInput("--object-lock-mode needs exactly one of --object-lock-days N or "
                           "--retain-until DATE")
        elif self.object_lock_days is not None:
            if self.object_lock_days <= 0:
                raise BadInput("--object-lock-days must be > 0")
            retain = now + dt.timedelta(days=self.object_lock_days)
        else:
            retain = self.retain_until
            if retain is not None and retain.tzinfo is None:
                retain = retain.replace(tzinfo=dt.UTC)
            if retain is not None and retain <= now:
                raise BadInput(f"--retain-until {retain.date()} is not in the future")
        options = WriteOptions(self.storage_class, self.object_lock_mode, retain)
        return None if options.is_default else options


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


@dataclass(frozen=True)
class _Version:
    spec: VersionSpec
    release: str
    source: str  # "manifest" or "user"


# Writes the bundle from its payload, bag-info labels and description callback.
WriteBundle = Callable[
    [Sequence[PayloadItem], Sequence[tuple[str, str]], DescribeCallback], WrittenBundle
]


def archive_source(
    request: ArchiveRequest,
    *,
    kind: KindChoice = "auto",
    export: ExportOptions | None = None,
    progress: ProgressCallback = no_progress,
    guard: Guard | None = None,
) -> ArchiveResult | ExportArchiveResult:
    """Archive the backup, changefeed output or EXPORT output at ``request.source``.

    ``kind`` ``auto`` tells them apart by their file names (:mod:`crdb_archive.sources`).
    Raises UnrecognisedSource (exit 2) for a source that holds neither or both, BadInput for
    export options given for a backup, and what :func:`archive_backup` or
    :func:`crdb_archive.export.archive.archive_export` raise.
    """
    chosen = recognise_source(request.source, kind,
                              endpoint_url=request.source_endpoint_url)
    if chosen == "export":
        from crdb_archive.export.archive import ExportOptions, archive_export  # noqa: PLC0415

        return archive_export(request, export or ExportOptions(), progress=progress,
                              guard=guard)
    if export is not None and export.given:
        raise BadInput(f"{export.given[0]} applies to changefeed and EXPORT output, and "
                       f"{redact(request.source)} holds a backup")
    return archive_backup(request, progress=progress, guard=guard)


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


def archive_backup(
    request: ArchiveRequest,
    *,
    progress: ProgressCallback = no_progress,
    guard: Guard | None = None,
) -> ArchiveResult:
    """Archive the backup at ``request.source`` into a bundle in ``request.dest``.

    Every request value is checked before anything is written, so a refused request leaves
    nothing behind. ``guard``, when given, is called with what is about to change (clearing an
    interrupted upload, publishing the bundle) and stops it by raising (a job whose lock is
    lost).

    Raises NotABackup/BadInput/VersionConflict/EncryptedBackup/UnknownPlatform (exit 2; also
    for a destination inside the source, or one that is not a directory), DamagedBundle when a
    bundle of that name exists and fails verification, ChecksumMismatch (exit 1), and
    NetworkError/StorageError (exit 3).
    """
    started = time.monotonic()
    options = check_destination(request)
    with inspect_backup(request.source, subdir=request.subdir,
                        endpoint_url=request.source_endpoint_url, keys=request.keys) as backup:
        version = _settle_version(backup, request)
        names = backup_bundle_names(backup, version.release, request.with_incrementals)
        name = request.name or names.current
        if not layout.is_valid_name(name):
            raise BadInput(f"bundle name {name!r} is not a portable file name "
                           "(letters, digits, '._+-', no leading dot)")
        release = resolve_release(version.release)
        for platform in request.platforms:
            check_platform(release, platform)
        job = _Archiving(request, backup, version, name, recorded_source(backup.location),
                         started,
                         progress, guard or unguarded)
        if request.name is None:
            job.earlier_names = (names.legacy,)
        # Not created yet: the staging area makes what it needs, and removes it on failure.
        with open_storage(str(request.dest), endpoint_url=request.dest_endpoint_url) as storage:
            if options is not None:
                storage.check_write_options(options)
            return job.to_storage(storage, options)


class _Archiving:
    """One archive run, after the backup and its version are settled."""

    def __init__(self, request: ArchiveRequest, backup: BackupInfo, version: _Version,
                 name: str, source: str, started: float, progress: ProgressCallback,
                 guard: Guard) -> None:
        self.request = request
        self.guard = guard
        self.backup = backup
        self.version = version
        self.name = name
        # Names earlier versions gave this bundle: found there, it is not written again.
        self.earlier_names: tuple[str, ...] = ()
        self.source = source
        self.started = started
        self.progress = progress
        self.platforms = list(dict.fromkeys(request.platforms or (DEFAULT_PLATFORM,)))
        self.mirror = resolve_mirror(request.mirror)
        self.warnings = _warnings(backup, version)
        self.files = list(backup.files)
        if request.with_incrementals:
            self.files += backup.incremental_files

    def to_storage(self, storage: Storage, options: WriteOptions | None) -> ArchiveResult:
        fmt = self.request.format
        for name in (self.name, *self.earlier_names):
            if bundle_exists(storage, name, fmt):
                self.name = name
                return self._existing(open_bundle_in(storage, bundle_key(name, fmt)))
        self.warnings += clear_incomplete(storage, self.name, fmt, guard=self.guard)
        with BundleStaging(storage, self.name, fmt) as staging:
            return self._make(staging.scratch, lambda payload, info, describe: staging.write(
                payload, bag_info=info, describe=describe, options=options,
                progress=self.progress, guard=self.guard, sign_key=self.request.sign_key))

    def _make(self, scratch: Path, write: WriteBundle) -> ArchiveResult:
        fetched = [
            fetch_release_archive(self.version.release, platform, scratch, mirror=self.mirror,
                                  cache_dir=self.request.cache_dir,
                                  use_cache=self.request.use_cache, progress=self.progress)
            for platform in self.platforms
        ]
        for archive in fetched:
            if not archive.verified:
                self.warnings.append(
                    f"{archive.path.name} is not verified: Cockroach Labs published no "
                    f"SHA-256 for {self.version.release}"
                )
        others = _other_platforms(self.version, self.platforms, self.mirror, self.warnings,
                                  cache_dir=self.request.cache_dir,
                                  use_cache=self.request.use_cache)
        payload = backup_payload(self.backup, self.files, fetched, scratch)

        def describe(result: PayloadResult) -> dict[str, bytes]:
            description = _description(
                self.name, self.source, self.backup, self.version, fetched, others,
                self.warnings, result,
                incrementals=self.backup.incrementals if self.request.with_incrementals else [],
                files=len(self.files), size=sum(f.size for f in self.files),
            )
            problems = schema_problems(description)
            if problems:  # a defect in this module, never the user's input
                raise RuntimeError(f"bundle description breaks its schema: {problems[0]}")
            return {layout.DESCRIPTION: render(description),
                    layout.RESTORE_MD: render_restore_md(
                        description, signing_key=self.request.signing_key)}

        written = write(payload, _bag_info(self.name, self.source, self.backup, self.version),
                        describe)
        return self._result(written.location, written.payload.files, written.payload.bytes,
                            created=True)

    def _existing(self, reader: BundleReader) -> ArchiveResult:
        """A bundle of this name exists: sound means done, damaged means stop and say so.

        A bundle in object storage gets the quick check (tag files, presence, sizes): reading
        it back whole would download it (and, in an archive storage class, need a restore);
        ``crdb-archive verify`` checks every digest in place.
        """
        quick = not reader.local_reads
        report = verify_reader(reader, fast=quick, progress=self.progress)
        if not report.ok:
            first = report.problems[0]
            raise DamagedBundle(
                f"bundle {reader.display} already exists and is damaged "
                f"({len(report.problems)} problem(s), first: {first}); move it aside and run "
                "again"
            )
        recorded = report.description or {}
        recorded_version = recorded.get("cockroachdb", {}).get("version")
        if recorded_version != self.version.release:
            raise DamagedBundle(
                f"bundle {reader.display} already exists for version {recorded_version}, not "
                f"{self.version.release}; choose another --name"
            )
        if quick:
            self.warnings.append(f"{reader.display} exists; its tag files, file presence and "
                                 "sizes were checked (run `crdb-archive verify` for every "
                                 "digest)")
        self.warnings += existing_signature_warnings(reader.display, report.signature,
                                                     self.request.signing_key)
        self.platforms = [b["platform"] for b in recorded.get("binaries", [])] or self.platforms
        return self._result(reader.display, report.files, report.bytes, created=False)

    def _result(self, location: str, files: int, size: int, *, created: bool) -> ArchiveResult:
        return ArchiveResult(
            bundle=location,
            name=self.name,
            version=self.version.release,
            platforms=self.platforms,
            files=files,
            bytes=size,
            seconds=time.monotonic() - self.started,
            created=created,
            warnings=self.warnings,
        )


def existing_signature_warnings(display: str, found: SignatureStatus | None,
                                wanted: str | None) -> list[str]:
    """A bundle found already written is never changed: say so when it is not signed by the
    key new bundles are signed with."""
    if wanted is None or (found is not None and found.fingerprint == wanted):
        return []
    now = (f"is signed by {found.fingerprint}" if found is not None and found.fingerprint
           else "is not signed")
    return [f"{display} already exists and {now}, not by {wanted}; a bundle never changes "
            "once written, so it was left as it is"]


# --- version ------------------------------------------------------------------------------------


def _settle_version(backup: BackupInfo, request: ArchiveRequest) -> _Version:
    index = release_index()
    recorded = backup.manifest.build_tag
    given = None if request.version in (None, "", "auto") else request.version
    if given is not None:
        spec = index.parse(given)
        if spec.release_name is None:
            raise BadInput(
                f"--version {given} names a major version; give the exact release that took "
                f"the backup, such as {spec.major}.0"
            )
        if recorded is not None and recorded != spec.release_name and not request.force_version:
            raise VersionConflict(
                f"--version {spec.release_name} differs from {recorded} recorded in the "
                f"backup's manifest; pass --force-version to archive {spec.release_name} anyway"
            )
        return _Version(spec, spec.release_name, "user")
    if not backup.manifest.readable:
        raise EncryptedBackup(
            f"the backup at {backup.location} is encrypted, so its version cannot be read "
            "without its key: give the key (--encryption-passphrase-file, "
            "$CRDB_ARCHIVE_ENCRYPTION_PASSPHRASE or --kms), or the release that took it with "
            "--version (for example --version v23.1.11)"
        )
    if recorded is None:
        raise BadInput(
            f"the backup manifest {backup.manifest.file} records no build tag: give the "
            "release that took it with --version"
        )
    spec = index.parse(recorded)
    if spec.release_name is None:  # pragma: no cover - build tags always carry a patch
        raise BadInput(f"build tag {recorded} is not a release")
    return _Version(spec, spec.release_name, "manifest")


def _warnings(backup: BackupInfo, version: _Version) -> list[str]:
    warnings = list(backup.warnings)
    for warning in version.spec.warnings():
        if warning not in warnings:
            warnings.append(warning)
    removal = version.spec.major.binary_removal_date
    if removal is not None:
        days = (removal - dt.datetime.now(dt.UTC).date()).days
        if days < 0:
            warnings.append(
                f"official {version.spec.major} binaries were scheduled for removal from the "
                f"download site on {removal}; a mirror may be the only source left"
            )
        elif days <= BINARY_REMOVAL_WARNING_DAYS:
            warnings.append(
                f"official {version.spec.major} binaries leave the download site on {removal} "
                f"({days} days from now)"
            )
    return warnings


def _other_platforms(
    version: _Version, platforms: list[str], mirror: Mirror, warnings: list[str], *,
    cache_dir: Path | None, use_cache: bool,
) -> list[dict[str, Any]]:
    """The published checksums of the platforms not archived, for a later download, each with
    where it came from (the same cache and mirror as the archived ones)."""
    release = version.spec.release
    if release is None:
        return []
    out = []
    for platform in release.platforms:
        if platform in platforms:
            continue
        file_name = archive_name(version.release, platform)
        published: PublishedChecksum | None = None
        try:
            if release.has_sha256sum:
                published = fetch_published_checksum(
                    version.release, platform, mirror=mirror, cache_dir=cache_dir,
                    use_cache=use_cache)
        except NetworkError as error:
            warnings.append(f"published checksum of {file_name} not recorded: {error}")
        out.append({
            "platform": platform,
            "file_name": file_name,
            "url": redact(mirror.display_url(file_name)),
            "published_sha256": published.sha256 if published else None,
            "published_checksum_url": redact(published.url) if published else None,
            "published_checksum_from_cache": published.from_cache if published else None,
        })
    return out


# --- payload and tag files ------------------------------------------------------------------------


def _description(
    name: str,
    source: str,
    backup: BackupInfo,
    version: _Version,
    fetched: list[FetchedArchive],
    others: list[dict[str, Any]],
    warnings: list[str],
    result: PayloadResult,
    *,
    incrementals: list[str],
    files: int,
    size: int,
) -> dict[str, Any]:
    index = release_index()
    manifest = backup.manifest
    major = version.spec.major
    binaries = []
    for archive in fetched:
        in_bundle = f"{layout.BINARY_DIR}/{archive.path.name}"
        digests = result.digests[in_bundle]
        checksum_file = (f"{in_bundle}.sha256sum"
                         if archive.published_checksum_file is not None else None)
        published = archive.published
        binaries.append({
            "platform": archive.platform,
            "file": in_bundle,
            "url": redact(archive.url),
            "size": digests.size,
            "sha256": digests.sha256,
            "blake3": digests.blake3,
            "published_sha256": archive.published_sha256,
            "published_checksum_file": checksum_file,
            "verified": archive.verified,
            # Provenance: where the bytes really came from, not where they should have.
            "published_checksum_url": redact(published.url) if published else None,
            "from_cache": archive.from_cache,
            "published_checksum_from_cache": published.from_cache if published else None,
            "official": archive.official,
        })
    return {
        "format": "crdb-archive-bundle",
        "format_version": layout.FORMAT_VERSION,
        "kind": "backup",
        "name": name,
        "created": utc_iso(dt.datetime.now(dt.UTC)),
        "software": f"crdb-archive {__version__}",
        "backup": {
            "source": source,
            "kind": backup.kind,
            "subdir": backup.subdir,
            "incrementals": incrementals,
            "payload_dir": layout.BACKUP_DIR,
            "manifest_file": manifest.file or None,
            "encrypted": manifest.encrypted,
            "encryption": backup.encryption.to_json(),
            "build_tag": manifest.build_tag,
            "cluster_version": manifest.cluster_version,
            "start_time": utc_iso(manifest.start_time),
            "end_time": utc_iso(manifest.end_time),
            "cluster_id": manifest.cluster_id,
            "node_id": manifest.node_id,
            "files": files,
            "bytes": size,
        },
        "cockroachdb": {
            "version": version.release,
            "major_version": major.name,
            "major_type": major.type,
            "version_source": version.source,
            "restorable_into": [m.name for m in index.restorable_into(major)],
            "restorable_into_may_grow": index.restore_window_open(major),
            "withdrawn": bool(version.spec.release and version.spec.release.withdrawn),
            "binary_removal_date": (major.binary_removal_date.isoformat()
                                    if major.binary_removal_date else None),
        },
        "binaries": binaries,
        "other_platforms": others,
        "warnings": warnings,
    }


def _bag_info(
    name: str, source: str, backup: BackupInfo, version: _Version
) -> list[tuple[str, str]]:
    index = release_index()
    manifest = backup.manifest
    info = [
        ("External-Identifier", name),
        ("External-Description",
         f"CockroachDB {version.release} backup with the official binaries that restore it"),
        ("CockroachDB-Version", version.release),
        ("CockroachDB-Major-Version", version.spec.major.name),
        ("CockroachDB-Restorable-Into",
         ", ".join(m.name for m in index.restorable_into(version.spec.major))),
        ("Backup-Source", source),
    ]
    if backup.subdir:
        info.append(("Backup-Subdir", backup.subdir))
    if manifest.end_time is not None:
        info.append(("Backup-End-Time", utc_iso(manifest.end_time) or ""))
    if manifest.cluster_id:
        info.append(("CockroachDB-Cluster-ID", manifest.cluster_id))
    if manifest.encrypted:
        info.append(("Backup-Encryption", backup.encryption.mode))
    info.append(("Bundle-Format", f"crdb-archive {layout.FORMAT_VERSION}"))
    return info


