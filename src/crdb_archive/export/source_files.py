"""The files of a changefeed or EXPORT output, wherever they are, read once where possible.

A local source is read in place: the snapshot engine opens the files by path and the bundle
writer copies them. A source in object storage is staged once into a scratch directory on
local disk, which the engine reads and the bundle's payload is written from: nothing is
downloaded twice.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from crdb_archive.bundle.description_export import EXPORT_DIR
from crdb_archive.bundle.writer import PayloadItem
from crdb_archive.errors import NeedsRestoreFromColdStorage, StorageError
from crdb_archive.export.scan import ListedFile
from crdb_archive.hashing import iter_chunks, parallel_in_batches
from crdb_archive.progress import ProgressCallback, ProgressEvent, no_progress
from crdb_archive.storage.base import Storage, open_storage
from crdb_archive.storage.uri import parse_location
from crdb_archive.text import count, exact

# RESOLVED bodies are a few dozen bytes; the scan refuses anything near this.
SMALL_READ = 4097
_STAGE_THREADS = 8
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def source_identity(source: str) -> str:
    """How a source is recorded and named: an absolute path, or the URI without secrets."""
    location = parse_location(source)
    if location.scheme == "file":
        return os.path.normpath(Path(location.path).absolute())
    return location.redacted


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int
    mtime: float | None


class ExportSource:
    """An opened source: its listing, small reads, and local copies of its files."""

    def __init__(self, storage: Storage, identity: str) -> None:
        self.storage = storage
        self.identity = identity
        self.objects: list[ListedObject] = []
        cold = []
        for info in storage.list():
            if not info.readable:
                cold.append(info)
            self.objects.append(ListedObject(
                info.key, info.size, info.mtime.timestamp() if info.mtime else None))
        if cold:
            raise NeedsRestoreFromColdStorage(
                f"{count(len(cold), 'object')} of {storage.display()} "
                f"{'is' if len(cold) == 1 else 'are'} in "
                f"{cold[0].storage_class or 'an archive storage class'} and not restored "
                f"(first: {cold[0].key}); restore them before archiving")
        # Files of this host are read where they are; other objects are copied once.
        paths = storage.local_paths()
        self._local: Path | None = paths.local_path if paths is not None else None

    @property
    def display(self) -> str:
        return self.storage.display()

    @property
    def listing(self) -> list[ListedFile]:
        return [ListedFile(o.key, o.size) for o in self.objects]

    @property
    def newest_mtime(self) -> float | None:
        times = [o.mtime for o in self.objects if o.mtime is not None]
        return max(times) if times else None

    def open_small(self, key: str) -> BinaryIO:
        """The first bytes of a small file (a RESOLVED body), in memory."""
        with self.storage.open_read(key, length=SMALL_READ) as stream:
            return io.BytesIO(stream.read(SMALL_READ))

    def local_copy(self, scratch: Path, progress: ProgressCallback = no_progress) -> Path:
        """A local directory holding every file: the source itself when it is on local disk,
        else a copy made once in ``scratch``. Raises StorageError."""
        if self._local is not None:
            return self._local
        total = sum(o.size for o in self.objects)
        task = f"download {self.display}"
        done = [0]
        lock = threading.Lock()

        def on_chunk(count: int) -> None:
            with lock:
                done[0] += count
                value = done[0]
            progress(ProgressEvent(task, value, total))

        for _ in parallel_in_batches(lambda o: self._stage(o, scratch, on_chunk), self.objects,
                                     lambda o: o.size, threads=_STAGE_THREADS):
            pass
        progress(ProgressEvent(task, done[0], total, finished=True))
        self._local = scratch
        return scratch

    def _stage(self, obj: ListedObject, scratch: Path, on_chunk: Callable[[int], None]) -> None:
        target = scratch / obj.key
        written = 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, _CREATE, 0o644)
        except OSError as error:
            raise StorageError(f"cannot write {target}: {error.strerror or error}") from error
        with os.fdopen(fd, "wb") as out, self.storage.open_read(obj.key) as stream:
            for chunk in iter_chunks(stream):
                out.write(chunk)
                written += len(chunk)
                on_chunk(len(chunk))
        if written != obj.size:
            raise StorageError(f"{self.storage.display(obj.key)} changed while it was "
                               f"archived: listed with {exact(obj.size)}, read {written:,}")

    def payload(self) -> list[PayloadItem]:
        """Every source file under data/export/, read from the local copy (call
        :meth:`local_copy` first)."""
        if self._local is None:
            raise RuntimeError("ExportSource.payload before local_copy")
        root = self._local
        return [PayloadItem(path=f"{EXPORT_DIR}/{o.key}", size=o.size,
                            open=functools.partial(_open_read, root / o.key), mtime=o.mtime,
                            local_source=str(root / o.key))
                for o in self.objects]


def _open_read(path: Path) -> IO[bytes]:
    return path.open("rb")


@contextlib.contextmanager
def open_export_source(source: str, *, endpoint_url: str | None = None) -> Iterator[ExportSource]:
    """The source at ``source`` listed; raises BadInput for a malformed location (or a link
    in a local tree), StorageError, NeedsRestoreFromColdStorage."""
    storage = open_storage(source, endpoint_url=endpoint_url)
    try:
        yield ExportSource(storage, source_identity(source))
    finally:
        storage.close()
