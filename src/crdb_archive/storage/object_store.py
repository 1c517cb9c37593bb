"""What the object stores (S3, Cloud Storage, Azure Blob Storage) do alike, above their SDKs.

Each store lists, stats, reads a range and deletes in its own calls. The names of keys below
the root, the checks of a read's range, the refusal to delete what a retention or a hold
protects, and the order of a tree's deletion (every object looked at before any is deleted, so
that a protected bundle stays whole) are the same for all three and live here.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import IO, ClassVar, Generic, Protocol, TypeVar

from crdb_archive.errors import BadInput, ObjectNotFound, StorageError
from crdb_archive.storage.base import (
    ObjectInfo,
    Prefix,
    Storage,
    empty_reader,
    validate_key,
    validate_prefix,
)
from crdb_archive.storage.in_place import InPlaceStaging, in_place_staging
from crdb_archive.storage.uri import Location
from crdb_archive.times import utc_iso


class RootedTarget(Protocol):
    """A store's configuration, as far as the shared code needs it: the root's key prefix."""

    @property
    def prefix(self) -> str: ...


TargetT = TypeVar("TargetT", bound=RootedTarget)


class ObjectStore(Storage, Generic[TargetT]):
    """Objects below a key prefix of one bucket or container of a cloud object store."""

    # How a refusal to delete names what protects the object: the retention (``{mode}`` is
    # its mode, with a leading space, or nothing) and the hold.
    RETENTION_WORDS: ClassVar[str]
    HOLD_WORDS: ClassVar[str]
    DELETE_BATCH: ClassVar[int]  # the most objects one batch request of the store deletes

    location: Location
    _target: TargetT

    @property
    def prefix(self) -> str:
        """The key prefix of the root, without slashes at either end (``""``: the bucket)."""
        return self._target.prefix

    @abc.abstractmethod
    def _root(self) -> str:
        """The URI of the bucket or container, without a prefix (``s3://bucket``)."""

    def display(self, key: str = "") -> str:
        full = self._full(key) if key else self.prefix
        return f"{self._root()}/{full}" if full else self._root()

    def __str__(self) -> str:
        return str(self.location)

    def _full(self, key: str) -> str:
        key = validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key_of(self, name: str) -> str:
        """The key of the store's full object name ``name``, which lies below the root."""
        return name[len(self.prefix) + 1:] if self.prefix else name

    def _level(self, name: str, name_prefix: str) -> Prefix | None:
        """The level a listing's common prefix ``name`` stands for; None for the empty level
        that "a//b" would make, which no key can name."""
        if name[len(name_prefix):] == "/":
            return None
        return Prefix(self._key_of(name).rstrip("/"))

    # --- reading -------------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        prefix = validate_prefix(prefix)
        return self._list(self._name_prefix(prefix), prefix)

    def list_level(self, prefix: str = "") -> Iterator[ObjectInfo | Prefix]:
        prefix = validate_prefix(prefix)
        return self._list_level(self._name_prefix(prefix), prefix)

    def _name_prefix(self, prefix: str) -> str:
        below = "/".join(p for p in (self.prefix, prefix) if p)
        return f"{below}/" if below else ""

    @abc.abstractmethod
    def _list(self, name_prefix: str, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose full name starts with ``name_prefix``; raises StorageError."""

    @abc.abstractmethod
    def _list_level(self, name_prefix: str, prefix: str) -> Iterator[ObjectInfo | Prefix]:
        """One level below ``name_prefix``, in :func:`level_order`; raises StorageError."""

    def open_read(
        self, key: str, *, start: int = 0, length: int | None = None
    ) -> AbstractContextManager[IO[bytes]]:
        full = self._full(key)
        if start < 0 or (length is not None and length < 0):
            raise BadInput(f"invalid range of {self.display(key)}: start {start}, "
                           f"length {length}")
        return self._read(key, full, start, length)

    @contextmanager
    def _read(self, key: str, full: str, start: int, length: int | None) -> Iterator[IO[bytes]]:
        if length == 0:
            if self.stat(key) is None:
                raise ObjectNotFound(f"{self.display(key)} does not exist")
            yield empty_reader()
            return
        reader = self._open_range(key, full, start, length)
        if reader is None:  # the range starts at or past the end
            yield empty_reader()
            return
        with reader:
            yield reader

    @abc.abstractmethod
    def _open_range(self, key: str, full: str, start: int, length: int | None
                    ) -> IO[bytes] | None:
        """A reader of ``length`` bytes (all when None) from ``start`` of the object ``full``,
        or None when the range starts at or past its end.

        Raises ObjectNotFound, NeedsRestoreFromColdStorage, StorageError.
        """

    # --- writing -------------------------------------------------------------------------

    def staging(self, name: str) -> AbstractContextManager[InPlaceStaging]:
        return in_place_staging(self, name)

    @abc.abstractmethod
    def retention_enabled(self) -> bool:
        """Whether objects here can be under retention; raises StorageError."""

    # --- deleting ------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        info = self.stat(key)
        if info is None:
            return
        self._refuse_locked(info)
        self._delete_object(key)

    def delete_tree(self, prefix: str) -> None:
        prefix = validate_prefix(prefix)
        if self._may_lock():
            # Look at every object before deleting any, so that a locked bundle stays whole.
            for listed in self.list(prefix):
                info = self.stat(listed.key)
                if info is not None:
                    self._refuse_locked(info)
        for keys in batches((info.key for info in self.list(prefix)), self.DELETE_BATCH):
            self._delete_batch(keys, prefix)

    def _may_lock(self) -> bool:
        try:
            return self.retention_enabled()
        except StorageError:
            return True  # cannot tell (no permission to ask): check every object

    @abc.abstractmethod
    def _delete_object(self, key: str) -> None:
        """Delete one object, which may be gone already; raises StorageError."""

    @abc.abstractmethod
    def _delete_batch(self, keys: builtins.list[str], prefix: str) -> None:
        """Delete the objects ``keys`` (at most DELETE_BATCH), found below ``prefix``;
        raises StorageError naming the first that was not deleted."""

    def _refuse_locked(self, info: ObjectInfo) -> None:
        if info.retain_until is not None and info.retain_until > datetime.now(UTC):
            mode = f" {info.lock_mode}" if info.lock_mode else ""
            retention = self.RETENTION_WORDS.format(mode=mode)
            raise StorageError(f"cannot delete {self.display(info.key)}: {retention} until "
                               f"{utc_iso(info.retain_until)}")
        if info.legal_hold:
            raise StorageError(f"cannot delete {self.display(info.key)}: it is under "
                               f"{self.HOLD_WORDS}")


T = TypeVar("T")


def batches(items: Iterable[T], size: int) -> Iterator[builtins.list[T]]:
    """``items`` in lists of ``size`` (the last one shorter), read as they are needed."""
    batch: builtins.list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def utc(value: datetime | None) -> datetime | None:
    """``value`` in UTC; a time without a zone is taken to be UTC already."""
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
