"""The files of a backup source as a tree of directories, in any storage.

One reader, :class:`BackupTree`, over :class:`Storage`; how it learns the directories depends on
what the storage can do. In general it derives them from the keys of one recursive listing
kept in memory (a few dozen bytes per object), so that every layout question afterwards costs
no request: object stores have no directories. Where the objects are files here (the
LocalPaths capability), directories are read on demand, one at a time, so that inspecting one
full backup of a large collection reads only that backup's directories, and so that symbolic
links and special files, which object stores cannot hold, are seen and refused by name. File
contents are read through the storage in both cases.
"""

from __future__ import annotations

import os
import stat
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Literal, NamedTuple, Protocol

from crdb_archive.errors import (
    BadInput,
    NeedsRestoreFromColdStorage,
    NotABackup,
    StorageError,
)
from crdb_archive.progress import ProgressCallback, ProgressEvent, no_progress
from crdb_archive.storage.base import Storage, open_location, validate_key
from crdb_archive.storage.uri import Location

# "link" and "special" exist on disk only; "invalid" is an object key that no path can name.
Kind = Literal["dir", "file", "link", "special", "invalid"]

EXPECTED = (
    "expected a CockroachDB backup directory (holding BACKUP_MANIFEST, BACKUP_METADATA or "
    "BACKUP) or a backup collection (holding LATEST, metadata/latest/ or dated "
    "YYYY/MM/DD-HHMMSS.ss full backups)"
)


class Entry(NamedTuple):
    """Something below a tree's root: its key, what it is, its size when it is a file."""

    key: str
    kind: Kind
    size: int


def join(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name


class _Index(Protocol):
    """How a tree learns what is where: the structural questions of :class:`BackupTree`."""

    def check_root(self) -> None: ...

    def kind(self, key: str) -> Kind | None: ...

    def entries(self, directory: str) -> list[tuple[str, Kind]]: ...

    def walk(self, directory: str, *, skip_top: Callable[[str], object] | None = None
             ) -> Iterator[Entry]: ...

    def size(self, key: str) -> int: ...

    def waiting(self, key: str) -> str | None: ...


class BackupTree:
    """The files below a storage's root, with directories; keys are relative to that root.

    Build it with :func:`open_tree`. Raises StorageError where the storage cannot be read.
    """

    def __init__(self, storage: Storage, index: _Index) -> None:
        self.storage = storage
        self._index = index

    def display(self, key: str = "") -> str:
        """A name for ``key`` in messages; never carries a secret."""
        return self.storage.display(key)

    @property
    def local_reads(self) -> bool:
        """Whether reading a file costs a local read rather than a request to a store."""
        return self.storage.local_paths() is not None

    def check_root(self) -> None:
        """Raises NotABackup when the root holds nothing that could be a backup."""
        self._index.check_root()

    def kind(self, key: str) -> Kind | None:
        """What is at ``key``, or None when nothing is; raises StorageError."""
        return self._index.kind(key)

    def entries(self, directory: str) -> list[tuple[str, Kind]]:
        """The names in ``directory``, sorted, and what each is; nothing when it is absent.

        Raises StorageError when the directory cannot be listed.
        """
        return self._index.entries(directory)

    def walk(self, directory: str, *, skip_top: Callable[[str], object] | None = None
             ) -> Iterator[Entry]:
        """Everything below ``directory`` except directories, never descending into links.

        ``skip_top`` names subdirectories directly in ``directory`` to leave out. Raises
        StorageError when a directory cannot be listed.
        """
        return self._index.walk(directory, skip_top=skip_top)

    def size(self, key: str) -> int:
        """The size of the file at ``key``; raises StorageError when it cannot be examined."""
        return self._index.size(key)

    def waiting(self, key: str) -> str | None:
        """The archive storage class ``key`` waits in before it can be read, if any."""
        return self._index.waiting(key)

    def require_readable(self, keys: Iterable[str], purpose: str) -> None:
        """Raises NeedsRestoreFromColdStorage naming every key that cannot be read yet."""
        waiting = [(key, state) for key in keys if (state := self.waiting(key)) is not None]
        if not waiting:
            return
        names = ", ".join(f"{self.display(key)} ({state})" for key, state in waiting)
        verb = "is" if len(waiting) == 1 else "are"
        raise NeedsRestoreFromColdStorage(
            f"{names} {verb} in an archive storage class and must be restored before "
            f"{purpose}: request a restore of {'it' if len(waiting) == 1 else 'them'} "
            "(S3 RestoreObject), wait for it to complete, and run again"
        )

    def open_read(self, key: str, *, length: int | None = None
                  ) -> AbstractContextManager[IO[bytes]]:
        """A reader of ``key`` through the storage; raises as :meth:`Storage.open_read`."""
        return self.storage.open_read(key, length=length)

    def read_head(self, key: str, limit: int) -> bytes:
        """At most ``limit`` bytes from the start of ``key``; raises as :meth:`open_read`."""
        with self.open_read(key, length=limit) as reader:
            return reader.read(limit)


def open_tree(storage: Storage, *, progress: ProgressCallback = no_progress) -> BackupTree:
    """The tree of ``storage``: read on demand where its objects are files here, else listed
    once. Raises StorageError when the storage cannot be listed.
    """
    paths = storage.local_paths()
    if paths is not None:
        return BackupTree(storage, _DirectoryIndex(storage, paths.local_path))
    return BackupTree(storage, _ListingIndex.of(storage, progress=progress))


def local_tree(root: Path) -> BackupTree:
    """The tree of the local directory ``root``."""
    return open_tree(open_location(Location("file", "", str(root), ())))


# --- files of this host ------------------------------------------------------------------------


class _DirectoryIndex:
    """A local directory, read one directory at a time; links are reported, never followed."""

    def __init__(self, storage: Storage, root: Path) -> None:
        self.storage = storage
        self.root = root

    def display(self, key: str = "") -> str:
        return self.storage.display(key)

    def waiting(self, key: str) -> str | None:
        return None  # files here never wait in an archive storage class

    def check_root(self) -> None:
        try:
            mode = self.root.stat().st_mode
        except FileNotFoundError:
            raise NotABackup(f"{self.display()} does not exist: {EXPECTED}") from None
        except OSError as error:
            raise StorageError(f"cannot examine {self.display()}: "
                               f"{error.strerror or error}") from None
        if not stat.S_ISDIR(mode):
            raise NotABackup(f"{self.display()} is not a directory: {EXPECTED}")

    def _path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def kind(self, key: str) -> Kind | None:
        path = self._path(key)
        try:
            mode = os.lstat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            raise StorageError(f"cannot examine {path}: {error.strerror or error}") from None
        if stat.S_ISLNK(mode):
            return "link"
        if stat.S_ISDIR(mode):
            return "dir"
        return "file" if stat.S_ISREG(mode) else "special"

    def entries(self, directory: str) -> list[tuple[str, Kind]]:
        if self.kind(directory) != "dir":
            return []
        found = [(e.name, _kind_of(e)) for e in self._scan(self._path(directory))]
        return sorted(found)

    def walk(self, directory: str, *, skip_top: Callable[[str], object] | None = None
             ) -> Iterator[Entry]:
        pending = [(directory, True)]
        while pending:
            current, top = pending.pop()
            for entry in self._scan(self._path(current)):
                key = join(current, entry.name)
                if entry.is_symlink():
                    yield Entry(key, "link", 0)
                elif entry.is_dir(follow_symlinks=False):
                    if not (top and skip_top is not None and skip_top(entry.name)):
                        pending.append((key, False))
                elif entry.is_file(follow_symlinks=False):
                    yield Entry(key, "file", self._entry_size(entry, key))
                else:
                    yield Entry(key, "special", 0)

    def size(self, key: str) -> int:
        path = self._path(key)
        try:
            return os.lstat(path).st_size
        except OSError as error:
            raise StorageError(f"cannot examine {path}: {error.strerror or error}") from None

    def _scan(self, directory: Path) -> Iterator[os.DirEntry[str]]:
        """The entries of ``directory`` one at a time: a directory of 100k files held as a
        list of entries (each with its cached stat) was most of an archive's peak memory."""
        try:
            with os.scandir(directory) as entries:
                yield from entries
        except OSError as error:
            raise StorageError(f"cannot list {directory}: {error.strerror or error}") from None

    def _entry_size(self, entry: os.DirEntry[str], key: str) -> int:
        try:
            return entry.stat(follow_symlinks=False).st_size
        except OSError as error:
            raise StorageError(f"cannot examine {self.display(key)}: "
                               f"{error.strerror or error}") from None


def _kind_of(entry: os.DirEntry[str]) -> Kind:
    if entry.is_symlink():
        return "link"
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    return "file" if entry.is_file(follow_symlinks=False) else "special"


# --- any storage: one listing ----------------------------------------------------------------


class _ListingIndex:
    """Every object below a storage's root from one listing; directories are key prefixes."""

    def __init__(self, storage: Storage, keys: list[str], sizes: array[int],
                 waiting: dict[str, str]) -> None:
        self.storage = storage
        self._keys = keys
        self._sizes = sizes
        self._waiting = waiting

    @classmethod
    def of(cls, storage: Storage, *, progress: ProgressCallback = no_progress) -> _ListingIndex:
        """List ``storage`` once; raises StorageError when it cannot be listed."""
        keys: list[str] = []
        sizes: array[int] = array("q")
        waiting: dict[str, str] = {}
        task = f"list {storage.display()}"
        for info in storage.list():
            keys.append(info.key)
            sizes.append(info.size)
            if not info.readable:
                waiting[info.key] = (f"{info.storage_class}, restore in progress"
                                     if info.restore == "in-progress" else
                                     str(info.storage_class))
            if len(keys) % 1000 == 0:
                progress(ProgressEvent(task, len(keys)))
        progress(ProgressEvent(task, len(keys), len(keys), finished=True))
        # Listings come sorted by key already; sorting again is cheap and makes bisect safe
        # with stores that sort differently.
        if any(keys[i] > keys[i + 1] for i in range(len(keys) - 1)):
            order = sorted(range(len(keys)), key=keys.__getitem__)
            keys = [keys[i] for i in order]
            sizes = array("q", (sizes[i] for i in order))
        return cls(storage, keys, sizes, waiting)

    def display(self, key: str = "") -> str:
        return self.storage.display(key)

    def check_root(self) -> None:
        if not self._keys:
            raise NotABackup(f"{self.display()} holds no objects: {EXPECTED}")

    def _span(self, directory: str) -> tuple[int, int]:
        """The index range of the keys below ``directory``."""
        if not directory:
            return 0, len(self._keys)
        # "/" sorts just before "0": every key below "d/" lies between "d/" and "d0".
        return (bisect_left(self._keys, directory + "/"),
                bisect_left(self._keys, directory + "0"))

    def _index(self, key: str) -> int | None:
        index = bisect_left(self._keys, key)
        if index < len(self._keys) and self._keys[index] == key:
            return index
        return None

    def kind(self, key: str) -> Kind | None:
        low, high = self._span(key)
        if key and low < high:
            return "dir"
        return "file" if self._index(key) is not None else None

    def entries(self, directory: str) -> list[tuple[str, Kind]]:
        prefix = directory + "/" if directory else ""
        index, high = self._span(directory)
        found: list[tuple[str, Kind]] = []
        while index < high:
            rest = self._keys[index][len(prefix):]
            slash = rest.find("/")
            if slash < 0:
                found.append((rest, "file"))
                index += 1
            else:
                name = rest[:slash]
                if name:
                    found.append((name, "dir"))
                index = bisect_left(self._keys, prefix + name + "0", index + 1, high)
        return sorted(found)

    def walk(self, directory: str, *, skip_top: Callable[[str], object] | None = None
             ) -> Iterator[Entry]:
        prefix = directory + "/" if directory else ""
        index, high = self._span(directory)
        while index < high:
            key = self._keys[index]
            rest = key[len(prefix):]
            slash = rest.find("/")
            if skip_top is not None and slash > 0 and skip_top(rest[:slash]):
                index = bisect_left(self._keys, prefix + rest[:slash] + "0", index + 1, high)
                continue
            try:
                validate_key(key)
            except BadInput:
                yield Entry(key, "invalid", 0)
            else:
                yield Entry(key, "file", self._sizes[index])
            index += 1

    def size(self, key: str) -> int:
        index = self._index(key)
        if index is None:
            raise StorageError(f"cannot examine {self.display(key)}: it was not listed")
        return self._sizes[index]

    def waiting(self, key: str) -> str | None:
        return self._waiting.get(key)
