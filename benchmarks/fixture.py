"""Benchmark data: a plausible CockroachDB backup directory and a local binaries mirror.

Built with the demo's builders (:mod:`crdb_archive.demo`), which write the manifest fields
crdb-archive reads, its ``-CHECKSUM`` and release archives in the official layout; what is
added here is size: ``data/*.sst`` files of bytes that do not compress, many small or a few
large.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from crdb_archive.demo.backups import Manifest, checksum, gzipped
from crdb_archive.demo.release_archives import build_archive

RELEASE = "v23.1.11"
PLATFORM = "linux-amd64"
END_TIME = dt.datetime(2023, 10, 2, 12, tzinfo=dt.UTC)
_WRITE_BLOCK = 8 << 20


def write_backup(root: Path, *, small_files: int = 0, small_size: int = 4096,
                 big_bytes: int = 0, big_file_size: int = 64 << 20) -> int:
    """Write a backup directory at ``root``; returns the payload's size in bytes."""
    data = root / "data"
    data.mkdir(parents=True)
    total = 0
    index = 0
    while total < big_bytes:
        size = min(big_file_size, big_bytes - total)
        _write_random(root / f"data/{900000 + index}.sst", size)
        total += size
        index += 1
    # Small files share one random block, rotated so that no two files are the same.
    block = os.urandom(small_size + 64)
    for i in range(small_files):
        (root / f"data/{100000 + i}.sst").write_bytes(block[i % 64:i % 64 + small_size])
        total += small_size
    # The manifest lists a sample of the files: the reader does not need them all.
    stored = gzipped(Manifest(end_time=END_TIME, build_tag=RELEASE,
                              files=min(1000, index + small_files)).encode())
    (root / "BACKUP_MANIFEST").write_bytes(stored)
    (root / "BACKUP_MANIFEST-CHECKSUM").write_bytes(checksum(stored))
    (root / "BACKUP-STATISTICS").write_bytes(b"\x0a\x00")
    return total + len(stored) + 4 + 2


def _write_random(path: Path, size: int) -> None:
    with path.open("wb") as handle:
        left = size
        while left:
            block = os.urandom(min(left, _WRITE_BLOCK))
            handle.write(block)
            left -= len(block)


def write_mirror(mirror: Path) -> Path:
    """A binaries mirror with ``cockroach-<release>.linux-amd64.tgz`` and its checksum file."""
    mirror.mkdir(parents=True, exist_ok=True)
    return build_archive(mirror, RELEASE, PLATFORM).archive
