"""Inspect a backup: which full backup, which files, which version took it, where it restores.

Which version is reported (DESIGN 2.1, 2.3):

* ``build_tag`` is the release of the binary that wrote the backup: the binary a bundle
  archives.
* ``major_version`` follows the manifest's cluster version when there is one, because restore
  compatibility is about the cluster version ("CockroachDB considers the cluster version when
  running a backup"); otherwise the build tag's major. A v22.2.0 binary on a cluster whose
  upgrade from 22.1 was not finalized writes a 22.1 backup: major v22.1, restorable into v22.1
  and v22.2, and the v22.2.0 binary that took it is among those. Both are reported, with a
  warning.

An encrypted backup (one with ENCRYPTION-INFO) tells its version only when a key is given:
its ENCRYPTION-INFO is read first, the data key found (:mod:`.unlock`), and the manifest
decrypted. Without a key, ENCRYPTION-INFO still tells how it was encrypted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Literal

from crdb_archive.backup import layout
from crdb_archive.backup.keys import NO_KEYS, EncryptionKeys
from crdb_archive.backup.layout import BackupFile, FullBackup
from crdb_archive.backup.left_out import LeftOut, Selection, left_out_of
from crdb_archive.backup.manifest import ManifestInfo
from crdb_archive.backup.manifest_file import read_manifest_in
from crdb_archive.backup.source import collection_hint, open_source, root_path
from crdb_archive.backup.tree import BackupTree, open_tree
from crdb_archive.backup.unlock import (
    NOT_ENCRYPTED,
    Encryption,
    settle_encryption,
    unlock_backup,
)
from crdb_archive.errors import InvalidVersion, NotABackup, UnknownVersion
from crdb_archive.progress import ProgressCallback, no_progress
from crdb_archive.storage.base import Storage
from crdb_archive.text import count, size
from crdb_archive.times import utc_iso
from crdb_archive.versions import Major, ReleaseIndex, VersionSpec, release_index

ENCRYPTED_WARNING = (
    "the backup is encrypted: its manifest cannot be read without the key, so the version "
    "that took it is unknown; give the key (--encryption-passphrase-file or --kms), or the "
    "version with --version when archiving"
)
UNKNOWN_VERSION_WARNING = (
    "the version that took this backup is unknown; give it with --version when archiving"
)


@dataclass(frozen=True)
class BackupInfo:
    """One backup as found in its storage: its files, its manifest, what its version means.

    ``files`` are the chosen full backup's files plus, in a collection, the LATEST files that
    name it, so that those files alone form a collection CockroachDB can restore from (with
    ``RESTORE FROM LATEST IN`` when a LATEST file names it, else by its subdirectory).
    ``incremental_files`` are the files of its incremental backups, ``incrementals`` their
    directories. Every path is a key of ``storage``, the storage rooted at the source: read a
    file with ``info.storage.open_read(file.path)``. ``root`` is the source's local directory
    (None in object storage); ``location`` names the source without any secret.
    ``encryption`` tells how the backup is encrypted and whether a key opened it.
    ``left_out``, when asked for, names the files of the source a bundle leaves out.

    When :func:`inspect_backup` opened the storage itself (from a path or URI), this object
    owns it: call :meth:`close` (or use it as a context manager) when done reading files.
    """

    root: Path | None
    location: str
    storage: Storage = field(repr=False, compare=False)
    kind: Literal["collection", "backup"]
    subdir: str | None
    manifest: ManifestInfo
    files: list[BackupFile]
    incremental_files: list[BackupFile]
    incrementals: list[str]
    backups: list[FullBackup]
    latest: str | None
    major_version: str | None
    restorable_into: list[str]
    warnings: list[str]
    encryption: Encryption = NOT_ENCRYPTED
    left_out: LeftOut | None = None
    owns_storage: bool = field(default=False, repr=False, compare=False)

    def close(self) -> None:
        """Release the storage's connections when this object owns it."""
        if self.owns_storage:
            self.storage.close()

    def __enter__(self) -> BackupInfo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def to_json(self) -> dict[str, object]:
        """The ``inspect --json`` contract."""
        m = self.manifest
        every = self.files + self.incremental_files
        return {
            "kind": self.kind,
            "source": self.location,
            "subdir": self.subdir,
            "manifest": m.file,
            "manifest_checksum": "verified" if m.checksum_verified else "absent",
            "build_tag": m.build_tag,
            "build_time": m.build_time,
            "revision": m.revision,
            "go_version": m.go_version,
            "cluster_version": m.cluster_version,
            "cluster_version_internal": (
                m.cluster_version_parts[3] if m.cluster_version_parts else None
            ),
            "development_build": m.development_build,
            "major_version": self.major_version,
            "encrypted": m.encrypted,
            "encryption": self.encryption.to_json(),
            "gzip": m.gzip,
            "start_time": rfc3339(m.start_time),
            "end_time": rfc3339(m.end_time),
            "end_wall_time": m.end_wall_time,
            "cluster_id": m.cluster_id,
            "node_id": m.node_id,
            "files": len(every),
            "bytes": sum(f.size for f in every),
            "incremental_files": len(self.incremental_files),
            "incremental_bytes": sum(f.size for f in self.incremental_files),
            "incrementals": self.incrementals,
            "restorable_into": self.restorable_into,
            "latest": self.latest,
            "backups": [
                {
                    "subdir": b.subdir,
                    "end_time": rfc3339(b.end_time),
                    "manifest": b.manifest,
                    "latest": b.subdir == self.latest,
                }
                for b in self.backups
            ],
            "warnings": self.warnings,
            **_left_out_json(self.left_out),
        }


def _left_out_json(found: LeftOut | None) -> dict[str, object]:
    """The files a bundle leaves out (None when not asked for): the first ones by path, and
    how many there are, how large, for which reasons."""
    if found is None:
        return dict.fromkeys(("left_out", "left_out_count", "left_out_bytes",
                              "left_out_reasons"))
    return {
        "left_out": [f.to_json() for f in found.files],
        "left_out_count": found.count,
        "left_out_bytes": found.bytes,
        "left_out_reasons": found.by_reason,
    }


def rfc3339(value: dt.datetime | None) -> str | None:
    """UTC, microseconds always written: ``2023-06-02T09:32:57.930000Z``."""
    return utc_iso(value, timespec="microseconds")


def inspect_backup(
    source: str | Path | Storage,
    *,
    subdir: str | None = None,
    endpoint_url: str | None = None,
    progress: ProgressCallback = no_progress,
    keys: EncryptionKeys = NO_KEYS,
    with_left_out: bool = False,
) -> BackupInfo:
    """Find the backup at ``source`` (a backup directory or a collection) and describe it.

    ``source`` is a local directory (``Path`` or ``str``), a URI such as
    ``s3://bucket/prefix?AWS_ACCESS_KEY_ID=...`` (``endpoint_url`` for S3-compatible stores),
    or a Storage, used as it is and left open. In a collection, ``subdir`` chooses the full
    backup (default, or ``LATEST``: the one LATEST names). ``with_left_out`` also lists the
    files of the source a bundle of it leaves out (one more walk of a local source; object
    storage is listed once either way). ``keys`` open an encrypted backup's
    manifest; WrongEncryptionKey (2) when they do not, DamagedEncryptionInfo (1) when its
    ENCRYPTION-INFO is missing or damaged, KeyServiceError (3) when KMS fails. Raises
    NotABackup (2),
    DamagedManifest (1) for a manifest that fails its -CHECKSUM or cannot be decoded without
    one, MalformedManifest (2) for an intact manifest in an unknown form,
    UnsupportedBackupFile (2) for links or special files in the backup, BadInput (2) for a
    malformed location, NeedsRestoreFromColdStorage (3) when the manifest or LATEST files wait
    in an archive storage class, and StorageError (3) when the storage cannot be read.
    """
    storage, owned = open_source(source, endpoint_url=endpoint_url)
    try:
        tree = open_tree(storage, progress=progress)
        info = _inspect(tree, subdir, owned, progress, keys)
        if not with_left_out:
            return info
        taken = frozenset(f.path for f in info.files + info.incremental_files)
        selection = Selection(info.subdir or "", taken, frozenset(b.subdir for b in info.backups))
        return replace(info, left_out=left_out_of(tree, selection))
    except BaseException:
        if owned:
            storage.close()
        raise


def _inspect(
    tree: BackupTree, subdir: str | None, owned: bool, progress: ProgressCallback,
    keys: EncryptionKeys,
) -> BackupInfo:
    where = tree.display()
    warnings: list[str] = []
    if layout.classify(tree) == "backup":
        if subdir is not None:
            raise NotABackup(
                f"{where} is a single backup, not a collection: --subdir does not apply"
            )
        kind: Literal["collection", "backup"] = "backup"
        chosen = ""
        latest = None
        backups: list[FullBackup] = []
        encryption, data_key = unlock_backup(tree, "", keys, warnings)
        manifest = read_manifest_in(tree, "", progress=progress, data_key=data_key)
        incrementals = layout.find_incrementals(tree, "", warnings)
        pointers: list[BackupFile] = []
        warnings += collection_hint(tree.storage)
    else:
        kind = "collection"
        collection = layout.read_collection(tree)
        warnings += collection.warnings
        chosen = _choose(where, tree, collection, subdir, warnings)
        latest = collection.latest
        backups = collection.full_backups
        encryption, data_key = unlock_backup(tree, chosen, keys, warnings)
        manifest = read_manifest_in(tree, chosen, progress=progress, data_key=data_key)
        nested = layout.find_incrementals(tree, chosen, warnings)
        separate = layout.find_incrementals(tree, f"{layout.INCREMENTALS}/{chosen}", warnings)
        if nested and separate:
            warnings.append(
                f"incremental backups of {chosen} exist both nested in it and under "
                f"{layout.INCREMENTALS}/; CockroachDB refuses to guess between them, so a "
                "restore must name one location with incremental_location"
            )
        incrementals = nested + separate
        pointers = [
            layout.file_of(tree, p.path) for p in collection.pointers if p.subdir == chosen
        ]
        # A user-named subdirectory need not be dated; its end time is the manifest's.
        this = collection.find(chosen) or layout.full_backup(tree, chosen)
        if this is not None:
            dated = FullBackup(this.subdir, this.end_time or manifest.end_time, this.manifest)
            others = [b for b in backups if b.subdir != chosen]
            backups = sorted([*others, dated], key=lambda b: b.subdir)
    files = layout.list_files(tree, chosen, skip_incremental_days=True, progress=progress)
    files = sorted(files + pointers, key=lambda f: f.path)
    incremental_files = [
        f for rel in incrementals for f in layout.list_files(tree, rel, progress=progress)
    ]
    warnings += _cold_files(tree, files + incremental_files)
    encryption = settle_encryption(tree, chosen, manifest, encryption, keys, warnings)
    major, window, version_warnings = assess_versions(manifest)
    root = root_path(tree.storage)
    return BackupInfo(
        root=root,
        location=str(root) if root is not None else where,
        storage=tree.storage,
        kind=kind,
        subdir=chosen or None,
        manifest=manifest,
        files=files,
        incremental_files=incremental_files,
        incrementals=incrementals,
        backups=backups,
        latest=latest,
        major_version=major.name if major else None,
        restorable_into=[m.name for m in window],
        warnings=version_warnings + warnings,
        encryption=encryption,
        owns_storage=owned,
    )


def _cold_files(tree: BackupTree, files: list[BackupFile]) -> list[str]:
    waiting: dict[str, int] = {}
    octets = 0
    for f in files:
        state = tree.waiting(f.path)
        if state is not None:
            waiting[state] = waiting.get(state, 0) + 1
            octets += f.size
    if not waiting:
        return []
    number = sum(waiting.values())
    classes = ", ".join(f"{n:,} in {state}" for state, n in sorted(waiting.items()))
    return [
        f"{count(number, 'file')} of the backup ({size(octets)}: {classes}) "
        f"{'waits' if number == 1 else 'wait'} in an archive storage class: "
        f"{'it' if number == 1 else 'they'} must be restored before the backup can be archived"
    ]


def _choose(
    where: str,
    tree: BackupTree,
    collection: layout.Collection,
    subdir: str | None,
    warnings: list[str],
) -> str:
    available = ", ".join(b.subdir for b in collection.full_backups) or "none"
    if subdir is None or subdir.strip() == layout.LATEST:
        if collection.latest is not None:
            if collection.find(collection.latest) is None:
                raise NotABackup(
                    f"LATEST in {where} names {collection.latest}, which holds no backup "
                    f"manifest; choose a full backup with --subdir (found: {available})"
                )
            return collection.latest
        if not collection.full_backups:
            raise NotABackup(f"{where} is a collection without any full backup")
        newest = collection.full_backups[-1].subdir
        warnings.append(f"the collection has no LATEST file; inspecting the newest full "
                        f"backup, {newest}")
        return newest
    chosen = layout.normalize_subdir(subdir)
    if collection.find(chosen) is None and layout.full_backup(tree, chosen) is None:
        raise NotABackup(
            f"{chosen} is not a full backup in {where} (found: {available})"
        )
    return chosen


def assess_versions(manifest: ManifestInfo) -> tuple[Major | None, list[Major], list[str]]:
    """The major a backup belongs to, the majors it restores into, and what to warn about.

    Never raises for an unknown or odd version: each becomes a warning.
    """
    index = release_index()
    warnings: list[str] = []
    if not manifest.readable:
        return None, [], [ENCRYPTED_WARNING]
    tag_spec = _tag_spec(manifest, index, warnings)
    cluster_major = _cluster_major(manifest, index, warnings)
    if tag_spec is not None:
        warnings.extend(tag_spec.warnings())
        if cluster_major is not None and cluster_major != tag_spec.major:
            warnings.append(_disagreement(tag_spec.major, cluster_major, manifest))
    major = cluster_major or (tag_spec.major if tag_spec else None)
    if major is None:
        warnings.append(UNKNOWN_VERSION_WARNING)
        return None, [], warnings
    if index.restore_window_open(major):
        warnings.append(
            f"the release index ends at {index.newest_major}: a later major may also restore "
            f"{major} backups once it is released"
        )
    return major, index.restorable_into(major), warnings


def _tag_spec(manifest: ManifestInfo, index: ReleaseIndex,
              warnings: list[str]) -> VersionSpec | None:
    """The release the manifest's build tag names, or None with a warning."""
    tag = manifest.build_tag
    if tag is None:
        warnings.append("the manifest records no build tag")
        return None
    try:
        return index.parse(tag)
    except (InvalidVersion, UnknownVersion) as error:
        warnings.append(f"build tag {tag}: {error}")
        return None


def _cluster_major(manifest: ManifestInfo, index: ReleaseIndex,
                   warnings: list[str]) -> Major | None:
    """The major of the manifest's cluster version, with what is odd about that version."""
    parts = manifest.cluster_version_parts
    if manifest.cluster_version is None or parts is None:
        warnings.append(
            "the manifest records no cluster version (written before v21.1); the major "
            "version comes from the build tag"
        )
        return None
    cluster_major = None
    try:
        cluster_major = index.parse(manifest.cluster_version).major
    except (InvalidVersion, UnknownVersion) as error:
        warnings.append(f"cluster version {manifest.cluster_version}: {error}")
    if manifest.development_build:
        warnings.append(
            f"a development build took this backup (cluster version "
            f"{parts[0] + 1_000_000}.{parts[1]}, read as {manifest.cluster_version}): no "
            "official release binary matches it exactly"
        )
    if parts[3]:
        warnings.append(
            f"cluster version {manifest.cluster_version}-{parts[3]} is an intermediate "
            f"step of an upgrade past {manifest.cluster_version} that was not finalized"
        )
    return cluster_major


def _disagreement(binary: Major, cluster: Major, manifest: ManifestInfo) -> str:
    if cluster.position < binary.position:
        return (
            f"build tag {manifest.build_tag} and cluster version {manifest.cluster_version} "
            f"disagree: a {binary} binary took this backup while the cluster version was "
            f"still {cluster.short} (an upgrade that was not finalized); restore "
            f"compatibility follows the cluster version ({cluster}), and the binary to "
            f"archive is the one that took it, {manifest.build_tag}"
        )
    return (
        f"build tag {manifest.build_tag} is older than the cluster version "
        f"{manifest.cluster_version}: a binary cannot run a cluster newer than itself, so "
        "this manifest's origin is doubtful; the archived binary may not restore it"
    )
