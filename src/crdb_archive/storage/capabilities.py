"""The optional capabilities of a storage, and the staging area every storage offers.

A capability is a small protocol. A backend that has one returns itself (or a helper) from the
capability's accessor on :class:`~crdb_archive.storage.base.Storage` (``local_paths()``,
``cold_storage()``, ``retention_lock()``); every other backend answers None. Callers use what
is there and fall back on the plain verbs where it is not; they never test a backend's type.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from crdb_archive.storage.base import ObjectWriter, RestoreRequestState, WriteOptions

if TYPE_CHECKING:
    from crdb_archive.storage.receipts import Receipt

# Called just before staged objects become visible; what it raises stops the publication.
PublishCheck = Callable[[], None]


def no_check() -> None:
    """A publication check that never objects."""


class Staging(Protocol):
    """A private place where a tree of objects, or one object, is assembled before it is
    published under its final key (see :meth:`Storage.staging`)."""

    @property
    def scratch(self) -> Path:
        """A local directory for files the objects are made from; removed with the staging."""

    def receipts(self) -> list[Receipt]:
        """The receipts of the objects written so far (see :meth:`Storage.confirm`), in no
        particular order; empty where nothing needs confirming (a directory on disk)."""

    def open_member(
        self, key: str, *, size_hint: int | None = None, options: WriteOptions | None = None
    ) -> AbstractContextManager[ObjectWriter]:
        """Write ``key``, a member of a tree that :meth:`publish_tree` makes visible.

        Safe to call from several threads at once. Raises as :meth:`Storage.open_write`.
        """

    def member_files(self) -> MemberFiles | None:
        """The :class:`MemberFiles` capability, or None where members are not files here."""

    def publish_tree(self, key: str, content: bytes, *, options: WriteOptions | None = None,
                     check: PublishCheck = no_check) -> None:
        """Write ``key`` last, the member that marks the tree complete, and publish the tree.

        ``check`` is called just before the tree becomes visible; what it raises stops the
        publication and leaves what was written to whoever may hold the place now (nothing is
        removed from an object store). Raises StorageError, also when a tree of that name
        appeared meanwhile where the backend can tell.
        """

    def open_object(
        self, key: str, *, size_hint: int | None = None, options: WriteOptions | None = None,
        check: PublishCheck = no_check,
    ) -> AbstractContextManager[ObjectWriter]:
        """Write the single object ``key``, visible once the block ends cleanly and ``check``
        (called then) has not raised; any exception leaves no object. Raises as
        :meth:`Storage.open_write`.
        """


class LocalPaths(Protocol):
    """Capability: the objects are files of this host, each at a path.

    For what only files allow: hashing through a memory map, seeking in a tar, reading a
    directory with its symbolic links and special files (which no object store holds).
    """

    @property
    def local_path(self) -> Path:
        """The directory at the storage's root."""

    def path(self, key: str = "") -> Path:
        """The file (or directory) that holds ``key``; the root for ``""``.

        Raises BadInput for an invalid key.
        """

    def local_file(self, key: str) -> str:
        """The path of the file that holds ``key``, as a string: cheap enough for 100k keys,
        for a reader of its own (worker processes). Raises BadInput for an invalid key."""

    def read_whole(self, key: str, limit: int) -> bytes:
        """Up to ``limit`` bytes of the file ``key``, with one open and one read: the cheap
        way to read a small file whole (100k small backup files).

        Raises BadInput for an invalid key, ObjectNotFound when it is absent or not a regular
        file, StorageError when it cannot be read.
        """


class MemberFiles(Protocol):
    """Capability of a staging area: its members are files of this host, which a writer of
    its own (worker processes) may make."""

    def member_file(self, key: str, *, options: WriteOptions | None = None) -> str:
        """The path at which to make member ``key``, creating it exclusively (``O_CREAT |
        O_EXCL``, mode 0644); its directory is made here. Raises as
        :meth:`Staging.open_member`."""


class ColdStorage(Protocol):
    """Capability: objects may sit in an archive storage class (``ObjectInfo.restore``), and a
    readable copy of them can be requested."""

    def request_restore(self, key: str, *, days: int, tier: str) -> RestoreRequestState:
        """Ask for a temporary readable copy of an object in an archive storage class.

        Raises BadInput for bad days/tier, ObjectNotFound, StorageError.
        """


class RetentionLock(Protocol):
    """Capability: objects can be written under a retention lock that the store enforces
    (``WriteOptions.lock_mode``); ``stat`` reports an object's lock in ``ObjectInfo``."""

    def retention_enabled(self) -> bool:
        """Whether this storage accepts writes under a lock (S3: the bucket has Object Lock).

        Raises StorageError when that cannot be found out.
        """
