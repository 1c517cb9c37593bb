"""Confirm what a run has just uploaded by the store's own checksums, without reading it back.

Every object a run writes to an object store comes with a receipt: the checksum the store
keeps of it, computed by the writer from the bytes it sent (storage/receipts.py). One metadata
request per object compares the two; an object the store reports no such checksum for is read
back whole instead, and an object that differs, or is gone, is damage. Full re-reads of every
digest stay with ``verify`` and the audits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from crdb_archive.errors import ObjectNotFound
from crdb_archive.hashing import parallel_in_batches
from crdb_archive.storage.base import Storage
from crdb_archive.storage.receipts import Confirmation, Receipt

# Metadata requests wait on the network, not the processor: several at once.
_THREADS = 8


@dataclass
class Confirmed:
    """How the objects of one bundle were confirmed, and what differs."""

    objects: int = 0
    by_store: int = 0
    read_back: list[str] = field(default_factory=list)  # keys read whole (no checksum)
    bytes_read: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (key, what differs)

    @property
    def ok(self) -> bool:
        return not self.problems


def bundle_receipts(receipts: Sequence[Receipt], key: str) -> list[Receipt]:
    """The receipts of the bundle at ``key`` (``name`` or ``name.tar``), sorted by key.

    Raises RuntimeError for one outside it: a defect, not the user's input.
    """
    outside = [r.key for r in receipts if r.key != key and not r.key.startswith(key + "/")]
    if outside:
        raise RuntimeError(f"a receipt of {outside[0]} among those of {key}")
    return sorted(receipts, key=lambda r: r.key)


def confirm_receipts(storage: Storage, receipts: Sequence[Receipt]) -> Confirmed:
    """Confirm every receipt against ``storage``; raises StorageError (and
    NeedsRestoreFromColdStorage for an object that must be read back) when the store cannot
    answer."""
    confirmed = Confirmed(objects=len(receipts))
    with contextlib.closing(parallel_in_batches(
            lambda r: _confirm(storage, r), list(receipts), lambda r: r.size,
            threads=_THREADS, batch_items=16)) as results:
        for receipt, outcome in results:
            if outcome.how == "store":
                confirmed.by_store += 1
            else:
                confirmed.read_back.append(receipt.key)
                confirmed.bytes_read += outcome.bytes_read
            if outcome.problem is not None:
                confirmed.problems.append((receipt.key, outcome.problem))
    return confirmed


def _confirm(storage: Storage, receipt: Receipt) -> Confirmation:
    try:
        return storage.confirm(receipt)
    except ObjectNotFound:
        return Confirmation(receipt.key, "store", "the object is gone")
