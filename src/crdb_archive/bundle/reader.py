"""Read a bundle wherever it is: a directory or a tar, on local disk or in object storage.

Every form presents the same thing: the bundle's regular files as :class:`Member` values with a
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
from crdb_archive.storage.base import ObjectInfo, Storage, open_object
from crdb_archive.storage.local import LocalStorage
from crdb_archive.storage.ranged import PART_SIZE, RangedReader
from crdb_archive.storage.uri import parse_location

Opener = Callable[[], contextlib.AbstractContextManager[IO[bytes]]]
Form = Literal["dir", "tar"]


@dataclass(frozen=True)
class Member:
    path: str
    size: int
    open: Opener
    local_path: str | None = None  # set for files on local disk: they can be mapped


@dataclass(frozen=True)
class Oddity:
    path: str
    detail: str


class BundleReader(abc.ABC):
    """A bundle to read: ``members()`` yields its regular files once, in any order."""

    form: Form
    display: str  # where it is, for messages: a path or a URI without secrets

    def __init__(self) -> None:
        self.oddities: list[Oddity] = []

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


# --- local directory -----------------------------------------------------------------------------


class LocalDirReader(BundleReader):
    form: Form = "dir"

    def __init__(self, location: Path) -> None:
        super().__init__()
        self.location = location
        self.display = str(location)

    def members(self) -> Iterator[Member]:
        self.oddities.clear()
        yield from self._dir_members()

    def _dir_members(self) -> Iterator[Member]:
        root = self.location
        stack = [""]
        while stack:
            relative = stack.pop()
            directory = root / relative if relative else root
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError as error:
                raise StorageError(f"cannot list {directory}: {error.strerror}") from error
            for entry in entries:
                path = f"{relative}/{entry.name}" if relative else entry.name
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError as error:
                    raise StorageError(f"cannot read {entry.path}: {error.strerror}") from error
                if stat.S_ISDIR(info.st_mode):
                    stack.append(path)
                elif stat.S_ISREG(info.st_mode):
                    yield Member(path, info.st_size, _file_opener(entry.path), entry.path)
                else:
                    kind = "symbolic link" if stat.S_ISLNK(info.st_mode) else "special file"
                    self.oddities.append(Oddity(path, f"{kind}, not a regular file"))

    def tag_streams(self, names: Iterable[str]) -> Iterator[tuple[str, int, IO[bytes]]]:
        for name in names:
            check_path(name)
            target = self.location / name
            try:
                if target.is_symlink() or not target.is_file():
                    continue
                stream = target.open("rb")
                size = os.fstat(stream.fileno()).st_size
            except OSError as error:
                raise StorageError(f"cannot read {target}: {error.strerror}") from error
            with stream:
                yield name, size, stream

    @contextlib.contextmanager
    def open_member(self, path: str) -> Iterator[IO[bytes]]:
        check_path(path)
        target = self.location / path
        if target.is_symlink() or not target.is_file():
            raise NotABundle(f"{self.location} has no {path}")
        try:
            stream = target.open("rb")
        except OSError as error:
            raise StorageError(f"cannot read {target}: {error.strerror}") from error
        with stream:
            yield stream


# --- directory in object storage -----------------------------------------------------------------


class RemoteDirReader(BundleReader):
    """A bundle directory under a prefix of object storage: listed once, read in parallel."""

    form: Form = "dir"

    def __init__(self, storage: Storage, objects: list[ObjectInfo]) -> None:
        super().__init__()
        self.storage = storage
        self.objects = objects
        self.display = storage.display()

    def cold(self) -> list[ObjectInfo]:
        return [o for o in self.objects if not o.readable]

    def members(self) -> Iterator[Member]:
        self.oddities.clear()
        for info in self.objects:
            if not layout.is_safe_relative(info.key):
                self.oddities.append(Oddity(info.key, "not a plain relative key"))
                continue
            yield Member(info.key, info.size, _object_opener(self.storage, info))

    def tag_streams(self, names: Iterable[str]) -> Iterator[tuple[str, int, IO[bytes]]]:
        sizes = {o.key: o.size for o in self.objects}
        for name in names:
            check_path(name)
            if name in sizes:
                with self.storage.open_read(name) as stream:
                    yield name, sizes[name], stream

    def open_member(self, path: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        check_path(path)
        if not any(o.key == path for o in self.objects):
            raise NotABundle(f"{self.display} has no {path}")
        return self.storage.open_read(path)


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
    """Recognise a bundle: a directory or .tar on disk, or an s3:// prefix or .tar object.

    Raises NotABundle when there is none, StorageError when the location cannot be read.
    """
    if isinstance(where, str) and parse_location(where).scheme != "file":
        return _open_remote(where, endpoint_url)
    path = Path(where) if isinstance(where, Path) else parse_location(where).local_path
    try:
        if path.is_dir():
            if not (path / layout.BAGIT_TXT).is_file():
                raise NotABundle(
                    f"{path} is not a bundle: it has no {layout.BAGIT_TXT} (expected a "
                    "crdb-archive bundle directory or .tar)"
                )
            return LocalDirReader(path)
        if path.is_file():
            # A .tar is read as a bundle tar whatever it holds (an empty or cut one is a
            # damaged bundle); another file only when it starts with a tar header.
            if path.suffix != ".tar":
                with path.open("rb") as head:
                    if not looks_like_tar(head.read(BLOCK)):
                        raise NotABundle(f"{path} is not a bundle: neither a directory nor a "
                                         "tar")
            from crdb_archive.bundle.tar_reader import LocalTarReader  # noqa: PLC0415

            return LocalTarReader(path)
    except OSError as error:
        raise StorageError(f"cannot read {path}: {error.strerror}") from error
    raise NotABundle(f"{path} does not exist")


def _open_remote(uri: str, endpoint_url: str | None) -> BundleReader:
    if parse_location(uri).path.rstrip("/").endswith(".tar"):
        storage, key = open_object(uri, endpoint_url=endpoint_url)
        return open_bundle_in(storage, key)
    parent, name = open_object(uri, endpoint_url=endpoint_url)
    return open_bundle_in(parent, name)


def open_bundle_in(storage: Storage, key: str) -> BundleReader:
    """The bundle at ``key`` below ``storage``: ``<name>.tar`` or the ``<name>`` directory.

    Raises NotABundle when there is none, StorageError when it cannot be read.
    """
    if isinstance(storage, LocalStorage):
        return open_bundle(storage.local_path / key)
    if key.endswith(".tar"):
        from crdb_archive.bundle.tar_reader import RemoteTarReader  # noqa: PLC0415

        info = storage.stat(key)
        if info is None:
            raise NotABundle(f"{storage.display(key)} does not exist")
        return RemoteTarReader(storage, key, info)
    tree = storage.child(key)
    objects = list(tree.list())
    if not objects:
        raise NotABundle(f"{tree.display()} holds nothing: expected a crdb-archive bundle "
                         "(a prefix holding bagit.txt, or a .tar object)")
    if not any(o.key in layout.ALL_TAG_FILES or o.key.startswith("data/") for o in objects):
        raise NotABundle(f"{tree.display()} is not a bundle: it has no {layout.BAGIT_TXT}")
    return RemoteDirReader(tree, objects)


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
        f"{len(cold)} object(s) of {reader.display} are in {classes} and not restored (first: "
        f"{cold[0].key}); request a restore with `crdb-archive restore-request "
        f"{reader.display} --days 7` and run again when it is done"
    )
