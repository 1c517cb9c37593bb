"""The main commands with Google Cloud Storage, against fake-gcs-server on 127.0.0.1.

The real google-cloud-storage SDK talks HTTP to the server; nothing in it is patched. Backups
are read from and bundles written to gs:// locations, and from one cloud to another (moto's S3).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

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
from support.faultproxy import FaultProxy, stall
from support.gcs import FakeGcs, open_upload_sessions, upload_id
from support.mirror import MirrorServer
from support.s3 import MotoS3

pytestmark = pytest.mark.usefixtures("isolated")


@pytest.mark.parametrize("fmt", ["dir", "tar"])
def test_local_to_gs_verify_inspect_binary_and_rerun(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs, fmt: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    bucket = gcs_env.bucket()
    dest = f"gs://{bucket}/archive"
    extra = ("--storage-class", "ARCHIVE") if fmt == "tar" else ()
    result = archive_to(capsys, str(era.path), dest, mirror.url, "--format", fmt,
                        "--with-incrementals", *extra)
    bundle = str(result["bundle"])
    assert bundle.startswith(f"gs://{bucket}/archive/crdb-")
    assert bundle.endswith(".tar") == (fmt == "tar")
    keys = gcs_env.keys(bucket)
    if fmt == "tar":
        assert keys == [f"archive/{result['name']}.tar"]
        # Cloud Storage reads ARCHIVE objects as they are: no restore stands in the way.
        assert gcs_env.blob(bucket, keys[0]).storage_class == "ARCHIVE"
    else:
        assert f"archive/{result['name']}/tagmanifest-sha256.txt" in keys

    assert_restorable(capsys, bundle, tmp_path, result["files"])

    before = gcs_env.generations(bucket)
    again = archive_to(capsys, str(era.path), dest, mirror.url, "--format", fmt,
                       "--with-incrementals", *extra)
    assert again["created"] is False
    assert gcs_env.generations(bucket) == before  # nothing was written again


def test_directory_form_passes_bagit_after_download(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    bucket = gcs_env.bucket()
    result = archive_to(capsys, str(era.path), f"gs://{bucket}/a", mirror.url,
                        "--storage-class", "COLDLINE")
    name = str(result["name"])
    local = tmp_path / "copy" / name
    assert_valid_bag(gcs_env.object_bytes(bucket), local)
    # The payload takes the class asked for; the tag files stay in the default class.
    payload = next(k for k in gcs_env.keys(bucket) if "/data/backup/" in k)
    assert gcs_env.blob(bucket, payload).storage_class == "COLDLINE"
    tag = gcs_env.blob(bucket, f"a/{name}/tagmanifest-sha256.txt")
    assert tag.storage_class == "STANDARD"


@pytest.mark.parametrize(("dest_kind", "fmt"), [("local", "dir"), ("local", "tar"),
                                                 ("gs", "tar")])
def test_backup_in_gs_archived_without_local_copy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs, dest_kind: str, fmt: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    source = gcs_env.upload_tree(era.path, gcs_env.bucket(), "backups/orders")
    dest = f"gs://{gcs_env.bucket()}/archive" if dest_kind == "gs" else str(tmp_path / "out")
    result = archive_to(capsys, source, dest, mirror.url, "--format", fmt,
                        "--with-incrementals")
    assert result["version"] == "v24.3.1"
    local = archive_to(capsys, str(era.path), str(tmp_path / "from-local"), mirror.url,
                       "--format", fmt, "--with-incrementals")
    assert_read_like_local(capsys, result, local, "gs")
    inspected = run_cli(capsys, "inspect", source, "--json")
    assert inspected.code == 0, inspected.err
    assert inspected.json()["cluster_version"] == era.cluster_version


@pytest.mark.parametrize("direction", ["s3-to-gs", "gs-to-s3"])
def test_archive_from_one_cloud_to_another(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs, s3_env: MotoS3, direction: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    if direction == "s3-to-gs":
        source = upload(s3_env, era.path, "backups/orders")
        dest = f"gs://{gcs_env.bucket()}/archive"
    else:
        source = gcs_env.upload_tree(era.path, gcs_env.bucket(), "backups/orders")
        dest = f"s3://{s3_env.bucket()}/archive"
    for fmt in ("dir", "tar"):
        result = archive_to(capsys, source, dest, mirror.url, "--format", fmt,
                            "--with-incrementals")
        assert str(result["bundle"]).startswith(dest)
        report = run_cli(capsys, "verify", str(result["bundle"]), "--json")
        assert report.code == 0, report.out
        again = archive_to(capsys, source, dest, mirror.url, "--format", fmt,
                           "--with-incrementals")
        assert again["created"] is False


def test_one_endpoint_for_two_clouds_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs, s3_env: MotoS3,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    source = upload(s3_env, era.path, "backups/orders")
    bucket = gcs_env.bucket()
    mirror.clear_log()
    result = run_cli(capsys, "archive", source, "--dest", f"gs://{bucket}/x", "--mirror",
                     mirror.url, "--endpoint-url", s3_env.endpoint_url)
    assert result.code == 2
    assert "--endpoint-url names the endpoint of one remote location" in result.err
    assert "ENDPOINT=" in result.err
    assert result.err.count("\n") == 1
    assert gcs_env.keys(bucket) == []
    assert mirror.requests() == []


def test_endpoint_url_serves_the_one_remote_location(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs, monkeypatch: pytest.MonkeyPatch,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    bucket = gcs_env.bucket()
    result = archive_to(capsys, str(era.path), f"gs://{bucket}/e", mirror.url,
                        "--endpoint-url", gcs_env.endpoint_url)
    verified = run_cli(capsys, "verify", str(result["bundle"]), "--endpoint-url",
                       gcs_env.endpoint_url)
    assert verified.code == 0, verified.err
    # ENDPOINT= in the URI does the same, and is what a second cloud needs.
    uri = f"gs://{bucket}/e/{result['name']}?ENDPOINT={gcs_env.endpoint_url}"
    assert run_cli(capsys, "verify", uri).code == 0


@pytest.mark.parametrize("fmt", ["dir", "tar"])
def test_damage_in_place_is_detected(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs, fmt: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    bucket = gcs_env.bucket()
    result = archive_to(capsys, str(era.path), f"gs://{bucket}/c", mirror.url, "--format", fmt)
    if fmt == "tar":
        key = f"c/{result['name']}.tar"
        gcs_env.damage(bucket, key, 2048)  # inside the first payload member
    else:
        key = next(k for k in gcs_env.keys(bucket) if k.endswith(".sst"))
        gcs_env.damage(bucket, key, 10)
    report = run_cli(capsys, "verify", str(result["bundle"]), "--json")
    assert report.code == 1, report.out
    problems = report.json()["problems"]
    assert isinstance(problems, list)
    assert problems
    if fmt == "dir":
        assert {"path": key.split("/", 2)[2], "kind": "digest"} in [
            {"path": p["path"], "kind": p["kind"]} for p in problems]


def test_restore_request_says_no_restore_is_needed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    bucket = gcs_env.bucket()
    for fmt in ("dir", "tar"):
        result = archive_to(capsys, str(era.path), f"gs://{bucket}/{fmt}", mirror.url,
                            "--format", fmt, "--storage-class", "ARCHIVE")
        asked = run_cli(capsys, "restore-request", str(result["bundle"]), "--days", "3")
        assert asked.code == 0, asked.err
        assert "no restore needed" in asked.out
        assert asked.out.count("\n") == 1
        reported = run_cli(capsys, "restore-request", str(result["bundle"]), "--days", "3",
                           "--json").json()
        assert (reported["cold_storage"], reported["requested"], reported["complete"]) == (
            False, 0, True)
        assert run_cli(capsys, "verify", str(result["bundle"])).code == 0


def test_unknown_storage_class_is_refused_before_anything(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    bucket = gcs_env.bucket()
    mirror.clear_log()
    result = run_cli(capsys, "archive", str(era.path), "--dest", f"gs://{bucket}/x",
                     "--mirror", mirror.url, "--storage-class", "DEEP_ARCHIVE")
    assert result.code == 2
    assert f"bucket {bucket}" in result.err
    assert "no storage class 'DEEP_ARCHIVE'" in result.err
    assert result.err.count("\n") == 1
    assert gcs_env.keys(bucket) == []
    assert mirror.requests() == []


def test_lock_on_a_bucket_without_retention_is_refused_before_anything(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    bucket = gcs_env.bucket()
    mirror.clear_log()
    result = run_cli(capsys, "archive", str(era.path), "--dest", f"gs://{bucket}/x",
                     "--mirror", mirror.url, "--object-lock-mode", "COMPLIANCE",
                     "--object-lock-days", "30")
    assert result.code == 2
    assert f"bucket {bucket} has no object retention" in result.err
    assert result.err.count("\n") == 1
    assert gcs_env.keys(bucket) == []
    assert mirror.requests() == []


@pytest.mark.parametrize("fmt", ["tar", "dir"])
def test_interrupted_upload_leaves_no_complete_looking_bundle(
    tmp_path: Path, mirror: MirrorServer, gcs_env: FakeGcs, fmt: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    add_random_sst(era.path, 40)
    bucket = gcs_env.bucket()
    stopped = signal_while_archiving(
        ["archive", str(era.path), "--dest", f"gs://{bucket}/t", "--mirror", mirror.url,
         "--format", fmt], signal.SIGTERM, env=dict(os.environ))
    assert_stopped_cleanly(stopped, gcs_env.keys(bucket), fmt)


def test_stop_during_a_chunk_cancels_the_upload_session(
    tmp_path: Path, mirror: MirrorServer, gcs_env: FakeGcs, gcs_proxy: FaultProxy,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    add_random_sst(era.path, 20)
    bucket = gcs_env.bucket()
    # The first chunk of the resumable upload is held until the process stops.
    gcs_proxy.fail("PUT", r"^/upload/", stall(60), query="upload_id=")
    process = subprocess.Popen(
        [sys.executable, "-m", "crdb_archive.cli", "archive", str(era.path), "--dest",
         f"gs://{bucket}/t", "--mirror", mirror.url, "--format", "tar"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert gcs_proxy.stalled.wait(60)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert gcs_env.keys(bucket) == []
    cancelled = [r for r in gcs_proxy.requests() if r.method == "DELETE" and upload_id(r)]
    assert len(cancelled) == 1
    assert open_upload_sessions(gcs_proxy) == []
