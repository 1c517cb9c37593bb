"""A process that walks a directory and hashes its share of the files in it, for another: the
far side of :mod:`crdb_archive.hashing_pool`.

Python runs one thread at a time, so threads hashing 100k small files spend most of their
time waiting for each other; processes do not. Each worker walks the same tree (directories in
name order, each directory's files before its subdirectories) and hashes, in every directory,
its own contiguous share of the files in name order: worker ``i`` of ``n`` the files
``[len * i // n, len * (i + 1) // n)``.

It reads one request on stdin, ``<u16 shard><u16 shards><u8 all sha256><u32 length>`` then
NUL-separated: the root directory, the directory to walk (relative to it), and the directory
below which every file gets SHA-256 too (empty for none). It answers on stdout with the byte
``R`` once it has opened the root, then messages, each ``<u8 kind><u32 count><u32 failures>
<u32 length>`` and ``length`` bytes of text (UTF-8, surrogate escapes for other bytes):

- ``B``: a batch; the text is the files' paths relative to the root, joined by NUL; then
  ``count`` sizes (``<q``), ``count`` BLAKE3 digests (32 bytes), and ``failures`` pairs
  ``<u32 index><u32 errno>`` for files that could not be read (size -1, zero digests);
- ``S``: as ``B``, with ``count`` SHA-256 digests after the BLAKE3 ones;
- ``O``: what is neither a directory nor a regular file (reported by worker 0 alone): the text
  is its path, ``count`` 1 for a symbolic link and 0 for anything else;
- ``E``: a directory that cannot be read: the text is its path, ``count`` the errno; the
  walk ends there;
- ``D``: the walk is done.

It opens files relative to their directory without following symbolic links, and hashes
regular files only. It ignores SIGINT and SIGTERM: its parent ends it, and a signal meant for
the parent's whole process group must not end it first. When the parent has gone it exits at
once, silently.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from array import array
from collections.abc import Callable

import blake3

from crdb_archive.listing import list_directory
from crdb_archive.worker_side import decode, encode, read_exactly, run

REQUEST = struct.Struct("<HHBI")
MESSAGE = struct.Struct("<BIII")
FAILURE = struct.Struct("<II")
DIGEST = 32
READY = b"R"
BATCH, BATCH_SHA256, ODDITY, UNREADABLE, DONE = b"BSOED"
BATCH_FILES = 128

# Files below this are read whole and hashed in one call: most payload files of a busy
# cluster's backup. Larger ones are hashed as hashing.py hashes them (mapped, on all cores).
_WHOLE_BELOW = 16 << 20
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ZEROS = bytes(DIGEST)


def _hash_large(fd: int, sha256: bool) -> tuple[int, bytes, bytes]:
    # The parent's own ways of hashing a large file, so that both agree byte for byte.
    from crdb_archive.hashing import blake3_of_mapped, digest_stream  # noqa: PLC0415

    if sha256:
        with os.fdopen(os.dup(fd), "rb") as stream:
            digests = digest_stream(stream, size_hint=os.fstat(fd).st_size)
        return digests.size, bytes.fromhex(digests.blake3), bytes.fromhex(digests.sha256)
    size, digest = blake3_of_mapped(fd)
    return size, bytes.fromhex(digest), b""


def hash_one(directory: int, name: str, sha256: bool) -> tuple[int, bytes, bytes]:
    """``(size, blake3, sha256)`` of the file ``name`` in the open ``directory``; raises
    OSError, with EINVAL for what is not a regular file."""
    fd = os.open(name, _OPEN_FLAGS, dir_fd=directory)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", name)
        if info.st_size >= _WHOLE_BELOW:
            return _hash_large(fd, sha256)
        data = _read_whole(fd, info.st_size)
    finally:
        os.close(fd)
    return len(data), blake3.blake3(data).digest(), _sha256(data) if sha256 else b""


def _read_whole(fd: int, size: int) -> bytes:
    # A short read of a regular file is its end: one call for a file that did not grow.
    data = os.read(fd, size + 1)
    if len(data) <= size:
        return data
    pieces = [data]
    while piece := os.read(fd, 1 << 20):
        pieces.append(piece)
    return b"".join(pieces)


def _sha256(data: bytes) -> bytes:
    import hashlib  # noqa: PLC0415 - only a verification of SHA-256 needs it

    return hashlib.sha256(data).digest()


def _failure(index: int, error: OSError | ValueError) -> bytes:
    return FAILURE.pack(index, getattr(error, "errno", None) or errno.EIO)


def batch_answer(directory: int, prefix: str, names: list[str], sha256: bool) -> bytes:
    """The message for the files ``names`` of the open ``directory`` (``prefix`` its path
    and a slash)."""
    sizes = array("q")
    blake3_column = bytearray()
    sha256_column = bytearray()
    failures = bytearray()
    if sha256:
        for index, name in enumerate(names):
            try:
                size, b3, sha = hash_one(directory, name, sha256=True)
            except (OSError, ValueError) as error:  # ValueError: a large file emptied
                failures += _failure(index, error)
                size, b3, sha = -1, _ZEROS, _ZEROS
            sizes.append(size)
            blake3_column += b3
            sha256_column += sha
    else:
        _blake3_only(directory, names, sizes, blake3_column, failures)
    text = encode("\0".join(prefix + name for name in names))
    head = MESSAGE.pack(BATCH_SHA256 if sha256 else BATCH, len(names),
                        len(failures) // FAILURE.size, len(text))
    return b"".join((head, text, sizes.tobytes(), blake3_column, sha256_column, failures))


def _blake3_only(directory: int, names: list[str], sizes: array[int], column: bytearray,
                 failures: bytearray) -> None:
    """BLAKE3 alone, the common case, in as few steps per file as Python allows: the loop
    that 100k small files go through. What is not a small regular file takes the longer
    way, :func:`hash_one`."""
    hasher = blake3.blake3
    open_file, fstat, read, close = os.open, os.fstat, os.read, os.close
    regular = stat.S_ISREG
    for index, name in enumerate(names):
        data = None
        try:
            fd = open_file(name, _OPEN_FLAGS, dir_fd=directory)
            try:
                info = fstat(fd)
                size = info.st_size
                if regular(info.st_mode) and size < _WHOLE_BELOW:
                    data = read(fd, size + 1)
            finally:
                close(fd)
            if data is None or len(data) > size:
                size, digest, _ = hash_one(directory, name, sha256=False)
            else:
                size, digest = len(data), hasher(data).digest()
        except (OSError, ValueError) as error:  # ValueError: a large file emptied meanwhile
            failures += _failure(index, error)
            size, digest = -1, _ZEROS
        sizes.append(size)
        column += digest


def message(kind: int, text: str, count: int = 0) -> bytes:
    data = encode(text)
    return MESSAGE.pack(kind, count, 0, len(data)) + data


class Walk:
    """One worker's walk: its share of every directory's files."""

    def __init__(self, root: int, shard: int, shards: int, *, sha256_all: bool,
                 sha256_under: str, send: Callable[[bytes], None]) -> None:
        self.root = root
        self.shard = shard
        self.shards = shards
        self.sha256_all = sha256_all
        self.sha256_under = sha256_under
        self.send = send

    def run(self, start: str) -> None:
        """Walk ``start``: nothing when it is not a directory (absent, or a link)."""
        try:
            is_directory = stat.S_ISDIR(os.lstat(start, dir_fd=self.root).st_mode)
        except OSError:
            is_directory = False
        stack = [start] if is_directory else []
        while stack:
            relative = stack.pop()
            try:
                directories = self._directory(relative)
            except OSError as error:
                self.send(message(UNREADABLE, relative, error.errno or errno.EIO))
                return
            stack.extend(f"{relative}/{name}" for name in reversed(directories))
        self.send(message(DONE, ""))

    def _directory(self, relative: str) -> list[str]:
        """Hash this worker's share of the directory's files; its subdirectories' names."""
        directory = os.open(relative, _DIRECTORY_FLAGS, dir_fd=self.root)
        try:
            files, directories = self._entries(directory, relative)
            first = len(files) * self.shard // self.shards
            mine = files[first:len(files) * (self.shard + 1) // self.shards]
            sha256 = self.sha256_all or self._under_sha256(relative)
            for start in range(0, len(mine), BATCH_FILES):
                self.send(batch_answer(directory, relative + "/",
                                       mine[start:start + BATCH_FILES], sha256))
        finally:
            os.close(directory)
        return directories

    def _under_sha256(self, relative: str) -> bool:
        under = self.sha256_under
        return bool(under) and (relative == under or relative.startswith(under + "/"))

    def _entries(self, directory: int, relative: str) -> tuple[list[str], list[str]]:
        files, directories, others = list_directory(directory)
        if self.shard == 0:
            for name, symlink in others:
                self.send(message(ODDITY, f"{relative}/{name}", int(symlink)))
        return files, directories


def serve(requests: int, answers: int) -> int:
    """Read the request, walk, answer; the exit status."""
    head = read_exactly(requests, REQUEST.size)
    if head is None:
        return 1
    shard, shards, sha256_all, length = REQUEST.unpack(head)
    body = read_exactly(requests, length)
    if body is None or shards == 0 or shard >= shards:
        return 1
    root_path, start, sha256_under = decode(body).split("\0")
    root = os.open(root_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def send(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(answers, view):]

    send(READY)
    Walk(root, shard, shards, sha256_all=bool(sha256_all), sha256_under=sha256_under,
         send=send).run(start)
    return 0


def main() -> None:
    run(serve)


if __name__ == "__main__":
    main()
