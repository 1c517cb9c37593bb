"""Bundle tars in any storage, read by the strict reader (tarstream).

A tar is read once, front to back. Where it is a file here (the LocalPaths capability), what
is not read is skipped by seeking, and one member is read by seeking straight to it; elsewhere
it is streamed with several ranges in flight. Imported by :mod:`crdb_archive.bundle.reader` when
it opens a tar: the reader here builds on its base class.
"""

from __future__ import annotations

import contextlib
import functools
import io
import mmap
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, cast

from crdb_archive.bundle import layout
from crdb_archive.bundle.reader import BundleReader, Form, Member, Oddity, Opener, check_path
from crdb_archive.bundle.tarstream import StrictTar, TarDamaged, TarEntry
from crdb_archive.errors import NotABundle, StorageError
from crdb_archive.storage.base import ObjectInfo, Storage
from crdb_archive.storage.ranged import RangedReader
from crdb_archive.storage.streams import file_window

_READ_BUFFER = 1 << 20


class TarReader(BundleReader):
    """The tar object ``key`` of ``storage``, read front to back by the strict reader.

    ``duplicates`` names the members found more than once in the last pass.
    """

    form: Form = "tar"

    def __init__(self, storage: Storage, key: str, info: ObjectInfo) -> None:
        super().__init__(storage)
        self.key = key
        self.info = info
        self.display = storage.display(key)
        paths = storage.local_paths()
        self.location = paths.path(key) if paths is not None else None
        self.duplicates: list[str] = []

    def cold(self) -> list[ObjectInfo]:
        return [] if self.info.readable else [self.info]

    @contextlib.contextmanager
    def _open_tar(self) -> Iterator[StrictTar]:
        """The tar, opened for one pass from its start."""
        if self.location is None:
            with RangedReader(self.storage, self.key, self.info.size) as ranged:
                yield StrictTar(cast(IO[bytes], ranged), self.display)
            return
        try:
            # A large buffer: the headers of 100k small members are read, and their data
            # skipped, in few system calls.
            source = self.location.open("rb", buffering=_READ_BUFFER)
        except OSError as error:
            raise StorageError(f"cannot read {self.location}: {error.strerror}") from error
        with source:
            try:
                yield StrictTar(source, self.display, seekable=True)
            except OSError as error:
                raise StorageError(f"cannot read {self.location}: {error.strerror}") from error

    @contextlib.contextmanager
    def mapped(self) -> Iterator[mmap.mmap | None]:
        """The tar file mapped into memory, read-only, where it is a file here that is not
        empty (members' bytes are then hashed in place, at their ``offset``); else None.
        Raises StorageError."""
        if self.location is None:
            yield None
            return
        try:
            with self.location.open("rb") as stream:
                mapped = _map(stream.fileno())
        except OSError as error:
            raise StorageError(f"cannot read {self.location}: {error.strerror}") from error
        if mapped is None:
            yield None
            return
        try:
            yield mapped
        finally:
            # A hashing thread may still hold a view of it after a second interrupt: the
            # map is then unmapped when the last view goes, and the interrupt stays the
            # error that is reported.
            with contextlib.suppress(BufferError):
                mapped.close()

    def members(self) -> Iterator[Member]:
        with self._open_tar() as tar:
            for member, _ in self._members_of(tar):
                yield member

    def _members_of(self, tar: StrictTar) -> Iterator[tuple[Member, TarEntry]]:
        self.oddities.clear()
        self.duplicates = []
        top: str | None = None
        names: set[str] = set()
        for entry in tar.entries():
            head, _, rest = entry.name.partition("/")
            if top is None:
                top = head
            inside = head == top and (rest or entry.kind == "dir")
            if entry.name in names:
                # A second copy: which one a tool extracts depends on the tool (the last wins
                # for tar xf), so neither is trusted; the verifier reports it.
                self.duplicates.append(rest if inside and rest else entry.name)
                self.oddities.append(Oddity(self.duplicates[-1],
                                            "appears more than once in the tar"))
                continue
            names.add(entry.name)
            if not inside:
                self.oddities.append(Oddity(entry.name, f"outside the bundle folder {top}/"))
                continue
            if entry.kind == "dir":
                continue
            if entry.kind == "other":
                self.oddities.append(Oddity(rest, f"{entry.type_name}, not a regular file in "
                                                  "the tar"))
                continue
            if not layout.is_safe_relative(rest):
                self.oddities.append(Oddity(rest, "unsafe path in the tar"))
                continue
            offset = entry.offset if self.location is not None else None
            yield Member(rest, entry.size, _tar_opener(tar, entry), offset=offset), entry
        if top is None:
            raise TarDamaged(self.display, "size", "it holds no member: an empty tar is not a "
                             "bundle", complete=True)

    def _refuse_duplicates(self) -> None:
        if self.duplicates:
            raise TarDamaged(self.display, "unexpected",
                             f"{self.duplicates[0]} appears more than once in the tar",
                             complete=True)

    def tag_streams(self, names: Iterable[str]) -> Iterator[tuple[str, int, IO[bytes]]]:
        wanted = set(names)
        for name in wanted:
            check_path(name)
        for member in self.members():
            if member.path in wanted:
                with member.open() as stream:
                    yield member.path, member.size, stream
        self._refuse_duplicates()

    @contextlib.contextmanager
    def open_member(self, path: str) -> Iterator[IO[bytes]]:
        check_path(path)
        if self.location is not None:
            with self._seek_member(self.location, path) as stream:
                yield stream
            return
        for member in self.members():
            if member.path == path:
                with member.open() as stream:
                    yield stream
                return
        raise NotABundle(f"{self.display} has no {path}")

    @contextlib.contextmanager
    def _seek_member(self, location: Path, path: str) -> Iterator[IO[bytes]]:
        # A file is seekable: read every header (skipping the data) to know the tar is whole
        # and holds the member once, then jump to it.
        found: TarEntry | None = None
        with self._open_tar() as tar:
            for member, entry in self._members_of(tar):
                if member.path == path and found is None:
                    found = entry
        self._refuse_duplicates()
        if found is None:
            raise NotABundle(f"{location} has no {path}")
        try:
            raw = io.FileIO(location, "r")
            raw.seek(found.offset)
        except OSError as error:
            raise StorageError(f"cannot read {location}: {error.strerror}") from error
        with file_window(raw, found.size, lambda error: StorageError(
                f"cannot read {location}: {error.strerror}")) as stream:
            yield stream


def _map(fd: int) -> mmap.mmap | None:
    """The file mapped read-only; None when it is empty or its file system cannot map it
    (the tar is then read as a stream). Raises OSError when it cannot be examined."""
    if not os.fstat(fd).st_size:
        return None
    try:
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None


def _tar_opener(tar: StrictTar, entry: TarEntry) -> Opener:
    # The reader closes itself as a context manager; a partial costs less than a generator
    # context manager made for each of 100k members.
    return functools.partial(tar.open, entry)
