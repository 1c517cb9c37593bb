"""A backup of many files: the v22.2 era's full backup with thousands of SSTs added, past the
numbers from which worker processes copy (archive) and hash (verify) the payload."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.bundles import era_with_binaries
from support.mirror import MirrorServer

FULL_BACKUP = "2023/01/12-030000.12/data"  # the full backup LATEST names, in the v22.2 era
LARGE = (16 << 20) + 3  # past what either kind of worker reads whole


def content(index: int) -> bytes:
    return f"{index},".encode() * (index % 300)


def add_files(backup: Path, count: int) -> None:
    """``count`` small SSTs and one large one in the full backup's data directory."""
    data = backup / FULL_BACKUP
    for index in range(count):
        (data / f"{500000 + index}.sst").write_bytes(content(index))
    (data / "900000.sst").write_bytes(b"\x5a" * LARGE)


def backup_of(base: Path, server: MirrorServer, count: int) -> Path:
    """The era's backup under ``base`` with ``count`` files added; its release archives on
    ``server``."""
    era = era_with_binaries(base, server, "v22.2")
    add_files(era.path, count)
    return era.path


def bundle_of(base: Path, count: int) -> Path:
    """A bundle (directory form) of :func:`backup_of`, made through a mirror of its own."""
    from crdb_archive.archive import ArchiveRequest, archive_backup  # noqa: PLC0415

    (base / "mirror").mkdir()
    with MirrorServer(base / "mirror") as server, pytest.MonkeyPatch.context() as patch:
        patch.setenv("CRDB_ARCHIVE_CACHE", str(base / "cache"))
        patch.delenv("CRDB_ARCHIVE_MIRROR", raising=False)
        backup = backup_of(base, server, count)
        result = archive_backup(ArchiveRequest(source=str(backup), dest=base / "bundles",
                                               mirror=server.url, with_incrementals=True))
    return Path(result.bundle)

