"""CockroachDB backups built by the tests, one per era, from the facts in DESIGN 2.3.

The encoder and directory writers are :mod:`crdb_archive.demo.backups` (written from the field
numbers alone, sharing nothing with the decoder under test); here the eras, encrypted with
:mod:`support.encryption`, in both the nested (v21.1) and ``incrementals/`` (v22.1+) layouts.
:func:`upload` copies a built backup into an S3 bucket, as ``BACKUP INTO 's3://...'`` would
have written it, and :func:`assert_same_report` compares what inspecting each copy says.
:class:`RecordingStorage` shows what inspecting asks of a storage.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING

from crdb_archive.demo import backups as demo
from crdb_archive.demo.backups import (
    CLUSTER_ID,
    MAX_UINT64,
    Manifest,
    bytes_field,
    checksum,
    fixed32_field,
    fixed64_field,
    full_subdir,
    group_field,
    gzipped,
    incremental_name,
    int_field,
    key,
    latest_history_name,
    nanos,
    string_field,
    varint,
    write,
    write_latest,
)
from crdb_archive.storage import (
    ObjectInfo,
    ObjectWriter,
    Prefix,
    Staging,
    Storage,
    Versioned,
    WriteOptions,
)
from support.encryption import Encrypting, with_passphrase

if TYPE_CHECKING:
    from mypy_boto3_s3.literals import StorageClassType

    from crdb_archive.backup import BackupInfo
    from support.s3 import MotoS3

__all__ = [
    "CLUSTER_ID", "ERAS", "MAX_UINT64", "T0", "Era", "Manifest", "MixedCollection",
    "RecordingStorage", "add_random_sst", "assert_same_report", "bytes_field", "checksum",
    "encrypted", "fixed32_field", "fixed64_field", "full_subdir", "group_field", "gzipped",
    "incremental_name", "int_field", "key", "latest_history_name", "mixed_collection", "nanos",
    "string_field", "upload", "v24_3_collection", "varint", "write", "write_backup",
    "write_fulls", "write_latest",
]

INCREMENTALS_DIR = "incrementals"


def encrypted(data: bytes) -> bytes:
    """``data`` encrypted with the tests' passphrase (support.encryption), format version 2."""
    return with_passphrase().seal(data)


def write_backup(
    directory: Path,
    manifest: Manifest,
    *,
    names: tuple[str, ...] = ("BACKUP_MANIFEST",),
    compress: bool = True,
    with_checksum: bool = True,
    encrypt: bool | Encrypting = False,
    encryption_info: bool = True,
    data_dir: bool = True,
    ssts: int = 2,
) -> bytes:
    """:func:`crdb_archive.demo.backups.write_backup`, with ``encrypt`` True for the tests'
    passphrase (format version 2) or an :class:`Encrypting` of the test's choice."""
    sealing = encrypt if isinstance(encrypt, Encrypting) else (
        with_passphrase() if encrypt else None)
    return demo.write_backup(directory, manifest, names=names, compress=compress,
                             with_checksum=with_checksum, sealing=sealing,
                             encryption_info=encryption_info, data_dir=data_dir, ssts=ssts)


def write_fulls(root: Path, *days: int) -> list[str]:
    """Full backups of a collection, one on each day of March 2023; returns their subdirs."""
    subdirs = []
    for day in days:
        when = dt.datetime(2023, 3, day, 1, 0, tzinfo=dt.UTC)
        write_backup(root / full_subdir(when), Manifest(end_time=when))
        subdirs.append(full_subdir(when))
    return subdirs


def add_random_sst(backup_dir: Path, mib: int) -> Path:
    """A large SST of random bytes in a backup directory, so copying it takes a while."""
    path = backup_dir / "data" / "999999.sst"
    with path.open("wb") as handle:
        for _ in range(mib):
            handle.write(os.urandom(1 << 20))
    return path


# --- eras -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Era:
    """A built backup and what inspecting it must report."""

    name: str
    path: Path
    kind: str
    subdir: str | None
    build_tag: str | None
    cluster_version: str | None
    major_version: str | None
    restorable_into: list[str]
    end_time: dt.datetime | None
    incrementals: list[str] = field(default_factory=list)
    encrypted: bool = False
    warning_words: tuple[str, ...] = ()


T0 = dt.datetime(2023, 6, 2, 9, 32, 57, 930000, tzinfo=dt.UTC)


def v20_1_backup(tmp: Path) -> Era:
    """v20.1: a raw protobuf BACKUP, no cluster version, no checksum, SSTs at the root."""
    when = dt.datetime(2020, 8, 1, 12, 0, 0, 250000, tzinfo=dt.UTC)
    m = Manifest(end_time=when, build_tag="v20.1.17", go_version="go1.13.14",
                 cluster_version=None)
    path = tmp / "v20.1"
    write_backup(path, m, names=("BACKUP",), compress=False, with_checksum=False,
                 data_dir=False)
    return Era("v20.1", path, "backup", None, "v20.1.17", None, "v20.1", ["v20.1", "v20.2"],
               when, warning_words=("no cluster version",))


def v20_2_backup(tmp: Path) -> Era:
    """v20.2: BACKUP_MANIFEST, gzip, with -CHECKSUM; SSTs still at the root."""
    when = dt.datetime(2021, 3, 4, 5, 6, 7, 80000, tzinfo=dt.UTC)
    m = Manifest(end_time=when, build_tag="v20.2.19", cluster_version=None)
    path = tmp / "v20.2"
    write_backup(path, m, data_dir=False)
    return Era("v20.2", path, "backup", None, "v20.2.19", None, "v20.2", ["v20.2", "v21.1"],
               when, warning_words=("no cluster version",))


def v21_1_collection(tmp: Path) -> Era:
    """v21.1: cluster version, data/, root LATEST only, incrementals nested in the full."""
    when = dt.datetime(2021, 9, 10, 1, 2, 3, 450000, tzinfo=dt.UTC)
    m = Manifest(end_time=when, build_tag="v21.1.21", cluster_version=(21, 1, 0, 0))
    root = tmp / "v21.1"
    subdir = full_subdir(when)
    write_backup(root / subdir, m)
    incrementals = []
    for hours in (1, 2):
        inc_time = when + dt.timedelta(hours=hours)
        rel = f"{subdir}/{incremental_name(inc_time)}"
        write_backup(root / rel, replace(m, start_time=when, end_time=inc_time), ssts=1)
        incrementals.append(rel)
    write_latest(root, subdir, at=when, root_file=True, history=False)
    return Era("v21.1", root, "collection", subdir, "v21.1.21", "21.1", "v21.1",
               ["v21.1", "v21.2"], when, incrementals)


def v22_2_collection(tmp: Path) -> Era:
    """v22.2: metadata/latest beside the root LATEST, incrementals under incrementals/."""
    first = dt.datetime(2023, 1, 5, 3, 0, 0, 0, tzinfo=dt.UTC)
    second = dt.datetime(2023, 1, 12, 3, 0, 0, 120000, tzinfo=dt.UTC)
    root = tmp / "v22.2"
    m = Manifest(end_time=first, build_tag="v22.2.17", cluster_version=(22, 2, 0, 0))
    for when in (first, second):
        write_backup(root / full_subdir(when), replace(m, end_time=when))
        write_latest(root, full_subdir(when), at=when, root_file=True, history=True)
    subdir = full_subdir(second)
    inc_time = second + dt.timedelta(hours=6)
    rel = f"incrementals/{subdir}/{incremental_name(inc_time)}"
    write_backup(root / rel, replace(m, start_time=second, end_time=inc_time), ssts=1)
    return Era("v22.2", root, "collection", subdir, "v22.2.17", "22.2", "v22.2",
               ["v22.2", "v23.1"], second, [rel])


def v23_1_backup(tmp: Path) -> Era:
    """v23.1: BACKUP_METADATA beside BACKUP_MANIFEST, both with checksums."""
    path = tmp / "v23.1"
    write_backup(path, Manifest(end_time=T0, build_tag="v23.1.11"),
                 names=("BACKUP_MANIFEST", "BACKUP_METADATA"))
    write(path / "metadata.sst", b"metadata sst")
    return Era("v23.1", path, "backup", None, "v23.1.11", "23.1", "v23.1", ["v23.1", "v23.2"],
               T0)


def v24_3_collection(tmp: Path) -> Era:
    """v24.3: several full backups, each with incrementals; only metadata/latest pointers."""
    root = tmp / "v24.3"
    chains = demo.write_collection(root, build_tag="v24.3.1", cluster_version=(24, 3, 0, 0))
    newest = chains[-1]
    return Era("v24.3", root, "collection", newest[0], "v24.3.1", "24.3", "v24.3",
               ["v24.3", "v25.1", "v25.2"], dt.datetime(2024, 12, 15, tzinfo=dt.UTC),
               newest[1:])


def encrypted_backup(tmp: Path) -> Era:
    path = tmp / "encrypted"
    write_backup(path, Manifest(end_time=T0), encrypt=True)
    return Era("encrypted", path, "backup", None, None, None, None, [], None, encrypted=True,
               warning_words=("encrypted", "--version"))


def development_build(tmp: Path) -> Era:
    """A development build: the cluster version's major carries the 1,000,000 offset."""
    path = tmp / "dev"
    write_backup(path, Manifest(end_time=T0, build_tag="v23.1.0-alpha.00000000-2262-g87f9f49",
                                cluster_version=(1_000_023, 1, 0, 0)))
    return Era("dev", path, "backup", None, "v23.1.0-alpha.00000000-2262-g87f9f49", "23.1",
               "v23.1", ["v23.1", "v23.2"], T0, warning_words=("development build",))


def mixed_version(tmp: Path) -> Era:
    """A v22.2.0 binary on a cluster still at 22.1: the upgrade was not finalized."""
    path = tmp / "mixed"
    when = dt.datetime(2022, 12, 20, 8, 0, 0, 0, tzinfo=dt.UTC)
    write_backup(path, Manifest(end_time=when, build_tag="v22.2.0",
                                cluster_version=(22, 1, 0, 0)))
    return Era("mixed", path, "backup", None, "v22.2.0", "22.1", "v22.1", ["v22.1", "v22.2"],
               when, warning_words=("disagree", "not finalized"))


ERAS: dict[str, Callable[[Path], Era]] = {
    "v20.1": v20_1_backup,
    "v20.2": v20_2_backup,
    "v21.1": v21_1_collection,
    "v22.2": v22_2_collection,
    "v23.1": v23_1_backup,
    "v24.3": v24_3_collection,
    "encrypted": encrypted_backup,
    "dev": development_build,
    "mixed": mixed_version,
}


@dataclass(frozen=True)
class MixedCollection:
    """A collection holding more than one backup's files: what a bundle takes and leaves."""

    root: Path
    older: str  # a full backup with incrementals, not chosen
    chosen: str  # the newest full backup, named by LATEST, with incrementals
    chosen_incrementals: list[str]
    unfinished: str  # a dated directory without a manifest: a failed full backup
    stray: str  # a file no backup wrote


def mixed_collection(tmp: Path, *, older_ssts: int = 2) -> MixedCollection:
    """Two full backups of v24.3, each with incrementals under incrementals/, both named by
    metadata/latest files; a failed full backup, an unfinished incremental of the chosen one
    and a stray file beside them."""
    root = tmp / "mixed"
    m = Manifest(end_time=T0, build_tag="v24.3.1", cluster_version=(24, 3, 0, 0))
    older_time = dt.datetime(2024, 12, 1, tzinfo=dt.UTC)
    chosen_time = dt.datetime(2024, 12, 8, tzinfo=dt.UTC)
    chosen_incrementals: list[str] = []
    for when, ssts in ((older_time, older_ssts), (chosen_time, 2)):
        subdir = full_subdir(when)
        write_backup(root / subdir, replace(m, end_time=when), ssts=ssts)
        write_latest(root, subdir, at=when, root_file=False, history=True)
        for hours in (6, 12):
            inc_time = when + dt.timedelta(hours=hours)
            rel = f"incrementals/{subdir}/{incremental_name(inc_time)}"
            write_backup(root / rel, replace(m, start_time=when, end_time=inc_time), ssts=1)
            if when == chosen_time:
                chosen_incrementals.append(rel)
    chosen = full_subdir(chosen_time)
    unfinished = full_subdir(dt.datetime(2024, 12, 15, tzinfo=dt.UTC))
    write(root / unfinished / "data" / "800000.sst", b"half a backup")
    late = incremental_name(chosen_time + dt.timedelta(hours=18))
    write(root / INCREMENTALS_DIR / chosen / late / "data" / "800000.sst", b"no manifest yet")
    write(root / "notes.txt", b"not a backup file")
    return MixedCollection(root, full_subdir(older_time), chosen, chosen_incrementals,
                           unfinished, "notes.txt")


# --- in S3 ----------------------------------------------------------------------------------------


def upload(
    env: MotoS3,
    root: Path,
    prefix: str,
    *,
    storage_class: Callable[[str], StorageClassType | None] = lambda _path: None,
) -> str:
    """Copy the backup at ``root`` to ``prefix`` in a new bucket; returns its s3:// URI.

    ``storage_class`` picks a class per relative path (None: the bucket's default).
    """
    bucket = env.bucket()
    with closing(env.client()) as client:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = path.relative_to(root).as_posix()
            key = f"{prefix}/{relative}"
            chosen = storage_class(relative)
            if chosen is None:
                client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
            else:
                client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(),
                                  StorageClass=chosen)
    return f"s3://{bucket}/{prefix}"


def assert_same_report(local: BackupInfo, remote: BackupInfo, uri: str) -> None:
    """Everything but the location is the same, down to each file's key and size."""
    mine, theirs = local.to_json(), remote.to_json()
    assert mine.pop("source") == str(local.root)
    assert theirs.pop("source") == uri
    assert theirs == mine
    assert remote.manifest == local.manifest
    assert remote.files == local.files
    assert remote.incremental_files == local.incremental_files
    assert remote.backups == local.backups
    assert (remote.root, remote.location) == (None, uri)


class RecordingStorage(Storage):
    """A storage that records what is asked of the one it wraps, and refuses every write."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.location = inner.location
        self.calls: list[tuple[str, str]] = []

    def display(self, key: str = "") -> str:
        return self.inner.display(key)

    def child(self, key: str) -> Storage:
        return RecordingStorage(self.inner.child(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self.calls.append(("list", prefix))
        return self.inner.list(prefix)

    def list_level(self, prefix: str = "") -> Iterator[ObjectInfo | Prefix]:
        self.calls.append(("list_level", prefix))
        return self.inner.list_level(prefix)

    def stat(self, key: str) -> ObjectInfo | None:
        self.calls.append(("stat", key))
        return self.inner.stat(key)

    def open_read(self, key: str, *, start: int = 0, length: int | None = None
                  ) -> AbstractContextManager[IO[bytes]]:
        self.calls.append(("read", key))
        return self.inner.open_read(key, start=start, length=length)

    def open_write(self, key: str, *, size_hint: int | None = None,
                   options: WriteOptions | None = None) -> AbstractContextManager[ObjectWriter]:
        raise AssertionError(f"inspect wrote {key}")

    def delete(self, key: str) -> None:
        raise AssertionError(f"inspect deleted {key}")

    def delete_tree(self, prefix: str) -> None:
        raise AssertionError(f"inspect deleted {prefix}")

    def check_write_options(self, options: WriteOptions) -> None:
        raise AssertionError("inspect checked write options")

    def read_versioned(self, key: str, *, limit: int = 1 << 20) -> Versioned | None:
        self.calls.append(("read", key))
        return self.inner.read_versioned(key, limit=limit)

    def put_if_absent(self, key: str, data: bytes) -> str:
        raise AssertionError(f"inspect wrote {key}")

    def put_if_version(self, key: str, data: bytes, version: str) -> str:
        raise AssertionError(f"inspect wrote {key}")

    def delete_if_version(self, key: str, version: str) -> None:
        raise AssertionError(f"inspect deleted {key}")

    def staging(self, name: str) -> AbstractContextManager[Staging]:
        raise AssertionError(f"inspect staged {name}")
