"""The job lock in object storage: one small object with an expiry, written conditionally.

S3 has no lock that dies with its holder, so the lock is the object
``<prefix>/.crdb-archive-job-<name>.lock`` holding ``{job, owner, pid, host, started,
expires}``. It is created with ``If-None-Match: *`` (S3 refuses the write when the object
exists), so of two runs starting together exactly one creates it. A lock whose ``expires`` has
passed belongs to a run that died: it is replaced with ``If-Match: <its ETag>``, so of two runs
taking it over only one succeeds. While the run goes on, a thread pushes ``expires`` forward
(again with ``If-Match``), and so does :meth:`S3JobLock.ensure_held` before every delete and
every publish: a write that fails its condition means another run holds the lock now, and the
run stops. The run deletes the object at its end, only if it is still its own.

After every write the object is read back and its owner compared, which also catches a store
that ignores conditional headers; on such a store two runs that write within the same
moment can both believe they hold the lock, so use one that honours them (AWS S3 does since
2024, as do current MinIO and Ceph releases).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
import uuid
from types import TracebackType
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from crdb_archive.errors import CrdbArchiveError, JobAlreadyRunning, JobLockLost, StorageError
from crdb_archive.jobs.lock import LockHolder, lock_file_name
from crdb_archive.storage.s3_config import make_client, s3_target
from crdb_archive.storage.s3_errors import error_code, s3_errors
from crdb_archive.storage.uri import Location

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# A run that dies leaves its lock for at most this long; a live run keeps moving it forward,
# so the expiry only has to outlast a few failed refreshes in a row.
DEFAULT_TTL = dt.timedelta(hours=1)
DEFAULT_REFRESH = dt.timedelta(minutes=5)

# S3 answers 412 when a condition does not hold, and 409 when another conditional write to
# the same key is in flight: either way another run got there first.
_LOST_RACE = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
_MAX_RECORD = 4096
_ATTEMPTS = 3


class S3JobLock:
    """The lock of job ``job`` as an object below the ``s3://`` location ``location``."""

    def __init__(
        self,
        location: Location,
        job: str,
        *,
        endpoint_url: str | None = None,
        ttl: dt.timedelta = DEFAULT_TTL,
        refresh_every: dt.timedelta = DEFAULT_REFRESH,
    ) -> None:
        if refresh_every >= ttl:
            raise ValueError("the lock must be refreshed more often than it expires")
        self.job = job
        self.ttl = ttl
        self.refresh_every = refresh_every
        self._target = s3_target(location, endpoint_url=endpoint_url)
        name = lock_file_name(job)
        self.key = f"{self._target.prefix}/{name}" if self._target.prefix else name
        self.display = f"s3://{self._target.bucket}/{self.key}"
        self.owner = uuid.uuid4().hex
        self._client: S3Client | None = None
        self._etag: str | None = None
        self._expires: dt.datetime | None = None
        self._started = _now()
        self._taken_over: LockHolder | None = None
        self._lost: str | None = None
        self._holder: LockHolder | None = None  # who holds it instead, once lost
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        # One conditional write at a time: two with the same If-Match would fail each other.
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

        Also raised when the renewal cannot be made (the store cannot be reached): a run that
        cannot show it holds the lock must not delete or publish.
        """
        try:
            held = self._renew()
        except CrdbArchiveError as error:
            raise JobLockLost(f"cannot confirm that this run still holds the job lock "
                              f"{self.display} ({error}); stopped before {action}") from None
        if not held:
            who = f" ({self._holder.describe()} holds it now)" if self._holder else ""
            raise JobLockLost(f"the job lock {self.display} is no longer this run's: "
                              f"{self._lost}{who}; stopped before {action}")

    def __enter__(self) -> S3JobLock:
        self._started = _now()
        self._client = make_client(self._target, pool_size=2)
        try:
            self._acquire()
        except BaseException:
            # Stopped (or failed) after a write the store may have applied: a lock left
            # behind would block the next run until it expires.
            self._discard_own()
            self._close()
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
        try:
            released = self._release()
        finally:
            self._close()
        # Raised only when the run itself went well: its own error says more.
        if exc is None and self._lost is not None:
            raise StorageError(f"the job lock {self.display} was lost during the run: "
                               f"{self._lost}")
        if exc is None and released is not None:
            raise released

    def _acquire(self) -> None:
        for _ in range(_ATTEMPTS):
            if self._put(if_none_match=True):
                return
            current = self._read()
            if current is None:  # released between our write and our read: try again
                continue
            content, etag = current
            holder = LockHolder.parse(content)
            expires = record_expiry(content)
            if expires is not None and expires > _now():
                who = holder.describe() if holder else "its holder is unknown"
                raise JobAlreadyRunning(
                    f"job {self.job} is already running ({who}; the lock expires "
                    f"{_iso(expires)} unless renewed); lock {self.display}")
            # Expired, or not a record this tool wrote: its run is gone.
            if self._put(if_match=etag):
                self._taken_over = holder or LockHolder(None, None, None)
                return
        raise JobAlreadyRunning(f"job {self.job} is already running: another run took the "
                                f"lock {self.display} while this one tried to")

    def _release(self) -> CrdbArchiveError | None:
        """Delete the lock if it is still ours; returns (not raises) a failure to do so."""
        if self._etag is None or self._client is None or self._lost is not None:
            return None
        try:
            with s3_errors("release the job lock", self.display, self._target.secrets):
                try:
                    self._client.delete_object(Bucket=self._target.bucket, Key=self.key,
                                               IfMatch=self._etag)
                except ClientError as error:
                    if error_code(error) not in _LOST_RACE:
                        raise
                    self._lost = "another run replaced it"
        except CrdbArchiveError as error:
            return StorageError(f"{error}; the lock expires by itself at the latest in "
                                f"{self.ttl}")
        self._etag = None
        return None

    def _discard_own(self) -> None:
        """Delete the lock object if it carries this run's owner; best effort, never raises."""
        # Should this fail too, the lock expires by itself; the error that got us here says more.
        with contextlib.suppress(CrdbArchiveError):
            current = self._read()
            if current is not None and _owner(current[0]) == self.owner:
                self._delete_if_match(current[1])

    def _delete_if_match(self, etag: str) -> None:
        if self._client is None:  # pragma: no cover - only called while entered
            return
        with s3_errors("release the job lock", self.display, self._target.secrets):
            self._client.delete_object(Bucket=self._target.bucket, Key=self.key, IfMatch=etag)

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

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
                    if self._expires is not None and self._expires <= _now():
                        self._lost = f"it expired after refreshes failed ({error})"
                        return

    def _renew(self) -> bool:
        """Push ``expires`` forward if the lock is still ours; False (and ``lost`` set) when
        another run's write replaced it. Raises StorageError when the store cannot be reached.
        """
        with self._guard:
            if self._lost is not None:
                return False
            # The ETag covers this run's own record (its owner included): a write that still
            # matches it proves that no other run has written the lock since, expired or not.
            if self._put(if_match=self._etag):
                return True
            self._lost = "another run replaced it (was this run stalled past its expiry?)"
            return False

    # --- the object ------------------------------------------------------------------------

    def _record(self, expires: dt.datetime) -> bytes:
        record = {
            "job": self.job,
            "owner": self.owner,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _iso(self._started),
            "expires": _iso(expires),
        }
        return (json.dumps(record) + "\n").encode()

    def _put(self, *, if_none_match: bool = False, if_match: str | None = None) -> bool:
        """Write our record under a condition; False when another run's write came first."""
        if self._client is None:  # pragma: no cover - only called while entered
            raise StorageError(f"the job lock {self.display} is not open")
        expires = _now() + self.ttl
        conditions: dict[str, Any] = {}
        if if_none_match:
            conditions["IfNoneMatch"] = "*"
        if if_match is not None:
            conditions["IfMatch"] = if_match
        with self._guard:
            with s3_errors("write the job lock", self.display, self._target.secrets):
                try:
                    self._client.put_object(
                        Bucket=self._target.bucket, Key=self.key, Body=self._record(expires),
                        ContentType="application/json", **conditions)
                except ClientError as error:
                    if error_code(error) in _LOST_RACE or (
                            if_match is not None and error_code(error) in ("NoSuchKey", "404")):
                        self._note_holder()
                        return False
                    raise
            current = self._read()
            if current is None or _owner(current[0]) != self.owner:
                self._holder = LockHolder.parse(current[0]) if current is not None else None
                return False
            self._etag = current[1]
            self._expires = expires
            return True

    def _note_holder(self) -> None:
        """Remember who holds the lock instead of this run, for the message; never raises."""
        try:
            current = self._read()
        except CrdbArchiveError:
            return
        self._holder = LockHolder.parse(current[0]) if current is not None else None

    def _read(self) -> tuple[bytes, str] | None:
        """The lock object's content and ETag, or None when there is none."""
        if self._client is None:  # pragma: no cover - only called while entered
            raise StorageError(f"the job lock {self.display} is not open")
        with s3_errors("read the job lock", self.display, self._target.secrets):
            try:
                answer = self._client.get_object(Bucket=self._target.bucket, Key=self.key)
            except ClientError as error:
                if error_code(error) in ("NoSuchKey", "404"):
                    return None
                raise
            with answer["Body"] as body:
                content = body.read(_MAX_RECORD)
        return content, answer["ETag"]


def record_expiry(content: bytes) -> dt.datetime | None:
    """The ``expires`` time in a lock record, or None when it has none that parses."""
    try:
        record = json.loads(content)
        expires = dt.datetime.fromisoformat(record["expires"])
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        return None
    if expires.tzinfo is None:
        return None
    return expires.astimezone(dt.UTC)


def _owner(content: bytes) -> str | None:
    try:
        record = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    owner = record.get("owner") if isinstance(record, dict) else None
    return owner if isinstance(owner, str) else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds")
