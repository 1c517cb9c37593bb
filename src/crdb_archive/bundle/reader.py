"""Read a bundle, as a directory or as a tar read once as a stream.

Both forms present the same thing: the bundle's regular files as :class:`Member` values with a
bundle-relative path, a size, and a way to read the bytes. Anything that is not a regular
file (a symlink, a device, a tar member outside the bundle's top folder) is reported as an
:class:`Oddity` for the verifier to name, never followed.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from crdb_archive.bundle import layout
from crdb_archive.errors import NotABundle, StorageError


@dataclass(frozen=True)
class Member:
    path: str
    size: int
    open: Callable[[], contextlib.AbstractContextManager[IO[bytes]]]
    local_path: Path | None = None  # set for files on local disk: they can be mapped


@dataclass(frozen=True)
class Oddity:
    path: str
    detail: str


@dataclass
class BundleReader:
    """A bundle on local disk; ``members()`` yields its regular files once, in any order."""

    location: Path
    form: Literal["dir", "tar"]
    oddities: list[Oddity] = field(default_factory=list)

    @property
    def random_access(self) -> bool:
        """Whether members may be opened in any order and in parallel."""
        return self.form == "dir"

    def members(self) -> Iterator[Member]:
        """Every regular file of the bundle.

        A tar is read front to back, once; each member must be read (or not) before the next
        one is produced, and a member that is not read is skipped over without reading it.
        """
        self.oddities.clear()
        if self.form == "dir":
            yield from self._dir_members()
        else:
            yield from self._tar_members()

    # --- directory ----------------------------------------------------------------------------

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
                    local = Path(entry.path)
                    yield Member(path, info.st_size, _file_opener(local), local)
                else:
                    kind = "symbolic link" if stat.S_ISLNK(info.st_mode) else "special file"
                    self.oddities.append(Oddity(path, f"{kind}, not a regular file"))

    # --- tar ------------------------------------------------------------------------------------

    def _tar_members(self) -> Iterator[Member]:
        try:
            # A local tar is opened seekable but read front to back, once: tarfile's stream
            # mode copies its whole buffer on every small read, which 100k small members feel.
            tar = tarfile.open(self.location, mode="r:")  # noqa: SIM115 - closed below
        except (tarfile.TarError, OSError) as error:
            raise NotABundle(f"{self.location} is not a readable tar: {error}") from error
        top: str | None = None
        with tar:
            try:
                for info in tar:
                    name = info.name.removeprefix("./").rstrip("/")
                    head, _, rest = name.partition("/")
                    if top is None:
                        top = head
                    if head != top or (not rest and not info.isdir()):
                        self.oddities.append(Oddity(name, f"outside the bundle folder {top}/"))
                        continue
                    if info.isdir():
                        continue
                    if not info.isreg():
                        self.oddities.append(Oddity(rest, "not a regular file in the tar"))
                        continue
                    if not layout.is_safe_relative(rest):
                        self.oddities.append(Oddity(rest, "unsafe path in the tar"))
                        continue
                    yield Member(rest, info.size, _tar_opener(tar, info))
            except tarfile.TarError as error:
                self.oddities.append(Oddity(self.location.name, f"tar is damaged: {error}"))
            except OSError as error:
                raise StorageError(f"cannot read {self.location}: {error.strerror}") from error
        if top is None:
            raise NotABundle(f"{self.location} is an empty tar, not a bundle")

    @property
    def name(self) -> str:
        return self.location.name.removesuffix(".tar")

    @contextlib.contextmanager
    def open_member(self, path: str) -> Iterator[IO[bytes]]:
        """Open one file of the bundle by its bundle-relative path (a tar is seeked, not read).

        Raises NotABundle when the file is absent, StorageError when it cannot be read.
        """
        if not layout.is_safe_relative(path):
            raise NotABundle(f"{path!r} is not a path inside a bundle")
        if self.form == "dir":
            target = self.location / path
            if target.is_symlink() or not target.is_file():
                raise NotABundle(f"{self.location} has no {path}")
            try:
                stream = target.open("rb")
            except OSError as error:
                raise StorageError(f"cannot read {target}: {error.strerror}") from error
            with stream:
                yield stream
            return
        with contextlib.ExitStack() as stack:
            try:
                tar = stack.enter_context(tarfile.open(self.location, mode="r:"))
                first = tar.next()
                if first is None:
                    raise NotABundle(f"{self.location} is an empty tar, not a bundle")
                top = first.name.removeprefix("./").split("/", 1)[0]
                try:
                    info = tar.getmember(f"{top}/{path}")
                except KeyError:
                    raise NotABundle(f"{self.location} has no {path}") from None
                member = tar.extractfile(info) if info.isreg() else None
                if member is None:
                    raise NotABundle(f"{path} in {self.location} is not a regular file")
                stack.enter_context(member)
            except tarfile.TarError as error:
                raise NotABundle(f"{self.location} is not a readable tar: {error}") from error
            except OSError as error:
                raise StorageError(f"cannot read {self.location}: {error.strerror}") from error
            yield member

    def read_small(self, path: str, limit: int = 64 << 20) -> bytes:
        """The whole content of a small file of the bundle (a tag file)."""
        with self.open_member(path) as stream:
            content = stream.read(limit + 1)
        if len(content) > limit:
            raise NotABundle(f"{path} in {self.location} is larger than a tag file can be")
        return content


def _file_opener(path: Path) -> Callable[[], contextlib.AbstractContextManager[IO[bytes]]]:
    def opener() -> contextlib.AbstractContextManager[IO[bytes]]:
        return path.open("rb")

    return opener


def _tar_opener(
    tar: tarfile.TarFile, info: tarfile.TarInfo
) -> Callable[[], contextlib.AbstractContextManager[IO[bytes]]]:
    @contextlib.contextmanager
    def opener() -> Iterator[IO[bytes]]:
        stream = tar.extractfile(info)
        if stream is None:  # pragma: no cover - regular members always have a stream
            raise StorageError(f"cannot read {info.name} from the tar")
        with stream:
            yield stream

    return opener


def open_bundle(path: Path) -> BundleReader:
    """Recognise a bundle directory or a bundle tar; raises NotABundle otherwise."""
    try:
        if path.is_dir():
            if not (path / layout.BAGIT_TXT).is_file():
                raise NotABundle(
                    f"{path} is not a bundle: it has no {layout.BAGIT_TXT} (expected a "
                    "crdb-archive bundle directory or .tar)"
                )
            return BundleReader(path, "dir")
        if path.is_file():
            if not tarfile.is_tarfile(path):
                raise NotABundle(f"{path} is not a bundle: neither a directory nor a tar")
            return BundleReader(path, "tar")
    except OSError as error:
        raise StorageError(f"cannot read {path}: {error.strerror}") from error
    raise NotABundle(f"{path} does not exist")
