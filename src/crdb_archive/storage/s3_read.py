"""How an S3 read asks for a range: a GET with ``Range``, conditioned on the ETag (``If-Match``)
when it resumes. The resuming itself is storage/resumable_read.py's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from botocore.exceptions import ClientError, ResponseStreamingError
from urllib3.exceptions import HTTPError as Urllib3Error

from crdb_archive.errors import StorageError
from crdb_archive.storage import resumable_read
from crdb_archive.storage.backoff import backoff
from crdb_archive.storage.resumable_read import Answer, byte_range
from crdb_archive.storage.s3_errors import error_code, s3_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["ObjectRead", "backoff", "open_object_range", "read_small"]


@dataclass(frozen=True)
class ObjectRead:
    """Where one read goes and how hard it tries."""

    client: S3Client
    bucket: str
    key: str  # the full key in the bucket
    where: str  # the object's name for messages, without secrets
    secrets: Sequence[str]
    attempts: int
    version_word: str | None = None  # a read without an ETag goes on unconditioned

    def get(self, start: int, end: int | None, version: str | None) -> Answer | None:
        """See :meth:`~crdb_archive.storage.resumable_read.Fetch.get`."""
        answer = _get(self, f"bytes={start}-{'' if end is None else end}", version)
        if answer is None:
            return None
        body = answer["Body"]
        _, last = byte_range(self.where, str(answer.get("ContentRange") or ""), start,
                             body.close)
        return Answer(body.read, body.close, last, answer.get("ETag"))


def open_object_range(read: ObjectRead, start: int, length: int | None) -> IO[bytes] | None:
    """A reader of ``length`` bytes from ``start`` (to the end when None), or None when the
    range starts at or past the end of the object.

    Raises ObjectNotFound, NeedsRestoreFromColdStorage, StorageError; the reader raises
    StorageError when the bytes cannot all be had.
    """
    opened = resumable_read.open_range(read, start, length)
    return None if opened is None else opened[0]


def read_small(read: ObjectRead, limit: int) -> tuple[bytes, str] | None:
    """At most ``limit + 1`` bytes of a small object and its ETag, all of one version; None
    when there is no object.

    Raises NeedsRestoreFromColdStorage, StorageError.
    """
    return resumable_read.read_small(read, limit, lambda: _head(read))


def _head(read: ObjectRead) -> tuple[int, str] | None:
    """The size and ETag of an object (an empty one: a ranged GET has nothing to answer)."""
    with s3_errors("read", read.where, read.secrets):
        try:
            head = read.client.head_object(Bucket=read.bucket, Key=read.key)
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
    return int(head.get("ContentLength") or 0), str(head["ETag"])


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
