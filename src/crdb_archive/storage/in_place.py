"""Staging in an object store, where nothing can be renamed into place.

A tree's members are written in place, and the member written last marks it complete; readers
tell a tree without it from a whole one. A single object is one upload (a multipart upload in
S3), visible only once it completes. When the writing fails or is interrupted, the trees begun
are removed again, so that a stopped run leaves no billed, incomplete bundle behind; what a
removal misses (the store failing too) is an incomplete tree that the next writer of the same
name clears. Nothing is removed after a publication check raised: the check says that this
writer may no longer change the place (a job whose lock another run holds now).
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from crdb_archive.errors import CrdbArchiveError
from crdb_archive.storage.base import (
    ObjectWriter,
    Storage,
    WriteOptions,
    validate_key,
)
from crdb_archive.storage.capabilities import PublishCheck, no_check
from crdb_archive.storage.receipts import Receipt


class InPlaceStaging:
    """The :class:`~crdb_archive.storage.base.Staging` of an object store."""

    def __init__(self, storage: Storage, scratch: Path) -> None:
        self._storage = storage
        self._scratch = scratch
        self._trees: set[str] = set()
        self._published = False
        self._keep = False
        # Members are written from several threads at once.
        self._receipts: list[Receipt] = []
        self._lock = threading.Lock()

    @property
    def scratch(self) -> Path:
        return self._scratch

    def receipts(self) -> list[Receipt]:
        with self._lock:
            return list(self._receipts)

    @contextlib.contextmanager
    def open_member(
        self, key: str, *, size_hint: int | None = None, options: WriteOptions | None = None
    ) -> Iterator[ObjectWriter]:
        with self._lock:
            self._trees.add(validate_key(key).split("/", 1)[0])
        with self._storage.open_write(key, size_hint=size_hint, options=options) as writer:
            yield writer
        self._keep_receipt(writer)

    def member_files(self) -> None:
        return None  # members are objects of the store

    def publish_tree(self, key: str, content: bytes, *, options: WriteOptions | None = None,
                     check: PublishCheck = no_check) -> None:
        with self._lock:
            self._trees.add(validate_key(key).split("/", 1)[0])
        self._check(check)
        with self._storage.open_write(key, size_hint=len(content), options=options) as writer:
            writer.write(content)
        self._published = True
        self._keep_receipt(writer)

    def _keep_receipt(self, writer: ObjectWriter) -> None:
        receipt = writer.receipt
        if receipt is not None:
            with self._lock:
                self._receipts.append(receipt)

    @contextlib.contextmanager
    def open_object(
        self, key: str, *, size_hint: int | None = None, options: WriteOptions | None = None,
        check: PublishCheck = no_check,
    ) -> Iterator[ObjectWriter]:
        with self._storage.open_write(key, size_hint=size_hint, options=options) as writer:
            yield writer
            self._check(check)  # inside the block: raising aborts the upload
        self._published = True
        self._keep_receipt(writer)

    def _check(self, check: PublishCheck) -> None:
        try:
            check()
        except BaseException:
            self._keep = True
            raise

    def abandon(self) -> None:
        """Remove the trees begun and never published; best effort, never raises an error of
        ours (the failure that brought us here is the one to report)."""
        if self._published or self._keep:
            return
        for tree in sorted(self._trees):
            with contextlib.suppress(CrdbArchiveError):
                self._storage.delete_tree(tree)


@contextlib.contextmanager
def in_place_staging(storage: Storage, name: str) -> Iterator[InPlaceStaging]:
    """The staging of ``name`` in the object store ``storage`` (see Storage.staging)."""
    validate_key(name)
    with tempfile.TemporaryDirectory(prefix="crdb-archive-") as scratch:
        staging = InPlaceStaging(storage, Path(scratch))
        try:
            yield staging
        except BaseException:
            staging.abandon()
            raise
