"""One read, many digests: SHA-256 (the BagIt and CockroachDB standard) and BLAKE3 (fast).

Everything streams in fixed-size chunks, so memory does not grow with file size.
"""

from __future__ import annotations

import hashlib
import hmac
import mmap
import os
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Protocol, TypeVar

import blake3

from crdb_archive.progress import ProgressCallback, ProgressEvent, no_progress

if TYPE_CHECKING:
    from concurrent.futures import Future

CHUNK_SIZE = 1 << 20

T = TypeVar("T")
R = TypeVar("R")

# Below this size a file is hashed on one thread; above it BLAKE3 spreads over cores.
_BLAKE3_THREADS_FROM = 16 << 20

# Batches handed to the pool ahead of the results, per thread: enough to keep every thread
# busy, few enough that memory does not grow with the number of items.
_BATCHES_AHEAD = 4

# How much of a memory-mapped file is hashed before its pages are released.
_MAP_WINDOW = 16 << 20


@dataclass(frozen=True, slots=True)  # one per payload file: 100k of them
class Digests:
    """The digests and size of one stream of bytes."""

    size: int
    sha256: str
    blake3: str


class DigestWriter:
    """Computes both digests of everything passed to :meth:`update`."""

    def __init__(self, *, sha256: bool = True, size_hint: int | None = None) -> None:
        self._sha256 = hashlib.sha256() if sha256 else None
        threads = (
            blake3.blake3.AUTO
            if size_hint is not None and size_hint >= _BLAKE3_THREADS_FROM
            else 1
        )
        self._blake3 = blake3.blake3(max_threads=threads)
        self.size = 0

    def update(self, chunk: bytes | memoryview) -> None:
        if self._sha256 is not None:
            self._sha256.update(chunk)
        self._blake3.update(chunk)
        self.size += len(chunk)

    def digests(self) -> Digests:
        return Digests(
            size=self.size,
            sha256=self._sha256.hexdigest() if self._sha256 is not None else "",
            blake3=self._blake3.hexdigest(),
        )


def iter_chunks(stream: IO[bytes], chunk_size: int = CHUNK_SIZE) -> Iterable[bytes]:
    """Yield ``stream`` in chunks of at most ``chunk_size`` bytes until EOF."""
    while chunk := stream.read(chunk_size):
        yield chunk


def digest_stream(
    stream: IO[bytes],
    *,
    sha256: bool = True,
    size_hint: int | None = None,
    task: str = "",
    progress: ProgressCallback = no_progress,
) -> Digests:
    """Digest a binary stream to its end."""
    writer = DigestWriter(sha256=sha256, size_hint=size_hint)
    for chunk in iter_chunks(stream):
        writer.update(chunk)
        progress(ProgressEvent(task, writer.size, size_hint))
    return writer.digests()


def digest_bytes(data: bytes) -> Digests:
    """Both digests of bytes held whole."""
    return Digests(size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                   blake3=blake3.blake3(data).hexdigest())


def blake3_of_file(path: str | os.PathLike[str]) -> Digests:
    """BLAKE3 (no SHA-256) of a local file, the fastest way this machine allows.

    A file below 16 MiB is opened, read and hashed in one call to the BLAKE3 library, which
    releases the interpreter lock meanwhile: several threads hash many small files at once,
    at a small fixed cost per file. A large file is memory-mapped and hashed by BLAKE3 on all
    cores, as ``b3sum`` does, one window at a time; each window is dropped from the process
    once hashed, so resident memory stays at one window however large the file. Raises
    OSError as the file system does.
    """
    size = os.stat(path).st_size  # noqa: PTH116 - a str path: no Path object per file
    if size < _BLAKE3_THREADS_FROM:
        try:
            digest = blake3.blake3().update_mmap(path).hexdigest()
        except OSError:
            # Its errors carry no strerror, and some file systems cannot map files: read it
            # the ordinary way, which hashes it or raises what reading raises.
            return _blake3_by_reading(path)
        return Digests(size=size, sha256="", blake3=digest)
    with open(path, "rb") as stream:  # noqa: PTH123 - a str path: no Path object per file
        size, digest = blake3_of_mapped(stream.fileno())
        return Digests(size=size, sha256="", blake3=digest)


def blake3_of_mapped(fd: int) -> tuple[int, str]:
    """The size and BLAKE3 (hex) of the open file ``fd``, mapped and hashed on all cores a
    window at a time, each window dropped from the process once hashed. Raises OSError (and
    ValueError for an empty file, which cannot be mapped)."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
        size = len(mapped)
        mapped.madvise(mmap.MADV_SEQUENTIAL)
        view = memoryview(mapped)
        try:
            for start in range(0, size, _MAP_WINDOW):
                length = min(_MAP_WINDOW, size - start)
                hasher.update(view[start:start + length])
                mapped.madvise(mmap.MADV_DONTNEED, start, length)
        finally:
            view.release()
    return size, hasher.hexdigest()


def _blake3_by_reading(path: str | os.PathLike[str]) -> Digests:
    with open(path, "rb") as stream:  # noqa: PTH123 - a str path: no Path object per file
        return digest_stream(stream, sha256=False)


def digest_mapped(mapped: mmap.mmap, start: int, size: int, *, sha256: bool = True) -> Digests:
    """Both digests (BLAKE3 alone without ``sha256``) of ``size`` bytes of ``mapped`` from
    ``start``, hashed in place, without a copy.

    A large range is hashed a window at a time, each window's pages dropped from the process
    once hashed, so that resident memory stays at one window. Raises ValueError when the
    range runs past the end of the map.
    """
    if start + size > len(mapped):
        raise ValueError(f"bytes {start}-{start + size} are past the end of the map")
    writer = DigestWriter(sha256=sha256, size_hint=size)
    with memoryview(mapped) as whole:
        for offset in range(start, start + size, _MAP_WINDOW):
            end = min(offset + _MAP_WINDOW, start + size)
            with whole[offset:end] as window:
                writer.update(window)
            if size >= _MAP_WINDOW:
                page = offset - offset % mmap.PAGESIZE
                mapped.madvise(mmap.MADV_DONTNEED, page, end - page)
    return writer.digests()


class Writable(Protocol):
    """Anything bytes can be written to: a file, an upload."""

    def write(self, data: bytes | bytearray | memoryview, /) -> object: ...


def copy_and_digest(
    source: IO[bytes],
    sink: Writable,
    *,
    size_hint: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> Digests:
    """Copy ``source`` to ``sink`` and digest the bytes on the way: one read for both."""
    writer = DigestWriter(size_hint=size_hint)
    readinto = getattr(source, "readinto", None)
    if readinto is None:
        for chunk in iter_chunks(source):
            writer.update(chunk)
            sink.write(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
        return writer.digests()
    buffer = bytearray(CHUNK_SIZE if size_hint is None else max(1, min(CHUNK_SIZE, size_hint)))
    view = memoryview(buffer)
    while count := readinto(view):
        piece = view[:count]
        writer.update(piece)
        sink.write(piece)
        if on_chunk is not None:
            on_chunk(count)
    return writer.digests()


def batches_of(items: Iterable[T], size_of: Callable[[T], int], *, batch_bytes: int,
               batch_items: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``batch_items`` and about ``batch_bytes`` (a larger item
    is a list of its own), made as they are come to."""
    current: list[T] = []
    current_bytes = 0
    for item in items:
        size = size_of(item)
        if current and (current_bytes + size > batch_bytes or len(current) >= batch_items):
            yield current
            current, current_bytes = [], 0
        current.append(item)
        current_bytes += size
    if current:
        yield current


def parallel_in_batches(
    work: Callable[[T], R],
    items: Iterable[T],
    size_of: Callable[[T], int],
    *,
    threads: int,
    batch_bytes: int = 32 << 20,
    batch_items: int = 256,
    stop: threading.Event | None = None,
) -> Generator[tuple[T, R], None, None]:
    """``work(item)`` for every item on a thread pool, yielding ``(item, result)`` in order.

    Small items travel in batches so that 100k small files do not pay a pool hand-off each;
    a large item is a batch of its own. ``items`` is consumed lazily, a few batches ahead of
    the results, so that producing them (walking a directory) overlaps the work and memory
    does not grow with their number. The first exception (in a worker, or in the consumer,
    such as an interrupt) sets ``stop``, which long work may watch to give up early, and
    propagates.
    """
    stopping = stop if stop is not None else threading.Event()

    def run(batch: list[T]) -> list[tuple[T, R]]:
        return [(item, work(item)) for item in batch if not stopping.is_set()]

    # Imported here: a bundle of a few files is hashed on this thread, and concurrent.futures
    # (with logging) is a noticeable share of a small verify's start-up.
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    pending: deque[Future[list[tuple[T, R]]]] = deque()
    with ThreadPoolExecutor(threads) as pool:
        try:
            for batch in batches_of(items, size_of, batch_bytes=batch_bytes,
                                    batch_items=batch_items):
                pending.append(pool.submit(run, batch))
                if len(pending) > _BATCHES_AHEAD * threads:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        finally:
            # Tell running work to stop (it may check ``stop``) before the pool waits for it.
            stopping.set()
            for future in pending:
                future.cancel()


def same_digest(a: str, b: str) -> bool:
    """Compare two hex digests in constant time, ignoring case."""
    return hmac.compare_digest(a.lower().encode(), b.lower().encode())
