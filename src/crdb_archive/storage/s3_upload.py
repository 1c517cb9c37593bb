"""One S3 object written from a stream: a single PUT when small, else a multipart upload.

Memory holds one part at most. Every request carries the SHA-256 of its bytes
(``ChecksumSHA256``), so S3 refuses to store bytes that differ from what was sent.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from crdb_archive.errors import BadInput, StorageError
from crdb_archive.storage.base import WriteOptions
from crdb_archive.storage.lock_options import check_lock
from crdb_archive.storage.receipts import SHA256, SHA256_COMPOSITE, Receipt, b64, sha256_composite
from crdb_archive.storage.s3_errors import s3_errors
from crdb_archive.storage.s3_outcome import (
    SentObject,
    UploadStart,
    abort_leftovers,
    note_initiation,
    object_is,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIN_PART = 8 << 20
MAX_PART = 5 << 30
MAX_PARTS = 10_000
# Without a size hint, parts double every this many parts: 10,000 parts then reach S3's 5 TiB
# object limit while small objects keep small parts.
_GROWTH_EVERY = 1_000

STORAGE_CLASSES = frozenset({
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
    "GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "OUTPOSTS", "SNOW", "EXPRESS_ONEZONE",
})
# Objects in these classes must be restored before a GET (S3 answers InvalidObjectState).
COLD_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})


def base_part_size(size_hint: int | None) -> int:
    """The first part size: 8 MiB, or larger so that ``size_hint`` fits in 9,000 parts."""
    if not size_hint:
        return MIN_PART
    # 9,000 rather than 10,000 leaves room for a hint that falls a little short.
    wanted = math.ceil(size_hint / (MAX_PARTS - 1_000))
    mib = 1 << 20
    return min(MAX_PART, max(MIN_PART, math.ceil(wanted / mib) * mib))


def part_size(base: int, part_number: int) -> int:
    """Size of part ``part_number`` (from 1): ``base`` doubled every 1,000 parts."""
    return min(MAX_PART, base << ((part_number - 1) // _GROWTH_EVERY))


def validate_options(options: WriteOptions, where: str) -> None:
    """Checks that need no request: known storage class, lock mode and date given together.

    Raises BadInput.
    """
    if options.storage_class is not None and options.storage_class not in STORAGE_CLASSES:
        raise BadInput(f"{where}: unknown storage class {options.storage_class!r} (expected "
                       f"one of {', '.join(sorted(STORAGE_CLASSES))})")
    check_lock(options, where, lock="Object Lock", mode="Object Lock mode")


def object_arguments(options: WriteOptions | None) -> dict[str, Any]:
    """Arguments of PutObject/CreateMultipartUpload that carry ``options``."""
    if options is None:
        return {}
    arguments: dict[str, Any] = {}
    if options.storage_class is not None:
        arguments["StorageClass"] = options.storage_class
    if options.lock_mode is not None and options.retain_until is not None:
        arguments["ObjectLockMode"] = options.lock_mode
        arguments["ObjectLockRetainUntilDate"] = options.retain_until
    return arguments


class S3Upload:
    """The writer behind ``S3Storage.open_write``: call :meth:`finish` or :meth:`abort`."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        where: str,
        secrets: Sequence[str],
        *,
        size_hint: int | None,
        options: WriteOptions | None,
        receipt_key: str,
    ) -> None:
        self._client = client
        self._receipt_key = receipt_key  # the key below the storage's root
        self._receipt: Receipt | None = None
        self._bucket = bucket
        self._key = key
        self._where = where
        self._secrets = secrets
        self._arguments = object_arguments(options)
        self._base = base_part_size(size_hint)
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._part_etags: list[str] = []
        self._part_sha256: list[bytes] = []
        self._part_sizes: list[int] = []
        self._start: UploadStart | None = None
        self._written = 0

    @property
    def bytes_written(self) -> int:
        return self._written

    @property
    def receipt(self) -> Receipt | None:
        """The object's SHA-256 as S3 reports it (composite for a multipart upload), once
        :meth:`finish` returned."""
        return self._receipt

    @property
    def upload_id(self) -> str | None:
        """The multipart upload in progress, if one was started."""
        return self._upload_id

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        self._written += len(data)
        while len(self._buffer) >= (size := part_size(self._base, len(self._parts) + 1)):
            # One copy of the part (slicing the bytearray first would make two).
            with memoryview(self._buffer) as view, view[:size] as head:
                part = bytes(head)
            self._upload_part(part)
            del self._buffer[:size]

    def finish(self) -> None:
        """Make the object visible: one PUT, or the last part and CompleteMultipartUpload."""
        if self._upload_id is None:
            body = bytes(self._buffer)
            self._buffer.clear()
            digest = self._put(body)
            self._receipt = Receipt(self._receipt_key, len(body), {SHA256: b64(digest)})
            return
        if self._buffer:
            self._upload_part(bytes(self._buffer))
            self._buffer.clear()
        try:
            with s3_errors("complete the upload of", self._where, self._secrets):
                self._client.complete_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        except StorageError:
            # Applied, and the answer lost: the retry then meets NoSuchUpload.
            sent = SentObject(self._written, self._part_etags, self._part_sha256, True)
            if not object_is(self._client, self._bucket, self._key, sent):
                raise
        self._upload_id = None
        if self._start is not None and self._start.retried:
            abort_leftovers(self._client, self._bucket, self._key, self._start, keep=None)
        self._ensure_retention()
        self._receipt = Receipt(self._receipt_key, self._written,
                                {SHA256_COMPOSITE: sha256_composite(self._part_sha256)},
                                tuple(self._part_sizes))

    def _put(self, body: bytes) -> bytes:
        """One PUT of the whole object; returns its SHA-256."""
        digest = hashlib.sha256(body).digest()
        try:
            with s3_errors("write", self._where, self._secrets):
                self._client.put_object(
                    Bucket=self._bucket, Key=self._key, Body=body,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=base64.b64encode(digest).decode("ascii"),
                    **self._arguments,
                )
        except StorageError:
            # A PUT applied whose every answer was lost has still stored what we sent.
            md5 = hashlib.md5(body).hexdigest()  # noqa: S324 - S3's ETag scheme
            if not object_is(self._client, self._bucket, self._key,
                             SentObject(len(body), [md5], [digest], False)):
                raise
        return digest

    def _ensure_retention(self) -> None:
        # AWS applies the lock given to CreateMultipartUpload; some S3-compatible stores
        # (moto among them) drop it there, so check, and set it on the object if missing.
        mode = self._arguments.get("ObjectLockMode")
        if mode is None:
            return
        with s3_errors("set the Object Lock retention of", self._where, self._secrets):
            head = self._client.head_object(Bucket=self._bucket, Key=self._key)
            if head.get("ObjectLockMode") != mode:
                self._client.put_object_retention(
                    Bucket=self._bucket, Key=self._key, VersionId=head["VersionId"],
                    Retention={"Mode": mode,
                               "RetainUntilDate": self._arguments["ObjectLockRetainUntilDate"]},
                )

    def abort(self) -> None:
        """Drop the parts sent so far, so that no billed, invisible upload lingers."""
        self._buffer.clear()
        upload_id, self._upload_id = self._upload_id, None
        start, self._start = self._start, None
        # Best effort: the failure that brought us here is the one to report; a lifecycle
        # rule (AbortIncompleteMultipartUpload) catches what this misses.
        if upload_id is not None:
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=upload_id
                )
        if start is not None and start.retried:
            with contextlib.suppress(Exception):
                abort_leftovers(self._client, self._bucket, self._key, start, keep=None)

    def _start_upload(self) -> str:
        start = self._start = UploadStart.now()
        try:
            with s3_errors("start the upload of", self._where, self._secrets):
                started = self._client.create_multipart_upload(
                    Bucket=self._bucket, Key=self._key, ChecksumAlgorithm="SHA256",
                    **self._arguments,
                )
        except BaseException:
            start.retried = True  # an attempt may have been applied all the same
            raise
        upload_id = started["UploadId"]
        start.answered(started.get("ResponseMetadata", {}).get("RetryAttempts", 0))
        if start.retried:
            # An earlier attempt may have started an upload whose answer was lost: note when
            # ours began by the store's clock, to tell such leftovers from other writers'.
            note_initiation(self._client, self._bucket, self._key, upload_id, start)
        return upload_id

    def _upload_part(self, body: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self._start_upload()
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise BadInput(f"{self._where} is too large for one S3 object "
                           f"({MAX_PARTS} parts sent)")
        digest = hashlib.sha256(body).digest()
        checksum = base64.b64encode(digest).decode("ascii")
        with s3_errors("write", self._where, self._secrets):
            answer = self._client.upload_part(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
                PartNumber=number, Body=body,
                ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum,
            )
        self._parts.append(
            {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}
        )
        self._part_etags.append(answer["ETag"])
        self._part_sha256.append(digest)
        self._part_sizes.append(len(body))
