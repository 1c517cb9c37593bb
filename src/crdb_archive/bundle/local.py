"""Bundles on local disk: assembled in a locked hidden staging directory, renamed into place.

A reader never sees a half-written bundle under its final name. A staging area left by a killed
run is removed by the next run for the same name; a second run writing the same bundle at the
same time is refused.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from crdb_archive.bundle import layout
from crdb_archive.bundle.writer import (
    BundleFormat,
    DescribeCallback,
    Guard,
    PayloadItem,
    Sink,
    WrittenBundle,
    check_payload_paths,
    unguarded,
    write_tar,
    write_tree,
)
from crdb_archive.errors import BadInput, StorageError
from crdb_archive.progress import ProgressCallback, no_progress
from crdb_archive.storage.local import fsync_directory


def bundle_path(dest_dir: Path, name: str, fmt: BundleFormat) -> Path:
    return dest_dir / (f"{name}.tar" if fmt == "tar" else name)


class BundleStaging:
    """A locked staging area in the destination directory for one bundle.

    Use as a context manager: ``scratch`` is a directory for files the bundle is made from
    (downloaded binaries), and :meth:`write` assembles the bundle and renames it into place.
    Whatever happens, the staging area is gone on exit; one left by a killed run is cleared
    when the next run for the same name takes the lock.
    """

    def __init__(self, dest_dir: Path, name: str, fmt: BundleFormat = "dir") -> None:
        if not layout.is_valid_name(name):
            raise BadInput(f"bundle name {name!r} is not a portable file name")
        self.dest_dir = dest_dir
        self.name = name
        self.format: BundleFormat = fmt
        self.final = bundle_path(dest_dir, name, fmt)
        self._stack = contextlib.ExitStack()
        self._root: Path | None = None

    def __enter__(self) -> BundleStaging:
        self._root = self._stack.enter_context(_staging(self.dest_dir, self.name))
        with storage_errors(self._root):
            self.scratch.mkdir()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    @property
    def scratch(self) -> Path:
        if self._root is None:
            raise RuntimeError("BundleStaging used outside its with-block")
        return self._root / "scratch"

    def write(
        self,
        payload: Sequence[PayloadItem],
        *,
        bag_info: Sequence[tuple[str, str]],
        describe: DescribeCallback,
        progress: ProgressCallback = no_progress,
        guard: Guard = unguarded,
    ) -> WrittenBundle:
        """Write ``payload`` and its tag files, then rename the bundle into place.

        ``bag_info`` adds labels to bag-info.txt after the standard ones; ``guard`` is called
        just before the rename, and what it raises leaves the bundle unpublished. Raises
        BadInput for a payload path outside data/, StorageError when the destination cannot be
        written.
        """
        if self._root is None:
            raise RuntimeError("BundleStaging used outside its with-block")
        check_payload_paths(payload)
        if self.format == "dir":
            tree = self._root / self.name
            with storage_errors(tree):
                tree.mkdir()
                for directory in sorted({str(Path(i.path).parent) for i in payload}
                                        | {layout.PAYLOAD_DIR}):
                    (tree / directory).mkdir(parents=True, exist_ok=True)
                result = write_tree(_file_sinks(tree), self.name, payload, bag_info, describe,
                                    progress)
                # One flush of the whole file system instead of an fsync per file: 100k small
                # files would otherwise pay 100k synchronous writes.
                _flush_file_system(tree)
            guard(f"publishing {self.final.name}")
            _publish(tree, self.final)
        else:
            tar_path = self._root / f"{self.name}.tar"
            with storage_errors(tar_path), tar_path.open("xb") as raw:
                result = write_tar(raw, self.name, payload, bag_info, describe, progress)
                raw.flush()
                os.fsync(raw.fileno())
            guard(f"publishing {self.final.name}")
            _publish(tar_path, self.final)
        return WrittenBundle(str(self.final), self.name, self.format, result)


class _FileSink:
    """A new file written with plain system calls.

    Python's buffered file objects cost about 60 microseconds more per file to open and close
    than ``os.open``; a backup of 100k small SSTs pays that 100k times.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        return len(data)


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _file_sinks(tree: Path) -> Callable[[str, int], contextlib.AbstractContextManager[Sink]]:
    root = str(tree)

    @contextlib.contextmanager
    def open_sink(path: str, size: int) -> Iterator[Sink]:
        fd = os.open(f"{root}/{path}", _CREATE, 0o644)
        try:
            yield _FileSink(fd)
        finally:
            os.close(fd)

    return open_sink


def write_bundle(
    dest_dir: Path,
    name: str,
    payload: Sequence[PayloadItem],
    *,
    bag_info: Sequence[tuple[str, str]],
    describe: DescribeCallback,
    fmt: BundleFormat = "dir",
    progress: ProgressCallback = no_progress,
) -> WrittenBundle:
    """Write bundle ``name`` in ``dest_dir`` from ``payload`` in one call (see BundleStaging)."""
    with BundleStaging(dest_dir, name, fmt) as staging:
        return staging.write(payload, bag_info=bag_info, describe=describe, progress=progress)


# --- staging ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _staging(dest_dir: Path, name: str) -> Iterator[Path]:
    """A locked, empty staging directory; removed on the way out whatever happens, and so are
    the directories made for it when no bundle went into them (a failed first archive leaves
    no empty destination behind)."""
    staging = dest_dir / layout.staging_name(name)
    made = [d for d in (dest_dir, *dest_dir.parents) if not d.exists()]  # deepest first
    try:
        with storage_errors(dest_dir):
            dest_dir.mkdir(parents=True, exist_ok=True)
            staging.mkdir(exist_ok=True)
            fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
    except BaseException:
        _remove_empty(made)
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageError(
                f"another crdb-archive run is writing {name} in {dest_dir}"
            ) from None
        # Whatever is in it belongs to a run that died: its lock went with it.
        with storage_errors(staging):
            for child in staging.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)
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
    """Rename a finished bundle into place; never replaces an existing one."""
    with storage_errors(final):
        fsync_directory(source if source.is_dir() else source.parent)
        if final.exists() or final.is_symlink():
            raise StorageError(f"{final} appeared while this bundle was being written")
        source.rename(final)
        fsync_directory(final.parent)


def _flush_file_system(path: Path) -> None:
    """Make everything written under ``path`` durable before the bundle is renamed into place."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _syncfs is not None and _syncfs(fd) == 0:
            return
        os.sync()
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    """Linux's syncfs(2), which flushes one file system; None where it does not exist."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):
        return None
    return function


_syncfs = _load_syncfs()



@contextlib.contextmanager
def storage_errors(where: Path) -> Iterator[None]:
    """Turn OSError into StorageError with a one-line message naming the place."""
    try:
        yield
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise StorageError(f"no space left on the device while writing {where}") from error
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise StorageError(f"cannot write {where}: {error.strerror}") from error
        raise StorageError(f"{where}: {error.strerror or error}") from error


