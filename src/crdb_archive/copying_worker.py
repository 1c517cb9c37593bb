"""A process that copies files and digests them on the way, for another: the far side of
:mod:`crdb_archive.copying_pool`.

Python runs one thread at a time, so threads copying 100k small files spend most of their time
waiting for each other; processes do not. Each file is read once: the same bytes give its
SHA-256, its BLAKE3 and the copy.

It answers ``R`` on stdout once it has started, then reads requests on stdin, each
``<u32 batch><u32 count><u32 length>``, ``count`` expected sizes (``<q>``) and ``length`` bytes
of text (UTF-8, surrogate escapes for other bytes): per file its source and its destination,
all joined by NUL. A request of no files ends it. It answers each request with
``<u32 batch><u32 done><u8 failure><i32 errno><q read>``, then the SHA-256 (32 bytes) of each
of the first ``done`` files, then their BLAKE3 (32 bytes each). When ``failure`` is not
:data:`OK`, the file after them failed (``errno``; ``read``, the bytes read, for
:data:`SIZE`) and the rest of the batch was not copied. While it copies a large file it
sends, every :data:`PROGRESS_STEP` bytes, an answer of batch 0 whose ``read`` is the bytes
copied since the last one.

A source is opened without following a symbolic link and without blocking (a FIFO must not
hang it), and must be a regular file of the expected size: a small one is read whole in one
call with one byte more than expected, so that growth is seen before anything is written. A
destination is created, never replaced (``O_EXCL``); a larger file is streamed through
:func:`crdb_archive.hashing.copy_and_digest`. There is no fsync: the parent flushes the file
system once. It ignores SIGINT and SIGTERM (its parent ends it), and exits silently when its
parent has gone.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from collections.abc import Callable

import blake3

from crdb_archive.worker_side import decode, read_exactly, run

REQUEST = struct.Struct("<III")
ANSWER = struct.Struct("<IIBiq")
SIZE_FIELD = struct.Struct("<q")
DIGEST = 32
READY = b"R"
# What failed: nothing, opening the source, its type, reading it, its size, creating the copy,
# writing the copy.
OK, OPEN, NOT_REGULAR, READ, SIZE, CREATE, WRITE = range(7)

# Files up to this size are read whole (the writer's own limit for reading a file whole).
WHOLE_UP_TO = 1 << 20
# Bytes of large files copied between two messages of progress.
PROGRESS_STEP = 16 << 20
_SOURCE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


class Failed(Exception):
    """One file could not be copied: what failed, its errno, the bytes read."""

    def __init__(self, what: int, number: int = 0, read: int = 0) -> None:
        super().__init__(what, number, read)
        self.what = what
        self.number = number
        self.read = read


class _Sink:
    """The copy of a large file, telling its write failures from the source's."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as error:
            raise Failed(WRITE, error.errno or 0) from error


def _create(destination: str) -> int:
    try:
        return os.open(destination, _CREATE_FLAGS, 0o644)
    except OSError as error:
        raise Failed(CREATE, error.errno or 0) from error


def _copy_large(fd: int, destination: str, size: int, progress: Progress
                ) -> tuple[bytes, bytes]:
    from crdb_archive.hashing import copy_and_digest  # noqa: PLC0415 - large files only

    out = _create(destination)
    try:
        with os.fdopen(os.dup(fd), "rb", buffering=0) as source:
            digests = copy_and_digest(source, _Sink(out), size_hint=size,
                                      on_chunk=progress.add)
    except OSError as error:
        raise Failed(READ, error.errno or 0) from error
    finally:
        os.close(out)
    if digests.size != size:
        raise Failed(SIZE, read=digests.size)
    return bytes.fromhex(digests.sha256), bytes.fromhex(digests.blake3)


class Progress:
    """Bytes of large files copied, told to the parent now and then in a message of no batch
    (``<u32 0><u32 0><u8 OK><i32 0><q bytes>``)."""

    def __init__(self, send: Callable[[bytes], None]) -> None:
        self._send = send
        self.untold = 0
        self.told = 0

    def add(self, count: int) -> None:
        self.untold += count
        if self.untold >= PROGRESS_STEP:
            self._send(ANSWER.pack(0, 0, OK, 0, self.untold))
            self.told += self.untold
            self.untold = 0


def copy_one(source: str, destination: str, size: int, progress: Progress
             ) -> tuple[bytes, bytes]:
    """Copy one file; its ``(sha256, blake3)``. Raises Failed."""
    try:
        fd = os.open(source, _SOURCE_FLAGS)
    except OSError as error:
        raise Failed(OPEN, error.errno or 0) from error
    try:
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise Failed(NOT_REGULAR)
            if size > WHOLE_UP_TO:
                return _copy_large(fd, destination, size, progress)
            data = os.read(fd, size + 1)
        except OSError as error:
            raise Failed(READ, error.errno or 0) from error
    finally:
        os.close(fd)
    if len(data) != size:
        raise Failed(SIZE, read=len(data))
    digests = hashlib.sha256(data).digest(), blake3.blake3(data).digest()
    out = _create(destination)
    try:
        _Sink(out).write(data)
    finally:
        os.close(out)
    return digests


def copy_batch(batch: int, sizes: list[int], paths: list[str], progress: Progress) -> bytes:
    """Copy the files of one request; the answer."""
    sha256_column = bytearray()
    blake3_column = bytearray()
    failure = Failed(OK)
    for index, size in enumerate(sizes):
        try:
            sha256, b3 = copy_one(paths[2 * index], paths[2 * index + 1], size, progress)
        except Failed as error:
            failure = error
            break
        sha256_column += sha256
        blake3_column += b3
    done = len(sha256_column) // DIGEST
    head = ANSWER.pack(batch, done, failure.what, failure.number, failure.read)
    return b"".join((head, sha256_column, blake3_column))


def serve(requests: int, answers: int) -> int:
    """Answer requests until the one of no files; the exit status."""

    def send(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(answers, view):]

    send(READY)
    while True:
        head = read_exactly(requests, REQUEST.size)
        if head is None:
            return 1
        batch, count, length = REQUEST.unpack(head)
        if count == 0:
            return 0
        body = read_exactly(requests, count * SIZE_FIELD.size + length)
        if body is None:
            return 1
        sizes = [size for (size,) in SIZE_FIELD.iter_unpack(body[:count * SIZE_FIELD.size])]
        paths = decode(body[count * SIZE_FIELD.size:]).split("\0")
        if len(paths) != 2 * count:
            return 1
        send(copy_batch(batch, sizes, paths, Progress(send)))


def main() -> None:
    run(serve)


if __name__ == "__main__":
    main()
