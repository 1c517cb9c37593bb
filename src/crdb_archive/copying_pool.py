"""Files copied and digested on every core, by worker processes (:mod:`copying_worker`).

A backup of 100k small files spends a few microseconds of Python on each. On threads they
queue for the interpreter lock, and the machine's other cores sit idle. Here batches of files
go to one process per core, a few batches ahead of the answers, and the answers come back in
the order the batches were made.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from crdb_archive import copying_worker as protocol
from crdb_archive.worker_process import PoolFailed, PoolUnavailable, WorkerProcess
from crdb_archive.worker_side import encode

T = TypeVar("T")

# Batches sent to a worker ahead of its answers: enough that it never waits for the next.
_AHEAD = 3
# How long the workers may take to start before the copy is done without them.
_START_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Copied(Generic[T]):
    """The answer for one batch: the digests of its first ``done`` items (raw, 32 bytes each,
    in flat columns); when ``failure`` is not OK, the item after them failed, with ``errno``
    and, for a size that changed, the bytes ``read``."""

    items: list[T]
    done: int
    sha256: bytes
    blake3: bytes
    failure: int
    errno: int
    read: int
    told: int = 0  # bytes of the batch already given to ``progress`` (see CopyingPool.copy)

    @property
    def failed(self) -> T | None:
        return None if self.failure == protocol.OK else self.items[self.done]


class _Worker(WorkerProcess):
    def __init__(self) -> None:
        super().__init__("crdb_archive.copying_worker")
        os.set_blocking(self.stdin.fileno(), False)
        self.started = False
        self.unsent = memoryview(b"")
        self.batches: list[int] = []  # sent, not answered, in order

    def send(self, batch: int, request: bytes) -> None:
        self.batches.append(batch)
        self.unsent = memoryview(request)
        self.flush()

    def end(self) -> bool:
        """Ask the worker to end (a request of no files); whether the pipe took it whole."""
        try:
            written = os.write(self.stdin.fileno(), protocol.REQUEST.pack(0, 0, 0))
        except (OSError, ValueError):  # it has gone, or its pipe was closed
            return False
        return written == protocol.REQUEST.size

    def flush(self) -> None:
        """Write what the pipe takes now."""
        try:
            while self.unsent:
                self.unsent = self.unsent[os.write(self.stdin.fileno(), self.unsent):]
        except BlockingIOError:
            return
        except OSError as error:
            raise PoolFailed(f"a copying process ended early: {error.strerror}") from error

    def answers(self) -> Generator[tuple[int, int, int, int, int, bytes, bytes], None, None]:
        """The complete answers in what was read:
        ``(batch, done, failure, errno, read, sha256, blake3)``."""
        if not self.started:
            if not self.buffer:
                return
            if self.buffer[:1] != protocol.READY:
                raise PoolFailed("a copying process answered what it never does")
            self.started = True
            self.offset = 1
        while len(self.buffer) - self.offset >= protocol.ANSWER.size:
            batch, done, failure, number, read = protocol.ANSWER.unpack_from(
                self.buffer, self.offset)
            start = self.offset + protocol.ANSWER.size
            if batch == 0 and done == 0 and self.batches:  # progress in a large file
                self.offset = start
                yield 0, 0, failure, number, read, b"", b""
                continue
            end = start + 2 * done * protocol.DIGEST
            if len(self.buffer) < end:
                break
            if not self.batches or batch != self.batches[0]:
                raise PoolFailed("a copying process answered what it was never asked")
            self.batches.pop(0)
            middle = start + done * protocol.DIGEST
            self.offset = end
            yield (batch, done, failure, number, read, bytes(self.buffer[start:middle]),
                   bytes(self.buffer[middle:end]))
        self.consumed()


def _request(batch: int, jobs: list[tuple[str, str, int]]) -> bytes:
    text = encode("\0".join(path for source, copy, _ in jobs for path in (source, copy)))
    sizes = b"".join(protocol.SIZE_FIELD.pack(size) for _, _, size in jobs)
    return protocol.REQUEST.pack(batch, len(jobs), len(text)) + sizes + text


class CopyingPool:
    """Worker processes that copy files; a context manager that ends them (at once when
    leaving early, as on an interrupt).

    Raises PoolUnavailable when they do not start (nothing was copied: threads here can do
    the work), PoolFailed when one fails later.
    """

    def __init__(self, workers: int) -> None:
        self._workers: list[_Worker] = []
        try:
            for _ in range(max(1, workers)):
                self._workers.append(_Worker())
            self._wait_started()
        except PoolFailed:
            self.close(kill=True)
            raise
        except (OSError, ValueError) as error:
            self.close(kill=True)
            raise PoolUnavailable(f"cannot start a copying process: {error}") from error

    def _wait_started(self) -> None:
        deadline = time.monotonic() + _START_SECONDS
        poller = select.poll()
        for worker in self._workers:
            poller.register(worker.fd, select.POLLIN)
        while not all(worker.buffer for worker in self._workers):
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                raise PoolUnavailable("the copying processes did not start")
            for worker in self._workers:
                if not worker.buffer and not worker.fill():
                    raise PoolUnavailable("the copying processes did not start")
        for worker in self._workers:
            list(worker.answers())  # takes the start mark

    def __enter__(self) -> CopyingPool:
        return self

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self.close(kill=kind is not None)

    def close(self, *, kill: bool = False) -> None:
        workers, self._workers = self._workers, []
        for worker in workers:
            # A worker with nothing left to do is told so and ends by itself; any other is
            # killed.
            worker.stop(kill=kill or bool(worker.batches) or not worker.end())

    def copy(self, batches: Iterable[list[T]], job: Callable[[T], tuple[str, str, int]],
             progress: Callable[[int], None] | None = None) -> Generator[Copied[T], None, None]:
        """Copy the items of each batch (``job`` gives an item's source, destination and
        expected size); the answers in the order of ``batches``, which is consumed a few
        batches ahead of them. While a large file is copied, ``progress`` is given the bytes
        done now and then; each answer says how many of its bytes it was given (``told``).
        Raises PoolFailed when a worker ends or fails."""
        copying = _Copying(self._workers, iter(batches), job, progress)
        poller = select.poll()
        while True:
            copying.feed()
            yield from copying.in_order()
            if copying.finished:
                return
            self._wait(poller)
            copying.collect()

    def _wait(self, poller: select.poll) -> None:
        for worker in self._workers:
            poller.register(worker.fd, select.POLLIN)
            if worker.unsent:
                poller.register(worker.stdin.fileno(), select.POLLOUT)
        try:
            poller.poll()
        finally:
            for worker in self._workers:
                poller.unregister(worker.fd)
                if worker.unsent:
                    poller.unregister(worker.stdin.fileno())


class _Copying(Generic[T]):
    """One :meth:`CopyingPool.copy`: the batches sent, the answers not given yet."""

    def __init__(self, workers: list[_Worker], batches: Iterator[list[T]],
                 job: Callable[[T], tuple[str, str, int]],
                 progress: Callable[[int], None] | None) -> None:
        self._workers = workers
        self._batches = batches
        self._job = job
        self._progress = progress
        self._sent: dict[int, list[T]] = {}
        self._told: dict[int, int] = {}
        self._answered: dict[int, Copied[T]] = {}
        self._made = 0
        self._given = 0
        self._exhausted = False

    @property
    def finished(self) -> bool:
        return self._exhausted and self._given == self._made

    def feed(self) -> None:
        """Send each worker batches until it has a few, or there are none left."""
        for worker in self._workers:
            while not self._exhausted and not worker.unsent and len(worker.batches) < _AHEAD:
                items = next(self._batches, None)
                if items is None:
                    self._exhausted = True
                    return
                self._made += 1
                self._sent[self._made] = items
                worker.send(self._made, _request(self._made, [self._job(i) for i in items]))

    def in_order(self) -> Iterator[Copied[T]]:
        while self._given + 1 in self._answered:
            self._given += 1
            yield self._answered.pop(self._given)

    def collect(self) -> None:
        """Take what the workers have answered; send what their pipes take now."""
        for worker in self._workers:
            alive = worker.fill()
            for batch, done, failure, number, read, sha256, b3 in worker.answers():
                if batch == 0:  # progress in a large file of the worker's oldest batch
                    current = worker.batches[0]
                    self._told[current] = self._told.get(current, 0) + read
                    if self._progress is not None:
                        self._progress(read)
                    continue
                self._answered[batch] = Copied(self._sent.pop(batch), done, sha256, b3,
                                               failure, number, read,
                                               self._told.pop(batch, 0))
            if not alive and worker.batches:
                raise PoolFailed("a copying process ended before its work was done "
                                 f"(exit status {worker.process.wait()})")
            worker.flush()
