"""Reading an S3 object's bytes whole or not at all: a broken or short body is resumed.

A response body can end early in two ways a client cannot tell from a good one by itself: the
connection breaks (a reset, a close before Content-Length), or a middlebox answers with a body
that is short and a Content-Length that agrees with it. Every GET here is therefore ranged, and
the ``Content-Range`` of the answer says how many bytes must come; when fewer arrive, the read
goes on from the byte reached with a new ranged GET conditioned on the ETag (``If-Match``), so
that a replaced object is never stitched onto the old one. After a bounded number of attempts
the read fails with StorageError: a network fault is never passed up as a short file.
"""

from __future__ import annotations

import io
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from botocore.exceptions import ClientError, ResponseStreamingError
from urllib3.exceptions import HTTPError as Urllib3Error

from crdb_archive.errors import CrdbArchiveError, ObjectNotFound, StorageError
from crdb_archive.storage.s3_errors import error_code, s3_errors
from crdb_archive.storage.streams import READ_BUFFER

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_CONTENT_RANGE = re.compile(r"^bytes (\d{1,20})-(\d{1,20})/(\d{1,20}|\*)$")
# Backoff between attempts: full jitter, doubling from 50 ms up to 2 s.
_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 2.0


@dataclass(frozen=True)
class ObjectRead:
    """Where one read goes and how hard it tries."""

    client: S3Client
    bucket: str
    key: str  # the full key in the bucket
    where: str  # the object's name for messages, without secrets
    secrets: Sequence[str]
    attempts: int


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt`` (from 2): full jitter, capped."""
    return random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * (2 ** (attempt - 1))))  # noqa: S311 - jitter, not a secret


def open_object_range(read: ObjectRead, start: int, length: int | None) -> IO[bytes] | None:
    """A reader of ``length`` bytes from ``start`` (to the end when None), or None when the
    range starts at or past the end of the object.

    Raises ObjectNotFound, NeedsRestoreFromColdStorage, StorageError; the reader raises
    StorageError when the bytes cannot all be had.
    """
    opened = _open_range(read, start, length)
    return None if opened is None else opened[0]


def _open_range(read: ObjectRead, start: int, length: int | None
                ) -> tuple[IO[bytes], str] | None:
    """As :func:`open_object_range`, with the ETag of the version the reader reads."""
    end = "" if length is None else str(start + length - 1)
    answer = _get(read, f"bytes={start}-{end}", None)
    if answer is None:
        return None
    _, last = _range_of(read, answer, start)
    if length is not None:
        last = min(last, start + length - 1)
    body = _ResumingBody(read, answer, start, last + 1)
    return io.BufferedReader(body, buffer_size=READ_BUFFER), str(answer.get("ETag") or "")


def read_small(read: ObjectRead, limit: int) -> tuple[bytes, str] | None:
    """At most ``limit + 1`` bytes of a small object and its ETag, all of one version; None
    when there is no object.

    Raises NeedsRestoreFromColdStorage, StorageError.
    """
    try:
        reader = _open_range(read, 0, limit + 1)
    except ObjectNotFound:
        return None
    if reader is None:  # an empty object: a ranged GET has nothing to answer with
        with s3_errors("read", read.where, read.secrets):
            try:
                head = read.client.head_object(Bucket=read.bucket, Key=read.key)
            except ClientError as error:
                if error_code(error) in ("NoSuchKey", "404", "NotFound"):
                    return None
                raise
        if head.get("ContentLength"):
            raise StorageError(f"cannot read {read.where}: it changed while it was read")
        return b"", str(head["ETag"])
    body, etag = reader
    with body:
        return body.read(), etag


def _get(read: ObjectRead, byte_range: str, etag: str | None) -> dict[str, Any] | None:
    arguments: dict[str, Any] = {"Bucket": read.bucket, "Key": read.key, "Range": byte_range}
    if etag is not None:
        arguments["IfMatch"] = etag
    attempt = 1
    while True:
        with s3_errors("read", read.where, read.secrets):
            try:
                answer: dict[str, Any] = read.client.get_object(**arguments)  # type: ignore[assignment]
            except ClientError as error:
                code = error_code(error)
                # A 416 whose error body was lost on the way has only its status for a code.
                if code in ("InvalidRange", "416") and etag is None:
                    return None
                if code in ("PreconditionFailed", "412"):
                    raise StorageError(f"cannot read {read.where}: the object was replaced "
                                       "while it was being read") from None
                raise
            except (Urllib3Error, ResponseStreamingError):
                # botocore retries a connection that breaks before the answer, not one that
                # breaks while it reads an error answer's body; that is the same fault.
                if attempt >= read.attempts:
                    raise
                attempt += 1
                time.sleep(backoff(attempt))
                continue
        return answer


def _range_of(read: ObjectRead, answer: dict[str, Any], start: int) -> tuple[int, int]:
    """The first and last byte the answer carries, from its Content-Range."""
    match = _CONTENT_RANGE.match(str(answer.get("ContentRange") or ""))
    if match is None:
        answer["Body"].close()
        # A store that ignores Range sends the whole object from byte 0 with a length that
        # nothing else confirms; reading on would risk the wrong bytes or a silent cut.
        raise StorageError(f"cannot read {read.where}: the store answered a ranged request "
                           "without a Content-Range")
    first, last = int(match.group(1)), int(match.group(2))
    if first != start or last < first:
        answer["Body"].close()
        raise StorageError(f"cannot read {read.where}: asked for bytes from {start}, the store "
                           f"sent {first}-{last}")
    return first, last


class _ResumingBody(io.RawIOBase):
    """The bytes ``[start, end)`` of one object, resumed after a broken or short body."""

    def __init__(self, read: ObjectRead, answer: dict[str, Any], start: int, end: int) -> None:
        super().__init__()
        self._read = read
        self._body = answer["Body"]
        self._etag: str | None = answer.get("ETag")
        self._start = start
        self._position = start
        self._end = end
        self._attempt = 1

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._end - self._position)
        if wanted <= 0:
            return 0
        while True:
            failure: str | None = None
            try:
                data: bytes = self._body.read(wanted)
            except CrdbArchiveError:
                raise  # our own, such as Interrupted from a signal handler
            # Every transport failure (urllib3, botocore, OSError) is a reason to resume.
            except Exception as error:  # noqa: BLE001
                failure = type(error).__name__
                data = b""
            if data:
                count = min(len(data), wanted)
                view[:count] = data[:count]
                self._position += count
                return count
            self._resume(failure or "the body ended early")

    def _resume(self, reason: str) -> None:
        self._close_body()
        got = self._position - self._start
        total = self._end - self._start
        if self._attempt >= self._read.attempts:
            raise StorageError(
                f"cannot read {self._read.where}: the transfer broke {self._attempt} times "
                f"({reason}); {got} of {total} bytes arrived")
        self._attempt += 1
        time.sleep(backoff(self._attempt))
        answer = _get(self._read, f"bytes={self._position}-{self._end - 1}", self._etag)
        if answer is None:  # pragma: no cover - only asked with an ETag, which never returns None
            raise StorageError(f"cannot read {self._read.where}: it became shorter while read")
        _, last = _range_of(self._read, answer, self._position)
        if last < self._end - 1:
            answer["Body"].close()
            raise StorageError(f"cannot read {self._read.where}: it became shorter while read")
        self._body = answer["Body"]

    def _close_body(self) -> None:
        try:
            self._body.close()
        except CrdbArchiveError:
            raise
        except Exception:  # noqa: BLE001, S110 - a broken connection may fail to close; it is dropped
            pass

    def close(self) -> None:
        if not self.closed:
            self._close_body()
        super().close()

