"""The job lock on every backend: one holder at a time, stale locks taken over, losses noticed.

The lock is built on the storage's conditional writes alone, so the same tests run on a local
directory and on an S3 bucket; where they differ (a dead holder is recognised at once only where
the lock is a file of this host), the backend's capabilities say which answer is expected.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys

import pytest

from crdb_archive.errors import JobAlreadyRunning, JobLockLost, StorageError
from crdb_archive.jobs.lock import JobLock, LockHolder, lock_file_name
from support.storage_backends import Backend

KEY = lock_file_name("orders")


def record(*, pid: int, host: str, expires: dt.datetime | None, owner: str = "another") -> bytes:
    fields: dict[str, object] = {"job": "orders", "owner": owner, "pid": pid, "host": host,
                                 "started": "2024-12-15T02:30:00+00:00"}
    if expires is not None:
        fields["expires"] = expires.isoformat()
    return json.dumps(fields).encode()


def dead_pid() -> int:
    """The pid of a process of this host that has ended (and been waited for)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def soon(minutes: int) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)


def test_one_holder_at_a_time_and_free_again_after(backend: Backend) -> None:
    storage = backend.storage
    with JobLock(storage, "orders") as first:
        assert first.taken_over is None
        with pytest.raises(JobAlreadyRunning, match=rf"job orders is already running \(pid "
                           rf"{os.getpid()} on host .*; the lock expires .*\); lock "):
            JobLock(storage, "orders").__enter__()
        first.ensure_held("deleting x")
        held = storage.read_versioned(KEY)
        assert held is not None
        assert json.loads(held.content)["owner"] == first.owner
    released = storage.read_versioned(KEY)
    assert released is None or released.content == b""  # deleted, or an emptied file
    assert LockHolder.parse(released.content if released else b"") is None
    with JobLock(storage, "orders") as again:
        assert again.taken_over is None  # released cleanly: nothing was taken over
    assert backend.leftovers() == []


def test_an_expired_lock_is_taken_over(backend: Backend) -> None:
    storage = backend.storage
    expired = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    storage.put_bytes(KEY, record(pid=4194304, host="old-node", expires=expired))
    with JobLock(storage, "orders") as lock:
        assert lock.taken_over == LockHolder(4194304, "old-node", "2024-12-15T02:30:00+00:00")
    assert lock.lost is None


def test_a_record_without_expiry_is_not_a_live_lock(backend: Backend) -> None:
    backend.storage.put_bytes(KEY, record(pid=4194304, host="old-node", expires=None))
    with JobLock(backend.storage, "orders") as lock:
        assert lock.taken_over is not None
        assert lock.taken_over.describe() == (
            "pid 4194304 on host old-node since 2024-12-15T02:30:00+00:00")


def test_a_dead_holder_of_this_host_is_recognised_where_the_lock_is_a_file_here(
    backend: Backend,
) -> None:
    storage = backend.storage
    pid = dead_pid()
    storage.put_bytes(KEY, record(pid=pid, host=socket.gethostname(), expires=soon(30)))
    if storage.local_paths() is None:
        # Another host with the same name could hold it: only its expiry frees it.
        with pytest.raises(JobAlreadyRunning, match=f"pid {pid} on host"):
            JobLock(storage, "orders").__enter__()
        return
    with JobLock(storage, "orders") as lock:  # at once, not in 30 minutes
        assert lock.taken_over is not None
        assert lock.taken_over.pid == pid


def test_a_live_holder_is_never_taken_over_before_its_expiry(backend: Backend) -> None:
    storage = backend.storage
    # This very process is alive; a holder of another host cannot be checked at all.
    for pid, host in ((os.getppid(), socket.gethostname()), (dead_pid(), "other-node")):
        storage.put_bytes(KEY, record(pid=pid, host=host, expires=soon(30)))
        with pytest.raises(JobAlreadyRunning, match=f"pid {pid} on host {host}"):
            JobLock(storage, "orders").__enter__()


@pytest.mark.parametrize(("change", "expected"), [
    ("taken over", "is no longer this run's: another run replaced it (was this run stalled "
                   "past its expiry?) (pid 4194304 on host old-node since "
                   "2024-12-15T02:30:00+00:00 holds it now)"),
    ("replaced by hand", "was replaced during the run (pid 4194304 on host old-node since "
                         "2024-12-15T02:30:00+00:00 holds it now)"),
    ("removed", "was removed during the run, so another run may take it"),
])
def test_a_lost_lock_stops_the_run_and_is_left_to_its_new_holder(
    backend: Backend, change: str, expected: str,
) -> None:
    storage = backend.storage
    other = record(pid=4194304, host="old-node",
                   expires=soon(60) if change == "taken over" else None)
    lock = JobLock(storage, "orders")
    lock.__enter__()
    if change == "removed":
        storage.delete(KEY)
    else:
        storage.put_bytes(KEY, other)
    with pytest.raises(JobLockLost) as caught:
        lock.ensure_held("deleting crdb-1")
    assert str(caught.value) == (f"the job lock {storage.display(KEY)} {expected}; stopped "
                                 "before deleting crdb-1")
    with pytest.raises(StorageError, match="was lost during the run"):
        lock.__exit__(None, None, None)
    after = storage.read_versioned(KEY)
    assert (after.content if after else None) == (None if change == "removed" else other)
