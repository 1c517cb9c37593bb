"""One run of a job at a time: a lock object per job, written with conditional writes.

The lock is the object ``.crdb-archive-job-<name>.lock`` in the job's destination, holding
``{job, owner, pid, host, started, expires}``. It is created only if absent (of two runs
starting together exactly one creates it), and replaced only if it is still the version this
run read, so of two runs taking over a stale lock only one succeeds. A lock whose ``expires``
has passed belongs to a run that died: the next run takes it over, with a warning. Where the
destination's objects are files of this host, a holder that ran on this host and whose process
is gone is known to be dead at once, so a killed run does not block the next one until its
lock expires.

While the run goes on, a thread pushes ``expires`` forward, and so does
:meth:`JobLock.ensure_held` before every delete and every publish: a write whose condition
fails means another run holds the lock now (or it was removed or replaced by hand), and the run
stops. After every write the lock is read back and its owner compared, which also catches a
store that ignores conditions. At its end the run gives the lock back, only if it is still its
own: an object store deletes it, a file system keeps the file, emptied (as lock files on disk
are kept), which reads as released.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from crdb_archive.errors import (
    ConditionFailed,
    CrdbArchiveError,
    JobAlreadyRunning,
    JobLockLost,
    StorageError,
)
from crdb_archive.storage.base import Storage, Versioned
from crdb_archive.times import utc_iso

LOCK_PREFIX = ".crdb-archive-job-"
LOCK_SUFFIX = ".lock"

# A run that dies leaves its lock for at most this long; a live run keeps moving it forward,
# so the expiry only has to outlast a few failed refreshes in a row.
DEFAULT_TTL = dt.timedelta(hours=1)
DEFAULT_REFRESH = dt.timedelta(minutes=5)

# The holder record is tiny; anything longer was not written by a run.
_MAX_RECORD = 4096
_ATTEMPTS = 3


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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
        """The holder recorded in a lock, or None for an empty (released) one."""
        if not content.strip():
            return None
        record = _record(content)
        pid, host, started = record.get("pid"), record.get("host"), record.get("started")
        return cls(
            pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
            host if isinstance(host, str) else None,
            started if isinstance(started, str) else None,
        )


def lock_file_name(job: str) -> str:
    return f"{LOCK_PREFIX}{job}{LOCK_SUFFIX}"


class JobLock:
    """The lock of job ``job`` in ``storage`` (the job's destination); held for a run.

    Entering raises JobAlreadyRunning while another run holds it, StorageError when the store
    fails. ``taken_over`` is the previous holder when it ended without releasing the lock.
    ``clock`` tells the time that expiries are written and judged by (the wall clock in UTC;
    tests move it on instead of waiting for it).
    """

    def __init__(
        self,
        storage: Storage,
        job: str,
        *,
        ttl: dt.timedelta = DEFAULT_TTL,
        refresh_every: dt.timedelta = DEFAULT_REFRESH,
        clock: Callable[[], dt.datetime] = _now,
    ) -> None:
        if refresh_every >= ttl:
            raise ValueError("the lock must be refreshed more often than it expires")
        self.storage = storage
        self.job = job
        self.ttl = ttl
        self.refresh_every = refresh_every
        self._clock = clock
        self.key = lock_file_name(job)
        self.display = storage.display(self.key)
        self.owner = uuid.uuid4().hex
        self._version: str | None = None
        self._expires: dt.datetime | None = None
        self._started = clock()
        self._taken_over: LockHolder | None = None
        self._lost: str | None = None
        self._holder: LockHolder | None = None  # who holds it instead, once lost
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        # One conditional write at a time: two with the same version would fail each other.
        self._guard = threading.RLock()

    @property
    def taken_over(self) -> LockHolder | None:
        return self._taken_over

    @property
    def lost(self) -> str | None:
        """Why the lock stopped being this run's before the run ended, if it did."""
        return self._lost

    # --- taking and giving back ------------------------------------------------------------

    def ensure_held(self, action: str) -> None:
        """Renew the lock, which proves it is still this run's; raise JobLockLost otherwise.

        ``action`` (such as "deleting <bundle>") says in the message what the run stopped
        before. Also raised when the renewal cannot be made (the store cannot be reached): a
        run that cannot show it holds the lock must not delete or publish.
        """
        try:
            held = self._renew()
        except CrdbArchiveError as error:
            raise JobLockLost(f"cannot confirm that this run still holds the job lock "
                              f"{self.display} ({error}); stopped before {action}") from None
        if not held:
            who = f" ({self._holder.describe()} holds it now)" if self._holder else ""
            raise JobLockLost(f"the job lock {self.display} {self._lost}{who}; stopped before "
                              f"{action}")

    def __enter__(self) -> JobLock:
        self._started = self._clock()
        try:
            self._acquire()
        except BaseException:
            # Stopped (or failed) after a write the store may have applied: a lock left
            # behind would block the next run until it expires.
            self._discard_own()
            raise
        self._refresher = threading.Thread(target=self._refresh_loop, daemon=True,
                                           name=f"lock-{self.job}")
        self._refresher.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join()
            self._refresher = None
        released = self._release()
        # Raised only when the run itself went well: its own error says more.
        if exc is None and self._lost is not None:
            raise StorageError(f"the job lock {self.display} was lost during the run: it "
                               f"{self._lost}")
        if exc is None and released is not None:
            raise released

    def _acquire(self) -> None:
        for _ in range(_ATTEMPTS):
            if self._write(None):
                return
            current = self._read()
            if current is None:  # released between our write and our read: try again
                continue
            holder = LockHolder.parse(current.content)
            expires = record_expiry(current.content)
            if holder is not None and expires is not None and expires > self._clock() and \
                    not self._holder_gone(holder):
                raise JobAlreadyRunning(
                    f"job {self.job} is already running ({holder.describe()}; the lock expires "
                    f"{_stamp(expires)} unless renewed); lock {self.display}")
            # Released, expired, its holder gone, or not a record this tool wrote.
            if self._write(current.version):
                self._taken_over = holder
                if holder is None and current.content.strip():
                    self._taken_over = LockHolder(None, None, None)
                return
        raise JobAlreadyRunning(f"job {self.job} is already running: another run took the "
                                f"lock {self.display} while this one tried to")

    def _holder_gone(self, holder: LockHolder) -> bool:
        """Whether the holder is known to be dead: a process of this host that no longer
        exists, on a storage whose objects are files of this host."""
        if self.storage.local_paths() is None or holder.pid is None:
            return False
        if holder.host != socket.gethostname() or holder.pid == os.getpid():
            return False
        try:
            os.kill(holder.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # another user's process, alive
            return False
        return False

    def _release(self) -> CrdbArchiveError | None:
        """Give the lock back if it is still ours; returns (not raises) a failure to do so."""
        if self._version is None or self._lost is not None:
            return None
        try:
            self._give_back(self._version)
        except ConditionFailed:
            self._note_loss()
            return None
        except CrdbArchiveError as error:
            return StorageError(f"cannot release the job lock {self.display}: {error}; the lock "
                                f"expires by itself at the latest in {self.ttl}")
        self._version = None
        return None

    def _give_back(self, version: str) -> None:
        if self.storage.local_paths() is not None:
            self.storage.put_if_version(self.key, b"", version)
        else:
            self.storage.delete_if_version(self.key, version)

    def _discard_own(self) -> None:
        """Give the lock back if it carries this run's owner; best effort, never raises."""
        # Should this fail too, the lock expires by itself; the error that got us here says more.
        with contextlib.suppress(CrdbArchiveError):
            current = self._read()
            if current is not None and _record(current.content).get("owner") == self.owner:
                self._give_back(current.version)

    # --- keeping it ------------------------------------------------------------------------

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_every.total_seconds()):
            try:
                if not self._renew():
                    return
            except CrdbArchiveError as error:
                # A refresh that fails leaves the lock as it was; the next one may succeed
                # before it expires. Only an expired lock is lost.
                with self._guard:
                    if self._expires is not None and self._expires <= self._clock():
                        self._lost = f"expired after refreshes failed ({error})"
                        return

    def _renew(self) -> bool:
        """Push ``expires`` forward if the lock is still ours; False (and ``lost`` set) when
        another write replaced or removed it. Raises StorageError when the store cannot be
        reached.
        """
        with self._guard:
            if self._lost is not None:
                return False
            # The version covers this run's own record (its owner included): a write that
            # still matches it proves that nothing else has written the lock since.
            if self._version is not None and self._write(self._version):
                return True
            if self._lost is None:
                self._note_loss()
            return False

    def _note_loss(self) -> None:
        """Say why the lock is no longer ours, from what is there now; never raises."""
        try:
            current = self._read()
        except CrdbArchiveError:
            current = None
        if current is None:
            self._holder = None
            self._lost = "was removed during the run, so another run may take it"
            return
        self._holder = LockHolder.parse(current.content)
        if record_expiry(current.content) is not None:
            self._lost = ("is no longer this run's: another run replaced it (was this run "
                          "stalled past its expiry?)")
        else:
            self._lost = "was replaced during the run"

    # --- the object ------------------------------------------------------------------------

    def _record(self, expires: dt.datetime) -> bytes:
        record = {
            "job": self.job,
            "owner": self.owner,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _stamp(self._started),
            "expires": _stamp(expires),
        }
        return (json.dumps(record) + "\n").encode()

    def _write(self, version: str | None) -> bool:
        """Write our record if the lock is absent (``version`` None) or still ``version``;
        False when another writer came first. Raises StorageError."""
        expires = self._clock() + self.ttl
        with self._guard:
            try:
                if version is None:
                    self.storage.put_if_absent(self.key, self._record(expires))
                else:
                    self.storage.put_if_version(self.key, self._record(expires), version)
            except ConditionFailed:
                pass  # ours all the same when an applied write's answer was lost: read it
            current = self._read()
            if current is None or _record(current.content).get("owner") != self.owner:
                return False
            if _record(current.content).get("expires") != _stamp(expires):
                return False  # our older record, left by a write whose answer was lost
            self._version = current.version
            self._expires = expires
            return True

    def _read(self) -> Versioned | None:
        """The lock's content and version, or None when there is none."""
        return self.storage.read_versioned(self.key, limit=_MAX_RECORD)


def record_expiry(content: bytes) -> dt.datetime | None:
    """The ``expires`` time in a lock record, or None when it has none that parses."""
    expires = _record(content).get("expires")
    if not isinstance(expires, str):
        return None
    try:
        when = dt.datetime.fromisoformat(expires)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.astimezone(dt.UTC)


def _record(content: bytes) -> dict[str, object]:
    try:
        record = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def _stamp(when: dt.datetime) -> str:
    # Whole seconds: the record is compared as text when it is renewed.
    return utc_iso(when, timespec="seconds")
