"""One Cloud Storage object written from a stream: one request when small, else a resumable
upload, either way checked against the CRC32C and MD5 of what was sent.

A small object goes in one request whose metadata carries its CRC32C and MD5: the store refuses
to keep other bytes. A larger one is a resumable upload in chunks, one chunk in memory; the
last chunk carries ``X-Goog-Hash`` with the CRC32C and MD5 of the whole object, which the store
checks before it completes the upload. Either way the object the store reports is compared with
what was sent (size, CRC32C, MD5, storage class, retention), and an object that differs is
removed again. The store shows an object only once its upload completes; an upload that fails
or is stopped is cancelled (``DELETE`` of its session), so nothing is left.

A chunk whose answer is lost is resumed as the store asks: its status query says how many bytes
it holds, and the upload goes on from there.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import requests
from google.cloud.storage import Blob, Bucket

from crdb_archive.errors import CrdbArchiveError, StorageError
from crdb_archive.storage.gcs_errors import (
    TRANSPORT_ERRORS,
    api_error,
    attempts_text,
    backoff,
    cannot_connect,
    is_transient,
    translate,
    with_retries,
)
from crdb_archive.storage.gcs_retention import Placement
from crdb_archive.storage.receipts import CRC32C, MD5, Crc32c, Receipt, b64

CHUNK_SIZE = 8 << 20  # a multiple of 256 KiB, as resumable uploads require
OCTET_STREAM = "application/octet-stream"
TIMEOUT = (10, 120)
_CANCEL_TIMEOUT = (5, 10)
CONNECTION_ATTEMPTS = 3


@dataclass(frozen=True)
class ObjectTarget:
    """One object and how to reach and name it."""

    bucket: Bucket
    name: str  # the full name in the bucket
    where: str
    secrets: Sequence[str]
    session: requests.Session
    attempts: int
    endpoint: str

    def retried(self, call: Callable[[], Any], action: str) -> Any:
        return with_retries(call, action, self.where, self.secrets, attempts=self.attempts,
                            endpoint=self.endpoint)


@dataclass(frozen=True)
class Stored:
    """What the store says it holds after a write."""

    size: int | None
    crc32c: str | None
    md5: str | None  # absent for composite objects
    generation: int | None
    storage_class: str | None
    retention_mode: str | None

    @classmethod
    def of_resource(cls, resource: dict[str, Any]) -> Stored:
        """From an object resource of the JSON API (the answer that completes an upload)."""
        return cls(_number(resource.get("size")), _text(resource.get("crc32c")),
                   _text(resource.get("md5Hash")), _number(resource.get("generation")),
                   _text(resource.get("storageClass")),
                   _text((resource.get("retention") or {}).get("mode")))

    @classmethod
    def of_blob(cls, blob: Blob) -> Stored:
        """From a blob as the SDK read it."""
        return cls(blob.size, blob.crc32c, blob.md5_hash, blob.generation,
                   blob.storage_class, blob.retention.mode)


def _number(value: Any) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def new_blob(target: ObjectTarget, placement: Placement) -> Blob:
    """A blob handle carrying the storage class and retention to write with."""
    blob = target.bucket.blob(target.name)
    if placement.storage_class is not None:
        blob.storage_class = placement.storage_class
    if placement.retention_mode is not None:
        blob.retention.mode = placement.retention_mode
        blob.retention.retain_until_time = placement.retain_until
    return blob


def put_whole(target: ObjectTarget, body: bytes, placement: Placement,
              **conditions: int) -> Stored:
    """Store ``body`` in one request, with its CRC32C and MD5 for the store to check; returns
    the stored object's resource. ``conditions`` are the SDK's preconditions
    (``if_generation_match``). Raises as the SDK does (not translated), for callers that read
    a failed precondition."""
    blob = new_blob(target, placement)
    blob.crc32c = Crc32c(body).b64()
    blob.md5_hash = b64(hashlib.md5(body).digest())  # noqa: S324 - the store's checksum
    blob.upload_from_string(body, content_type=OCTET_STREAM, checksum=None, retry=None,
                            timeout=TIMEOUT, **conditions)
    return Stored.of_blob(blob)


class _SessionGone(Exception):
    """The store no longer knows the upload session (404 or 410)."""


class GcsUpload:
    """The writer behind ``GcsStorage.open_write``: call :meth:`finish` or :meth:`abort`."""

    def __init__(self, target: ObjectTarget, placement: Placement,
                 discard: Callable[[int], None], *, receipt_key: str,
                 chunk_size: int = CHUNK_SIZE) -> None:
        self._target = target
        self._receipt_key = receipt_key  # the key below the storage's root
        self._receipt: Receipt | None = None
        self._placement = placement
        self._discard = discard  # removes a generation we made that must not stay
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self._written = 0
        self._sent = 0  # bytes the store holds for the session
        self._session_url: str | None = None
        self._final_sent = False
        self._crc = Crc32c()
        self._md5 = hashlib.md5()  # noqa: S324 - the store's checksum, not a security check

    @property
    def bytes_written(self) -> int:
        return self._written

    @property
    def receipt(self) -> Receipt | None:
        """The object's CRC32C and MD5 as the store reports them, once :meth:`finish`
        returned."""
        return self._receipt

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        self._written += len(data)
        # Strictly more than a chunk: the last chunk, which completes the upload, is never empty.
        while len(self._buffer) > self._chunk_size:
            with memoryview(self._buffer) as view, view[:self._chunk_size] as head:
                chunk = bytes(head)
            self._hash(chunk)
            self._send(chunk, None)
            del self._buffer[:self._chunk_size]

    def _hash(self, data: bytes) -> None:
        self._crc.update(data)
        self._md5.update(data)

    def finish(self) -> Stored:
        """Complete the object; returns its resource. Raises StorageError when the store
        fails or holds other bytes than were sent (the object is then removed again)."""
        body = bytes(self._buffer)
        self._buffer.clear()
        self._hash(body)
        if self._session_url is None:
            resource: Stored = self._target.retried(
                lambda: put_whole(self._target, body, self._placement), "write")
        else:
            done = self._send(body, self._written)
            if done is None:  # pragma: no cover - a final chunk always completes or raises
                raise StorageError(f"cannot write {self._target.where}: the store did not "
                                   "complete the upload")
            resource = done
            self._session_url = None
        self._check_stored(resource)
        self._receipt = Receipt(self._receipt_key, self._written,
                                {CRC32C: self._crc.b64(), MD5: b64(self._md5.digest())})
        return resource

    def abort(self) -> None:
        """Cancel the upload session, so that no upload lingers; best effort."""
        self._buffer.clear()
        url, self._session_url = self._session_url, None
        if url is not None:
            with contextlib.suppress(Exception):
                self._target.session.delete(url, timeout=_CANCEL_TIMEOUT).close()

    # --- the resumable session -----------------------------------------------------------

    def _start(self) -> str:
        blob = new_blob(self._target, self._placement)
        url: str = self._target.retried(
            lambda: blob.create_resumable_upload_session(
                content_type=OCTET_STREAM, checksum=None, retry=None, timeout=TIMEOUT),
            "start the upload of")
        return url

    def _send(self, chunk: bytes, total: int | None) -> Stored | None:
        """Send ``chunk`` (the bytes from ``self._sent``); ``total`` on the last one. Returns
        the object's resource when the upload completed."""
        if self._session_url is None:
            self._session_url = self._start()
        offset = self._sent
        end = offset + len(chunk)
        position = offset
        failures = 0
        while True:
            answer, failures = self._attempt(chunk[position - offset:], position, end, total,
                                             failures)
            if answer is None:
                return self._gone(total)
            resource, held = answer
            if resource is not None:
                stored = Stored.of_resource(resource)
                if total is None:
                    self._ended_early(stored)
                self._sent = end
                return stored
            if held < offset or held > end:
                raise StorageError(f"cannot write {self._target.where}: the store holds "
                                   f"{held} bytes of the upload where {offset} to {end} were "
                                   "expected")
            if held == end and total is None:
                self._sent = end
                return None
            failures = self._count_stall(held == position, failures)
            position = held

    def _attempt(self, piece: bytes, position: int, end: int, total: int | None,
                 failures: int) -> tuple[tuple[dict[str, Any] | None, int] | None, int]:
        """One PUT of ``piece``, or after a transient failure the store's account of what it
        holds; (None when the session is gone, failures so far)."""
        try:
            return self._put(piece, position, end, total), failures
        except _SessionGone:
            return None, failures
        except CrdbArchiveError:
            raise
        except TRANSPORT_ERRORS as error:
            failures += 1
            limit = (min(CONNECTION_ATTEMPTS, self._target.attempts)
                     if cannot_connect(error) else self._target.attempts)
            if not is_transient(error) or failures >= limit:
                raise translate(error, "write", self._target.where, self._target.secrets,
                                attempts=failures, endpoint=self._target.endpoint) from None
            return self._status(total, failures), failures

    def _count_stall(self, stalled: bool, failures: int) -> int:
        """A round that moved nothing counts as a failure, bounded as failures are."""
        if not stalled:
            return failures
        failures += 1
        if failures >= self._target.attempts:
            raise StorageError(f"cannot write {self._target.where}: the store took none of a "
                               f"chunk after {attempts_text(failures)}")
        return failures

    def _put(self, piece: bytes, start: int, end: int, total: int | None
             ) -> tuple[dict[str, Any] | None, int]:
        """One PUT of the bytes ``[start, end)``; (resource, held bytes) of the answer."""
        size = "*" if total is None else str(total)
        headers = {"Content-Type": OCTET_STREAM,
                   "Content-Range": f"bytes {start}-{end - 1}/{size}" if piece
                   else f"bytes */{size}"}
        if total is not None:
            self._final_sent = True
            headers["X-Goog-Hash"] = (f"crc32c={self._crc.b64()},"
                                      f"md5={b64(self._md5.digest())}")
        url = self._session_url
        if url is None:  # pragma: no cover - set before any chunk is sent
            raise StorageError(f"cannot write {self._target.where}: no upload session")
        with self._target.session.put(url, data=piece, headers=headers,
                                      timeout=TIMEOUT) as answer:
            return self._outcome(answer)

    def _status(self, total: int | None, failures: int) -> tuple[dict[str, Any] | None, int] | None:
        """Ask the store how much of the upload it holds (after a failed chunk); None when
        the session is gone."""
        time.sleep(backoff(failures + 1))
        size = "*" if total is None else str(total)
        url = self._session_url
        if url is None:  # pragma: no cover - set before any chunk is sent
            raise StorageError(f"cannot write {self._target.where}: no upload session")

        def query() -> tuple[dict[str, Any] | None, int] | None:
            with self._target.session.put(url, data=b"", timeout=TIMEOUT, headers={
                    "Content-Range": f"bytes */{size}"}) as answer:
                try:
                    return self._outcome(answer)
                except _SessionGone:
                    return None

        found: tuple[dict[str, Any] | None, int] | None = self._target.retried(
            query, "resume the upload of")
        return found

    def _outcome(self, answer: requests.Response) -> tuple[dict[str, Any] | None, int]:
        if answer.status_code in (200, 201):
            resource = answer.json()
            if not isinstance(resource, dict):
                raise StorageError(f"cannot write {self._target.where}: the store answered "
                                   "the upload without the object")
            return resource, int(resource.get("size") or 0)
        if answer.status_code == 308:
            held = answer.headers.get("Range", "")
            # "bytes=0-N": N + 1 bytes held; no Range: none yet.
            last = held.rpartition("-")[2]
            return None, int(last) + 1 if held.startswith("bytes=0-") and last.isdigit() else 0
        if answer.status_code in (404, 410):
            raise _SessionGone
        raise api_error(answer)

    def _gone(self, total: int | None) -> Stored:
        """The session ended: fine when it ended because our last chunk completed the upload
        (its answer lost), which the object itself tells."""
        if total is not None and self._final_sent:
            found = self._target.retried(lambda: self._target.bucket.get_blob(
                self._target.name, retry=None, timeout=TIMEOUT), "read")
            if found is not None and self._matches(Stored.of_blob(found)):
                self._sent = total
                return Stored.of_blob(found)
        raise StorageError(f"cannot write {self._target.where}: the store ended the upload "
                           "session before the upload completed; nothing was kept")

    def _ended_early(self, stored: Stored) -> NoReturn:
        """The store completed the upload before its last chunk: the object is not ours."""
        if stored.generation is not None:
            with contextlib.suppress(CrdbArchiveError):
                self._discard(stored.generation)
        self._session_url = None
        raise StorageError(f"cannot write {self._target.where}: the store completed the upload "
                           f"after {stored.size} bytes, before its last chunk; nothing was "
                           "kept")

    # --- what the store holds --------------------------------------------------------------

    def _matches(self, stored: Stored) -> bool:
        return (stored.size == self._written and stored.crc32c == self._crc.b64()
                and stored.md5 in (None, b64(self._md5.digest())))

    def _check_stored(self, stored: Stored) -> None:
        problem = None
        wanted = self._placement
        if not self._matches(stored):
            problem = "the store holds other bytes than were sent (size, CRC32C or MD5 differ)"
        elif wanted.storage_class is not None and stored.storage_class != wanted.storage_class:
            problem = (f"the store did not apply the storage class {wanted.storage_class} (it "
                       f"reports {stored.storage_class or 'none'})")
        elif wanted.retention_mode is not None and stored.retention_mode != wanted.retention_mode:
            problem = f"the store did not apply {wanted.retention_mode} object retention"
        if problem is None:
            return
        if stored.generation is not None:
            with contextlib.suppress(CrdbArchiveError):
                self._discard(stored.generation)
        raise StorageError(f"cannot write {self._target.where}: {problem}; it was removed "
                           "again")
