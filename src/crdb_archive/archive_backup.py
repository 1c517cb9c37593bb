"""The main job: a backup in, one verified archive bundle out.

inspect the backup -> settle the version -> fetch and verify the official release archives
-> write the bundle atomically (or find that it already exists and is sound).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from crdb_archive.archive_payload import backup_payload
from crdb_archive.archive_request import ArchiveRequest, ArchiveResult, check_destination
from crdb_archive.archive_version import SettledVersion, settle_version, version_warnings
from crdb_archive.backup import BackupInfo, inspect_backup
from crdb_archive.binaries import (
    DEFAULT_PLATFORM,
    Mirror,
    PublishedChecksum,
    archive_name,
    fetch_published_checksum,
    fetch_release_archive,
    resolve_mirror,
)
from crdb_archive.binaries.platforms import check_platform, resolve_release
from crdb_archive.bundle import layout
from crdb_archive.bundle.backup_description import (
    BackupArchived,
    backup_bag_info,
    describe_backup,
)
from crdb_archive.bundle.description import BackupDescription, OtherPlatform, from_json
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
from crdb_archive.bundle.verify import VerifyReport, verify_reader
from crdb_archive.bundle.writer import (
    DescribeCallback,
    Guard,
    Payload,
    PayloadResult,
    WrittenBundle,
    unguarded,
)
from crdb_archive.errors import BadInput, DamagedBundle, NetworkError
from crdb_archive.progress import ProgressCallback, no_progress
from crdb_archive.sources import recorded_source
from crdb_archive.storage.base import Storage, WriteOptions, open_storage
from crdb_archive.storage.uri import redact
from crdb_archive.text import count

# Writes the bundle from its payload, bag-info labels and description callback.
WriteBundle = Callable[
    [Payload, Sequence[tuple[str, str]], DescribeCallback], WrittenBundle
]


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
        version = settle_version(backup, request.version, force=request.force_version)
        names = backup_bundle_names(backup, version.release, request.with_incrementals)
        name = request.name or names.current
        if not layout.is_valid_name(name):
            raise BadInput(f"bundle name {name!r} is not a portable file name "
                           "(letters, digits, '._+-', no leading dot)")
        release = resolve_release(version.release)
        for platform in request.platforms:
            check_platform(release, platform)
        job = _Archiving(request, backup, version, name, started, progress, guard or unguarded)
        if request.name is None:
            job.earlier_names = (names.legacy,)
        # Not created yet: the staging area makes what it needs, and removes it on failure.
        with open_storage(str(request.dest), endpoint_url=request.dest_endpoint_url) as storage:
            if options is not None:
                storage.check_write_options(options)
            return job.to_storage(storage, options)


class _Archiving:
    """One archive run, after the backup and its version are settled."""

    def __init__(self, request: ArchiveRequest, backup: BackupInfo, version: SettledVersion,
                 name: str, started: float, progress: ProgressCallback, guard: Guard) -> None:
        self.request = request
        self.guard = guard
        self.backup = backup
        self.version = version
        self.name = name
        # Names earlier versions gave this bundle: found there, it is not written again.
        self.earlier_names: tuple[str, ...] = ()
        self.started = started
        self.progress = progress
        self.platforms = list(dict.fromkeys(request.platforms or (DEFAULT_PLATFORM,)))
        self.mirror = resolve_mirror(request.mirror)
        self.warnings = version_warnings(backup, version)
        self.files = list(backup.files)
        if request.with_incrementals:
            self.files += backup.incremental_files
        self.archived = BackupArchived(
            backup=backup, source=recorded_source(backup.location),
            incrementals=backup.incrementals if request.with_incrementals else [],
            files=len(self.files), bytes=sum(f.size for f in self.files))

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
            description = describe_backup(self.name, self.archived, self.version, fetched,
                                          others, self.warnings, result)
            document = description.to_json()
            problems = schema_problems(document)
            if problems:  # a defect in this module, never the user's input
                raise RuntimeError(f"bundle description breaks its schema: {problems[0]}")
            return {layout.DESCRIPTION: render(document),
                    layout.RESTORE_MD: render_restore_md(
                        description, signing_key=self.request.signing_key)}

        written = write(payload, backup_bag_info(self.name, self.archived, self.version),
                        describe)
        return dataclasses.replace(
            self._result(written.location, written.payload.files, written.payload.bytes,
                         created=True), receipts=written.receipts,
            tags_at=written.payload.tags_at)

    def _existing(self, reader: BundleReader) -> ArchiveResult:
        """A bundle of this name exists: sound means done, damaged means stop and say so.

        A bundle in object storage gets the quick check (tag files, presence, sizes): reading
        it back whole would download it (and, in an archive storage class, need a restore);
        ``crdb-archive verify`` checks every digest in place.
        """
        quick = not reader.local_reads
        report = verify_reader(reader, fast=quick, progress=self.progress)
        recorded = _sound_description(reader.display, report)
        recorded_version = recorded.cockroachdb.version if recorded is not None else None
        if recorded is None or recorded_version != self.version.release:
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
        self.platforms = recorded.platforms or self.platforms
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


def _sound_description(display: str, report: VerifyReport) -> BackupDescription | None:
    """The description of a bundle found already written, None when it is not a backup
    bundle's; raises DamagedBundle when the bundle failed verification."""
    if not report.ok:
        raise DamagedBundle(
            f"bundle {display} already exists and is damaged "
            f"({count(len(report.problems), 'problem')}, first: {report.problems[0]}); "
            "move it aside and run again"
        )
    if report.description is None:
        return None
    try:
        described = from_json(report.description)
    except DamagedBundle as error:
        raise DamagedBundle(f"bundle {display} already exists and is damaged: {error}"
                            ) from None
    return described if isinstance(described, BackupDescription) else None


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


def _other_platforms(
    version: SettledVersion, platforms: list[str], mirror: Mirror, warnings: list[str], *,
    cache_dir: Path | None, use_cache: bool,
) -> list[OtherPlatform]:
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
        out.append(OtherPlatform(
            platform=platform,
            file_name=file_name,
            url=redact(mirror.display_url(file_name)),
            published_sha256=published.sha256 if published else None,
            published_checksum_url=redact(published.url) if published else None,
            published_checksum_from_cache=published.from_cache if published else None,
        ))
    return out
