"""The payload of a backup bundle: the backup's files, the release archives beside them.

The items are made one at a time, as the writer asks for them: a backup of 100k files must not
hold 100k items, each with its openers, for the whole archive.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from crdb_archive.bundle import layout
from crdb_archive.bundle.writer import Payload, PayloadItem

if TYPE_CHECKING:
    from crdb_archive.backup import BackupFile, BackupInfo
    from crdb_archive.binaries import FetchedArchive


class _BackupPayload:
    """The backup's files as payload items, each made when the writer comes to it (100k
    items held at once, each with its openers, were a good part of the memory of an
    archive), then the release archives beside them."""

    def __init__(self, backup: BackupInfo, files: list[BackupFile],
                 binaries: list[PayloadItem]) -> None:
        self._storage = backup.storage
        # Small files on a local disk are read whole, in one call each.
        self._paths = backup.storage.local_paths()
        self._files = files
        self._binaries = binaries

    def __len__(self) -> int:
        return len(self._files) + len(self._binaries)

    def __iter__(self) -> Iterator[PayloadItem]:
        paths = self._paths
        for f in self._files:
            yield PayloadItem(
                path=f"{layout.BACKUP_DIR}/{f.path}",
                size=f.size,
                # Backup files stream straight from where they are (a local disk or a bucket).
                open=functools.partial(self._storage.open_read, f.path),
                read_whole=(None if paths is None
                            else functools.partial(paths.read_whole, f.path)),
                local_source=None if paths is None else paths.local_file(f.path),
            )
        yield from self._binaries

    def paths_and_sizes(self) -> Iterator[tuple[str, int]]:
        for f in self._files:
            yield f"{layout.BACKUP_DIR}/{f.path}", f.size
        for item in self._binaries:
            yield item.path, item.size


def backup_payload(
    backup: BackupInfo, files: list[BackupFile], fetched: list[FetchedArchive], scratch: Path
) -> Payload:
    """The backup's files, then the release archives and their published checksum files."""
    binaries: list[PayloadItem] = []
    for archive in fetched:
        binaries.append(PayloadItem(
            path=f"{layout.BINARY_DIR}/{archive.path.name}",
            size=archive.size,
            open=functools.partial(_open_read, archive.path),
            record=True,  # the description gives its size and digests
            local_source=str(archive.path),
        ))
        if archive.published_checksum_file is not None:
            checksum = scratch / f"{archive.path.name}.sha256sum"
            checksum.write_bytes(archive.published_checksum_file)
            binaries.append(PayloadItem(
                path=f"{layout.BINARY_DIR}/{checksum.name}",
                size=len(archive.published_checksum_file),
                open=functools.partial(_open_read, checksum),
                local_source=str(checksum),
            ))
    return _BackupPayload(backup, files, binaries)


def _open_read(path: Path) -> IO[bytes]:
    return path.open("rb")
