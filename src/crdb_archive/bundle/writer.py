"""Write a bundle atomically, as a directory or as one uncompressed POSIX tar.

Every payload file is read once: the copy, its SHA-256 and its BLAKE3 come from the same pass.
The bundle is assembled under a hidden staging name in the destination directory and renamed
into place only when complete, so a reader never sees a half-written bundle under its final
name. A staging area left by a killed run is removed by the next run for the same name.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime as dt
import errno
import fcntl
import os
import shutil
import tarfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from crdb_archive import __version__
from crdb_archive.bundle import layout
from crdb_archive.errors import BadInput, StorageError
from crdb_archive.hashing import (
    Digests,
    DigestWriter,
    copy_and_digest,
    parallel_in_batches,
)
from crdb_archive.progress import ProgressCallback, ProgressEvent, no_progress

BundleFormat = Literal["dir", "tar"]

# Small files are copied by several threads at once: per-file overhead, not bandwidth, is what
# limits a backup of 100k small SSTs.
_COPY_THREADS = max(2, min(8, os.cpu_count() or 2))


@dataclass(frozen=True)
class PayloadItem:
    """One payload file: where it goes in the bundle and how to read it."""

    path: str  # bundle-relative, under data/
    size: int
    open: Callable[[], IO[bytes]]
    mtime: float | None = None


@dataclass(frozen=True)
class PayloadResult:
    """What was written: per-file digests, and the totals for Payload-Oxum."""

    digests: Mapping[str, Digests]
    bagging_date: dt.date

    @property
    def files(self) -> int:
        return len(self.digests)

    @property
    def bytes(self) -> int:
        return sum(d.size for d in self.digests.values())

    @property
    def oxum(self) -> str:
        return f"{self.bytes}.{self.files}"


# Tag files beyond the BagIt core (crdb-archive.json, RESTORE.md), made once digests are known.
DescribeCallback = Callable[[PayloadResult], Mapping[str, bytes]]


@dataclass(frozen=True)
class WrittenBundle:
    path: Path
    name: str
    format: BundleFormat
    payload: PayloadResult


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
        with _storage_errors(self._root):
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
    ) -> WrittenBundle:
        """Write ``payload`` and its tag files, then rename the bundle into place.

        ``bag_info`` adds labels to bag-info.txt after the standard ones. Raises BadInput for a
        payload path outside data/, StorageError when the destination cannot be written.
        """
        if self._root is None:
            raise RuntimeError("BundleStaging used outside its with-block")
        for item in payload:
            if not item.path.startswith(layout.PAYLOAD_DIR + "/") or not layout.is_safe_relative(
                item.path
            ):
                raise BadInput(f"payload path {item.path!r} is not inside data/")
        if self.format == "dir":
            tree = self._root / self.name
            result = _write_dir(tree, self.name, payload, bag_info, describe, progress)
            _publish(tree, self.final)
        else:
            tar_path = self._root / f"{self.name}.tar"
            result = _write_tar(tar_path, self.name, payload, bag_info, describe, progress)
            _publish(tar_path, self.final)
        return WrittenBundle(self.final, self.name, self.format, result)


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
    """A locked, empty staging directory; removed on the way out whatever happens."""
    staging = dest_dir / layout.staging_name(name)
    with _storage_errors(dest_dir):
        dest_dir.mkdir(parents=True, exist_ok=True)
        staging.mkdir(exist_ok=True)
        fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageError(
                f"another crdb-archive run is writing {name} in {dest_dir}"
            ) from None
        # Whatever is in it belongs to a run that died: its lock went with it.
        with _storage_errors(staging):
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


def _publish(source: Path, final: Path) -> None:
    """Rename a finished bundle into place; never replaces an existing one."""
    with _storage_errors(final):
        _fsync_dir(source if source.is_dir() else source.parent)
        if final.exists() or final.is_symlink():
            raise StorageError(f"{final} appeared while this bundle was being written")
        source.rename(final)
        _fsync_dir(final.parent)


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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _storage_errors(where: Path) -> Iterator[None]:
    """Turn OSError into StorageError with a one-line message naming the place."""
    try:
        yield
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise StorageError(f"no space left on the device while writing {where}") from error
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise StorageError(f"cannot write {where}: {error.strerror}") from error
        raise StorageError(f"{where}: {error.strerror or error}") from error


# --- directory form -------------------------------------------------------------------------------


class _Totals:
    """Bytes done across threads, reported as one progress task."""

    def __init__(self, task: str, total: int, progress: ProgressCallback) -> None:
        self._task = task
        self._total = total
        self._progress = progress
        self._done = 0
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        with self._lock:
            self._done += count
            done = self._done
        self._progress(ProgressEvent(self._task, done, self._total))

    def finish(self) -> None:
        self._progress(ProgressEvent(self._task, self._done, self._total, finished=True))


def _copy_item(item: PayloadItem, target: Path, totals: _Totals) -> Digests:
    with item.open() as source, target.open("xb") as sink:
        digests = copy_and_digest(source, sink, size_hint=item.size, on_chunk=totals.add)
    _check_size(item, digests.size)
    if item.mtime is not None:
        os.utime(target, (item.mtime, item.mtime))
    return digests


def _check_size(item: PayloadItem, size: int) -> None:
    if size != item.size:
        raise StorageError(
            f"{item.path} changed while it was archived: expected {item.size} bytes, "
            f"read {size}"
        )


def _write_dir(
    staging: Path,
    name: str,
    payload: Sequence[PayloadItem],
    bag_info: Sequence[tuple[str, str]],
    describe: DescribeCallback,
    progress: ProgressCallback,
) -> PayloadResult:
    totals = _Totals(f"archive {name}", sum(i.size for i in payload), progress)
    digests: dict[str, Digests] = {}
    with _storage_errors(staging):
        staging.mkdir()
        for directory in sorted({str(Path(item.path).parent) for item in payload}
                                | {layout.PAYLOAD_DIR}):
            (staging / directory).mkdir(parents=True, exist_ok=True)
        for item, item_digests in parallel_in_batches(
            lambda i: _copy_item(i, staging / i.path, totals), payload, lambda i: i.size,
            threads=_COPY_THREADS,
        ):
            digests[item.path] = item_digests
        totals.finish()
        result = PayloadResult(digests, dt.datetime.now(dt.UTC).date())
        for tag_name, content in _tag_files(result, bag_info, describe):
            (staging / tag_name).write_bytes(content)
        # One flush of the whole file system instead of an fsync per file: 100k small files
        # would otherwise pay 100k synchronous writes.
        _flush_file_system(staging)
    return result


# --- tar form -----------------------------------------------------------------------------------


class _HashingReader:
    """A read-only stream that digests what passes through it (tarfile pulls from it)."""

    def __init__(self, source: IO[bytes], writer: DigestWriter, totals: _Totals) -> None:
        self._source = source
        self._writer = writer
        self._totals = totals

    def read(self, size: int = -1) -> bytes:
        chunk = self._source.read(size)
        if chunk:
            self._writer.update(chunk)
            self._totals.add(len(chunk))
        return chunk


def _tarinfo(name: str, size: int, mtime: float, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime)
    info.mode = mode
    info.type = tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_tar(
    tar_path: Path,
    name: str,
    payload: Sequence[PayloadItem],
    bag_info: Sequence[tuple[str, str]],
    describe: DescribeCallback,
    progress: ProgressCallback,
) -> PayloadResult:
    totals = _Totals(f"archive {name}.tar", sum(i.size for i in payload), progress)
    now = dt.datetime.now(dt.UTC)
    digests: dict[str, Digests] = {}
    with _storage_errors(tar_path), tar_path.open("xb") as raw, tarfile.TarFile(
        fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, copybufsize=1 << 20
    ) as tar:
        # Payload first, tag files after it, the tag manifest last: a reader streaming the
        # tar meets the files in the order they were made complete.
        for item in payload:
            writer = DigestWriter(size_hint=item.size)
            info = _tarinfo(f"{name}/{item.path}", item.size,
                            item.mtime if item.mtime is not None else now.timestamp())
            with item.open() as source:
                tar.addfile(info, _HashingReader(source, writer, totals))
            _check_size(item, writer.size)
            digests[item.path] = writer.digests()
        totals.finish()
        result = PayloadResult(digests, now.date())
        for tag_name, content in _tag_files(result, bag_info, describe):
            info = _tarinfo(f"{name}/{tag_name}", len(content), now.timestamp())
            tar.addfile(info, _BytesReader(content))
        tar.close()
        raw.flush()
        os.fsync(raw.fileno())
    return result


class _BytesReader:
    def __init__(self, content: bytes) -> None:
        self._content = memoryview(content)
        self._offset = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._content) if size < 0 else self._offset + size
        chunk = bytes(self._content[self._offset:end])
        self._offset += len(chunk)
        return chunk


# --- tag files ----------------------------------------------------------------------------------


def _tag_files(
    result: PayloadResult,
    bag_info: Sequence[tuple[str, str]],
    describe: DescribeCallback,
) -> Iterator[tuple[str, bytes]]:
    """Every tag file in writing order; tagmanifest-sha256.txt last, covering the others."""
    extra = dict(describe(result))
    unknown = set(extra) - {layout.DESCRIPTION, layout.RESTORE_MD}
    if unknown:
        raise BadInput(f"unexpected tag files {sorted(unknown)}")
    info_lines = [
        ("Bagging-Date", result.bagging_date.isoformat()),
        ("Payload-Oxum", result.oxum),
        ("Bag-Software-Agent", f"crdb-archive {__version__}"),
        *bag_info,
    ]
    files = {
        layout.BAGIT_TXT: layout.BAGIT_TXT_CONTENT.encode(),
        layout.MANIFEST_SHA256: "".join(
            layout.manifest_lines((p, d.sha256) for p, d in result.digests.items())
        ).encode(),
        layout.MANIFEST_BLAKE3: "".join(
            layout.manifest_lines((p, d.blake3) for p, d in result.digests.items())
        ).encode(),
        layout.PAYLOAD_SIZES: "".join(
            f"{d.size}  {layout.encode_path(p)}\n" for p, d in sorted(result.digests.items())
        ).encode(),
        layout.BAG_INFO: "".join(
            f"{label}: {' '.join(value.split())}\n" for label, value in info_lines
        ).encode(),
        **extra,
    }
    tag_digests: list[tuple[str, str]] = []
    for tag_name in layout.TAG_FILES:
        if tag_name not in files:
            raise BadInput(f"tag file {tag_name} was not provided")
        content = files[tag_name]
        writer = DigestWriter()
        writer.update(content)
        tag_digests.append((tag_name, writer.digests().sha256))
        yield tag_name, content
    yield layout.TAGMANIFEST_SHA256, "".join(layout.manifest_lines(tag_digests)).encode()
