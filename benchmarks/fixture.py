"""Benchmark data: a plausible CockroachDB backup directory and a local binaries mirror.

Self-contained on purpose (the benchmark must not depend on the test suite): the backup is a
gzipped ``BACKUP_MANIFEST`` protobuf with the fields crdb-archive reads (end time, cluster id,
build info, cluster version), its ``-CHECKSUM`` (the first 4 bytes of the stored bytes'
SHA-256, as CockroachDB writes it), ``BACKUP-STATISTICS``, and ``data/*.sst`` files of bytes
that do not compress. The mirror holds one release archive in the official layout with its
published ``.sha256sum``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import uuid
from pathlib import Path

RELEASE = "v23.1.11"
PLATFORM = "linux-amd64"
# 2023-10-02T12:00:00Z, in nanoseconds since the Unix epoch.
END_TIME_NANOS = 1_696_248_000 * 10**9
CLUSTER_ID = uuid.UUID("4a3c1c52-5d8e-4a47-9a3b-0c6a8a1b2c3d")
_WRITE_BLOCK = 8 << 20


# --- protobuf wire format (only what the manifest needs) ----------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def backup_manifest(sst_names: list[str]) -> bytes:
    """A BackupManifest: end_time (2), files (4), cluster_id (9), node_id (10),
    build_info (11) and cluster_version (25), in field-number order."""
    out = bytearray(_bytes_field(2, _int_field(1, END_TIME_NANOS)))
    for i, name in enumerate(sst_names[:1000]):  # a sample: the reader does not need them all
        span = _bytes_field(1, b"/Table/%d/1" % (100 + i)) + _bytes_field(2, b"/Table/%d/2" % i)
        out += _bytes_field(4, _bytes_field(1, span) + _bytes_field(2, name.encode()))
    out += _bytes_field(9, CLUSTER_ID.bytes)
    out += _int_field(10, 1)
    build = (_bytes_field(1, b"go1.19.13") + _bytes_field(2, RELEASE.encode())
             + _bytes_field(3, b"2023/10/09 17:49:25") + _bytes_field(7, b"linux amd64"))
    out += _bytes_field(11, build)
    out += _bytes_field(25, _int_field(1, 23) + _int_field(2, 1))
    return bytes(out)


# --- the backup ---------------------------------------------------------------------------------


def write_backup(root: Path, *, small_files: int = 0, small_size: int = 4096,
                 big_bytes: int = 0, big_file_size: int = 64 << 20) -> int:
    """Write a backup directory at ``root``; returns the payload's size in bytes."""
    data = root / "data"
    data.mkdir(parents=True)
    names: list[str] = []
    total = 0
    index = 0
    while total < big_bytes:
        size = min(big_file_size, big_bytes - total)
        name = f"data/{900000 + index}.sst"
        _write_random(root / name, size)
        names.append(name)
        total += size
        index += 1
    # Small files share one random block, rotated so that no two files are the same.
    block = os.urandom(small_size + 64)
    for i in range(small_files):
        name = f"data/{100000 + i}.sst"
        (root / name).write_bytes(block[i % 64:i % 64 + small_size])
        names.append(name)
        total += small_size
    stored = gzip.compress(backup_manifest(names), mtime=0)
    (root / "BACKUP_MANIFEST").write_bytes(stored)
    (root / "BACKUP_MANIFEST-CHECKSUM").write_bytes(hashlib.sha256(stored).digest()[:4])
    (root / "BACKUP-STATISTICS").write_bytes(b"\x0a\x00")
    return total + len(stored) + 4 + 2


def _write_random(path: Path, size: int) -> None:
    with path.open("wb") as handle:
        left = size
        while left:
            block = os.urandom(min(left, _WRITE_BLOCK))
            handle.write(block)
            left -= len(block)


# --- the mirror ---------------------------------------------------------------------------------


def write_mirror(mirror: Path) -> Path:
    """A binaries mirror with ``cockroach-<release>.linux-amd64.tgz`` and its checksum file."""
    mirror.mkdir(parents=True, exist_ok=True)
    top = f"cockroach-{RELEASE}.{PLATFORM}"
    script = (f"#!/bin/sh\nif [ \"$1\" = version ]; then echo 'Build Tag:        {RELEASE}';"
              " exit 0; fi\nexit 1\n").encode()
    members = [(f"{top}/cockroach", script, 0o755),
               (f"{top}/lib/libgeos.so", os.urandom(300_000), 0o644),
               (f"{top}/lib/libgeos_c.so", b"\x7fELF libgeos_c\n", 0o644)]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content, mode in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), mode, 1_696_204_800
            tar.addfile(info, io.BytesIO(content))
    archive = mirror / f"{top}.tgz"
    archive.write_bytes(buffer.getvalue())
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    (mirror / f"{archive.name}.sha256sum").write_text(f"{digest}  {archive.name}\n")
    return archive
