"""The main job with S3 destinations, against moto's S3 server on 127.0.0.1.

Real boto3 clients talk HTTP to the server; nothing in boto3 or botocore is patched.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
from contextlib import closing
from pathlib import Path

import botocore.exceptions
import pytest

from crdb_archive.bundle.verify import verify_bundle
from support.backups import add_random_sst, upload
from support.bundles import era_with_binaries, run_cli
from support.cli import signal_while_archiving
from support.clouds import (
    archive_to,
    assert_read_like_local,
    assert_restorable,
    assert_stopped_cleanly,
    assert_valid_bag,
)
from support.mirror import MirrorServer
from support.s3 import MotoS3

pytestmark = pytest.mark.usefixtures("isolated")


@pytest.mark.parametrize("fmt", ["dir", "tar"])
def test_local_to_s3_verify_binary_and_rerun(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    s3_env: MotoS3, fmt: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    bucket = s3_env.bucket()
    dest = f"s3://{bucket}/archive"
    result = archive_to(capsys, str(era.path), dest, mirror.url, "--format", fmt,
                        "--with-incrementals")
    bundle = str(result["bundle"])
    assert bundle.startswith(f"s3://{bucket}/archive/crdb-")
    assert bundle.endswith(".tar") == (fmt == "tar")
    keys = s3_env.all_keys(bucket)
    if fmt == "tar":
        assert keys == [f"archive/{result['name']}.tar"]
    else:
        assert f"archive/{result['name']}/tagmanifest-sha256.txt" in keys
    assert s3_env.multipart_uploads(bucket) == []

    assert_restorable(capsys, bundle, tmp_path, result["files"])

    again = archive_to(capsys, str(era.path), dest, mirror.url, "--format", fmt,
                       "--with-incrementals")
    assert again["created"] is False
    assert s3_env.all_keys(bucket) == keys


def test_directory_form_from_s3_passes_bagit_after_download(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    s3_env: MotoS3,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    bucket = s3_env.bucket()
    result = archive_to(capsys, str(era.path), f"s3://{bucket}/a", mirror.url)
    local = tmp_path / "copy" / str(result["name"])
    assert_valid_bag(s3_env.object_bytes(bucket), local)


def test_storage_class_and_object_lock(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    s3_env: MotoS3,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    bucket = s3_env.bucket(object_lock=True)
    result = archive_to(capsys, str(era.path), f"s3://{bucket}/locked", mirror.url,
                        "--storage-class", "STANDARD_IA", "--object-lock-mode", "COMPLIANCE",
                        "--object-lock-days", "30")
    name = str(result["name"])
    with closing(s3_env.client()) as client:
        payload_key = next(k for k in s3_env.all_keys(bucket) if "/data/backup/" in k)
        head = client.head_object(Bucket=bucket, Key=payload_key)
        assert head["StorageClass"] == "STANDARD_IA"
        assert head["ObjectLockMode"] == "COMPLIANCE"
        retain = head["ObjectLockRetainUntilDate"]
        assert dt.timedelta(days=29) < retain - dt.datetime.now(dt.UTC) < dt.timedelta(days=31)
        tag = client.head_object(Bucket=bucket, Key=f"locked/{name}/tagmanifest-sha256.txt")
        assert tag.get("StorageClass", "STANDARD") == "STANDARD"
        assert tag["ObjectLockMode"] == "COMPLIANCE"
        with pytest.raises(botocore.exceptions.ClientError):
            client.delete_object(Bucket=bucket, Key=payload_key, VersionId=head["VersionId"])
    assert verify_bundle(str(result["bundle"])).ok


def test_object_lock_on_bucket_without_it_fails_before_upload(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    s3_env: MotoS3,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    bucket = s3_env.bucket()
    mirror.clear_log()
    result = run_cli(capsys, "archive", str(era.path), "--dest", f"s3://{bucket}/x",
                     "--mirror", mirror.url, "--object-lock-mode", "GOVERNANCE",
                     "--object-lock-days", "10")
    assert result.code == 2
    assert "Object Lock" in result.err
    assert s3_env.all_keys(bucket) == []
    assert mirror.requests() == []


def test_local_dest_refuses_storage_options(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    result = run_cli(capsys, "archive", str(era.path), "--dest", str(tmp_path / "b"),
                     "--mirror", mirror.url, "--storage-class", "GLACIER")
    assert result.code == 2
    assert "storage class" in result.err


@pytest.mark.parametrize("fmt", ["dir", "tar"])
def test_corruption_on_s3_detected(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    s3_env: MotoS3, fmt: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    bucket = s3_env.bucket()
    result = archive_to(capsys, str(era.path), f"s3://{bucket}/c", mirror.url, "--format", fmt)
    with closing(s3_env.client()) as client:
        if fmt == "tar":
            key = f"c/{result['name']}.tar"
            body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
            body[2048] ^= 0xFF  # inside the first payload member
            client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
        else:
            key = next(k for k in s3_env.all_keys(bucket) if k.endswith(".sst"))
            client.put_object(Bucket=bucket, Key=key, Body=b"overwritten")
    report = run_cli(capsys, "verify", str(result["bundle"]), "--json")
    assert report.code == 1
    problems = report.json()["problems"]
    assert isinstance(problems, list)
    assert problems


def test_incomplete_directory_bundle_is_reported(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    s3_env: MotoS3,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    bucket = s3_env.bucket()
    result = archive_to(capsys, str(era.path), f"s3://{bucket}/i", mirror.url)
    with closing(s3_env.client()) as client:
        client.delete_object(Bucket=bucket, Key=f"i/{result['name']}/tagmanifest-sha256.txt")
    report = run_cli(capsys, "verify", str(result["bundle"]), "--json")
    assert report.code == 1
    problems = report.json()["problems"]
    assert isinstance(problems, list)
    assert {"path": "tagmanifest-sha256.txt", "kind": "missing"} in [
        {"path": p["path"], "kind": p["kind"]} for p in problems]
    # A re-run finishes the work: the incomplete bundle is replaced by a complete one.
    again = archive_to(capsys, str(era.path), f"s3://{bucket}/i", mirror.url)
    assert again["created"] is True
    assert verify_bundle(str(again["bundle"])).ok


def test_secrets_in_s3_uri_never_stored_or_printed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    bucket = moto_s3.bucket()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    secret = "sekrit-value-9d8c7b6a5f4e"
    dest = (f"s3://{bucket}/s?AWS_ACCESS_KEY_ID=testing&AWS_SECRET_ACCESS_KEY={secret}"
            f"&AWS_REGION=us-east-1&AWS_ENDPOINT={moto_s3.endpoint_url}")
    result = run_cli(capsys, "archive", str(era.path), "--dest", dest, "--mirror", mirror.url,
                     "--json")
    assert result.code == 0, result.err
    outputs = result.out + result.err
    bundle_uri = dest.replace("/s?", f"/s/{result.json()['name']}?")
    for command in (["verify", bundle_uri, "--json"], ["inspect", bundle_uri, "--json"]):
        done = run_cli(capsys, *command)
        assert done.code == 0, done.err
        outputs += done.out + done.err
    assert secret not in outputs
    for key, data in moto_s3.object_bytes(bucket):
        assert secret.encode() not in data, key


@pytest.mark.parametrize("fmt", ["tar", "dir"])
def test_interrupted_upload_leaves_no_complete_looking_bundle(
    tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3, fmt: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    add_random_sst(era.path, 40)
    bucket = s3_env.bucket()
    stopped = signal_while_archiving(
        ["archive", str(era.path), "--dest", f"s3://{bucket}/t", "--mirror", mirror.url,
         "--format", fmt], signal.SIGTERM, env=dict(os.environ))
    assert_stopped_cleanly(stopped, s3_env.all_keys(bucket), fmt)
    assert s3_env.multipart_uploads(bucket) == []


@pytest.mark.parametrize(("dest_kind", "fmt"), [("s3", "dir"), ("s3", "tar"), ("local", "dir")])
def test_backup_in_s3_archived_without_local_copy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    s3_env: MotoS3, dest_kind: str, fmt: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    source = upload(s3_env, era.path, "backups/orders")
    dest = f"s3://{s3_env.bucket()}/archive" if dest_kind == "s3" else str(tmp_path / "out")
    result = archive_to(capsys, source, dest, mirror.url, "--format", fmt,
                        "--with-incrementals")
    assert result["version"] == "v24.3.1"
    local = archive_to(capsys, str(era.path), str(tmp_path / "from-local"), mirror.url,
                       "--format", fmt, "--with-incrementals")
    assert_read_like_local(capsys, result, local, "s3")


def test_bundle_in_deep_archive_needs_restore(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    s3_env: MotoS3,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    bucket = s3_env.bucket()
    result = archive_to(capsys, str(era.path), f"s3://{bucket}/cold", mirror.url,
                        "--storage-class", "DEEP_ARCHIVE")
    bundle = str(result["bundle"])
    # The tag files stay readable: a quick check and inspect work without a restore.
    assert run_cli(capsys, "verify", bundle, "--fast").code == 0
    assert run_cli(capsys, "inspect", bundle, "--json").code == 0
    full = run_cli(capsys, "verify", bundle)
    assert full.code == 3
    assert "DEEP_ARCHIVE" in full.err
    assert "restore-request" in full.err
    assert full.err.count("\n") == 1
    refused = run_cli(capsys, "binary", bundle, "--to", str(tmp_path / "out"))
    assert refused.code == 3
    requested = run_cli(capsys, "restore-request", bundle, "--days", "2", "--json")
    assert requested.code in (0, 1), requested.err
    # moto completes restores at once: the bundle can now be read whole.
    again = run_cli(capsys, "restore-request", bundle, "--days", "2", "--json")
    assert again.code == 0, again.out
    assert run_cli(capsys, "verify", bundle).code == 0
