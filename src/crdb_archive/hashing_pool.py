"""A directory of many files walked and hashed on every core, by worker processes
(:mod:`hashing_worker`).

A verification of 100k small files spends a few microseconds of Python on each: on threads
they queue for the interpreter lock, and the machine's other cores sit idle. Here one process
per core walks the tree and hashes its share of each directory, starting at once: while the
parent reads the manifests, the workers are already hashing, each writing its answers a
bounded amount ahead. The answers come back as flat columns (paths, sizes, digests) that the
caller stores without a Python object per file.
"""

from __future__ import annotations

import os
import select
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

from crdb_archive import hashing_worker as protocol
from crdb_archive.errors import StorageError
from crdb_archive.worker_process import PoolFailed, PoolUnavailable, WorkerProcess
from crdb_archive.worker_side import decode, encode


@dataclass(frozen=True, slots=True)
class HashedBatch:
    """Files of one directory: per file (in the same order) its path, size, BLAKE3 and, when
    asked, SHA-256, in flat columns; files that could not be read in ``failures``."""

    paths: list[str]
    sizes: array[int]
    blake3: bytes
    sha256: bytes | None
    failures: list[tuple[int, int]]  # (index in the batch, errno)

    def first_failure(self, root: str) -> OSError | None:
        if not self.failures:
            return None
        index, number = self.failures[0]
        return OSError(number, os.strerror(number),
                       os.path.join(root, self.paths[index]))  # noqa: PTH118


@dataclass(frozen=True, slots=True)
class Strange:
    """What is neither a directory nor a regular file."""

    path: str
    symlink: bool


class _Worker(WorkerProcess):
    """One hashing process and what it has sent that is not read yet."""

    def __init__(self, root: str, request: bytes) -> None:
        super().__init__("crdb_archive.hashing_worker")
        self.root = root
        self.started = False
        self.done = False
        try:
            self.stdin.write(request)
            self.stdin.close()
        except OSError as error:
            self.stop(kill=True)
            raise PoolFailed(f"a hashing process ended at its start: {error.strerror}"
                             ) from error

    def parse(self) -> Iterator[HashedBatch | Strange]:
        """The answers complete in what was read. Raises StorageError for a directory that
        cannot be read, PoolFailed for what a worker never sends."""
        if not self.started:
            if len(self.buffer) < 1:
                return
            if self.buffer[:1] != protocol.READY:
                raise PoolFailed("a hashing process answered what it never does")
            self.started = True
            self.offset = 1
        while (answer := self._next()) is not None:
            yield answer
        self.consumed()

    def _next(self) -> HashedBatch | Strange | None:
        view = self.buffer
        start = self.offset
        if len(view) - start < protocol.MESSAGE.size:
            return None
        kind, count, failed, length = protocol.MESSAGE.unpack_from(view, start)
        digests = 2 if kind == protocol.BATCH_SHA256 else 1
        columns = (count * (8 + digests * protocol.DIGEST) + failed * protocol.FAILURE.size
                   if kind in (protocol.BATCH, protocol.BATCH_SHA256) else 0)
        end = start + protocol.MESSAGE.size + length + columns
        if len(view) < end:
            return None
        self.offset = end
        text = decode(view[start + protocol.MESSAGE.size:end - columns])
        return self._answer(kind, count, failed, text, bytes(view[end - columns:end]))

    def _answer(self, kind: int, count: int, failed: int, text: str, columns: bytes
                ) -> HashedBatch | Strange | None:
        if kind == protocol.DONE:
            self.done = True
            return None
        if kind == protocol.ODDITY:
            return Strange(text, bool(count))
        if kind == protocol.UNREADABLE:
            where = os.path.join(self.root, text)  # noqa: PTH118
            raise StorageError(f"cannot read {where}: {os.strerror(count)}")
        if kind not in (protocol.BATCH, protocol.BATCH_SHA256):
            raise PoolFailed(f"a hashing process answered {kind!r}, which it never does")
        sizes = array("q")
        sizes.frombytes(columns[:count * 8])
        blake3_end = count * (8 + protocol.DIGEST)
        blake3 = columns[count * 8:blake3_end]
        sha256 = None
        if kind == protocol.BATCH_SHA256:
            sha256 = columns[blake3_end:blake3_end + count * protocol.DIGEST]
        failures = list(protocol.FAILURE.iter_unpack(
            columns[len(columns) - failed * protocol.FAILURE.size:]))
        return HashedBatch(text.split("\0"), sizes, blake3, sha256, failures)


class HashingPool:
    """Worker processes that walk ``under`` (relative to ``root``) and hash every regular file
    in it, BLAKE3 always, SHA-256 too with ``sha256_all`` or below ``sha256_under``; a context
    manager that ends them (at once when leaving early, as on an interrupt).

    Raises PoolFailed when a worker cannot start.
    """

    def __init__(self, root: str, under: str, *, workers: int, sha256_all: bool,
                 sha256_under: str) -> None:
        self._answered = False
        self._workers: list[_Worker] = []
        body = encode("\0".join((root, under, sha256_under)))
        shards = max(1, workers)
        try:
            for shard in range(shards):
                request = protocol.REQUEST.pack(shard, shards, sha256_all, len(body)) + body
                self._workers.append(_Worker(root, request))
        except PoolFailed:
            self.close(at_once=True)
            raise
        except (OSError, ValueError) as error:
            self.close(at_once=True)
            raise PoolFailed(f"cannot start a hashing process: {error}") from error

    def __enter__(self) -> HashingPool:
        return self

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self.close(at_once=kind is not None)

    def close(self, *, at_once: bool = False) -> None:
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop(kill=at_once or not worker.done)

    def ready_answers(self) -> list[HashedBatch | Strange]:
        """The answers the workers have sent so far, without waiting: a caller busy with
        other work takes them now and then, so that no worker waits long on a full pipe.
        Raises as :meth:`answers`."""
        found: list[HashedBatch | Strange] = []
        for worker in self._workers:
            if worker.done:
                continue
            alive = worker.fill()
            found += worker.parse()
            if not alive and not worker.done:
                if not worker.started and not self._answered and not found:
                    raise PoolUnavailable("the hashing processes did not start")
                raise PoolFailed("a hashing process ended before its work was done (exit "
                                 f"status {worker.process.wait()})")
        self._answered = self._answered or bool(found)
        return found

    def answers(self) -> Iterator[HashedBatch | Strange]:
        """Every answer not taken yet, waiting for them. Raises PoolUnavailable, before any
        answer, when the workers did not start; StorageError for a directory that cannot be
        read; PoolFailed when a worker ends early."""
        poller = select.poll()
        waiting = {worker.fd: worker for worker in self._workers if not worker.done}
        for fd in waiting:
            poller.register(fd, select.POLLIN)
        while waiting:
            poller.poll()
            yield from self.ready_answers()
            for fd in [fd for fd, worker in waiting.items() if worker.done]:
                poller.unregister(fd)
                del waiting[fd]
