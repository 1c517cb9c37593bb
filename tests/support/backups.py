"""CockroachDB backups built by the tests, one per era, from the facts in DESIGN 2.3.

The protobuf encoder here is written from the field numbers alone and shares nothing with the
decoder under test, so a mistake in one is not mirrored in the other. Builders lay out real
directories: manifests (raw, gzip, encrypted with :mod:`support.encryption`), ``-CHECKSUM``
files, SSTs, ENCRYPTION-INFO, LATEST pointers and incremental backups in both the nested
(v21.1) and ``incrementals/`` (v22.1+) layouts.
:func:`upload` copies a built backup into an S3 bucket, as ``BACKUP INTO 's3://...'`` would
have written it, and :func:`assert_same_report` compares what inspecting each copy says.
:class:`RecordingStorage` shows what inspecting asks of a storage.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import os
import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING

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

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_UINT64 = (1 << 64) - 1
CLUSTER_ID = uuid.UUID("5f0e3c1a-8c2b-4c36-9d3e-2a1b0c9d8e7f")

# --- protobuf wire format ----------------------------------------------------------------------


def varint(value: int) -> bytes:
    """Base-128 varint; negative numbers as 64-bit two's complement, like Go's int32/int64."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def int_field(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def bytes_field(number: int, payload: bytes) -> bytes:
    return key(number, 2) + varint(len(payload)) + payload


def string_field(number: int, text: str) -> bytes:
    return bytes_field(number, text.encode())


def fixed64_field(number: int, value: int) -> bytes:
    return key(number, 1) + value.to_bytes(8, "little")


def fixed32_field(number: int, value: int) -> bytes:
    return key(number, 5) + value.to_bytes(4, "little")


def group_field(number: int, inner: bytes) -> bytes:
    return key(number, 3) + inner + key(number, 4)


def nanos(when: dt.datetime) -> int:
    """Unix nanoseconds of an aware datetime, exactly."""
    delta = when - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000


# --- manifests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """The fields of a BackupManifest the toolkit reads, plus filler it must skip."""

    end_time: dt.datetime
    build_tag: str | None = "v23.1.11"
    build_time: str | None = "2023/10/09 17:49:25"
    revision: str | None = "5ad2ab3a2d8ed7b4a8e0f5a8b8bd38b1d7a5c1e4"
    go_version: str | None = "go1.19.13"
    cluster_version: tuple[int, int, int, int] | None = (23, 1, 0, 0)
    start_time: dt.datetime | None = None
    end_logical: int = 0
    extra_end_nanos: int = 0
    cluster_id: uuid.UUID | None = CLUSTER_ID
    node_id: int | None = 1
    files: int = 3
    descriptors: int = 2
    unknown_fields: bool = True
    # Bytes of an unknown field of incompressible filler: a manifest of many 64 KiB chunks.
    padding: int = 0

    @property
    def end_wall_time(self) -> int:
        return nanos(self.end_time) + self.extra_end_nanos

    def encode(self) -> bytes:
        """Fields in number order, as CockroachDB's generated marshaller writes them."""
        out = bytearray()
        if self.start_time is not None:
            out += bytes_field(1, int_field(1, nanos(self.start_time)))
        end = int_field(1, self.end_wall_time)
        if self.end_logical:
            end += int_field(2, self.end_logical)
        out += bytes_field(2, end)
        out += self._files_and_descriptors()
        if self.cluster_id is not None:
            out += bytes_field(9, self.cluster_id.bytes)
        if self.node_id is not None:
            out += int_field(10, self.node_id)
        out += self._build_info()
        if self.unknown_fields:
            out += fixed64_field(13, 0xDEADBEEF) + fixed32_field(14, 7)
            out += group_field(15, int_field(1, 5) + group_field(2, string_field(3, "x")))
            out += int_field(16, 1)
        if self.padding:
            filler = random.Random(self.padding)  # noqa: S311 - incompressible, not secret
            out += bytes_field(40, filler.randbytes(self.padding))
        return bytes(out + self._cluster_version())

    def _files_and_descriptors(self) -> bytes:
        """Fields 4 (files) and 5 (descriptors)."""
        out = bytearray()
        for i in range(self.files):
            span = bytes_field(1, b"/Table/%d/1" % (100 + i)) + bytes_field(2, b"/Table/%d/2" % i)
            entry = (
                bytes_field(1, span)
                + string_field(2, f"data/{900000 + i}.sst")
                + bytes_field(7, int_field(1, 1000 + i) + int_field(2, 4096 * i))
            )
            out += bytes_field(4, entry)
        for i in range(self.descriptors):
            table = string_field(1, f"table_{i}") + int_field(3, 100 + i)
            out += bytes_field(5, bytes_field(1, table))
        return bytes(out)

    def _build_info(self) -> bytes:
        """Field 11, the build info, when any of it is set."""
        build = b""
        for number, value in ((1, self.go_version), (2, self.build_tag), (3, self.build_time),
                              (4, self.revision)):
            if value is not None:
                build += string_field(number, value)
        if build or self.build_tag is not None:
            return bytes_field(11, build + string_field(7, "linux amd64"))
        return b""

    def _cluster_version(self) -> bytes:
        """Field 25, the cluster version, when set."""
        if self.cluster_version is None:
            return b""
        major, minor, patch, internal = self.cluster_version
        version = int_field(1, major) + int_field(2, minor)
        if patch:
            version += int_field(3, patch)
        if internal:
            version += int_field(4, internal)
        return bytes_field(25, version)


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def encrypted(data: bytes) -> bytes:
    """``data`` encrypted with the tests' passphrase (support.encryption), format version 2."""
    return with_passphrase().seal(data)


def checksum(stored: bytes) -> bytes:
    """What CockroachDB writes to ``<manifest>-CHECKSUM``: 4 bytes of the SHA-256."""
    return hashlib.sha256(stored).digest()[:4]


# --- directories ---------------------------------------------------------------------------------


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


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
    """Write one backup directory; returns the stored manifest bytes.

    ``encrypt`` (True: the tests' passphrase, version 2) encrypts the manifests, SSTs and
    statistics as CockroachDB does, and writes the ENCRYPTION-INFO files into the directory
    unless ``encryption_info`` is False (an incremental backup reads its full backup's).
    """
    sealing: Encrypting | None = None
    if isinstance(encrypt, Encrypting):
        sealing = encrypt
    elif encrypt:
        sealing = with_passphrase()

    def stored_form(plain: bytes) -> bytes:
        return sealing.seal(plain) if sealing is not None else plain

    plain = manifest.encode()
    if compress:
        plain = gzipped(plain)
    if sealing is not None and encryption_info:
        for info_name, content in sealing.infos.items():
            write(directory / info_name, content)
    first = b""
    for name in names:
        # Each file is sealed on its own, with its own IV, as CockroachDB writes them.
        stored = stored_form(plain)
        first = first or stored
        write(directory / name, stored)
        if with_checksum:
            write(directory / f"{name}-CHECKSUM", checksum(stored))
    for i in range(ssts):
        sst = f"data/{800000 + i}.sst" if data_dir else f"{800000 + i}.sst"
        write(directory / sst, stored_form(b"SST%d" % i * (100 + i)))
    write(directory / "BACKUP-STATISTICS", stored_form(b"\x0a\x00"))
    return first


def full_subdir(when: dt.datetime) -> str:
    """``YYYY/MM/DD-HHMMSS.ss``, as BACKUP INTO names a full backup after its end time."""
    return when.strftime("%Y/%m/%d-%H%M%S.") + f"{when.microsecond // 10_000:02d}"


def incremental_name(when: dt.datetime) -> str:
    """``YYYYMMDD/HHMMSS.ss``, as an incremental backup is named after its end time."""
    return when.strftime("%Y%m%d/%H%M%S.") + f"{when.microsecond // 10_000:02d}"


def latest_history_name(when: dt.datetime) -> str:
    """``LATEST-<hex>`` whose names sort newest first."""
    return f"LATEST-{MAX_UINT64 - nanos(when):016x}"


def write_latest(
    root: Path, subdir: str, *, at: dt.datetime, root_file: bool, history: bool
) -> None:
    if root_file:
        write(root / "LATEST", f"/{subdir}".encode())
    if history:
        write(root / "metadata" / "latest" / latest_history_name(at), f"/{subdir}".encode())


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
    m = Manifest(end_time=T0, build_tag="v24.3.1", cluster_version=(24, 3, 0, 0),
                 extra_end_nanos=123)
    fulls = [dt.datetime(2024, 12, day, 0, 0, 0, 0, tzinfo=dt.UTC) for day in (1, 8, 15)]
    expected: list[str] = []
    for when in fulls:
        subdir = full_subdir(when)
        write_backup(root / subdir, replace(m, end_time=when))
        write_latest(root, subdir, at=when, root_file=False, history=True)
        expected = []
        for hours in (6, 12, 18):
            start = when + dt.timedelta(hours=hours - 6)
            inc_time = when + dt.timedelta(hours=hours)
            name = incremental_name(inc_time) + "-" + start.strftime("%Y%m%d-%H%M%S.00")
            rel = f"incrementals/{subdir}/{name}"
            write_backup(root / rel, replace(m, start_time=start, end_time=inc_time), ssts=1)
            expected.append(rel)
    return Era("v24.3", root, "collection", full_subdir(fulls[-1]), "v24.3.1", "24.3", "v24.3",
               ["v24.3", "v25.1", "v25.2"], fulls[-1], expected)


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
    assert mine.pop("root") == str(local.root)
    assert theirs.pop("root") == uri
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
