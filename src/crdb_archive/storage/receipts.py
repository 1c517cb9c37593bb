"""Receipts of uploads, and their confirmation by what the store reports.

A writer of an object store computes, while it uploads, the checksum the store itself keeps
of the object, in the store's own form:

============================ ===================================================================
``sha256``                   S3, one PUT: base64 of the SHA-256 of the object
``sha256-composite``         S3, multipart: base64 of the SHA-256 of the parts' SHA-256 digests,
                             then ``-<number of parts>`` (``x-amz-checksum-sha256`` of such an
                             object)
``crc32c``                   Cloud Storage: base64 of the big-endian CRC32C of the object
``md5``                      Cloud Storage and Azure: base64 of the MD5 of the object
============================ ===================================================================

Confirming an upload asks the store for the object's metadata (one HEAD, no bytes of it) and
compares every checksum the store reports that the receipt holds, and the size. When the store
reports none of them (an object written by some other tool meanwhile, a store that keeps no
checksum) the object is read back whole and the receipt's checksums computed from its bytes:
a confirmation is never passed for want of an answer.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from crdb_archive.storage.base import Storage

SHA256 = "sha256"
SHA256_COMPOSITE = "sha256-composite"
CRC32C = "crc32c"
MD5 = "md5"

_NAMES = {SHA256: "SHA-256", SHA256_COMPOSITE: "composite SHA-256", CRC32C: "CRC32C",
          MD5: "MD5"}
_READ_CHUNK = 1 << 20


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True, slots=True)  # one per object written: 100k for a large backup
class Receipt:
    """What the writer of one object computed while uploading it, in the store's forms.

    ``key`` is relative to the root of the storage that wrote it; ``parts`` are the sizes of
    the parts of a multipart upload (for a composite checksum), empty for one request.
    """

    key: str
    size: int
    checksums: Mapping[str, str]
    parts: tuple[int, ...] = ()


@dataclass(frozen=True)
class Reported:
    """What the store says of an object without sending its bytes: its size and checksums."""

    size: int
    checksums: Mapping[str, str] = field(default_factory=dict)


Way = Literal["store", "read"]


@dataclass(frozen=True)
class Confirmation:
    """Whether the object holds what the receipt says, and how that was found out.

    ``how`` is ``store`` (the store's own checksums, no bytes read) or ``read`` (the store
    reported none to compare with: the object was read back, ``bytes_read`` bytes).
    ``problem`` says what differs (None when the object is confirmed).
    """

    key: str
    how: Way
    problem: str | None = None
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        return self.problem is None


def sha256_composite(part_digests: list[bytes]) -> str:
    """S3's checksum of a multipart upload from its parts' SHA-256 digests."""
    return f"{b64(hashlib.sha256(b''.join(part_digests)).digest())}-{len(part_digests)}"


class Crc32c:
    """A running CRC32C (Castagnoli), as Cloud Storage computes it."""

    def __init__(self, data: bytes = b"") -> None:
        import google_crc32c  # noqa: PLC0415 - a C extension only Cloud Storage needs

        self._sum = google_crc32c.Checksum(data)  # type: ignore[no-untyped-call]

    def update(self, data: bytes) -> None:
        self._sum.update(data)  # type: ignore[no-untyped-call]

    def b64(self) -> str:
        """The checksum as the JSON API writes it: base64 of its 4 big-endian bytes."""
        digest: bytes = self._sum.digest()  # type: ignore[no-untyped-call]
        return b64(digest)


def compare(receipt: Receipt, reported: Reported) -> Confirmation | None:
    """The confirmation from the store's report; None when it reports none of the receipt's
    checksums (the object must then be read)."""
    if reported.size != receipt.size:
        return Confirmation(receipt.key, "store", f"the store holds {reported.size} bytes where "
                            f"{receipt.size} were uploaded")
    common = sorted(set(receipt.checksums) & set(reported.checksums))
    if not common:
        return None
    for algorithm in common:
        if reported.checksums[algorithm] != receipt.checksums[algorithm]:
            return Confirmation(receipt.key, "store", _differs(algorithm, "the store's",
                                                               reported.checksums[algorithm],
                                                               receipt.checksums[algorithm]))
    return Confirmation(receipt.key, "store")


def _differs(algorithm: str, whose: str, found: str, wanted: str) -> str:
    return (f"{whose} {_NAMES.get(algorithm, algorithm)} {found} differs from the "
            f"{wanted} computed while uploading")


def read_back(storage: Storage, receipt: Receipt) -> Confirmation:
    """Read the object whole and compare the receipt's checksums with its bytes.

    Raises ObjectNotFound, NeedsRestoreFromColdStorage, StorageError as ``open_read``.
    """
    summer = _Summer(receipt)
    with storage.open_read(receipt.key) as reader:
        summer.consume(reader)
    problem = None
    if summer.size != receipt.size:
        problem = f"it holds {summer.size} bytes where {receipt.size} were uploaded"
    else:
        for algorithm, value in sorted(summer.values().items()):
            if value != receipt.checksums[algorithm]:
                problem = _differs(algorithm, "its", value, receipt.checksums[algorithm])
                break
    return Confirmation(receipt.key, "read", problem, summer.size)


class _Summer:
    """The receipt's checksums, computed from bytes read back."""

    def __init__(self, receipt: Receipt) -> None:
        self.size = 0
        wanted = receipt.checksums
        self._sha256 = hashlib.sha256() if SHA256 in wanted else None
        self._md5 = hashlib.md5() if MD5 in wanted else None  # noqa: S324 - the store's form
        self._crc = Crc32c() if CRC32C in wanted else None
        self._parts = list(receipt.parts) if SHA256_COMPOSITE in wanted else None
        self._part = hashlib.sha256()
        self._part_left = self._parts.pop(0) if self._parts else 0
        self._part_digests: list[bytes] = []
        self._updates: list[Callable[[bytes], object]] = [
            s.update for s in (self._sha256, self._md5, self._crc) if s is not None]

    def consume(self, reader: IO[bytes]) -> None:
        while chunk := reader.read(_READ_CHUNK):
            self.size += len(chunk)
            for update in self._updates:
                update(chunk)
            if self._parts is not None:
                self._composite(memoryview(chunk))

    def _composite(self, chunk: memoryview) -> None:
        while chunk:
            if self._part_left <= 0:  # more bytes than the parts uploaded: size tells
                return
            piece, chunk = chunk[:self._part_left], chunk[self._part_left:]
            self._part.update(piece)
            self._part_left -= len(piece)
            if self._part_left == 0:
                self._part_digests.append(self._part.digest())
                self._part = hashlib.sha256()
                self._part_left = self._parts.pop(0) if self._parts else 0

    def values(self) -> dict[str, str]:
        found: dict[str, str] = {}
        if self._sha256 is not None:
            found[SHA256] = b64(self._sha256.digest())
        if self._md5 is not None:
            found[MD5] = b64(self._md5.digest())
        if self._crc is not None:
            found[CRC32C] = self._crc.b64()
        if self._parts is not None:
            found[SHA256_COMPOSITE] = sha256_composite(self._part_digests)
        return found
