"""A local cache of release archives, so scheduled jobs download each once.

Layout under the cache directory::

    blobs/sha256/<hex>                               archives, named by their SHA-256
    sources/<origin digest>/source.json              the origin this folder answers for
    sources/<origin digest>/archives/<name>.json     which blob holds an archive from there
    sources/<origin digest>/checksums/<name>.sha256sum   checksum files from there, verbatim

An entry answers only for the source it was fetched from: the mirror's origin (credentials
removed, ``Mirror.origin``) is part of every key, so stand-in archives fetched from a demo
mirror can never be served to a run that asks the official site, and a bundle records where
its bytes really came from. The folder of an origin is named by a digest of it and states it
in ``source.json``; a folder whose statement disagrees is not used. Entries of the earlier
layout (``archives/`` and ``checksums/`` at the top, keyed by file name alone) cannot say
where they came from and are never read.

Nothing in the cache is trusted as is: a blob is re-hashed (both digests) every time it is
copied out, and an entry that fails is deleted so that the archive is downloaded again.
Blobs are shared between origins: the same bytes are the same archive whoever served them.
"""

from __future__ import annotations

import contextlib
import hashlib
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
_INDEX_FORMAT = 2  # 1 was the name-keyed layout, which is never read
_MAX_SMALL_FILE = 64 << 10
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

    origin: str  # the source it was fetched from (Mirror.origin)
    archive: str
    url: str  # where it was fetched from, credentials removed
    size: int
    sha256: str
    blake3: str


class ArchiveCache:
    """The cache rooted at ``root``; directories are created on first write."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "blobs" / "sha256"
        self._sources = root / "sources"

    # --- published checksum files --------------------------------------------------------------

    def checksum_file(self, origin: str, archive: str) -> bytes | None:
        """The checksum file of ``archive`` fetched from ``origin``, or None."""
        folder = self._source(origin)
        if folder is None:
            return None
        return _read_small(folder / "checksums" / f"{archive}.sha256sum",
                           _MAX_CHECKSUM_FILE_SIZE + 1)

    def store_checksum_file(self, origin: str, archive: str, content: bytes) -> None:
        """Keep a checksum file fetched from ``origin``; raises StorageError."""
        folder = self._claim_source(origin)
        self._write_small(folder / "checksums" / f"{archive}.sha256sum", content)

    def forget_checksum_file(self, origin: str, archive: str) -> None:
        folder = self._source(origin)
        if folder is not None:
            with contextlib.suppress(OSError):
                (folder / "checksums" / f"{archive}.sha256sum").unlink(missing_ok=True)

    # --- archives ------------------------------------------------------------------------------

    def entry(self, origin: str, archive: str) -> CacheEntry | None:
        """The entry of ``archive`` fetched from ``origin``, or None (an unreadable entry is
        dropped)."""
        folder = self._source(origin)
        if folder is None:
            return None
        path = folder / "archives" / f"{archive}.json"
        content = _read_small(path, _MAX_SMALL_FILE)
        if content is None:
            return None
        try:
            record = json.loads(content)
            entry = CacheEntry(
                origin=str(record["origin"]),
                archive=str(record["archive"]),
                url=str(record["url"]),
                size=int(record["size"]),
                sha256=str(record["sha256"]),
                blake3=str(record["blake3"]),
            )
        except (ValueError, KeyError, TypeError):
            entry = None
        if entry is None or record.get("format") != _INDEX_FORMAT or not (
            entry.origin == origin and entry.archive == archive
            and _HEX64.fullmatch(entry.sha256) and _HEX64.fullmatch(entry.blake3)
        ):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
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
            self.forget(entry, damaged=True)
            return None
        return digests

    def add(self, origin: str, archive: str, url: str, path: Path,
            digests: Digests) -> CacheEntry:
        """Copy the checked archive at ``path``, fetched from ``url`` of ``origin``, into the
        cache and index it.

        Raises StorageError when the cache cannot be written or the copy does not re-hash to
        ``digests``.
        """
        folder = self._claim_source(origin)
        self._make_dir(self._blobs)
        with StagedFile(self._blobs / "incoming") as blob:
            try:
                with path.open("rb") as source:
                    copied = copy_stream(source, blob, total=digests.size)
            except OSError as error:
                raise StorageError(f"cannot read {path}: {describe_os_error(error)}") from None
            if not (copied.size == digests.size and same_digest(copied.sha256, digests.sha256)
                    and same_digest(copied.blake3, digests.blake3)):
                raise StorageError(f"{path} changed while it was copied into the download "
                                   f"cache {self.root}")
            blob.commit(self._blobs / digests.sha256)
        entry = CacheEntry(origin, archive, url, digests.size, digests.sha256, digests.blake3)
        record = {
            "format": _INDEX_FORMAT,
            "origin": origin,
            "archive": archive,
            "url": url,
            "size": entry.size,
            "sha256": entry.sha256,
            "blake3": entry.blake3,
        }
        self._write_small(folder / "archives" / f"{archive}.json",
                          (json.dumps(record, indent=2) + "\n").encode())
        return entry

    def forget(self, entry: CacheEntry, *, damaged: bool) -> None:
        """Delete an entry, and its blob when that is ``damaged`` (best effort: a cache that
        cannot be cleaned still cannot be trusted, and every entry is re-hashed before use).

        A sound blob stays: another origin's entry may hold the same bytes.
        """
        folder = self._source(entry.origin)
        if folder is not None:
            with contextlib.suppress(OSError):
                (folder / "archives" / f"{entry.archive}.json").unlink(missing_ok=True)
        if damaged:
            with contextlib.suppress(OSError):
                (self._blobs / entry.sha256).unlink(missing_ok=True)

    # --- one folder per origin -----------------------------------------------------------------

    def _source_dir(self, origin: str) -> Path:
        # A digest, not the origin itself: origins hold ':' and '/', and any length.
        return self._sources / hashlib.sha256(origin.encode("utf-8")).hexdigest()[:32]

    def _source(self, origin: str) -> Path | None:
        """The folder of ``origin`` when it states that origin, else None."""
        folder = self._source_dir(origin)
        content = _read_small(folder / "source.json", _MAX_SMALL_FILE)
        if content is None:
            return None
        try:
            stated = json.loads(content)
        except ValueError:
            return None
        if not isinstance(stated, dict) or stated.get("origin") != origin:
            return None
        return folder

    def _claim_source(self, origin: str) -> Path:
        """The folder of ``origin``, created with its statement if new; raises StorageError
        when it cannot be written or states another origin."""
        folder = self._source(origin)
        if folder is not None:
            return folder
        folder = self._source_dir(origin)
        if (folder / "source.json").exists():
            raise StorageError(
                f"the download cache {self.root} has a folder {folder.name} that does not say "
                f"it holds files from {origin}; remove it or choose another cache directory"
            )
        record = {"format": _INDEX_FORMAT, "origin": origin}
        self._write_small(folder / "source.json",
                          (json.dumps(record, indent=2) + "\n").encode())
        return folder

    # --- plumbing ------------------------------------------------------------------------------

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


def _read_small(path: Path, limit: int) -> bytes | None:
    try:
        with path.open("rb") as stream:
            return stream.read(limit)
    except OSError:
        return None
