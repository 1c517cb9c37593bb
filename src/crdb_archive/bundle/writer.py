"""Write the content of a bundle: payload with both digests from one read, then tag files.

The writing is the same wherever a bundle goes; where the bytes land is the storage's staging
area (bundle/publish.py). Each file's manifest lines are spooled to disk as it is copied
(bundle/manifest_spool.py), so that memory does not grow with the number of files. The
payload comes first, the tag files after it and ``tagmanifest-sha256.txt`` last, so a bundle
whose tag manifest exists was written completely.

A signed bundle's signature (``tagmanifest-sha256.txt.sig``) is made from the tag manifest's
bytes before either is written. In the directory form it is written just before the tag
manifest, which publishes the bundle on an object store: no reader ever sees a complete bundle
that is not signed yet, and a signature without its tag manifest is part of an incomplete one.
In the tar form (one upload, visible only whole) it is the member after the tag manifest.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import hashlib
import itertools
import os
import tarfile
import tempfile
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, Protocol, cast, runtime_checkable

from crdb_archive import __version__
from crdb_archive.bundle import layout
from crdb_archive.bundle.manifest_spool import ManifestSpool, SpooledFile
from crdb_archive.errors import BadInput, CrdbArchiveError, StorageError
from crdb_archive.hashing import (
    Digests,
    DigestWriter,
    Writable,
    batches_of,
    copy_and_digest,
    digest_bytes,
    parallel_in_batches,
)
from crdb_archive.progress import ProgressCallback, ProgressEvent
from crdb_archive.storage.base import file_read_error, storage_error
from crdb_archive.text import exact

if TYPE_CHECKING:
    from crdb_archive.bundle.signature import SigningKey
    from crdb_archive.copying_pool import Copied, CopyingPool
    from crdb_archive.storage.receipts import Receipt

BundleFormat = Literal["dir", "tar"]

# Small files are copied by several threads at once: per-file overhead, not bandwidth, is what
# limits a backup of 100k small SSTs.
COPY_THREADS = max(2, min(8, os.cpu_count() or 2))
# Bytes copied between two progress events.
_PROGRESS_STEP = 1 << 20
# Files up to this size are read whole, when their item can (PayloadItem.read_whole).
READ_WHOLE_UP_TO = 1 << 20
# From this many files of this host, or this many bytes, worker processes copy them (starting
# them costs about 40 ms), in batches of at most these many files and bytes.
PROCESSES_FROM = 2048
PROCESSES_FROM_BYTES = 256 << 20
_PROCESS_BATCH_FILES = 64
_PROCESS_BATCH_BYTES = 8 << 20


@dataclass(frozen=True, slots=True)
class PayloadItem:
    """One payload file: where it goes in the bundle and how to read it."""

    path: str  # bundle-relative, under data/
    size: int
    open: Callable[[], AbstractContextManager[IO[bytes]]]
    mtime: float | None = None
    # Where reading a small file whole is cheap (a file here): reads at most that many bytes.
    read_whole: Callable[[int], bytes] | None = None
    # The file of this host that holds it, where it is one: worker processes may copy it
    # themselves (copying_pool.py), with what ``read_whole`` would say when it cannot be read.
    local_source: str | None = None
    # Its digests are kept in PayloadResult.recorded: a file the description names (a release
    # archive). The others' digests go to the manifests alone, on disk.
    record: bool = False


@dataclass(frozen=True)
class PayloadResult:
    """What was written: the totals for Payload-Oxum and the digests of the items that asked
    for them (``PayloadItem.record``); every file's digests are in the manifests alone."""

    files: int
    bytes: int
    recorded: Mapping[str, Digests]
    bagging_date: dt.date
    # The tar form: where the first tag file's header starts (the tag files follow the payload
    # there, to the end), so that they can be read without the payload.
    tags_at: int | None = None

    @property
    def oxum(self) -> str:
        return f"{self.bytes}.{self.files}"


# Tag files beyond the BagIt core (crdb-archive.json, RESTORE.md), made once digests are known.
DescribeCallback = Callable[[PayloadResult], Mapping[str, bytes]]

# Called with what is about to become visible or go away ("publishing <name>", "deleting
# <name>") just before it does; raising stops it (a job whose lock is no longer its own).
Guard = Callable[[str], None]


def unguarded(action: str) -> None:
    """A guard that never objects: nothing else claims the place being written."""


@dataclass(frozen=True)
class WrittenBundle:
    location: str  # a path, or a URI without secrets
    name: str
    format: BundleFormat
    payload: PayloadResult
    # What the uploads computed of each object, for the store to confirm (object stores).
    receipts: tuple[Receipt, ...] = ()


# Where one file's bytes go: a local file or an object upload.
Sink = Writable


class Payload(Protocol):
    """The payload items in order, each made when it is come to (a list will do)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[PayloadItem]: ...


@runtime_checkable
class ListedPayload(Payload, Protocol):
    """A payload that tells each item's path and size without making the item: the pass
    that checks 100k paths and adds up their sizes costs a tenth of making the items."""

    def paths_and_sizes(self) -> Iterator[tuple[str, int]]: ...


# Opens the sink for one bundle-relative path of a given size.
OpenSink = Callable[[str, int], AbstractContextManager[Sink]]
# Where a payload path is to be made as a file of this host by a writer of its own (worker
# processes), its directory made; None where the bundle's files are not files here.
MemberFile = Callable[[str], str]


def payload_bytes(payload: Payload) -> int:
    """The payload's size in bytes, in the one pass that checks it; raises BadInput for a
    payload path outside ``data/``."""
    total = 0
    prefix = layout.PAYLOAD_DIR + "/"
    listed = (payload.paths_and_sizes() if isinstance(payload, ListedPayload)
              else ((item.path, item.size) for item in payload))
    for path, size in listed:
        if not path.startswith(prefix) or not layout.is_safe_relative(path):
            raise BadInput(f"payload path {path!r} is not inside data/")
        total += size
    return total


@contextlib.contextmanager
def _collector_resting() -> Iterator[None]:
    """The objects made so far (a listing of 100k files) left out of garbage collection
    until the block ends: otherwise the collector walks all of them again and again while
    the copy makes and drops a few objects per file, a fifth of an archive's time."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _Totals:
    """Bytes done across threads, reported as one progress task."""

    def __init__(self, task: str, total: int, progress: ProgressCallback) -> None:
        self._task = task
        self.total = total
        self._progress = progress
        self._done = 0
        self._reported = 0
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        with self._lock:
            self._done += count
            done = self._done
            if done - self._reported < _PROGRESS_STEP:
                return  # not one event per file of 100k small ones
            self._reported = done
        self._progress(ProgressEvent(self._task, done, self.total))

    def finish(self) -> None:
        self._progress(ProgressEvent(self._task, self._done, self.total, finished=True))


class _Stopped(Exception):
    """Raised inside a copy when the write as a whole failed or was interrupted, so that the
    sink of the file being copied is abandoned (an upload aborted), not completed."""


def _copy_item(item: PayloadItem, open_sink: OpenSink, totals: _Totals,
               stop: threading.Event) -> Digests:
    if item.read_whole is not None and item.size <= READ_WHOLE_UP_TO:
        return _copy_small(item, item.read_whole, open_sink, totals, stop)
    def on_chunk(count: int) -> None:
        if stop.is_set():
            raise _Stopped(item.path)
        totals.add(count)

    with item.open() as source, open_sink(item.path, item.size) as sink:
        digests = copy_and_digest(source, sink, size_hint=item.size, on_chunk=on_chunk)
    _check_size(item, digests.size)
    return digests


def _copy_small(item: PayloadItem, read_whole: Callable[[int], bytes], open_sink: OpenSink,
                totals: _Totals, stop: threading.Event) -> Digests:
    """A small file in one read (one more byte than expected, to see it grow): both digests
    and the copy from the same bytes, without a stream or a buffer per file."""
    data = read_whole(item.size + 1)
    _check_size(item, len(data))
    digests = digest_bytes(data)
    if stop.is_set():
        raise _Stopped(item.path)
    with open_sink(item.path, item.size) as sink:
        sink.write(data)
    totals.add(len(data))
    return digests


def _check_size(item: PayloadItem, size: int) -> None:
    if size != item.size:
        raise _size_changed(item, size)


def _size_changed(item: PayloadItem, size: int) -> StorageError:
    return StorageError(f"{item.path} changed while it was archived: expected "
                        f"{exact(item.size)}, read {size:,}")


def _copies(payload: Payload, open_sink: OpenSink, member_file: MemberFile | None,
            totals: _Totals) -> Generator[tuple[PayloadItem, Digests], None, None]:
    """Each item copied, with its digests. From :data:`PROCESSES_FROM` files or
    :data:`PROCESSES_FROM_BYTES`, the first file of this host, into files of this host, worker
    processes copy those of this host (where they start) and threads the others after them;
    otherwise threads copy all."""
    items = iter(payload)
    first = next(items, None)
    if first is None:
        return
    items = itertools.chain((first,), items)
    if (member_file is not None and first.local_source is not None
            and (len(payload) >= PROCESSES_FROM or totals.total >= PROCESSES_FROM_BYTES)):
        from crdb_archive.copying_pool import CopyingPool  # noqa: PLC0415
        from crdb_archive.worker_process import PoolUnavailable  # noqa: PLC0415

        try:
            pool = CopyingPool(COPY_THREADS)
        except PoolUnavailable:
            pass  # nothing was copied: threads do it all
        else:
            with pool:
                later = yield from _copy_in_processes(pool, items, member_file, totals)
            items = iter(later)
    stop = threading.Event()
    yield from parallel_in_batches(
        lambda i: _copy_item(i, open_sink, totals, stop), items, lambda i: i.size,
        threads=COPY_THREADS, stop=stop)


def _copy_in_processes(pool: CopyingPool, items: Iterator[PayloadItem],
                       member_file: MemberFile, totals: _Totals
                       ) -> Generator[tuple[PayloadItem, Digests], None, list[PayloadItem]]:
    """The items of this host, copied by ``pool``; the others (none, from a backup on a
    local disk) are returned, for threads to copy."""
    later: list[PayloadItem] = []

    def local(item: PayloadItem) -> bool:
        if item.local_source is None:
            later.append(item)
            return False
        return True

    def job(item: PayloadItem) -> tuple[str, str, int]:
        return cast("str", item.local_source), member_file(item.path), item.size

    batches = batches_of((i for i in items if local(i)), lambda i: i.size,
                         batch_bytes=_PROCESS_BATCH_BYTES, batch_items=_PROCESS_BATCH_FILES)
    for copied in pool.copy(batches, job, totals.add):
        sha256, b3 = copied.sha256.hex(), copied.blake3.hex()  # a call per batch, not per file
        copied_bytes = 0
        for index in range(copied.done):
            item = copied.items[index]
            start = index * 64
            copied_bytes += item.size
            yield item, Digests(item.size, sha256[start:start + 64], b3[start:start + 64])
        totals.add(copied_bytes - copied.told)
        failed = copied.failed
        if failed is not None:
            raise _copy_failure(failed, copied, member_file(failed.path))
    return later


def _copy_failure(item: PayloadItem, copied: Copied[PayloadItem], copy: str
                  ) -> CrdbArchiveError:
    """What copying ``item`` to ``copy`` in a worker process failed with, as the same file
    copied here would."""
    from crdb_archive import copying_worker as failure  # noqa: PLC0415

    source = cast("str", item.local_source)
    error = OSError(copied.errno, os.strerror(copied.errno))
    if copied.failure == failure.SIZE:
        return _size_changed(item, copied.read)
    if copied.failure in (failure.CREATE, failure.WRITE):
        return storage_error(copy, error)
    return file_read_error(source, None if copied.failure == failure.NOT_REGULAR else error)


class _Recorder:
    """Where each written file's digests go: its manifest lines to the spool on disk, and its
    digests kept in memory only for the few items that ask (``PayloadItem.record``)."""

    def __init__(self, spool: ManifestSpool) -> None:
        self.spool = spool
        self.recorded: dict[str, Digests] = {}

    def add(self, item: PayloadItem, digests: Digests) -> None:
        self.spool.add(item.path, digests)
        if item.record:
            self.recorded[item.path] = digests

    def result(self, bagging_date: dt.date, tags_at: int | None = None) -> PayloadResult:
        return PayloadResult(self.spool.files, self.spool.bytes, self.recorded, bagging_date,
                             tags_at)


@contextlib.contextmanager
def _recording(spool_dir: Path) -> Iterator[_Recorder]:
    """A recorder whose spool lives in a new directory below ``spool_dir`` (the staging
    area's scratch), removed on the way out whatever happens."""
    with tempfile.TemporaryDirectory(prefix="manifests-", dir=spool_dir,
                                     ignore_cleanup_errors=True) as directory:
        yield _Recorder(ManifestSpool(Path(directory)))


def write_tree(
    open_sink: OpenSink,
    name: str,
    payload: Payload,
    bag_info: Sequence[tuple[str, str]],
    describe: DescribeCallback,
    progress: ProgressCallback,
    spool_dir: Path,
    sign_key: SigningKey | None = None,
    member_file: MemberFile | None = None,
    total: int | None = None,
) -> PayloadResult:
    """The directory form: each file through ``open_sink``, payload in parallel, tags last
    (the signature, with ``sign_key``, just before the tag manifest). The manifest lines are
    spooled below ``spool_dir`` meanwhile. With ``member_file``, many files of this host are
    copied by worker processes (:func:`_copies`). ``total``: the payload's bytes, when the
    caller knows them (:func:`payload_bytes`)."""
    totals = _Totals(f"archive {name}", _total(payload, total), progress)
    with _recording(spool_dir) as recorder, _collector_resting():
        # Closed on the way out, whatever stops the loop: its workers are stopped and waited
        # for before the caller cleans up what they write into.
        with contextlib.closing(_copies(payload, open_sink, member_file, totals)) as copies:
            for item, item_digests in copies:
                recorder.add(item, item_digests)
        totals.finish()
        result = recorder.result(dt.datetime.now(dt.UTC).date())
        files = tag_files(result, recorder.spool.finish(), bag_info, describe, sign_key)
        # The tag manifest last: on an object store it is what publishes the bundle.
        files.sort(key=lambda item: item[0] == layout.TAGMANIFEST_SHA256)
        for tag_name, content in files:
            with open_sink(tag_name, content_size(content)) as sink:
                _write_content(sink, content)
    return result


def _total(payload: Payload, total: int | None) -> int:
    return sum(item.size for item in payload) if total is None else total


def content_size(content: TagContent) -> int:
    """How many bytes a tag file's content is."""
    return content.size if isinstance(content, SpooledFile) else len(content)


def _write_content(sink: Sink, content: TagContent) -> None:
    if isinstance(content, SpooledFile):
        for chunk in content.chunks():
            sink.write(chunk)
    else:
        sink.write(content)


# --- tar form -----------------------------------------------------------------------------------


class TarTarget(Protocol):
    """What the tar is written to: a local file or one object upload (``tell`` is the count
    of bytes written so far)."""

    def write(self, data: bytes, /) -> object: ...

    def tell(self) -> int: ...


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


def write_tar(
    target: TarTarget,
    name: str,
    payload: Payload,
    bag_info: Sequence[tuple[str, str]],
    describe: DescribeCallback,
    progress: ProgressCallback,
    spool_dir: Path,
    sign_key: SigningKey | None = None,
    total: int | None = None,
) -> PayloadResult:
    """The tar form, written front to back: members under ``<name>/``, tags last (the
    signature, with ``sign_key``, after the tag manifest). The manifest lines are spooled
    below ``spool_dir`` meanwhile; ``total`` as for :func:`write_tree`."""
    totals = _Totals(f"archive {name}.tar", _total(payload, total), progress)
    now = dt.datetime.now(dt.UTC)
    with _recording(spool_dir) as recorder, _collector_resting(), tarfile.TarFile(
            fileobj=target, mode="w", format=tarfile.PAX_FORMAT,  # type: ignore[arg-type]
            copybufsize=1 << 20) as tar:
        # Payload first, tag files after it, the tag manifest last: a reader streaming the
        # tar meets the files in the order they were made complete.
        for item in payload:
            writer = DigestWriter(size_hint=item.size)
            info = _tarinfo(f"{name}/{item.path}", item.size,
                            item.mtime if item.mtime is not None else now.timestamp())
            with item.open() as source:
                tar.addfile(info, _HashingReader(source, writer, totals))
            # tarfile keeps every member it wrote, for reading back: 100k of them here.
            tar.getmembers().clear()  # in write mode, the list tarfile appends to
            _check_size(item, writer.size)
            recorder.add(item, writer.digests())
        totals.finish()
        result = recorder.result(now.date(), tags_at=target.tell())
        manifests = recorder.spool.finish()
        for tag_name, content in tag_files(result, manifests, bag_info, describe, sign_key):
            info = _tarinfo(f"{name}/{tag_name}", content_size(content), now.timestamp())
            if isinstance(content, SpooledFile):
                with content.path.open("rb") as stream:
                    tar.addfile(info, stream)
            else:
                tar.addfile(info, _BytesReader(content))
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


# A tag file's content: bytes, or a payload manifest spooled to disk.
TagContent = bytes | SpooledFile


def tag_files(
    result: PayloadResult,
    manifests: Mapping[str, SpooledFile],
    bag_info: Sequence[tuple[str, str]],
    describe: DescribeCallback,
    sign_key: SigningKey | None = None,
) -> list[tuple[str, TagContent]]:
    """Every tag file in writing order: tagmanifest-sha256.txt covering the others, then,
    with ``sign_key``, its signature (whose key bag-info.txt names). ``manifests`` are the
    payload manifests (:meth:`ManifestSpool.finish`)."""
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
    if sign_key is not None:
        info_lines.append((layout.SIGNING_KEY_LABEL, sign_key.fingerprint))
    files: dict[str, TagContent] = {
        layout.BAGIT_TXT: layout.BAGIT_TXT_CONTENT.encode(),
        **manifests,
        layout.BAG_INFO: "".join(
            f"{label}: {' '.join(value.split())}\n" for label, value in info_lines
        ).encode(),
        **extra,
    }
    tag_digests: list[tuple[str, str]] = []
    written: list[tuple[str, TagContent]] = []
    for tag_name in layout.TAG_FILES:
        if tag_name not in files:
            raise BadInput(f"tag file {tag_name} was not provided")
        content = files[tag_name]
        digest = (content.sha256 if isinstance(content, SpooledFile)
                  else hashlib.sha256(content).hexdigest())
        tag_digests.append((tag_name, digest))
        written.append((tag_name, content))
    tag_manifest = "".join(layout.manifest_lines(tag_digests)).encode()
    written.append((layout.TAGMANIFEST_SHA256, tag_manifest))
    if sign_key is not None:
        from crdb_archive.bundle.signature import sign  # noqa: PLC0415 - signing is rare

        written.append((layout.SIGNATURE, sign(tag_manifest, sign_key)))
    return written
