"""Archive jobs with S3 destinations, against moto's S3 server on 127.0.0.1.

Real boto3 clients talk HTTP to the server; nothing in boto3 or botocore is patched.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from contextlib import closing
from pathlib import Path

import pytest

from crdb_archive.archive import ArchiveRequest, archive_backup
from crdb_archive.bundle.verify import verify_bundle
from crdb_archive.errors import ExitCode, JobAlreadyRunning, StorageError
from crdb_archive.jobs import Destination, StoredBundle, load_spec, run_job
from crdb_archive.jobs.lock import JobLock, lock_file_name
from crdb_archive.jobs.metrics import PREFIX
from crdb_archive.storage import open_storage
from support.backups import upload
from support.bundles import era_with_binaries, run_cli
from support.clouds import Recorder, events_of, run
from support.mirror import MirrorServer
from support.s3 import MotoS3
from support.waiting import SteppedClock, eventually

EXAMPLES = Path(__file__).resolve().parents[1] / "archive-specs" / "examples"
V24_3_BUNDLES = [f"crdb-5f0e3c1a-202412{day}T000000Z-v24.3.1" for day in ("01", "08", "15")]
FULLS = ["2024/12/01-000000.00", "2024/12/08-000000.00", "2024/12/15-000000.00"]


pytestmark = pytest.mark.usefixtures("mirrored")


def write_spec(tmp_path: Path, source: Path | str, dest: str, *, backups: str = "all",
               destination: str = "", retention: str = "", name: str = "job.toml") -> Path:
    spec = tmp_path / name
    spec.write_text(
        f'[job]\nname = "orders"\n[source]\nuri = "{source}"\nbackups = "{backups}"\n'
        f'[destination]\nuri = "{dest}"\n{destination}\n'
        + (f"[retention]\n{retention}\n" if retention else ""))
    return spec




# --- the example as it is ----------------------------------------------------------------------


def test_weekly_deep_archive_example_runs_as_it_is(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    s3_env: MotoS3, monkeypatch: pytest.MonkeyPatch,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    bucket = s3_env.bucket(object_lock=True)
    monkeypatch.setenv("CRDB_BACKUPS", str(era.path))
    monkeypatch.setenv("ARCHIVE_BUCKET", bucket)
    metrics = tmp_path / "weekly.prom"
    example = str(EXAMPLES / "weekly-s3-deep-archive.toml")

    first = run_cli(capsys, "run", example, "--json", "--metrics-file", str(metrics))
    assert first.code == 0, first.out + first.err
    events = events_of(first.out)
    plan = next(e for e in events if e["event"] == "plan")
    # Three full backups, all in December 2024. The newest one's chain is still open
    # (incrementals = "closed"); of the two closed ones, keep_monthly and keep_yearly keep the
    # newer, archived once with its whole chain.
    assert plan["open_chains"] == ["2024/12/15-000000.00"]
    to_archive = plan["to_archive"]
    assert isinstance(to_archive, list)
    assert len(to_archive) == 1
    name = str(to_archive[0])
    assert name == f"{V24_3_BUNDLES[1]}-inc3-20241208T180000Z"
    assert plan["skipped"] == [f"{V24_3_BUNDLES[0]}-inc3-20241201T180000Z"]
    lock = plan["object_lock"]
    assert isinstance(lock, dict)
    assert (lock["mode"], lock["bundles"]) == ("COMPLIANCE", 1)
    written = next(e for e in events if e["event"] == "archive")
    assert (written["created"], written["location"]) == (True, f"s3://{bucket}/orders/{name}.tar")
    # DEEP_ARCHIVE cannot be read back without a restore (moto refuses GetObject as S3 does),
    # and need not be: the store's checksum of the upload confirms every byte of the new tar.
    verify = next(e for e in events if e["event"] == "verify")
    assert (verify["ok"], verify["mode"], verify["confirmed"]) == (
        True, "store-checksums", "store-checksums")
    assert (verify["objects"], verify["by_store"], verify["read_back"]) == (1, 1, [])
    # Its tag files, at its end, cannot be read before a restore.
    assert verify["tag_files_read"] is False
    assert "archive storage class" in str(verify["tag_files_unread"])
    assert not [e for e in events if e["event"] == "warning" and e["code"] == "cold_storage"]

    records = check_deep_archive_objects(s3_env, bucket, name)
    text = metrics.read_text()
    assert f'{PREFIX}success{{job="weekly-orders-deep-archive"}} 1' in text
    assert f'{PREFIX}bundles_written{{job="weekly-orders-deep-archive"}} 1' in text

    mirror.clear_log()
    check_second_run_finds_it(capsys, example, metrics, mirror, s3_env, bucket, name, records)


def check_deep_archive_objects(s3_env: MotoS3, bucket: str, name: str) -> list[str]:
    """The tar and its job record under a 10-year COMPLIANCE lock, the tar in DEEP_ARCHIVE,
    and one limited fixity record; returns the fixity records' keys."""
    keys = sorted(s3_env.all_keys(bucket))
    assert [k for k in keys if "/.crdb-archive/" not in k] == [
        f"orders/.crdb-archive-index/{name}.tar.json", f"orders/{name}.tar"]
    # One fixity record of the run's check: the whole tar, confirmed by the store.
    records = [k for k in keys if "/.crdb-archive/" in k]
    assert len(records) == 1
    assert records[0].startswith(f"orders/.crdb-archive/fixity/{name}.tar/")
    assert "-ok-" in records[0]
    with closing(s3_env.client()) as client:
        head = client.head_object(Bucket=bucket, Key=f"orders/{name}.tar")
        assert head["StorageClass"] == "DEEP_ARCHIVE"
        assert head["ObjectLockMode"] == "COMPLIANCE"
        years = (head["ObjectLockRetainUntilDate"] - dt.datetime.now(dt.UTC)).days / 365
        assert 9.9 < years < 10.1
        record = client.head_object(Bucket=bucket,
                                    Key=f"orders/.crdb-archive-index/{name}.tar.json")
        assert record.get("StorageClass", "STANDARD") == "STANDARD"
        assert record["ObjectLockRetainUntilDate"] == head["ObjectLockRetainUntilDate"]
    return records


def check_second_run_finds_it(capsys: pytest.CaptureFixture[str], example: str, metrics: Path,
                              mirror: MirrorServer, s3_env: MotoS3, bucket: str, name: str,
                              records: list[str]) -> None:
    """A second run finds the bundle, writes and downloads nothing, and keeps it locked."""
    second = run_cli(capsys, "run", example, "--json", "--metrics-file", str(metrics))
    assert second.code == 0, second.out + second.err
    again = events_of(second.out)
    assert again[-1]["bundles_written"] == 0
    assert again[-1]["bundles_deleted"] == 0
    found = next(e for e in again if e["event"] == "archive")
    assert (found["bundle"], found["created"]) == (name, False)
    check = next(e for e in again if e["event"] == "verify")
    assert check["ok"] is True
    assert "DEEP_ARCHIVE" in str(check["limited"])
    codes = {str(e["code"]) for e in again if e["event"] == "warning"}
    assert not codes & {"cold_storage", "unreadable_bundle", "lock", "incomplete_bundle"}
    reasons = next(e for e in again if e["event"] == "keep")["reasons"]
    assert isinstance(reasons, list)
    assert any(str(r).startswith("object lock until") for r in reasons)
    assert mirror.requests() == []
    # A quick check of a bundle found already there leaves no record.
    assert sorted(s3_env.all_keys(bucket)) == sorted([
        f"orders/.crdb-archive-index/{name}.tar.json", f"orders/{name}.tar", *records])


def test_backups_read_from_s3_into_s3(
    tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    source = upload(s3_env, era.path, "cluster/orders")
    bucket = s3_env.bucket()
    # The source as CockroachDB's BACKUP INTO takes it, with parameters; the job recognises
    # its bundles by the source as archive records it, without them.
    spec = write_spec(tmp_path, f"{source}?AWS_REGION=us-east-1",
                      f"s3://{bucket}/bundles", destination='format = "dir"',
                      retention="keep_last = 2")
    report, events = run(spec)
    assert report.exit_code == ExitCode.OK, report.failures
    assert report.written == V24_3_BUNDLES[1:]
    assert [v["mode"] for v in events.of("verify")] == ["store-checksums"] * 2
    assert events.of("plan")[0]["skipped"] == V24_3_BUNDLES[:1]
    assert verify_bundle(f"s3://{bucket}/bundles/{V24_3_BUNDLES[2]}").ok

    mirror.clear_log()
    report, events = run(spec)
    assert report.exit_code == ExitCode.OK, report.failures
    assert (report.written, report.deleted) == ([], [])
    assert [k["bundle"] for k in events.of("keep")] == V24_3_BUNDLES[:0:-1]
    assert mirror.requests() == []


# --- retention on S3 -----------------------------------------------------------------------


class ForgetfulS3Destination(Destination):
    """Reports no Object Lock on its bundles, so that only S3 itself stands in the way."""

    def bundles(self) -> list[StoredBundle]:
        return [dataclasses.replace(b, retain_until=None) for b in super().bundles()]


@pytest.mark.parametrize("fmt", ["dir", "tar"])
def test_retention_deletes_what_the_rules_say_and_never_a_locked_bundle(
    tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3,
    monkeypatch: pytest.MonkeyPatch, fmt: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    bucket = s3_env.bucket(object_lock=True)
    dest = f"s3://{bucket}/jobs"
    # The endpoint from the spec this time, not from the environment.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    endpoint = f'endpoint_url = "{s3_env.endpoint_url}"\nformat = "{fmt}"\n'
    locked = f'{endpoint}[destination.object_lock]\nmode = "GOVERNANCE"\ndays = 30\n'

    report, events = run(write_spec(tmp_path, era.path, dest, backups=FULLS[0],
                                    destination=locked))
    assert report.exit_code == ExitCode.OK, report.failures
    report, events = run(write_spec(tmp_path, era.path, dest, destination=endpoint))
    assert report.exit_code == ExitCode.OK, report.failures
    assert report.written == V24_3_BUNDLES[1:]
    assert [v["mode"] for v in events.of("verify")] == ["fast", *["store-checksums"] * 2]

    spec = write_spec(tmp_path, era.path, dest, destination=endpoint, retention="keep_last = 1")
    report, events = run(spec, dry_run=True)
    assert [d["bundle"] for d in events.of("delete")] == [V24_3_BUNDLES[1]]
    report, events = run(spec)
    assert report.exit_code == ExitCode.OK, report.failures
    assert report.deleted == [V24_3_BUNDLES[1]]
    kept = {k["bundle"]: k["reasons"] for k in events.of("keep")}
    assert kept[V24_3_BUNDLES[2]] == ["keep_last"]
    reasons = kept[V24_3_BUNDLES[0]]
    assert isinstance(reasons, list)
    assert len(reasons) == 1
    assert reasons[0].startswith("object lock until")
    keys = s3_env.all_keys(bucket)
    assert not [k for k in keys if V24_3_BUNDLES[1] in k]
    assert [k for k in keys if V24_3_BUNDLES[0] in k]
    assert [k for k in keys if V24_3_BUNDLES[2] in k]
    assert f"jobs/{lock_file_name('orders')}" not in keys

    # Were the lock forgotten, S3 (and the storage layer before it) still refuses the delete;
    # that is reported, and the rest of retention goes on.
    spec = write_spec(tmp_path, era.path, dest, destination=endpoint, retention="keep_days = 1",
                      name="none.toml")
    forgetful = ForgetfulS3Destination(open_storage(dest, endpoint_url=s3_env.endpoint_url),
                                       dest)
    try:
        report, events = run(spec, destination=forgetful)
    finally:
        forgetful.close()
    assert report.exit_code == ExitCode.WORLD
    assert report.deleted == [V24_3_BUNDLES[2]]
    failed = [e for e in events.of("error") if e["step"] == "delete"]
    assert [e["bundle"] for e in failed] == [V24_3_BUNDLES[0]]
    assert "Object Lock" in str(failed[0]["message"])
    remaining = s3_env.all_keys(bucket)
    assert [k for k in remaining if V24_3_BUNDLES[0] in k]
    assert not [k for k in remaining if V24_3_BUNDLES[2] in k]
    if fmt == "dir":  # whole: the tag manifest is still there
        assert f"jobs/{V24_3_BUNDLES[0]}/tagmanifest-sha256.txt" in remaining


def test_dry_run_reports_a_bucket_without_object_lock_and_writes_nothing(
    tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    bucket = s3_env.bucket()
    spec = write_spec(tmp_path, era.path, f"s3://{bucket}/x", destination=(
        '[destination.object_lock]\nmode = "COMPLIANCE"\ndays = 10\n'))
    mirror.clear_log()
    for dry_run in (True, False):
        report, events = run(spec, dry_run=dry_run)
        assert report.exit_code == ExitCode.BAD_INPUT
        [error] = events.of("error")
        assert f"bucket {bucket} has no Object Lock" in str(error["message"])
        assert events.of("plan") == []
    assert s3_env.all_keys(bucket) == []
    assert mirror.requests() == []


# --- leftovers -----------------------------------------------------------------------------


def test_interrupted_delete_is_finished_and_an_interrupted_upload_only_reported(
    tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    bucket = s3_env.bucket()
    dest = f"s3://{bucket}/d"
    spec = write_spec(tmp_path, era.path, dest, destination='format = "dir"')
    report, _ = run(spec)
    assert report.written == V24_3_BUNDLES
    with closing(s3_env.client()) as client:
        # A delete that stopped after the tag manifest and some objects went.
        doomed = V24_3_BUNDLES[0]
        client.put_object(Bucket=bucket, Key=f"d/.deleting-{doomed}", Body=b"")
        client.delete_object(Bucket=bucket, Key=f"d/{doomed}/tagmanifest-sha256.txt")
        client.delete_object(Bucket=bucket, Key=f"d/{doomed}/bagit.txt")
        # An upload that stopped (or is still going) for a bundle this job does not select.
        client.put_object(Bucket=bucket, Key="d/crdb-elsewhere/data/backup/x.sst", Body=b"x")
    report, events = run(spec)
    assert report.exit_code == ExitCode.OK, report.failures
    assert events.of("delete") == [{"bundle": doomed, "resumed": True, "dry_run": False}]
    [incomplete] = events.warnings("incomplete_bundle")
    assert incomplete["bundle"] == "crdb-elsewhere"
    keys = s3_env.all_keys(bucket)
    assert f"d/.deleting-{doomed}" not in keys
    assert "d/crdb-elsewhere/data/backup/x.sst" in keys
    # The backup of the finished delete is archived again, whole: it is selected and had no
    # bundle left.
    assert report.written == [doomed]
    assert {f"d/{doomed}/bagit.txt", f"d/{doomed}/tagmanifest-sha256.txt"} <= set(keys)
    assert verify_bundle(f"{dest}/{doomed}").ok


def test_tar_without_job_record_is_recorded_by_the_next_run(
    tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    bucket = s3_env.bucket()
    dest = f"s3://{bucket}/t"
    result = archive_backup(ArchiveRequest(source=str(era.path), dest=dest, format="tar"))
    assert result.name == V24_3_BUNDLES[2]
    spec = write_spec(tmp_path, era.path, dest, backups="latest", retention="keep_last = 5")
    report, events = run(spec)
    assert report.exit_code == ExitCode.OK, report.failures
    assert report.written == []
    [unreadable] = events.warnings("unreadable_bundle")
    assert "no job record" in str(unreadable["message"])
    assert [v["mode"] for v in events.of("verify")] == ["fast"]
    assert f"t/.crdb-archive-index/{result.name}.tar.json" in s3_env.all_keys(bucket)
    assert [k["bundle"] for k in events.of("keep")] == [result.name]

    report, events = run(spec)
    assert report.exit_code == ExitCode.OK
    assert events.of("warning") == []


# --- the lock ------------------------------------------------------------------------------


def put_lock(s3: MotoS3, bucket: str, key: str, expires: dt.datetime) -> None:
    record = {"job": "orders", "owner": "someone-else", "pid": 4194304, "host": "old-node",
              "started": "2024-12-15T02:30:00+00:00", "expires": expires.isoformat()}
    with closing(s3.client()) as client:
        client.put_object(Bucket=bucket, Key=key, Body=json.dumps(record).encode())


def test_a_held_lock_blocks_the_run_and_an_expired_one_is_taken_over(
    tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    bucket = s3_env.bucket()
    spec = write_spec(tmp_path, era.path, f"s3://{bucket}/l", backups="latest")
    key = f"l/{lock_file_name('orders')}"
    put_lock(s3_env, bucket, key, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30))
    metrics = tmp_path / "m.prom"
    recorder = Recorder()
    report = run_job(load_spec(spec), on_event=recorder, metrics_file=metrics)
    assert report.exit_code == ExitCode.WORLD
    [error] = recorder.of("error")
    assert error["step"] == "lock"
    assert "job orders is already running (pid 4194304 on host old-node since " \
           "2024-12-15T02:30:00+00:00; the lock expires" in str(error["message"])
    assert s3_env.all_keys(bucket) == [key]
    assert not metrics.exists()

    put_lock(s3_env, bucket, key, dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    report, events = run(spec)
    assert report.exit_code == ExitCode.OK, report.failures
    [taken] = events.warnings("lock")
    assert "pid 4194304 on host old-node" in str(taken["message"])
    assert key not in s3_env.all_keys(bucket)  # released at the end


def stamp(when: dt.datetime) -> str:
    """A lock record's expiry: UTC to the second, with a Z."""
    return when.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_lock_is_exclusive_refreshed_and_never_released_for_another_run(
    s3_env: MotoS3,
) -> None:
    bucket = s3_env.bucket(versioned=True)
    storage = open_storage(f"s3://{bucket}/p")
    key = f"p/{lock_file_name('orders')}"
    ttl, refresh = dt.timedelta(seconds=30), dt.timedelta(milliseconds=20)
    clock = SteppedClock()

    def record() -> dict[str, str]:
        with closing(s3_env.client()) as client:
            found: dict[str, str] = json.loads(
                client.get_object(Bucket=bucket, Key=key)["Body"].read())
        return found

    first = JobLock(storage, "orders", ttl=ttl, refresh_every=refresh, clock=clock)
    with first:
        with pytest.raises(JobAlreadyRunning, match=r"job orders is already running"), \
                JobLock(storage, "orders"):
            pass
        before = record()
        assert before["expires"] == stamp(clock() + ttl)
        # An hour on: the refresher writes the new expiry, measured from the moved clock.
        later = clock.advance(dt.timedelta(hours=1))
        eventually(lambda: record()["expires"] == stamp(later + ttl), "the refreshed expiry")
        assert record()["owner"] == before["owner"] == first.owner
        assert first.lost is None
    assert key not in s3_env.all_keys(bucket)
    with JobLock(storage, "orders") as second:  # free again
        assert second.taken_over is None

    lost = JobLock(storage, "orders", ttl=ttl, refresh_every=refresh, clock=clock)
    lost.__enter__()
    # Another run takes the lock over (as after an expiry this run did not notice); the
    # refresher's next conditional write fails and tells the run so.
    put_lock(s3_env, bucket, key, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    eventually(lambda: lost.lost is not None, "the refresher noticing the lost lock")
    assert "another run replaced it" in str(lost.lost)
    with pytest.raises(StorageError, match="was lost during the run"):
        lost.__exit__(None, None, None)
    assert record()["owner"] == "someone-else"  # not deleted by the run that lost it
