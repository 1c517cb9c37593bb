"""One worker process of a pool (:mod:`hashing_pool`, :mod:`copying_pool`): how it is started,
how what it sends is read without waiting, and how it is ended.

A worker runs ``main()`` of a module of this package in ``sys.executable -I``: neither the
working directory nor ``PYTHON*`` variables decide what it imports, and what it is asked comes
on its stdin, never on its command line (where any user of the machine could read it). Its
stderr goes nowhere: a worker tells its parent everything in its answers.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import IO, cast

from crdb_archive.errors import StorageError


class PoolFailed(StorageError):
    """A worker could not start, or ended before answering (exit 3)."""


class PoolUnavailable(PoolFailed):
    """The workers did not start: nothing was done, and threads here can do the work."""


# Bytes read from a worker's pipe at a time.
_READ_SIZE = 1 << 18
_CODE = "import sys; sys.path.insert(0, {root!r}); from {module} import main; main()"


class WorkerProcess:
    """A started worker: ``buffer`` holds what it sent that is not consumed yet (from
    ``offset``); ``fd`` is its answers' pipe, non-blocking, for ``select.poll``.

    Raises OSError or ValueError when the process cannot be started.
    """

    def __init__(self, module: str) -> None:
        package_parent = str(Path(__file__).resolve().parent.parent)
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", _CODE.format(root=package_parent, module=module)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            close_fds=True)
        self.buffer = bytearray()
        self.offset = 0
        self.stdout = cast("IO[bytes]", self.process.stdout)
        self.stdin = cast("IO[bytes]", self.process.stdin)
        self.fd = self.stdout.fileno()
        os.set_blocking(self.fd, False)

    def fill(self) -> bool:
        """Read what the worker has sent, without waiting; False when it has ended."""
        while True:
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return True
            if not data:
                return False
            self.buffer += data
            if len(data) < _READ_SIZE:
                return True

    def consumed(self) -> None:
        """Forget what was consumed, once it is most of the buffer."""
        if self.offset > len(self.buffer) // 2:
            del self.buffer[:self.offset]
            self.offset = 0

    def stop(self, *, kill: bool) -> None:
        """Close both pipes and wait for the process; with ``kill``, end it first."""
        for stream in (self.stdin, self.stdout):
            with contextlib.suppress(OSError):  # a pipe whose far end is gone
                stream.close()
        if kill:
            self.process.kill()
        self.process.wait()

