"""A local, content-addressed cache of release archives, so scheduled jobs download each once.

Layout under the cache directory::

    blobs/sha256/<hex>                     archives, named by their SHA-256
    archives/<archive name>.json           which blob holds an archive (size, sha256, blake3)
    checksums/<archive name>.sha256sum     published checksum files, verbatim

The index is keyed by the official file name, not by mirror, so a lookup needs no network.
Nothing in the cache is trusted as is: a blob is re-hashed (both digests) every time it is
copied out, and an entry that fails is deleted so that the archive is downloaded again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from crdb_archive.binaries.staging import StagedFile, describe_os_error
from crdb_archive.binaries.transfer import Sink, copy_stream
from crdb_archive.errors import StorageError
from crdb_archive.hashing import Digests, same_digest
from crdb_archive.progress import ProgressCallback, no_progress

CACHE_ENV = "CRDB_ARCHIVE_CACHE"

_HEX64 = re.compile(r"[0-9a-f]{64}")
_INDEX_FORMAT = 1
_MAX_CHECKSUM_FILE_SIZE = 4096


def default_cache_dir() -> Path:
    """``CRDB_ARCHIVE_CACHE`` when set, else the user's cache directory for crdb-archive."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    return Path(platformdirs.user_cache_dir("crdb-archive"))


@dataclass(frozen=True)
class CacheEntry:
    """One archive in the cache, as the index records it."""

    archive: str
    size: int
    sha256: str
    blake3: str


class ArchiveCache:
    """The cache rooted at ``root``; directories are created on first write."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "blobs" / "sha256"
        self._index = root / "archives"
        self._checksums = root / "checksums"

    # --- published checksum files --------------------------------------------------------------

    def checksum_file(self, archive: str) -> bytes | None:
        """The cached checksum file of ``archive``, or None."""
        path = self._checksums / f"{archive}.sha256sum"
        try:
            with path.open("rb") as stream:
                return stream.read(_MAX_CHECKSUM_FILE_SIZE + 1)
        except OSError:
            return None

    def store_checksum_file(self, archive: str, content: bytes) -> None:
        """Keep a published checksum file; raises StorageError."""
        self._write_small(self._checksums / f"{archive}.sha256sum", content)

    def forget_checksum_file(self, archive: str) -> None:
        with contextlib.suppress(OSError):
            (self._checksums / f"{archive}.sha256sum").unlink(missing_ok=True)

    # --- archives ------------------------------------------------------------------------------

    def entry(self, archive: str) -> CacheEntry | None:
        """The index entry of ``archive``, or None (an unreadable entry is dropped)."""
        path = self._index / f"{archive}.json"
        try:
            with path.open("rb") as stream:
                record = json.loads(stream.read(64 << 10))
            entry = CacheEntry(
                archive=archive,
                size=int(record["size"]),
                sha256=str(record["sha256"]),
                blake3=str(record["blake3"]),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            self._drop_index(archive)
            return None
        if record.get("format") != _INDEX_FORMAT or record.get("archive") != archive or not (
            _HEX64.fullmatch(entry.sha256) and _HEX64.fullmatch(entry.blake3)
        ):
            self._drop_index(archive)
            return None
        return entry

    def copy_out(
        self,
        entry: CacheEntry,
        sink: Sink,
        *,
        progress: ProgressCallback = no_progress,
        task: str = "",
    ) -> Digests | None:
        """Copy the blob of ``entry`` into ``sink``, re-hashing it on the way.

        Returns the digests when size, SHA-256 and BLAKE3 all match the entry. Otherwise the
        entry and its blob are deleted and None is returned (the caller downloads again). Raises
        StorageError only for failures of ``sink``.
        """
        blob = self._blobs / entry.sha256
        try:
            with blob.open("rb") as source:
                digests = copy_stream(
                    source, sink, total=entry.size, progress=progress, task=task
                )
        except OSError:
            digests = None
        if digests is None or not (
            digests.size == entry.size
            and same_digest(digests.sha256, entry.sha256)
            and same_digest(digests.blake3, entry.blake3)
        ):
            self.forget(entry)
            return None
        return digests

    def staged_blob(self) -> StagedFile:
        """A temporary file in the blob directory, to download into; raises StorageError."""
        self._make_dir(self._blobs)
        return StagedFile(self._blobs / "incoming")

    def add(self, archive: str, staged: StagedFile, digests: Digests) -> CacheEntry:
        """Move a complete download into the cache and index it; raises StorageError."""
        staged.commit(self._blobs / digests.sha256)
        entry = CacheEntry(archive, digests.size, digests.sha256, digests.blake3)
        record = {
            "format": _INDEX_FORMAT,
            "archive": archive,
            "size": entry.size,
            "sha256": entry.sha256,
            "blake3": entry.blake3,
        }
        self._write_small(
            self._index / f"{archive}.json", (json.dumps(record, indent=2) + "\n").encode()
        )
        return entry

    def forget(self, entry: CacheEntry) -> None:
        """Delete an entry and its blob (best effort: a cache that cannot be cleaned still
        cannot be trusted, and every entry is re-hashed before use)."""
        self._drop_index(entry.archive)
        with contextlib.suppress(OSError):
            (self._blobs / entry.sha256).unlink(missing_ok=True)

    # --- plumbing ------------------------------------------------------------------------------

    def _drop_index(self, archive: str) -> None:
        with contextlib.suppress(OSError):
            (self._index / f"{archive}.json").unlink(missing_ok=True)

    def _make_dir(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(
                f"cannot use the download cache {self.root}: {describe_os_error(error)} (set "
                f"{CACHE_ENV} to another directory, or disable the cache)"
            ) from None

    def _write_small(self, path: Path, content: bytes) -> None:
        self._make_dir(path.parent)
        with StagedFile(path) as staged:
            staged.write(content)
            staged.commit()
