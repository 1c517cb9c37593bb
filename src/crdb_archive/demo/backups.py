"""CockroachDB backups written from the facts of their format, without a cluster.

The protobuf encoder here is written from the field numbers alone (BackupManifest in
``pkg/backup/backuppb/backup.proto``) and shares nothing with the toolkit's decoder, so a
mistake in one is not mirrored in the other. Builders lay out real directories: manifests
(raw, gzip, or sealed by a caller's :class:`Sealing`), ``-CHECKSUM`` files, SST filler,
ENCRYPTION-INFO files, LATEST pointers and incremental backups in the ``incrementals/``
(v22.1+) layout. Their SSTs hold filler, not data: CockroachDB cannot restore them.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_UINT64 = (1 << 64) - 1
CLUSTER_ID = uuid.UUID("5f0e3c1a-8c2b-4c36-9d3e-2a1b0c9d8e7f")
# Three weekly full backups of December 2024, as a collection of BACKUP INTO holds them.
WEEKLY_FULLS = (dt.datetime(2024, 12, 1, tzinfo=dt.UTC), dt.datetime(2024, 12, 8, tzinfo=dt.UTC),
                dt.datetime(2024, 12, 15, tzinfo=dt.UTC))

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
        return b"".join((self._times(), self._contents(), self._origin(), self._filler(),
                         self._cluster_version()))

    def _times(self) -> bytes:
        out = b""
        if self.start_time is not None:
            out += bytes_field(1, int_field(1, nanos(self.start_time)))
        end = int_field(1, self.end_wall_time)
        if self.end_logical:
            end += int_field(2, self.end_logical)
        return out + bytes_field(2, end)

    def _contents(self) -> bytes:
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

    def _origin(self) -> bytes:
        out = b""
        if self.cluster_id is not None:
            out += bytes_field(9, self.cluster_id.bytes)
        if self.node_id is not None:
            out += int_field(10, self.node_id)
        build = b""
        for number, value in ((1, self.go_version), (2, self.build_tag), (3, self.build_time),
                              (4, self.revision)):
            if value is not None:
                build += string_field(number, value)
        if build or self.build_tag is not None:
            out += bytes_field(11, build + string_field(7, "linux amd64"))
        return out

    def _filler(self) -> bytes:
        """Fields the toolkit must skip: unknown numbers of every wire type, and padding."""
        out = b""
        if self.unknown_fields:
            out += fixed64_field(13, 0xDEADBEEF) + fixed32_field(14, 7)
            out += group_field(15, int_field(1, 5) + group_field(2, string_field(3, "x")))
            out += int_field(16, 1)
        if self.padding:
            filler = random.Random(self.padding)  # noqa: S311 - incompressible, not secret
            out += bytes_field(40, filler.randbytes(self.padding))
        return out

    def _cluster_version(self) -> bytes:
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


def checksum(stored: bytes) -> bytes:
    """What CockroachDB writes to ``<manifest>-CHECKSUM``: 4 bytes of the SHA-256."""
    return hashlib.sha256(stored).digest()[:4]


# --- directories ---------------------------------------------------------------------------------


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


class Sealing(Protocol):
    """Encrypts files as CockroachDB does and knows the ENCRYPTION-INFO files to write."""

    @property
    def infos(self) -> Mapping[str, bytes]: ...

    def seal(self, plaintext: bytes) -> bytes: ...


def write_backup(
    directory: Path,
    manifest: Manifest,
    *,
    names: tuple[str, ...] = ("BACKUP_MANIFEST",),
    compress: bool = True,
    with_checksum: bool = True,
    sealing: Sealing | None = None,
    encryption_info: bool = True,
    data_dir: bool = True,
    ssts: int = 2,
) -> bytes:
    """Write one backup directory; returns the stored manifest bytes.

    ``sealing`` encrypts the manifests, SSTs and statistics as CockroachDB does, and its
    ENCRYPTION-INFO files are written into the directory unless ``encryption_info`` is False
    (an incremental backup reads its full backup's).
    """

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


def write_collection(root: Path, *, build_tag: str = "v24.3.1",
                     cluster_version: tuple[int, int, int, int] = (24, 3, 0, 0),
                     fulls: tuple[dt.datetime, ...] = WEEKLY_FULLS,
                     incremental_hours: tuple[int, ...] = (6, 12, 18)) -> list[list[str]]:
    """A v22.1+ collection: full backups at ``fulls``, each followed by incremental backups
    ``incremental_hours`` after it under ``incrementals/``, and a metadata/latest file naming
    each full backup. Returns, per full backup, its subdirectory then its incrementals."""
    m = Manifest(end_time=fulls[0], build_tag=build_tag, cluster_version=cluster_version,
                 extra_end_nanos=123)
    written: list[list[str]] = []
    for when in fulls:
        subdir = full_subdir(when)
        write_backup(root / subdir, replace(m, end_time=when))
        write_latest(root, subdir, at=when, root_file=False, history=True)
        chain = [subdir]
        previous = when
        for hours in incremental_hours:
            inc_time = when + dt.timedelta(hours=hours)
            name = incremental_name(inc_time) + "-" + previous.strftime("%Y%m%d-%H%M%S.00")
            rel = f"incrementals/{subdir}/{name}"
            write_backup(root / rel, replace(m, start_time=previous, end_time=inc_time), ssts=1)
            chain.append(rel)
            previous = inc_time
        written.append(chain)
    return written
