"""What a write whose answer was lost did: the object as sent, or uploads nobody will finish.

A request can be applied by S3 and its answer lost on the way back (a reset, a 500 from a
proxy). For the idempotent requests a retry is harmless, but two are not:

- ``CompleteMultipartUpload``: the retry of an applied one meets ``NoSuchUpload``. The object
  then exists; it is ours when its size and ETag (or SHA-256 checksum) are the ones the parts
  we sent make.
- ``CreateMultipartUpload``: each applied attempt whose answer was lost starts an upload whose
  id we never learn. It holds no part and is billed until a lifecycle rule removes it, so the
  writer lists the key's pending uploads and aborts those initiated since its first attempt.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from crdb_archive.errors import CrdbArchiveError
from crdb_archive.storage.s3_read import backoff

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Tolerance for the clock of this host against the store's when only the local clock can
# place the first attempt; and the resolution of the stores' initiation times.
_CLOCK_SLACK = timedelta(seconds=5)
_RESOLUTION = timedelta(seconds=1)
_SWEEP_ATTEMPTS = 4


@dataclass(frozen=True)
class SentObject:
    """What a writer sent: byte count and per-part ETags and SHA-256 digests."""

    size: int
    etags: Sequence[str]
    sha256: Sequence[bytes]
    multipart: bool


def _unquote(etag: str) -> str:
    return etag.strip().strip('"').lower()


def expected_etag(sent: SentObject) -> str | None:
    """The ETag S3 gives the object made of these parts (MD5 based, without SSE-KMS)."""
    digests = [_unquote(e) for e in sent.etags]
    if not all(len(d) == 32 and all(c in "0123456789abcdef" for c in d) for d in digests):
        return None  # encrypted with KMS or a store of another kind: not an MD5
    if not sent.multipart:
        return digests[0] if digests else None
    joined = hashlib.md5(b"".join(bytes.fromhex(d) for d in digests)).hexdigest()  # noqa: S324 - S3's ETag scheme, not a security check
    return f"{joined}-{len(digests)}"


def expected_checksum(sent: SentObject) -> str:
    """The object's ChecksumSHA256: of the bytes, or of the parts' digests for a multipart."""
    if not sent.multipart:
        return base64.b64encode(sent.sha256[0]).decode("ascii")
    return base64.b64encode(hashlib.sha256(b"".join(sent.sha256)).digest()).decode("ascii")


def object_is(client: S3Client, bucket: str, key: str, sent: SentObject) -> bool:
    """Whether the object at ``key`` is the one these bytes make; False when unsure."""
    try:
        head: dict[str, Any] = client.head_object(  # type: ignore[assignment]
            Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except (BotoCoreError, ClientError):
        return False
    if head.get("ContentLength") != sent.size:
        return False
    etag = expected_etag(sent)
    if etag is not None and _unquote(str(head.get("ETag", ""))) == etag:
        return True
    checksum = str(head.get("ChecksumSHA256") or "").split("-", 1)[0]
    return bool(checksum) and checksum == expected_checksum(sent)


@dataclass
class UploadStart:
    """When a writer began starting its multipart upload, to tell its leftovers from others'."""

    wall: datetime
    monotonic: float
    retried: bool = False
    window: float | None = None  # seconds from the first attempt to the answer that counted
    initiated: datetime | None = None  # the store's initiation time of the upload that counted

    @classmethod
    def now(cls) -> UploadStart:
        return cls(datetime.now(UTC), time.monotonic())

    def answered(self, retries: int) -> None:
        self.window = time.monotonic() - self.monotonic
        self.retried = self.retried or retries > 0

    def since(self) -> datetime:
        """Uploads initiated at or after this instant (by the store's clock) are ours.

        From the store's own initiation time of our upload when known, less the time our
        attempts took: free of any skew between this host's clock and the store's.
        """
        if self.initiated is not None and self.window is not None:
            return self.initiated - timedelta(seconds=self.window) - _RESOLUTION
        return self.wall - _CLOCK_SLACK


def _pending(client: S3Client, bucket: str, key: str) -> Iterator[dict[str, Any]]:
    paginator = client.get_paginator("list_multipart_uploads")
    for page in paginator.paginate(Bucket=bucket, Prefix=key):
        for upload in page.get("Uploads", []):
            if upload.get("Key") == key:
                yield dict(upload)


def note_initiation(client: S3Client, bucket: str, key: str, upload_id: str,
                    start: UploadStart) -> None:
    """Record the store's initiation time of our upload (listed while it is pending)."""
    with contextlib.suppress(BotoCoreError, ClientError):
        for upload in _pending(client, bucket, key):
            if upload.get("UploadId") == upload_id and upload.get("Initiated") is not None:
                start.initiated = _utc(upload["Initiated"])
                return


def abort_leftovers(client: S3Client, bucket: str, key: str, start: UploadStart,
                    keep: str | None) -> None:
    """Abort the key's pending uploads initiated since ``start``, other than ``keep``.

    Best effort, a few attempts: a failure here must not turn a finished write into an error;
    a lifecycle rule (AbortIncompleteMultipartUpload) catches what is missed.
    """
    since = start.since()
    for attempt in range(1, _SWEEP_ATTEMPTS + 1):
        try:
            for upload in list(_pending(client, bucket, key)):
                initiated = upload.get("Initiated")
                if upload.get("UploadId") == keep or initiated is None:
                    continue
                if _utc(initiated) >= since:
                    with contextlib.suppress(ClientError):  # NoSuchUpload: gone already
                        client.abort_multipart_upload(Bucket=bucket, Key=key,
                                                      UploadId=upload["UploadId"])
        except CrdbArchiveError:
            raise
        except (BotoCoreError, ClientError, OSError):
            if attempt < _SWEEP_ATTEMPTS:
                time.sleep(backoff(attempt + 1))
            continue
        return


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
