"""Read one large object with several ranged requests in flight, in order, in bounded memory.

A single GET stream is limited by one connection's throughput; a multi-gigabyte tar in S3
reads several times faster with a few ranges fetched at once. The bytes come out in order, so
callers hash and parse them as one stream; at most ``parallel`` parts are held in memory.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING

from crdb_archive.errors import StorageError
from crdb_archive.storage.base import Storage

if TYPE_CHECKING:
    from concurrent.futures import Future

PART_SIZE = 8 << 20
PARALLEL = 4


class RangedReader:
    """A read-only binary stream over ``storage``'s object ``key`` of ``size`` bytes."""

    def __init__(self, storage: Storage, key: str, size: int, *,
                 part_size: int = PART_SIZE, parallel: int = PARALLEL) -> None:
        self._storage = storage
        self._key = key
        self._size = size
        self._part_size = part_size
        # Imported here: only remote tars are read this way, and a local verify of a small
        # bundle should not pay for concurrent.futures at start-up.
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

        self._pool = ThreadPoolExecutor(parallel)
        self._parallel = parallel
        self._next_offset = 0
        self._pending: deque[Future[bytes]] = deque()
        self._buffer = memoryview(b"")
        self._closed = False
        self._probed = False
        self._fill()

    def _fetch(self, start: int, length: int) -> bytes:
        with self._storage.open_read(self._key, start=start, length=length) as stream:
            data: bytes = stream.read()
        if len(data) != length:
            # The storage delivers whole ranges or fails; fewer bytes mean the object is
            # shorter than it was listed: it changed while it was read, which is not damage.
            raise StorageError(f"cannot read {self._storage.display(self._key)}: {len(data)} "
                               f"bytes at offset {start} where {length} were expected (it "
                               "changed while it was read)")
        return data

    def _probe_end(self) -> bytes:
        # The size came from a listing or a HEAD; an object longer than that would be read cut
        # short and look damaged. One byte asked past the end must not come.
        with self._storage.open_read(self._key, start=self._size, length=1) as stream:
            extra = stream.read(1)
        if extra:
            raise StorageError(f"cannot read {self._storage.display(self._key)}: it is longer "
                               f"than the {self._size} bytes it was listed with (it changed "
                               "while it was read)")
        return b""

    def _fill(self) -> None:
        while len(self._pending) < self._parallel and self._next_offset < self._size:
            length = min(self._part_size, self._size - self._next_offset)
            self._pending.append(self._pool.submit(self._fetch, self._next_offset, length))
            self._next_offset += length
        if self._next_offset >= self._size and not self._probed:
            self._probed = True
            self._pending.append(self._pool.submit(self._probe_end))

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when negative); b"" at the end."""
        chunks: list[bytes] = []
        wanted = size if size >= 0 else self._size
        while wanted > 0:
            if not self._buffer:
                if not self._pending:
                    break
                part = self._pending.popleft().result()
                self._fill()
                self._buffer = memoryview(part)
            piece = self._buffer[:wanted]
            chunks.append(bytes(piece))
            self._buffer = self._buffer[len(piece):]
            wanted -= len(piece)
        return b"".join(chunks)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()

    def __enter__(self) -> RangedReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
