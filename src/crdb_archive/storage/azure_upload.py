"""One blob written from a stream: a single Put Blob when small, else staged blocks.

Memory holds one block at most. Every request carries the MD5 of its bytes
(``validate_content``), so the service refuses to store bytes that differ from what was sent.
A block blob becomes visible only when its block list is committed, which happens once the
last byte is in: an upload stopped before that leaves no blob. The blocks it staged stay
invisible and uncommitted, and are discarded by the service: when the next writer of the same
name commits its own list, or a week after the last of them was staged.
"""

from __future__ import annotations

import base64
import hashlib
import math
import secrets
from typing import TYPE_CHECKING, Any

from azure.storage.blob import (
    BlobBlock,
    BlobImmutabilityPolicyMode,
    ContentSettings,
    ImmutabilityPolicy,
    StandardBlobTier,
)

from crdb_archive.errors import BadInput, StorageError
from crdb_archive.storage.azure_errors import Translator
from crdb_archive.storage.azure_options import POLICY_MODES
from crdb_archive.storage.base import WriteOptions
from crdb_archive.storage.receipts import MD5, Receipt, b64

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

MIN_BLOCK = 8 << 20
MAX_BLOCK = 4000 << 20
MAX_BLOCKS = 50_000
# Without a size hint, blocks double every this many: 50,000 blocks then hold far more than
# the service's largest blob while small blobs keep small blocks.
_GROWTH_EVERY = 5_000


def base_block_size(size_hint: int | None) -> int:
    """The first block size: 8 MiB, or larger so that ``size_hint`` fits in 45,000 blocks."""
    if not size_hint:
        return MIN_BLOCK
    # 45,000 rather than 50,000 leaves room for a hint that falls a little short.
    wanted = math.ceil(size_hint / (MAX_BLOCKS - 5_000))
    mib = 1 << 20
    return min(MAX_BLOCK, max(MIN_BLOCK, math.ceil(wanted / mib) * mib))


def block_size(base: int, number: int) -> int:
    """Size of block ``number`` (from 1): ``base`` doubled every 5,000 blocks."""
    return min(MAX_BLOCK, base << ((number - 1) // _GROWTH_EVERY))


def blob_arguments(options: WriteOptions | None) -> dict[str, Any]:
    """Arguments of Put Blob / Put Block List that carry ``options``."""
    if options is None:
        return {}
    arguments: dict[str, Any] = {}
    if options.storage_class is not None:
        arguments["standard_blob_tier"] = StandardBlobTier(options.storage_class)
    if options.lock_mode is not None and options.retain_until is not None:
        arguments["immutability_policy"] = ImmutabilityPolicy(
            expiry_time=options.retain_until,
            policy_mode=BlobImmutabilityPolicyMode(POLICY_MODES[options.lock_mode]))
    return arguments


class AzureUpload:
    """The writer behind ``AzureStorage.open_write``: call :meth:`finish` or :meth:`abort`."""

    def __init__(self, blob: BlobClient, where: str, errors: Translator, *,
                 size_hint: int | None, options: WriteOptions | None,
                 receipt_key: str) -> None:
        self._blob = blob
        self._receipt_key = receipt_key  # the key below the storage's root
        self._receipt: Receipt | None = None
        # Of the whole blob: Put Blob has the service compute it; a block list is given it on
        # commit (the service keeps, not computes, that one: each block's own MD5 was
        # checked as it was staged).
        self._md5 = hashlib.md5()  # noqa: S324 - the service's content checksum
        self._where = where
        self._errors = errors
        self._arguments = blob_arguments(options)
        self._base = base_block_size(size_hint)
        self._buffer = bytearray()
        # Block ids are one upload's own: a writer racing for the same name never commits
        # another's blocks. All ids of a blob have one length, as the service requires.
        self._upload = secrets.token_hex(12)
        self._blocks: list[str] = []
        self._written = 0

    @property
    def bytes_written(self) -> int:
        return self._written

    @property
    def receipt(self) -> Receipt | None:
        """The blob's MD5 as the service reports it (Content-MD5), once :meth:`finish`
        returned."""
        return self._receipt

    @property
    def staged_blocks(self) -> int:
        return len(self._blocks)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        self._written += len(data)
        self._md5.update(data)
        while len(self._buffer) >= (size := block_size(self._base, len(self._blocks) + 1)):
            with memoryview(self._buffer) as view, view[:size] as head:
                block = bytes(head)
            self._stage(block)
            del self._buffer[:size]

    def finish(self) -> None:
        """Make the blob visible: one Put Blob, or the last block and Put Block List."""
        md5 = self._md5.digest()
        self._receipt = None
        if not self._blocks:
            self._put(bytes(self._buffer))
            self._buffer.clear()
        else:
            self._commit(md5)
        self._receipt = Receipt(self._receipt_key, self._written, {MD5: b64(md5)})

    def _commit(self, md5: bytes) -> None:
        if self._buffer:
            self._stage(bytes(self._buffer))
            self._buffer.clear()
        try:
            with self._errors.around("commit the blocks of", self._where):
                self._blob.commit_block_list([BlobBlock(block_id=b) for b in self._blocks],
                                             validate_content=True,
                                             content_settings=ContentSettings(
                                                 content_md5=bytearray(md5)),
                                             **self._arguments)
        except StorageError:
            # Applied, and the answer lost: a retry then meets an immutable blob, or the
            # blocks already committed; the blob is ours when it is made of our blocks.
            if not self._committed_is_ours():
                raise

    def abort(self) -> None:
        """Forget what was not sent; staged blocks stay uncommitted (see the module)."""
        self._buffer.clear()

    def _put(self, body: bytes) -> None:
        try:
            with self._errors.around("write", self._where):
                self._blob.upload_blob(body, length=len(body), overwrite=True,
                                       validate_content=True, max_concurrency=1,
                                       **self._arguments)
        except StorageError:
            if not self._put_is_ours(body):
                raise

    def _stage(self, block: bytes) -> None:
        number = len(self._blocks) + 1
        if number > MAX_BLOCKS:
            raise BadInput(f"{self._where} is too large for one Azure blob ({MAX_BLOCKS} "
                           "blocks sent)")
        block_id = base64.b64encode(f"{self._upload}-{number:06d}".encode()).decode("ascii")
        with self._errors.around("write", self._where):
            self._blob.stage_block(block_id, block, length=len(block), validate_content=True)
        self._blocks.append(block_id)

    def _committed_is_ours(self) -> bool:
        try:
            with self._errors.around("read the block list of", self._where):
                committed, _ = self._blob.get_block_list("committed")
        except StorageError:
            return False
        return [block.id for block in committed] == self._blocks

    def _put_is_ours(self, body: bytes) -> bool:
        try:
            with self._errors.around("read", self._where):
                properties = self._blob.get_blob_properties()
        except StorageError:
            return False
        stored = properties.content_settings.content_md5
        digest = hashlib.md5(body).digest()  # noqa: S324 - the service's own content check
        return properties.size == len(body) and stored is not None and bytes(stored) == digest
