"""What a backup bundle says about itself: its crdb-archive.json model and bag-info.txt labels,
built from the backup, the settled release and the archives fetched for it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from crdb_archive.archive_version import SettledVersion
from crdb_archive.backup import BackupInfo
from crdb_archive.binaries import FetchedArchive
from crdb_archive.bundle import layout
from crdb_archive.bundle.description import (
    BackupDescription,
    BackupFacts,
    BinaryEntry,
    EncryptionFacts,
    OtherPlatform,
    ReleaseFacts,
)
from crdb_archive.bundle.writer import PayloadResult
from crdb_archive.storage.uri import redact
from crdb_archive.times import utc_iso
from crdb_archive.versions import release_index


@dataclass(frozen=True)
class BackupArchived:
    """What of the backup went into the bundle, and where it was read from."""

    backup: BackupInfo
    source: str  # as recorded: secrets removed
    incrementals: Sequence[str]  # the incremental backups included
    files: int
    bytes: int


def describe_backup(name: str, archived: BackupArchived, version: SettledVersion,
                    fetched: Sequence[FetchedArchive], others: Sequence[OtherPlatform],
                    warnings: Sequence[str], result: PayloadResult) -> BackupDescription:
    """crdb-archive.json of a backup bundle, ``result`` holding the archives' digests."""
    return BackupDescription(
        name=name,
        created=utc_iso(dt.datetime.now(dt.UTC)),
        backup=_backup_facts(archived),
        cockroachdb=release_facts(version),
        binaries=tuple(_binary_entry(archive, result) for archive in fetched),
        other_platforms=tuple(others),
        warnings=tuple(warnings),
    )


def _backup_facts(archived: BackupArchived) -> BackupFacts:
    backup = archived.backup
    manifest = backup.manifest
    encryption = backup.encryption
    return BackupFacts(
        source=archived.source,
        kind=backup.kind,
        subdir=backup.subdir,
        incrementals=tuple(archived.incrementals),
        manifest_file=manifest.file or None,
        encrypted=manifest.encrypted,
        encryption=EncryptionFacts(encryption.mode, encryption.decrypted, encryption.kms,
                                   encryption.info_files),
        build_tag=manifest.build_tag,
        cluster_version=manifest.cluster_version,
        start_time=utc_iso(manifest.start_time),
        end_time=utc_iso(manifest.end_time),
        cluster_id=manifest.cluster_id,
        node_id=manifest.node_id,
        files=archived.files,
        bytes=archived.bytes,
    )


def release_facts(version: SettledVersion) -> ReleaseFacts:
    """``cockroachdb``: the release and the majors it restores into, from the release index."""
    index = release_index()
    major = version.spec.major
    return ReleaseFacts(
        version=version.release,
        major_version=major.name,
        major_type=major.type,
        version_source=version.source,
        restorable_into=tuple(m.name for m in index.restorable_into(major)),
        restorable_into_may_grow=index.restore_window_open(major),
        withdrawn=bool(version.spec.release and version.spec.release.withdrawn),
        binary_removal_date=(major.binary_removal_date.isoformat()
                             if major.binary_removal_date else None),
    )


def _binary_entry(archive: FetchedArchive, result: PayloadResult) -> BinaryEntry:
    in_bundle = f"{layout.BINARY_DIR}/{archive.path.name}"
    digests = result.recorded[in_bundle]
    published = archive.published
    return BinaryEntry(
        platform=archive.platform,
        file=in_bundle,
        url=redact(archive.url),
        size=digests.size,
        sha256=digests.sha256,
        blake3=digests.blake3,
        published_sha256=archive.published_sha256,
        published_checksum_file=(f"{in_bundle}.sha256sum"
                                 if archive.published_checksum_file is not None else None),
        verified=archive.verified,
        # Provenance: where the bytes really came from, not where they should have.
        published_checksum_url=redact(published.url) if published else None,
        from_cache=archive.from_cache,
        published_checksum_from_cache=published.from_cache if published else None,
        official=archive.official,
    )


def backup_bag_info(name: str, archived: BackupArchived,
                    version: SettledVersion) -> list[tuple[str, str]]:
    """bag-info.txt labels of a backup bundle, after the standard ones."""
    backup = archived.backup
    manifest = backup.manifest
    restorable = release_index().restorable_into(version.spec.major)
    info = [
        ("External-Identifier", name),
        ("External-Description",
         f"CockroachDB {version.release} backup with the official binaries that restore it"),
        ("CockroachDB-Version", version.release),
        ("CockroachDB-Major-Version", version.spec.major.name),
        ("CockroachDB-Restorable-Into", ", ".join(m.name for m in restorable)),
        ("Backup-Source", archived.source),
    ]
    if backup.subdir:
        info.append(("Backup-Subdir", backup.subdir))
    if manifest.end_time is not None:
        info.append(("Backup-End-Time", utc_iso(manifest.end_time)))
    if manifest.cluster_id:
        info.append(("CockroachDB-Cluster-ID", manifest.cluster_id))
    if manifest.encrypted:
        info.append(("Backup-Encryption", backup.encryption.mode))
    info.append(("Bundle-Format", f"crdb-archive {layout.FORMAT_VERSION}"))
    return info
