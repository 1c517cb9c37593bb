"""A run whose job lock stops being its own stops at once: no delete, no publish after that.

Another run takes the lock (the S3 lock object overwritten by a run on a host that thought it
expired, the local lock file replaced by hand) while this one is held in mid-run by a stalled
request or one of its own events; the run must notice before its next delete or publish.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from crdb_archive.errors import ExitCode, JobLockLost
from crdb_archive.jobs import JobEvent, load_spec, run_job
from crdb_archive.jobs.lock import JobLock, lock_file_name
from crdb_archive.storage import open_storage
from support.backups import add_random_sst
from support.bundles import era_with_binaries
from support.faultproxy import FaultProxy, refuse, stall
from support.mirror import MirrorServer
from support.s3 import MotoS3

V24_3 = [f"crdb-5f0e3c1a-202412{day}T000000Z-v24.3.1" for day in ("01", "08", "15")]
FULLS = ["2024/12/01-000000.00", "2024/12/08-000000.00", "2024/12/15-000000.00"]
LOCK = lock_file_name("orders")
HOLD = 120
OTHER = {"job": "orders", "owner": "someone-else", "pid": 4194304, "host": "old-node",
         "started": "2024-12-15T02:30:00+00:00"}
OTHER_TEXT = "pid 4194304 on host old-node since 2024-12-15T02:30:00+00:00"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                 mirror: MirrorServer) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_MIRROR", mirror.url)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))


def write_spec(tmp_path: Path, source: Path, dest: str | Path, *, backups: str = "all",
               fmt: str = "dir", retention: str = "", name: str = "job.toml") -> Path:
    spec = tmp_path / name
    spec.write_text(
        f'[job]\nname = "orders"\n[source]\nuri = "{source}"\nbackups = "{backups}"\n'
        f'[destination]\nuri = "{dest}"\nformat = "{fmt}"\n'
        + (f"[retention]\n{retention}\n" if retention else ""))
    return spec


def take_over(s3: MotoS3, bucket: str, key: str) -> None:
    """What another run writes when it takes over a lock it believes expired."""
    record = {**OTHER, "expires": (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()}
    with closing(s3.client()) as client:
        client.put_object(Bucket=bucket, Key=key, Body=json.dumps(record).encode())


def lock_owner(s3: MotoS3, bucket: str, key: str) -> str:
    with closing(s3.client()) as client:
        owner: str = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())["owner"]
    return owner


def run_held(spec: Path, proxy: FaultProxy, while_held: object) -> subprocess.CompletedProcess[str]:
    """``run SPEC --json`` as a process; ``while_held()`` runs once the proxy holds a request."""
    process = subprocess.Popen(
        [sys.executable, "-m", "crdb_archive.cli", "run", str(spec), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        reached = proxy.stalled.wait(HOLD)
        if reached:
            assert callable(while_held)
            while_held()
        proxy.release()
        out, err = process.communicate(timeout=HOLD)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert reached, out + err
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_lock_taken_over_before_retention_deletes_nothing(
    tmp_path: Path, mirror: MirrorServer, s3_proxy: FaultProxy, s3_env: MotoS3
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    bucket = s3_env.bucket()
    dest = f"s3://{bucket}/jobs"
    for full in FULLS[:2]:
        first = run_job(load_spec(write_spec(tmp_path, era.path, dest, backups=full)))
        assert first.exit_code == ExitCode.OK, first.failures
    before = sorted(s3_env.all_keys(bucket))
    spec = write_spec(tmp_path, era.path, dest, retention="keep_last = 1")
    # Hold the run while it verifies the bundle it just wrote, between archive and retention.
    s3_proxy.fail("GET", rf"^/{bucket}/jobs/{V24_3[2]}/crdb-archive\.json$", stall(HOLD))
    result = run_held(spec, s3_proxy, lambda: take_over(s3_env, bucket, f"jobs/{LOCK}"))

    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert "delete" not in kinds
    [error] = [e for e in events if e["event"] == "error"]
    assert error["step"] == "lock"
    assert error["exit_code"] == 3
    assert error["message"] == (
        f"the job lock s3://{bucket}/jobs/{LOCK} is no longer this run's: another run replaced "
        f"it (was this run stalled past its expiry?) ({OTHER_TEXT} holds it now); stopped "
        f"before deleting {V24_3[1]}")  # the newer of the two goes first
    assert (events[-1]["event"], events[-1]["exit_code"], events[-1]["bundles_deleted"]) == (
        "done", 3, 0)
    after = set(s3_env.all_keys(bucket))
    assert set(before) <= after  # both older bundles whole, not a single object gone
    assert f"jobs/{V24_3[2]}/tagmanifest-sha256.txt" in after  # written before the loss
    assert lock_owner(s3_env, bucket, f"jobs/{LOCK}") == "someone-else"  # not released by us


@pytest.mark.parametrize("fmt", ["tar", "dir"])
def test_lock_taken_over_during_an_upload_publishes_nothing(
    tmp_path: Path, mirror: MirrorServer, s3_proxy: FaultProxy, s3_env: MotoS3, fmt: str
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    add_random_sst(era.path / FULLS[2], 12)  # the tar needs more than one 8 MiB part
    bucket = s3_env.bucket()
    spec = write_spec(tmp_path, era.path, f"s3://{bucket}/jobs", backups="latest", fmt=fmt)
    if fmt == "tar":
        s3_proxy.fail("PUT", rf"^/{bucket}/jobs/{V24_3[2]}\.tar$", stall(HOLD),
                      query="partNumber=1")
        published = f"{V24_3[2]}.tar"
    else:
        s3_proxy.fail("PUT", rf"^/{bucket}/jobs/{V24_3[2]}/data/backup/.*999999\.sst$",
                      stall(HOLD))
        published = V24_3[2]
    result = run_held(spec, s3_proxy, lambda: take_over(s3_env, bucket, f"jobs/{LOCK}"))

    assert result.returncode == 3, result.stdout + result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    [error] = [e for e in events if e["event"] == "error"]
    assert error["step"] == "lock"
    assert str(error["message"]).endswith(f"stopped before publishing {published}")
    assert [e["event"] for e in events] == ["plan", "error", "done"]
    keys = s3_env.all_keys(bucket)
    assert f"jobs/{V24_3[2]}.tar" not in keys
    assert f"jobs/{V24_3[2]}/tagmanifest-sha256.txt" not in keys  # never complete
    assert not [k for k in keys if ".crdb-archive-index" in k]
    assert s3_env.multipart_uploads(bucket) == []
    assert lock_owner(s3_env, bucket, f"jobs/{LOCK}") == "someone-else"


def test_local_lock_file_replaced_before_retention_deletes_nothing(
    tmp_path: Path, mirror: MirrorServer
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    dest = tmp_path / "bundles"
    for full in FULLS[:2]:
        run_job(load_spec(write_spec(tmp_path, era.path, dest, backups=full)))
    lock = dest / LOCK
    events: list[JobEvent] = []

    def replace_lock(event: JobEvent) -> None:
        events.append(event)
        if event.event == "verify" and event.fields["bundle"] == V24_3[2]:  # retention is next
            lock.unlink()
            lock.write_text(json.dumps(OTHER))

    spec = load_spec(write_spec(tmp_path, era.path, dest, retention="keep_last = 1"))
    report = run_job(spec, on_event=replace_lock)
    assert report.exit_code == ExitCode.WORLD
    assert report.deleted == []
    [error] = [e.fields for e in events if e.event == "error"]
    assert error["message"] == (f"the job lock {lock} was replaced during the run ({OTHER_TEXT} "
                                f"holds it now); stopped before deleting {V24_3[1]}")
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == V24_3
    assert json.loads(lock.read_text())["owner"] == "someone-else"  # left as the other wrote it


def test_ensure_held_renews_alongside_the_refresher_and_fails_closed(
    s3_env: MotoS3, s3_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_env.bucket()
    key = f"p/{LOCK}"
    # A refresher that renews all the time: its If-Match must never race the run's own.
    with open_storage(f"s3://{bucket}/p") as storage, \
            JobLock(storage, "orders", ttl=dt.timedelta(seconds=30),
                    refresh_every=dt.timedelta(milliseconds=5)) as lock:
        for i in range(30):
            lock.ensure_held(f"step {i}")
        assert lock.lost is None
    assert key not in s3_env.all_keys(bucket)

    # A store that cannot be reached cannot show the lock is still ours: stop, to be safe.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with open_storage(f"s3://{bucket}/p") as storage, \
            JobLock(storage, "orders", ttl=dt.timedelta(hours=2),
                    refresh_every=dt.timedelta(hours=1)) as lock:
        # Two: botocore counts AWS_MAX_ATTEMPTS=1 as one retry after the first attempt.
        s3_proxy.fail("PUT", rf"^/{bucket}/{key}$", refuse(503), times=2)
        with pytest.raises(JobLockLost, match=rf"cannot confirm that this run still holds the "
                           rf"job lock s3://{bucket}/{key} \(.*\); stopped before deleting x$"):
            lock.ensure_held("deleting x")
        s3_proxy.calm()
        lock.ensure_held("deleting x")  # answered again: the lock was never lost
        assert lock.lost is None
    assert key not in s3_env.all_keys(bucket)
