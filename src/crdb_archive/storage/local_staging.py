"""Staging on disk: a locked hidden directory beside the final name, renamed into place.

A reader never sees a half-written tree or object under its final name. A staging area left by
a killed run is cleared by the next run for the same name; a second run writing the same name
at the same time is refused (the staging directory is held with ``flock``, which the kernel
releases however its holder dies).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from crdb_archive.errors import BadInput, StorageError
from crdb_archive.storage.base import (
    WriteOptions,
    staging_name,
    storage_error,
    storage_errors,
    validate_key,
)
from crdb_archive.storage.capabilities import PublishCheck, no_check

if TYPE_CHECKING:
    from crdb_archive.storage.receipts import Receipt

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


class _FileSink:
    """A new file written with plain system calls, closed when its with-block ends.

    Python's buffered file objects cost about 60 microseconds more per file to open and close
    than ``os.open``; a backup of 100k small SSTs pays that 100k times, and so it pays for
    every layer here (no generator context manager). No fsync per file: the whole tree is
    flushed once before it is published.
    """

    def __init__(self, fd: int, path: str) -> None:
        self._fd = fd
        self._path = path
        self._written = 0

    def __enter__(self) -> _FileSink:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as error:
            raise storage_error(self._path, error) from error
        self._written += len(data)

    @property
    def bytes_written(self) -> int:
        return self._written

    @property
    def receipt(self) -> None:
        return None  # a local file: read back cheaply, nothing to confirm


class _StagedFile:
    """One object written through a buffered file, made durable before it is published."""

    def __init__(self, handle: BinaryIO, path: Path) -> None:
        self._handle = handle
        self._path = path
        self._written = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        with storage_errors(self._path):
            self._handle.write(data)
        self._written += len(data)

    @property
    def bytes_written(self) -> int:
        return self._written

    @property
    def receipt(self) -> None:
        return None  # a local file: read back cheaply, nothing to confirm


class LocalStaging:
    """The :class:`~crdb_archive.storage.base.Staging` of a directory (see module docstring)."""

    def __init__(self, root: Path, area: Path) -> None:
        self._root = root
        self._area = area
        self._made: set[str] = set()
        self._trees: set[str] = set()

    @property
    def scratch(self) -> Path:
        return self._area / "scratch"

    def receipts(self) -> list[Receipt]:
        return []  # renamed into place here: a full check reads local files cheaply

    def open_member(
        self, key: str, *, size_hint: int | None = None, options: WriteOptions | None = None
    ) -> _FileSink:
        path = self.member_file(key, options=options)
        try:
            fd = os.open(path, _CREATE, 0o644)
        except OSError as error:
            raise storage_error(path, error) from error
        return _FileSink(fd, path)

    def member_files(self) -> LocalStaging:
        return self

    def member_file(self, key: str, *, options: WriteOptions | None = None) -> str:
        path = self._staged(key, options)
        self._trees.add(key.split("/", 1)[0])
        try:
            self._directory(path.rpartition("/")[0])
        except OSError as error:
            raise storage_error(path, error) from error
        return path

    def _directory(self, directory: str) -> None:
        """Make ``directory`` inside the staging area, never the area itself: a writer still
        running after the area was removed (the run stopped) must fail, not make it again."""
        if directory in self._made or directory == str(self._area):
            return
        self._directory(directory.rpartition("/")[0])
        with contextlib.suppress(FileExistsError):
            Path(directory).mkdir()
        self._made.add(directory)

    def publish_tree(self, key: str, content: bytes, *, options: WriteOptions | None = None,
                     check: PublishCheck = no_check) -> None:
        with self.open_member(key, size_hint=len(content), options=options) as sink:
            sink.write(content)
        for tree in sorted(self._trees):
            staged = self._area / tree
            # One flush of the whole file system instead of an fsync per file: 100k small
            # files would otherwise pay 100k synchronous writes.
            with storage_errors(staged):
                _flush_file_system(staged)
        check()
        for tree in sorted(self._trees):
            _publish(self._area / tree, self._root / tree)

    @contextlib.contextmanager
    def open_object(
        self, key: str, *, size_hint: int | None = None, options: WriteOptions | None = None,
        check: PublishCheck = no_check,
    ) -> Iterator[_StagedFile]:
        path = Path(self._staged(key, options))
        with storage_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = path.open("xb", buffering=1 << 20)
        with handle:
            yield _StagedFile(handle, path)
            with storage_errors(path):
                handle.flush()
                os.fsync(handle.fileno())
        check()
        _publish(path, self._root / key)

    def _staged(self, key: str, options: WriteOptions | None) -> str:
        if options is not None and not options.is_default:
            raise BadInput(f"{self._root} is a local directory: it has no storage class or "
                           "Object Lock")
        return f"{self._area}/{validate_key(key)}"


@contextlib.contextmanager
def local_staging(root: Path, name: str) -> Iterator[LocalStaging]:
    """A locked, empty staging directory for ``name`` in ``root``; removed on the way out
    whatever happens, and so are the directories made for it when nothing was published into
    them (a failed first archive leaves no empty destination behind).

    Raises StorageError when another run holds it, or it cannot be made.
    """
    area = root / staging_name(validate_key(name))
    made = [d for d in (root, *root.parents) if not d.exists()]  # deepest first
    try:
        with storage_errors(root):
            root.mkdir(parents=True, exist_ok=True)
            area.mkdir(exist_ok=True)
            fd = os.open(area, os.O_RDONLY | os.O_DIRECTORY)
    except BaseException:
        _remove_empty(made)
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageError(f"another crdb-archive run is writing {name} in {root}") from None
        # Whatever is in it belongs to a run that died: its lock went with it.
        with storage_errors(area):
            for child in area.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        try:
            staging = LocalStaging(root, area)
            with storage_errors(area):
                staging.scratch.mkdir()
            yield staging
        finally:
            shutil.rmtree(area, ignore_errors=True)
    finally:
        os.close(fd)
        _remove_empty(made)


def _remove_empty(directories: list[Path]) -> None:
    """Remove these directories, deepest first, while they are empty; never anything else."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:  # not empty (a bundle, another run's staging), or not ours to remove
            return


def _publish(source: Path, final: Path) -> None:
    """Rename a finished tree or file into place; never replaces an existing one."""
    with storage_errors(final):
        fsync_directory(source if source.is_dir() else source.parent)
        if final.exists() or final.is_symlink():
            raise StorageError(f"{final} appeared while it was being written")
        source.rename(final)
        fsync_directory(final.parent)


def fsync_directory(directory: Path) -> None:
    """Make renames in ``directory`` durable (best effort where it cannot be opened)."""
    # Some filesystems refuse to open a directory, which only costs that guarantee.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _flush_file_system(path: Path) -> None:
    """Make everything written under ``path`` durable before it is renamed into place."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        syncfs = _load_syncfs()
        if syncfs is not None and syncfs(fd) == 0:
            return
        os.sync()
    finally:
        os.close(fd)


@functools.cache
def _load_syncfs() -> Callable[[int], int] | None:
    """Linux's syncfs(2), which flushes one file system; None where it does not exist.

    Looked up on first use: finding libc costs a command that only reads (verify) time it
    does not need to spend."""
    import ctypes  # noqa: PLC0415
    import ctypes.util  # noqa: PLC0415

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):
        return None
    return function


