"""One run of a job at a time: a lock per job, taken over safely from a run that died.

On a local destination the lock is ``.crdb-archive-job-<name>.lock`` in the destination
directory, held with ``flock`` for the whole run. The kernel releases it when the process dies
however it dies, so a stale lock cannot block the next run; what the dead run wrote into the
file (pid, host, start time) is still there and tells the next run that it is taking over.
An object store has no such lock, so its destination provides another :class:`JobLock` (an
object with an expiry, jobs/s3_lock.py) behind the same interface.

A lock can be lost while a run holds it: the lock file removed or replaced by hand, the lock
object taken over by a run on a host that thought it expired. A run therefore calls
:meth:`JobLock.ensure_held` before every delete and before it publishes a bundle, and stops
when the lock is no longer its own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from crdb_archive.errors import JobAlreadyRunning, JobLockLost, StorageError

LOCK_PREFIX = ".crdb-archive-job-"
LOCK_SUFFIX = ".lock"

# The holder record is tiny; anything longer in the file was not written by a run.
_MAX_RECORD = 4096


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a job's lock."""

    pid: int | None
    host: str | None
    started: str | None

    def describe(self) -> str:
        pid = "unknown" if self.pid is None else str(self.pid)
        return f"pid {pid} on host {self.host or 'unknown'} since {self.started or 'unknown'}"

    @classmethod
    def parse(cls, content: bytes) -> LockHolder | None:
        """The holder recorded in a lock file, or None for an empty (released) one."""
        if not content.strip():
            return None
        try:
            record = json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return cls(None, None, None)
        if not isinstance(record, dict):
            return cls(None, None, None)
        pid, host, started = record.get("pid"), record.get("host"), record.get("started")
        return cls(
            pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
            host if isinstance(host, str) else None,
            started if isinstance(started, str) else None,
        )


class JobLock(Protocol):
    """Held for a run: entering raises JobAlreadyRunning while another run holds it."""

    @property
    def taken_over(self) -> LockHolder | None:
        """A previous holder that ended without releasing the lock (it died)."""

    def ensure_held(self, action: str) -> None:
        """Raise JobLockLost unless this run still holds the lock; ``action`` (such as
        "deleting <bundle>") says in the message what the run stopped before."""

    def __enter__(self) -> JobLock: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def lock_file_name(job: str) -> str:
    return f"{LOCK_PREFIX}{job}{LOCK_SUFFIX}"


class LocalJobLock:
    """The lock of job ``job`` as a file in ``directory``, held with flock."""

    def __init__(self, directory: Path, job: str) -> None:
        self.path = directory / lock_file_name(job)
        self.job = job
        self._fd: int | None = None
        self._taken_over: LockHolder | None = None

    @property
    def taken_over(self) -> LockHolder | None:
        return self._taken_over

    def __enter__(self) -> LocalJobLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_NOFOLLOW: a symlink planted under the lock's name must not redirect the write.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise StorageError(
                f"cannot create the job lock {self.path}: {error.strerror or error}"
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                holder = LockHolder.parse(os.pread(fd, _MAX_RECORD, 0))
                who = holder.describe() if holder else "its holder is starting"
                raise JobAlreadyRunning(
                    f"job {self.job} is already running ({who}); lock {self.path}"
                ) from None
            self._taken_over = LockHolder.parse(os.pread(fd, _MAX_RECORD, 0))
            record = {
                "job": self.job,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
            os.fsync(fd)
        except OSError as error:
            os.close(fd)
            raise StorageError(
                f"cannot take the job lock {self.path}: {error.strerror or error}"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def ensure_held(self, action: str) -> None:
        """Raise JobLockLost unless the file at the lock's path is still the one this run
        locked: one removed or replaced by hand may be locked by another run now."""
        where = f"the job lock {self.path}"
        if self._fd is None:
            raise JobLockLost(f"{where} is not held by this run; stopped before {action}")
        try:
            held = os.fstat(self._fd)
            current = self.path.lstat()
        except FileNotFoundError:
            raise JobLockLost(f"{where} was removed during the run, so another run may take "
                              f"it; stopped before {action}") from None
        except OSError as error:
            raise JobLockLost(f"cannot check {where}: {error.strerror or error}; stopped "
                              f"before {action}") from None
        if (held.st_dev, held.st_ino) != (current.st_dev, current.st_ino):
            holder = _read_holder(self.path)
            who = f" ({holder.describe()} holds it now)" if holder else ""
            raise JobLockLost(f"{where} was replaced during the run{who}; stopped before "
                              f"{action}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # An empty file means "released cleanly"; the file itself stays, because removing
            # it would let a waiting run lock an inode that no longer has a name.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _read_holder(path: Path) -> LockHolder | None:
    """The holder recorded in the lock file now at ``path``, for a message; None if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return LockHolder.parse(os.pread(fd, _MAX_RECORD, 0))
    except OSError:
        return None
    finally:
        os.close(fd)
