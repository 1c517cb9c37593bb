"""``crdb-archive run`` stopped by SIGTERM or SIGINT in each phase of a run, as a process.

Each phase is held on purpose (a request stalled by the fault proxy or the mirror) and the
signal sent once the hold is reported, never after a sleep. Whatever the phase: exit 130, one
line on stderr and the error object as the last line on stdout, nothing recorded as a failed
step, the lock free again, nothing half-written left that a re-run cannot clear, no pending
multipart upload, and a re-run that completes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from crdb_archive.bundle.verify import verify_bundle
from crdb_archive.jobs.lock import lock_file_name
from support.backups import add_random_sst, upload
from support.bundles import era_with_binaries, run_subprocess
from support.faultproxy import FaultProxy, stall
from support.mirror import MirrorServer, stall_after
from support.s3 import MotoS3

V24_3 = [f"crdb-5f0e3c1a-202412{day}T000000Z-v24.3.1" for day in ("01", "08", "15")]
LOCK = lock_file_name("orders")
HOLD = 120  # seconds a stalled request is held at most: far longer than any phase needs


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mirror: MirrorServer) -> dict[str, str]:
    monkeypatch.setenv("CRDB_ARCHIVE_MIRROR", mirror.url)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))
    return dict(os.environ)


def write_spec(tmp_path: Path, source: str | Path, dest: str | Path, *, backups: str = "latest",
               fmt: str = "dir", retention: str = "") -> Path:
    spec = tmp_path / "job.toml"
    spec.write_text(
        f'[job]\nname = "orders"\n[source]\nuri = "{source}"\nbackups = "{backups}"\n'
        f'[destination]\nuri = "{dest}"\nformat = "{fmt}"\n'
        + (f"[retention]\n{retention}\n" if retention else ""))
    return spec


@dataclass(frozen=True)
class Stopped:
    code: int
    events: list[dict[str, object]]
    messages: list[str]  # stderr without progress lines
    err: str


def stop_run(spec: Path, env: dict[str, str], signum: signal.Signals,
             held: Callable[[float], bool], metrics: Path) -> Stopped:
    """Start ``run SPEC --json`` and send ``signum`` once ``held`` reports the phase is held."""
    process = subprocess.Popen(
        [sys.executable, "-m", "crdb_archive.cli", "run", str(spec), "--json",
         "--metrics-file", str(metrics)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        reached = held(HOLD)
        if reached:
            process.send_signal(signum)
        out, err = process.communicate(timeout=HOLD)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert reached, f"the phase was never reached:\n{out}\n{err}"
    events = [json.loads(line) for line in out.splitlines()]
    messages = [line for line in err.splitlines() if not line.startswith("{")]
    return Stopped(process.returncode, events, messages, err)


def assert_stopped_cleanly(stopped: Stopped, signum: signal.Signals, metrics: Path) -> None:
    message = f"interrupted by {signum.name}"
    assert stopped.code == 130, stopped.err
    assert "Traceback" not in stopped.err
    assert stopped.messages == [f"crdb-archive: error: {message}"]
    assert stopped.events[-1] == {"error": message, "exit_code": 130}
    # A stop is not a step that failed, and the run did not finish: no error, no done.
    kinds = [e.get("event") for e in stopped.events[:-1]]
    assert "error" not in kinds
    assert "done" not in kinds
    text = metrics.read_text()
    assert 'crdb_archive_job_exit_code{job="orders"} 130' in text
    assert 'crdb_archive_job_success{job="orders"} 0' in text
    assert 'crdb_archive_job_failures{job="orders"} 0' in text


def rerun(spec: Path, env: dict[str, str]) -> list[dict[str, object]]:
    result = run_subprocess("run", str(spec), "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    # The stopped run released its lock: nothing to take over.
    assert not [e for e in events if e["event"] == "warning" and e["code"] == "lock"]
    return events


def local_leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir() if p.name.startswith("."))


def s3_bucket_prefix(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


# --- taking the lock ------------------------------------------------------------------------------


def test_stopped_while_taking_the_lock(
    tmp_path: Path, mirror: MirrorServer, s3_proxy: FaultProxy, s3_env: MotoS3,
    env: dict[str, str],
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    bucket = s3_env.bucket()
    spec = write_spec(tmp_path, era.path, f"s3://{bucket}/jobs")
    s3_proxy.fail("PUT", rf"^/{bucket}/jobs/{LOCK}$", stall(HOLD))
    metrics = tmp_path / "m.prom"
    stopped = stop_run(spec, env, signal.SIGINT, s3_proxy.stalled.wait, metrics)
    assert_stopped_cleanly(stopped, signal.SIGINT, metrics)
    assert stopped.events[:-1] == []  # stopped before planning
    s3_proxy.release()
    assert f"jobs/{LOCK}" not in s3_env.all_keys(bucket)
    assert mirror.requests() == []

    events = rerun(spec, env)
    assert [e["bundle"] for e in events if e["event"] == "archive"] == [V24_3[2]]
    assert f"jobs/{LOCK}" not in s3_env.all_keys(bucket)


# --- planning -------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_stopped_while_planning(
    tmp_path: Path, mirror: MirrorServer, s3_proxy: FaultProxy, s3_env: MotoS3,
    env: dict[str, str], signum: signal.Signals,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    source = upload(s3_env, era.path, "backups")
    bucket, _ = s3_bucket_prefix(source)
    dest = tmp_path / "bundles"  # a local destination
    spec = write_spec(tmp_path, source, dest)
    # Selecting the backup lists the source: the stop comes while that listing hangs. It was
    # once caught as an unreadable backup, and the run went on without it.
    s3_proxy.fail("GET", rf"^/{bucket}/?$", stall(HOLD), query="list-type")
    metrics = tmp_path / "m.prom"
    stopped = stop_run(spec, env, signum, s3_proxy.stalled.wait, metrics)
    assert_stopped_cleanly(stopped, signum, metrics)
    assert stopped.events[:-1] == []  # no plan event: planning never finished
    assert local_leftovers(dest) == [LOCK]
    assert (dest / LOCK).read_text() == ""  # released
    assert [p.name for p in dest.iterdir() if not p.name.startswith(".")] == []
    assert mirror.requests() == []
    s3_proxy.release()

    events = rerun(spec, env)
    [archived] = [e for e in events if e["event"] == "archive"]
    assert verify_bundle(Path(str(archived["location"]))).ok


# --- fetching the binary --------------------------------------------------------------------------


def test_stopped_while_fetching_the_binary(
    tmp_path: Path, mirror: MirrorServer, env: dict[str, str]
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    dest = tmp_path / "bundles"
    spec = write_spec(tmp_path, era.path, dest)
    mirror.fail("cockroach-v24.3.1.linux-amd64.tgz", stall_after(1000, HOLD))
    metrics = tmp_path / "m.prom"
    stopped = stop_run(spec, env, signal.SIGTERM, mirror.stalled.wait, metrics)
    assert_stopped_cleanly(stopped, signal.SIGTERM, metrics)
    assert [e["event"] for e in stopped.events[:-1]] == ["plan"]
    assert local_leftovers(dest) == [LOCK]  # no staging area left
    assert (dest / LOCK).read_text() == ""
    assert [p.name for p in dest.iterdir() if not p.name.startswith(".")] == []
    cache = tmp_path / "cache"
    partial = [p for p in cache.rglob("*") if p.is_file() and p.name.endswith(".tgz")]
    assert partial == []  # nothing half-downloaded taken for an archive

    events = rerun(spec, env)
    [archived] = [e for e in events if e["event"] == "archive"]
    assert verify_bundle(Path(str(archived["location"]))).ok


# --- copying and uploading the payload ------------------------------------------------------------


def test_stopped_while_copying_into_a_local_tar(
    tmp_path: Path, mirror: MirrorServer, s3_proxy: FaultProxy, s3_env: MotoS3,
    env: dict[str, str],
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    source = upload(s3_env, era.path, "backups")
    bucket, _ = s3_bucket_prefix(source)
    dest = tmp_path / "bundles"
    spec = write_spec(tmp_path, source, dest, fmt="tar")
    # The tar is written front to back: the read of a backup file hangs in mid-copy.
    s3_proxy.fail("GET", rf"^/{bucket}/backups/.*\.sst$", stall(HOLD))
    metrics = tmp_path / "m.prom"
    stopped = stop_run(spec, env, signal.SIGINT, s3_proxy.stalled.wait, metrics)
    assert_stopped_cleanly(stopped, signal.SIGINT, metrics)
    assert [e["event"] for e in stopped.events[:-1]] == ["plan"]
    assert local_leftovers(dest) == [LOCK]
    assert [p.name for p in dest.iterdir() if not p.name.startswith(".")] == []
    s3_proxy.release()

    events = rerun(spec, env)
    [archived] = [e for e in events if e["event"] == "archive"]
    assert str(archived["location"]).endswith(f"{V24_3[2]}.tar")
    assert verify_bundle(Path(str(archived["location"]))).ok


def test_stopped_while_copying_into_a_local_directory(
    tmp_path: Path, mirror: MirrorServer, env: dict[str, str]
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    # Enough data that the copy is still running when its first progress line arrives.
    add_random_sst(era.path / "2024/12/15-000000.00", 96)
    dest = tmp_path / "bundles"
    spec = write_spec(tmp_path, era.path, dest)
    metrics = tmp_path / "m.prom"
    process = subprocess.Popen(
        [sys.executable, "-m", "crdb_archive.cli", "run", str(spec), "--json",
         "--metrics-file", str(metrics)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    copying = threading.Event()
    assert process.stderr is not None

    def watch() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            event = json.loads(line) if line.startswith("{") else {}
            if str(event.get("task", "")).startswith("archive ") and not event["finished"]:
                copying.set()
                break

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        reached = copying.wait(HOLD)
        if reached:
            process.send_signal(signal.SIGTERM)
        watcher.join(HOLD)
        out, err = process.communicate(timeout=HOLD)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert reached
    events = [json.loads(line) for line in out.splitlines()]
    stopped = Stopped(process.returncode, events,
                      [line for line in err.splitlines() if not line.startswith("{")], err)
    assert_stopped_cleanly(stopped, signal.SIGTERM, metrics)
    assert local_leftovers(dest) == [LOCK]
    assert [p.name for p in dest.iterdir() if not p.name.startswith(".")] == []

    events = rerun(spec, env)
    [archived] = [e for e in events if e["event"] == "archive"]
    assert verify_bundle(Path(str(archived["location"]))).ok


def test_stopped_while_uploading_a_tar(
    tmp_path: Path, mirror: MirrorServer, s3_proxy: FaultProxy, s3_env: MotoS3,
    env: dict[str, str],
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    add_random_sst(era.path / "2024/12/15-000000.00", 12)  # more than one 8 MiB part
    bucket = s3_env.bucket()
    spec = write_spec(tmp_path, era.path, f"s3://{bucket}/jobs", fmt="tar")
    s3_proxy.fail("PUT", rf"^/{bucket}/jobs/{V24_3[2]}\.tar$", stall(HOLD),
                  query="partNumber=1")
    metrics = tmp_path / "m.prom"
    stopped = stop_run(spec, env, signal.SIGTERM, s3_proxy.stalled.wait, metrics)
    assert_stopped_cleanly(stopped, signal.SIGTERM, metrics)
    assert [e["event"] for e in stopped.events[:-1]] == ["plan"]
    assert s3_env.multipart_uploads(bucket) == []  # aborted, not left to be billed
    assert s3_env.all_keys(bucket) == []  # no bundle, no record, no lock
    s3_proxy.release()

    events = rerun(spec, env)
    [verified] = [e for e in events if e["event"] == "verify"]
    assert verified["ok"] is True
    keys = sorted(s3_env.all_keys(bucket))
    assert [k for k in keys if "/.crdb-archive/" not in k] == [
        f"jobs/.crdb-archive-index/{V24_3[2]}.tar.json", f"jobs/{V24_3[2]}.tar"]
    assert [k.rsplit("/", 1)[0] for k in keys if "/.crdb-archive/" in k] == [
        f"jobs/.crdb-archive/fixity/{V24_3[2]}.tar"]
    assert s3_env.multipart_uploads(bucket) == []


# --- verifying ------------------------------------------------------------------------------------


def test_stopped_while_verifying(
    tmp_path: Path, mirror: MirrorServer, s3_proxy: FaultProxy, s3_env: MotoS3,
    env: dict[str, str],
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    bucket = s3_env.bucket()
    spec = write_spec(tmp_path, era.path, f"s3://{bucket}/jobs")
    # Only the check of a new bundle asks the store about its payload objects (one HEAD each,
    # for the checksum the store keeps).
    s3_proxy.fail("HEAD", rf"^/{bucket}/jobs/{V24_3[2]}/data/cockroach/.*\.sha256sum$",
                  stall(HOLD))
    metrics = tmp_path / "m.prom"
    stopped = stop_run(spec, env, signal.SIGINT, s3_proxy.stalled.wait, metrics)
    assert_stopped_cleanly(stopped, signal.SIGINT, metrics)
    assert [e["event"] for e in stopped.events[:-1]] == ["plan", "archive"]
    keys = s3_env.all_keys(bucket)
    assert f"jobs/{LOCK}" not in keys
    assert f"jobs/{V24_3[2]}/tagmanifest-sha256.txt" in keys  # written, then stopped
    s3_proxy.release()

    events = rerun(spec, env)
    [found] = [e for e in events if e["event"] == "archive"]
    assert found["created"] is False
    [verified] = [e for e in events if e["event"] == "verify"]
    assert verified["ok"] is True


# --- retention ------------------------------------------------------------------------------------


def test_stopped_while_deleting(
    tmp_path: Path, mirror: MirrorServer, s3_proxy: FaultProxy, s3_env: MotoS3,
    env: dict[str, str],
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    bucket = s3_env.bucket()
    dest = f"s3://{bucket}/jobs"
    rerun(write_spec(tmp_path, era.path, dest, backups="all"), env)  # three bundles
    spec = write_spec(tmp_path, era.path, dest, backups="all", retention="keep_last = 1")
    s3_proxy.fail("DELETE", rf"^/{bucket}/jobs/crdb-[^/]+/tagmanifest-sha256\.txt$",
                  stall(HOLD))
    metrics = tmp_path / "m.prom"
    stopped = stop_run(spec, env, signal.SIGTERM, s3_proxy.stalled.wait, metrics)
    assert_stopped_cleanly(stopped, signal.SIGTERM, metrics)
    kinds = [e["event"] for e in stopped.events[:-1]]
    assert kinds[kinds.index("retention"):] == ["retention", "keep"]  # inside the first delete
    keys = s3_env.all_keys(bucket)
    assert f"jobs/{LOCK}" not in keys
    markers = [k for k in keys if k.startswith("jobs/.deleting-")]
    assert len(markers) == 1
    s3_proxy.release()

    events = rerun(spec, env)
    resumed = [str(e["bundle"]) for e in events if e["event"] == "delete" and e.get("resumed")]
    deleted = [str(e["bundle"]) for e in events
               if e["event"] == "delete" and not e.get("resumed")]
    assert len(resumed) == 1  # the delete the stopped run began, finished first
    assert sorted(resumed + deleted) == V24_3[:2]
    keys = s3_env.all_keys(bucket)
    assert {k.split("/")[1] for k in keys} == {V24_3[2], ".crdb-archive"}
    # Only the kept bundle's fixity records are left: the others went with their bundles.
    assert {k.split("/")[3] for k in keys if k.split("/")[1] == ".crdb-archive"} == {V24_3[2]}
