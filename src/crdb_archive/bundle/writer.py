"""Write the content of a bundle: payload with both digests from one read, then tag files.

The writing is the same wherever a bundle goes; where the bytes land is the storage's staging
area (bundle/publish.py). The payload comes first, the tag files after it and
``tagmanifest-sha256.txt`` last, so a bundle whose tag manifest exists was written completely.

A signed bundle's signature (``tagmanifest-sha256.txt.sig``) is made from the tag manifest's
bytes before either is written. In the directory form it is written just before the tag
manifest, which publishes the bundle on an object store: no reader ever sees a complete bundle
that is not signed yet, and a signature without its tag manifest is part of an incomplete one.
In the tar form (one upload, visible only whole) it is the member after the tag manifest.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tarfile
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Literal, Protocol

from crdb_archive import __version__
from crdb_archive.bundle import layout
from crdb_archive.errors import BadInput, StorageError
from crdb_archive.hashing import (
    Digests,
    DigestWriter,
    Writable,
    copy_and_digest,
    digest_bytes,
    parallel_in_batches,
)
from crdb_archive.progress import ProgressCallback, ProgressEvent
from crdb_archive.text import exact

if TYPE_CHECKING:
    from crdb_archive.bundle.signature import SigningKey
    from crdb_archive.storage.receipts import Receipt

BundleFormat = Literal["dir", "tar"]

# Small files are copied by several threads at once: per-file overhead, not bandwidth, is what
# limits a backup of 100k small SSTs.
COPY_THREADS = max(2, min(8, os.cpu_count() or 2))
# Manifest lines encoded at once.
_LINES_AT_ONCE = 4096
# Bytes copied between two progress events.
_PROGRESS_STEP = 1 << 20
# Files up to this size are read whole, when their item can (PayloadItem.read_whole).
READ_WHOLE_UP_TO = 1 << 20


@dataclass(frozen=True, slots=True)
class PayloadItem:
    """One payload file: where it goes in the bundle and how to read it."""

    path: str  # bundle-relative, under data/
    size: int
    open: Callable[[], AbstractContextManager[IO[bytes]]]
    mtime: float | None = None
    # Where reading a small file whole is cheap (a file here): reads at most that many bytes.
    read_whole: Callable[[int], bytes] | None = None


@dataclass(frozen=True)
class PayloadResult:
    """What was written: per-file digests, and the totals for Payload-Oxum."""

    digests: Mapping[str, Digests]
    bagging_date: dt.date
    # The tar form: where the first tag file's header starts (the tag files follow the payload
    # there, to the end), so that they can be read without the payload.
    tags_at: int | None = None

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


# Opens the sink for one bundle-relative path of a given size.
OpenSink = Callable[[str, int], AbstractContextManager[Sink]]


def check_payload_paths(payload: Sequence[PayloadItem]) -> None:
    """Raise BadInput for a payload path outside ``data/``."""
    for item in payload:
        if not item.path.startswith(layout.PAYLOAD_DIR + "/") or not layout.is_safe_relative(
            item.path
        ):
            raise BadInput(f"payload path {item.path!r} is not inside data/")


class _Totals:
    """Bytes done across threads, reported as one progress task."""

    def __init__(self, task: str, total: int, progress: ProgressCallback) -> None:
        self._task = task
        self._total = total
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
        self._progress(ProgressEvent(self._task, done, self._total))

    def finish(self) -> None:
        self._progress(ProgressEvent(self._task, self._done, self._total, finished=True))


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
        raise StorageError(
            f"{item.path} changed while it was archived: expected {exact(item.size)}, "
            f"read {size:,}"
        )


def write_tree(
    open_sink: OpenSink,
    name: str,
    payload: Sequence[PayloadItem],
    bag_info: Sequence[tuple[str, str]],
    describe: DescribeCallback,
    progress: ProgressCallback,
    sign_key: SigningKey | None = None,
) -> PayloadResult:
    """The directory form: each file through ``open_sink``, payload in parallel, tags last
    (the signature, with ``sign_key``, just before the tag manifest)."""
    totals = _Totals(f"archive {name}", sum(i.size for i in payload), progress)
    digests: dict[str, Digests] = {}
    stop = threading.Event()
    # Closed on the way out, whatever stops the loop: its workers are stopped and waited for
    # before the caller cleans up what they write into.
    with contextlib.closing(parallel_in_batches(
        lambda i: _copy_item(i, open_sink, totals, stop), payload, lambda i: i.size,
        threads=COPY_THREADS, stop=stop,
    )) as copies:
        for item, item_digests in copies:
            digests[item.path] = item_digests
    totals.finish()
    result = PayloadResult(digests, dt.datetime.now(dt.UTC).date())
    files = tag_files(result, bag_info, describe, sign_key)
    # The tag manifest last: on an object store it is what publishes the bundle.
    files.sort(key=lambda item: item[0] == layout.TAGMANIFEST_SHA256)
    for tag_name, content in files:
        with open_sink(tag_name, len(content)) as sink:
            sink.write(content)
    return result


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
    payload: Sequence[PayloadItem],
    bag_info: Sequence[tuple[str, str]],
    describe: DescribeCallback,
    progress: ProgressCallback,
    sign_key: SigningKey | None = None,
) -> PayloadResult:
    """The tar form, written front to back: members under ``<name>/``, tags last (the
    signature, with ``sign_key``, after the tag manifest)."""
    totals = _Totals(f"archive {name}.tar", sum(i.size for i in payload), progress)
    now = dt.datetime.now(dt.UTC)
    digests: dict[str, Digests] = {}
    with tarfile.TarFile(fileobj=target, mode="w", format=tarfile.PAX_FORMAT,  # type: ignore[arg-type]
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
            digests[item.path] = writer.digests()
        totals.finish()
        result = PayloadResult(digests, now.date(), tags_at=target.tell())
        for tag_name, content in tag_files(result, bag_info, describe, sign_key):
            info = _tarinfo(f"{name}/{tag_name}", len(content), now.timestamp())
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


def _payload_lines(digests: Mapping[str, Digests], value: Callable[[Digests], str]) -> bytes:
    """``<value>  <path>`` lines sorted by path, as layout.manifest_lines makes them, encoded
    a few thousand lines at a time: not a list of 100k strings beside the result."""
    out = bytearray()
    lines: list[str] = []
    for path in sorted(digests):
        lines.append(f"{value(digests[path])}  {layout.encode_path(path)}\n")
        if len(lines) >= _LINES_AT_ONCE:
            out += "".join(lines).encode()
            lines.clear()
    out += "".join(lines).encode()
    return bytes(out)



def tag_files(
    result: PayloadResult,
    bag_info: Sequence[tuple[str, str]],
    describe: DescribeCallback,
    sign_key: SigningKey | None = None,
) -> list[tuple[str, bytes]]:
    """Every tag file in writing order: tagmanifest-sha256.txt covering the others, then,
    with ``sign_key``, its signature (whose key bag-info.txt names)."""
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
    files = {
        layout.BAGIT_TXT: layout.BAGIT_TXT_CONTENT.encode(),
        layout.MANIFEST_SHA256: _payload_lines(result.digests, lambda d: d.sha256),
        layout.MANIFEST_BLAKE3: _payload_lines(result.digests, lambda d: d.blake3),
        layout.PAYLOAD_SIZES: _payload_lines(result.digests, lambda d: str(d.size)),
        layout.BAG_INFO: "".join(
            f"{label}: {' '.join(value.split())}\n" for label, value in info_lines
        ).encode(),
        **extra,
    }
    tag_digests: list[tuple[str, str]] = []
    written: list[tuple[str, bytes]] = []
    for tag_name in layout.TAG_FILES:
        if tag_name not in files:
            raise BadInput(f"tag file {tag_name} was not provided")
        content = files[tag_name]
        writer = DigestWriter()
        writer.update(content)
        tag_digests.append((tag_name, writer.digests().sha256))
        written.append((tag_name, content))
    tag_manifest = "".join(layout.manifest_lines(tag_digests)).encode()
    written.append((layout.TAGMANIFEST_SHA256, tag_manifest))
    if sign_key is not None:
        from crdb_archive.bundle.signature import sign  # noqa: PLC0415 - signing is rare

        written.append((layout.SIGNATURE, sign(tag_manifest, sign_key)))
    return written
