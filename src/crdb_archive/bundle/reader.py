"""Read a bundle wherever it is: a directory or a tar, in any storage.

There is one reader per form, over :class:`Storage`; where the storage's objects are files here
(the LocalPaths capability) a reader takes the fast paths that files allow. Every form presents
the same thing: the bundle's regular files as :class:`Member` values with a
bundle-relative path, a size, and a way to read the bytes. Anything that is not a regular
file (a symlink, a device, a tar member outside the bundle's top folder, a second copy of a
tar member) is reported as an :class:`Oddity` for the verifier to name, never followed. A tar
is read once, front to back, by the strict reader of bundle tars (tarstream), which raises
TarDamaged (exit 1) for a tar cut short, malformed, or with data after its end.
"""

from __future__ import annotations

import abc
import contextlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, cast

from crdb_archive.bundle import layout
from crdb_archive.bundle.tarstream import BLOCK, looks_like_tar
from crdb_archive.errors import (
    NeedsRestoreFromColdStorage,
    NotABundle,
    StorageError,
)
from crdb_archive.listing import list_directory
from crdb_archive.storage.base import ObjectInfo, Prefix, Storage, open_location, open_object
from crdb_archive.storage.ranged import PART_SIZE, RangedReader
from crdb_archive.storage.uri import Location
from crdb_archive.text import count

Opener = Callable[[], contextlib.AbstractContextManager[IO[bytes]]]
Form = Literal["dir", "tar"]


@dataclass(frozen=True)
class Member:
    path: str
    size: int
    open: Opener
    local_path: str | None = None  # set for files on local disk: they can be mapped
    offset: int | None = None  # in a tar file here: where the member's bytes start in it


@dataclass(frozen=True)
class Oddity:
    path: str
    detail: str


class BundleReader(abc.ABC):
    """A bundle to read: ``members()`` yields its regular files once, in any order."""

    form: Form
    display: str  # where it is, for messages: a path or a URI without secrets

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.oddities: list[Oddity] = []

    @property
    def local_reads(self) -> bool:
        """Whether reading the bundle back costs only reads of files on this host (not a
        download, nor a restore from cold storage)."""
        return self.storage.local_paths() is not None

    @property
    def name(self) -> str:
        return self.display.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0].removesuffix(".tar")

    @property
    def random_access(self) -> bool:
        """Whether members may be opened in any order and in parallel."""
        return self.form == "dir"

    @abc.abstractmethod
    def members(self) -> Iterator[Member]:
        """Every regular file of the bundle.

        A tar is read front to back, once; each member must be read (or not) before the next
        one is produced. Raises StorageError when the bundle cannot be read.
        """

    @abc.abstractmethod
    def tag_streams(self, names: Iterable[str]) -> Iterator[tuple[str, int, IO[bytes]]]:
        """``(name, size, stream)`` for each of these top-level files that exists, in one pass.

        Each stream is valid until the next is produced. Raises DamagedBundle when the bundle
        is damaged (a tar cut short, or holding a member twice), StorageError.
        """

    @abc.abstractmethod
    def open_member(self, path: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """Open one file by its bundle-relative path; raises NotABundle when it is absent."""

    def cold(self) -> list[ObjectInfo]:
        """Objects that must be restored from an archive storage class before reading."""
        return []


def check_path(path: str) -> None:
    if not layout.is_safe_relative(path):
        raise NotABundle(f"{path!r} is not a path inside a bundle")


# --- directory -----------------------------------------------------------------------------------


class DirReader(BundleReader):
    """A bundle directory: ``storage`` is rooted at it.

    Where the objects are files here (:class:`LocalPaths`), the directory is walked as it is on
    disk, so that symbolic links and special files are seen and reported, and members carry
    their path for memory-mapped hashing. Elsewhere it is listed once and read in parallel.
    """

    form: Form = "dir"

    def __init__(self, storage: Storage, objects: list[ObjectInfo] | None = None) -> None:
        super().__init__(storage)
        self._paths = storage.local_paths()
        self._objects = objects
        self.display = storage.display()

    @property
    def local_root(self) -> Path | None:
        """The directory on this host, where the storage's objects are files here."""
        return self._paths.local_path if self._paths is not None else None

    def local_member(self, path: str, local: str) -> Member:
        """The member at ``local`` (from :meth:`local_files`); raises StorageError."""
        try:
            size = os.stat(local, follow_symlinks=False).st_size  # noqa: PTH116 - a str
        except OSError as error:
            raise StorageError(f"cannot read {local}: {error.strerror}") from error
        return Member(path, size, _file_opener(local), local)

    def _listing(self) -> list[ObjectInfo]:
        if self._objects is None:
            self._objects = list(self.storage.list())
        return self._objects

    def cold(self) -> list[ObjectInfo]:
        if self._paths is not None:
            return []  # files on disk never wait in an archive storage class
        return [o for o in self._listing() if not o.readable]

    def members(self) -> Iterator[Member]:
        self.oddities.clear()
        if self._paths is not None:
            yield from self._walk()
            return
        for info in self._listing():
            if not layout.is_safe_relative(info.key):
                self.oddities.append(Oddity(info.key, "not a plain relative key"))
                continue
            yield Member(info.key, info.size, _object_opener(self.storage, info))

    def _walk(self) -> Iterator[Member]:
        for path, local in self.local_files():
            yield self.local_member(path, local)

    def local_files(self, *, under: str = "", skip: str | None = None
                    ) -> Iterator[tuple[str, str]]:
        """``(bundle-relative path, path here)`` of every regular file of a directory here,
        as :meth:`local_directories` finds them. Raises StorageError."""
        for relative, directory, names in self.local_directories(under=under, skip=skip):
            for name in names:
                yield (f"{relative}/{name}" if relative else name,
                       os.path.join(directory, name))  # noqa: PTH118 - str paths, 100k of them

    def local_directories(self, *, under: str = "", skip: str | None = None
                          ) -> Iterator[tuple[str, str, list[str]]]:
        """``(bundle-relative directory, that directory here, its regular files' names)`` for
        every directory of a directory here, from ``under`` (the top level by default), the
        top-level directory ``skip`` left out. Names are in order, and a directory's files
        come before its subdirectories'.

        What is neither a directory nor a regular file is added to ``oddities``; no file is
        opened or stat'ed to tell (see :mod:`crdb_archive.listing`). ``under`` that is not a
        directory (absent, or a symbolic link) has nothing. Raises StorageError.
        """
        if self._paths is None:
            return
        root = str(self._paths.local_path)
        if under and not _is_directory(os.path.join(root, under)):  # noqa: PTH118
            return
        stack = [under]
        while stack:
            relative = stack.pop()
            directory = os.path.join(root, relative) if relative else root  # noqa: PTH118
            try:
                files, directories = self._entries(relative, directory)
            except OSError as error:
                where = error.filename or directory
                raise StorageError(f"cannot read {where}: {error.strerror}") from error
            if not relative and skip is not None and skip in directories:
                directories.remove(skip)
            yield relative, directory, files
            stack.extend(f"{relative}/{name}" if relative else name
                         for name in reversed(directories))

    def _entries(self, relative: str, directory: str) -> tuple[list[str], list[str]]:
        """The names of a directory's regular files and subdirectories, each sorted; the rest
        added to ``oddities``."""
        files, directories, others = list_directory(directory)
        for name, symlink in others:
            path = f"{relative}/{name}" if relative else name
            kind = "symbolic link" if symlink else "special file"
            self.oddities.append(Oddity(path, f"{kind}, not a regular file"))
        return files, directories

    def tag_streams(self, names: Iterable[str]) -> Iterator[tuple[str, int, IO[bytes]]]:
        if self._paths is None:
            sizes = {o.key: o.size for o in self._listing()}
        for name in names:
            check_path(name)
            if self._paths is None:
                if name in sizes:
                    with self.storage.open_read(name) as stream:
                        yield name, sizes[name], stream
                continue
            target = self._paths.path(name)
            try:
                if target.is_symlink() or not target.is_file():
                    continue
                stream = target.open("rb")
                size = os.fstat(stream.fileno()).st_size
            except OSError as error:
                raise StorageError(f"cannot read {target}: {error.strerror}") from error
            with stream:
                yield name, size, stream

    def open_member(self, path: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        check_path(path)
        if self._paths is None:
            if not any(o.key == path for o in self._listing()):
                raise NotABundle(f"{self.display} has no {path}")
            return self.storage.open_read(path)
        return _open_file(self._paths.path(path), self.display, path)


def _is_directory(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


@contextlib.contextmanager
def _open_file(target: Path, display: str, path: str) -> Iterator[IO[bytes]]:
    if target.is_symlink() or not target.is_file():
        raise NotABundle(f"{display} has no {path}")
    try:
        stream = target.open("rb")
    except OSError as error:
        raise StorageError(f"cannot read {target}: {error.strerror}") from error
    with stream:
        yield stream


def _object_opener(storage: Storage, info: ObjectInfo) -> Opener:
    def opener() -> contextlib.AbstractContextManager[IO[bytes]]:
        if info.size >= 4 * PART_SIZE:
            # Several ranges in flight: one connection alone is slow for a large object.
            return cast(contextlib.AbstractContextManager[IO[bytes]],
                        RangedReader(storage, info.key, info.size))
        return storage.open_read(info.key)

    return opener


def _file_opener(path: str) -> Opener:
    def opener() -> contextlib.AbstractContextManager[IO[bytes]]:
        return open(path, "rb")  # noqa: PTH123 - a str path: no Path object per file

    return opener


# --- opening -------------------------------------------------------------------------------------


def open_bundle(where: str | Path, *, endpoint_url: str | None = None) -> BundleReader:
    """Recognise a bundle: a directory (or prefix) or a .tar, on disk or in object storage.

    Raises NotABundle when there is none, StorageError when the location cannot be read.
    """
    if isinstance(where, Path):
        # A Path is never a URI, whatever it looks like ("ab:c").
        parent, key = Location("file", "", str(where), ()).parent()
        storage = open_location(parent)
    else:
        storage, key = open_object(where, endpoint_url=endpoint_url)
    return open_bundle_in(storage, key)


def open_bundle_in(storage: Storage, key: str) -> BundleReader:
    """The bundle at ``key`` below ``storage``: a tar object (``<name>.tar``, or any object
    that starts with a tar header) or a ``<name>`` directory.

    Raises NotABundle when there is none, StorageError when it cannot be read.
    """
    if key.endswith(".tar"):
        info = storage.stat(key)
        if info is not None:
            return _tar_reader(storage, key, info)
    tree = storage.child(key)
    level = list(tree.list_level())
    if level:
        if not any(_of_a_bundle(entry) for entry in level):
            raise NotABundle(f"{tree.display()} is not a bundle: it has no {layout.BAGIT_TXT} "
                             "(expected a crdb-archive bundle directory or .tar)")
        return DirReader(tree)
    info = None if key.endswith(".tar") else storage.stat(key)
    if info is None:
        parent = key.rpartition("/")[0]
        if Prefix(key) in storage.list_level(parent):  # an empty directory on disk
            raise NotABundle(f"{tree.display()} is not a bundle: it has no "
                             f"{layout.BAGIT_TXT} (expected a crdb-archive bundle directory "
                             "or .tar)")
        raise NotABundle(f"{tree.display()} does not exist")
    # Another object is read as a bundle tar only when it starts with a tar header.
    with storage.open_read(key, length=BLOCK) as head:
        if not looks_like_tar(head.read(BLOCK)):
            raise NotABundle(f"{storage.display(key)} is not a bundle: neither a directory "
                             "nor a tar")
    return _tar_reader(storage, key, info)


def _of_a_bundle(entry: ObjectInfo | Prefix) -> bool:
    if isinstance(entry, Prefix):
        return entry.key == layout.PAYLOAD_DIR
    return entry.key in layout.ALL_TAG_FILES


def _tar_reader(storage: Storage, key: str, info: ObjectInfo) -> BundleReader:
    from crdb_archive.bundle.tar_reader import TarReader  # noqa: PLC0415 - it builds on this one

    return TarReader(storage, key, info)


def require_readable(reader: BundleReader, *, payload: bool) -> None:
    """Raise NeedsRestoreFromColdStorage (exit 3) naming what waits in an archive class.

    ``payload`` False checks only the tag files (what a quick check reads).
    """
    cold = [o for o in reader.cold()
            if payload or not o.key.startswith(layout.PAYLOAD_DIR + "/")]
    if not cold:
        return
    classes = ", ".join(sorted({o.storage_class or "an archive class" for o in cold}))
    raise NeedsRestoreFromColdStorage(
        f"{count(len(cold), 'object')} of {reader.display} {'is' if len(cold) == 1 else 'are'} in "
        f"{classes} and not restored (first: "
        f"{cold[0].key}); request a restore with `crdb-archive restore-request "
        f"{reader.display} --days 7` and run again when it is done"
    )
