"""Reading a blob's bytes whole or not at all: a broken or short answer is resumed.

A read is a sequence of ranged GETs of at most 4 MiB, each checked against the MD5 the service
computes for such a range (``validate_content``), so that bytes damaged on the way are refused,
never passed up. The first answer tells the blob's size and ETag; every later range is
conditioned on that ETag (``If-Match``), so that a replaced blob is never stitched onto the old
one. An answer that ends early (a reset, a close, or a body that is short with a
Content-Length that agrees) is taken for what it holds and the read goes on from the byte
reached. After a bounded number of broken answers the read fails with StorageError naming the
blob and the count: a network fault is never passed up as a short file. (The SDK itself also
repeats a GET whose body broke, up to three times, before it reports it here.)
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    DecodeError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from crdb_archive.errors import ObjectNotFound, StorageError
from crdb_archive.storage.azure_client import READ_CHUNK, requests_sent
from crdb_archive.storage.azure_errors import Translator
from crdb_archive.storage.backoff import backoff
from crdb_archive.storage.streams import READ_BUFFER

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

_CONTENT_RANGE = re.compile(r"^bytes (\d{1,20})-(\d{1,20})/(\d{1,20})$")


@dataclass(frozen=True)
class BlobRead:
    """Where one read goes and how hard it tries."""

    blob: BlobClient
    where: str  # the blob's name for messages, without secrets
    errors: Translator
    attempts: int


@dataclass(frozen=True)
class _Piece:
    data: bytes
    etag: str
    size: int  # of the whole blob


class _Broken(Exception):
    """An answer that broke on the way: worth asking again."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _fetch(read: BlobRead, offset: int, count: int, etag: str | None) -> _Piece | None:
    """Up to ``count`` bytes from ``offset``; None when the range starts past the end (asked
    without an ETag). Raises _Broken for an answer worth asking again, our errors else."""
    options: dict[str, Any] = {"offset": offset, "length": count, "max_concurrency": 1,
                               "validate_content": True}
    if etag is not None:
        options["etag"] = etag
        options["match_condition"] = MatchConditions.IfNotModified
    try:
        downloader = read.blob.download_blob(**options)
        data = downloader.readall()
        content_range = str(downloader.properties.content_range or "")
        found = str(downloader.properties.etag or "")
    except (ResourceNotFoundError, ServiceRequestError) as error:
        raise read.errors.translate(error, "read", read.where) from None
    except (DecodeError, ServiceResponseError, OSError) as error:
        # The SDK reads a body inside its pipeline to check its MD5, and lets the transport's
        # own exception out when that body breaks (requests' exceptions are OSErrors).
        raise _Broken(type(error).__name__) from None
    except HttpResponseError as error:
        if error.status_code == 416 and etag is None:
            return None
        raise _http_failure(read, error) from None
    except AzureError as error:
        if "MD5 mismatch" in str(error):
            raise _Broken("the bytes did not match their MD5") from None
        raise read.errors.translate(error, "read", read.where) from None
    return _piece(read, offset, bytes(data), content_range, found)


def _http_failure(read: BlobRead, error: HttpResponseError) -> Exception:
    """What to raise for an HTTP error answer to a ranged read."""
    if error.status_code == 412:
        return StorageError(f"cannot read {read.where}: the blob was replaced while it was "
                            "being read")
    if error.status_code is None:  # the SDK's own wrapping of a body that broke
        return _Broken(type(error).__name__)
    return read.errors.translate(error, "read", read.where)


def _piece(read: BlobRead, offset: int, data: bytes, content_range: str, etag: str) -> _Piece:
    """The bytes of a ranged answer, checked to start where they were asked for."""
    match = _CONTENT_RANGE.match(content_range)
    if match is None:
        raise StorageError(f"cannot read {read.where}: the service answered a ranged request "
                           "without a Content-Range")
    if int(match.group(1)) != offset:
        raise StorageError(f"cannot read {read.where}: asked for bytes from {offset}, the "
                           f"service sent them from {match.group(1)}")
    return _Piece(data, etag, int(match.group(3)))


def open_blob_range(read: BlobRead, start: int, length: int | None) -> IO[bytes] | None:
    """A reader of ``length`` bytes from ``start`` (to the end when None), or None when the
    range starts at or past the end of the blob.

    Raises ObjectNotFound, NeedsRestoreFromColdStorage, StorageError; the reader raises
    StorageError when the bytes cannot all be had.
    """
    opened = _open(read, start, length)
    return None if opened is None else opened[0]


def _open(read: BlobRead, start: int, length: int | None) -> tuple[IO[bytes], str] | None:
    """As :func:`open_blob_range`, with the ETag of the version the reader reads."""
    count = READ_CHUNK if length is None else min(READ_CHUNK, length)
    body = _ResumingBlob(read, start)
    first = body.first(count)
    if first is None:
        return None
    end = first.size if length is None else min(first.size, start + length)
    body.begin(first, end)
    return io.BufferedReader(body, buffer_size=READ_BUFFER), first.etag


def read_small(read: BlobRead, limit: int) -> tuple[bytes, str] | None:
    """At most ``limit + 1`` bytes of a small blob and its ETag, all of one version; None when
    there is no blob.

    Raises NeedsRestoreFromColdStorage, StorageError.
    """
    try:
        opened = _open(read, 0, limit + 1)
    except ObjectNotFound:
        return None
    if opened is None:  # an empty blob: a ranged GET has nothing to answer with
        try:
            with read.errors.around("read", read.where):
                properties = read.blob.get_blob_properties()
        except ObjectNotFound:
            return None
        if properties.size:
            raise StorageError(f"cannot read {read.where}: it changed while it was read")
        return b"", str(properties.etag)
    body, etag = opened
    with body:
        return body.read(), etag


class _ResumingBlob(io.RawIOBase):
    """The bytes ``[start, end)`` of one blob, fetched range by range, resumed after a broken
    or short answer."""

    def __init__(self, read: BlobRead, start: int) -> None:
        super().__init__()
        self._read = read
        self._start = start
        self._position = start
        self._end = start
        self._etag: str | None = None
        self._buffer = memoryview(b"")
        self._breaks = 0
        self._requests = 0

    def readable(self) -> bool:
        return True

    def first(self, count: int) -> _Piece | None:
        """The first answer, asked again while it breaks; None past the end."""
        while True:
            try:
                return self._fetch(self._start, count, None)
            except _Broken as broken:
                self._broke(broken.reason)

    def _fetch(self, offset: int, count: int, etag: str | None) -> _Piece | None:
        before = requests_sent()
        try:
            return _fetch(self._read, offset, count, etag)
        finally:
            self._requests += requests_sent() - before

    def begin(self, first: _Piece, end: int) -> None:
        self._etag = first.etag
        self._end = end
        self._take(first, min(len(first.data), end - self._start), end - self._start)

    def _take(self, piece: _Piece, usable: int, wanted: int) -> None:
        self._buffer = memoryview(piece.data)[:usable]
        self._position += usable
        if usable < min(wanted, READ_CHUNK):
            self._broke("the answer ended early")

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        while not self._buffer:
            if self._position >= self._end:
                return 0
            self._next()
        count = min(len(view), len(self._buffer))
        view[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count

    def _next(self) -> None:
        wanted = self._end - self._position
        count = min(READ_CHUNK, wanted)
        try:
            piece = self._fetch(self._position, count, self._etag)
        except _Broken as broken:
            self._broke(broken.reason)
            return
        if piece is None or piece.size < self._end:
            raise StorageError(f"cannot read {self._read.where}: it became shorter while it "
                               "was read")
        self._take(piece, min(len(piece.data), count), wanted)

    def _broke(self, reason: str) -> None:
        self._breaks += 1
        if self._breaks >= self._read.attempts:
            got = self._position - self._start
            arrived = (f"{got} of {self._end - self._start} bytes arrived"
                       if self._etag is not None else "no byte arrived")
            raise StorageError(
                f"cannot read {self._read.where}: the transfer broke {self._breaks} times "
                f"in {self._requests} requests ({reason}); {arrived}")
        time.sleep(backoff(self._breaks + 1))
