"""Bundles in Cloud Storage through a network that breaks: an intact bundle is never called
DAMAGED (exit 0, or 3 when the network wins), a damaged one still is, and an upload that the
network defeats leaves no bundle that looks whole."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest

from support.backups import add_random_sst
from support.bundles import era_with_binaries, run_cli
from support.fault_bundles import (
    assert_damage_found,
    assert_never_damaged,
    assert_retries_run_out,
    damaged_tar,
)
from support.faultproxy import (
    Fault,
    FaultProxy,
    fail_after,
    refuse,
    reset_after,
    short_body,
    truncate_after,
)
from support.gcs import FakeGcs
from support.mirror import MirrorServer


def upload(env: FakeGcs, bundles: tuple[Path, Path]) -> str:
    """Both forms in a new bucket, straight to the server (no proxy); returns the bucket."""
    directory, tar = bundles
    bucket = env.bucket()
    env.upload_tree(directory, bucket, f"dir/{directory.name}")
    env.client().bucket(bucket).blob(f"tar/{tar.name}").upload_from_filename(str(tar))
    return bucket


def uris(bucket: str, bundles: tuple[Path, Path]) -> list[str]:
    directory, tar = bundles
    return [f"gs://{bucket}/dir/{directory.name}", f"gs://{bucket}/tar/{tar.name}"]


def media_path(key: str) -> str:
    """A regex of the download path of one object (not of its metadata), as the proxy sees
    it."""
    return f"^/download/.*/o/{re.escape(quote(key, safe=''))}$"


BODY_FAULTS = [short_body(100), reset_after(100), truncate_after(100), short_body(0),
               refuse(503)]


@pytest.mark.parametrize("fault", BODY_FAULTS, ids=lambda f: f"{f.kind}-{f.after}-{f.status}")
def test_every_read_broken_once_still_verifies(capsys: pytest.CaptureFixture[str],
                                               gcs_env: FakeGcs, gcs_proxy: FaultProxy,
                                               bundles: tuple[Path, Path], fault: Fault
                                               ) -> None:
    bucket = upload(gcs_env, bundles)
    for uri in uris(bucket, bundles):
        prefix = uri.split(f"gs://{bucket}/", 1)[1]
        for key in (k for k in gcs_env.keys(bucket) if k.startswith(prefix)):
            gcs_proxy.fail("GET", media_path(key), fault)
        result = run_cli(capsys, "verify", uri, "--all-digests")
        assert result.code == 0, result.out + result.err
        assert gcs_proxy.pending() == 0


def test_retries_running_out_are_exit_3_not_damage(capsys: pytest.CaptureFixture[str],
                                                   gcs_env: FakeGcs, gcs_proxy: FaultProxy,
                                                   bundles: tuple[Path, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_GCS_MAX_ATTEMPTS", "2")
    bucket = upload(gcs_env, bundles)
    assert_retries_run_out(capsys, gcs_proxy, uris(bucket, bundles),
                           r"^/download/.*(\.tar|\.sst)$", short_body(10), "2 times")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(8))
def test_intact_bundles_under_chaos_are_never_damaged(capsys: pytest.CaptureFixture[str],
                                                      gcs_env: FakeGcs, gcs_proxy: FaultProxy,
                                                      bundles: tuple[Path, Path],
                                                      seed: int) -> None:
    bucket = upload(gcs_env, bundles)
    assert_never_damaged(capsys, gcs_proxy, uris(bucket, bundles), seed)


def test_damage_is_still_found_through_faults(capsys: pytest.CaptureFixture[str],
                                              gcs_env: FakeGcs, gcs_proxy: FaultProxy,
                                              bundles: tuple[Path, Path], tmp_path: Path
                                              ) -> None:
    bucket = upload(gcs_env, bundles)
    sst = next(k for k in gcs_env.keys(bucket) if k.endswith(".sst"))
    gcs_env.damage(bucket, sst, 0)
    tar = damaged_tar(bundles, tmp_path)
    gcs_env.client().bucket(bucket).blob(f"tar/{tar.name}").upload_from_filename(str(tar))
    gcs_proxy.fail("GET", r"^/download/", short_body(50), times=5)
    assert_damage_found(capsys, uris(bucket, bundles))


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "seed"), [("tar", 1), ("tar", 2), ("tar", 3), ("dir", 4),
                                           ("dir", 5)])
def test_uploads_under_chaos_leave_a_whole_bundle_or_none(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs, gcs_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch,
    fmt: str, seed: int,
) -> None:
    monkeypatch.delenv("CRDB_ARCHIVE_MIRROR", raising=False)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    add_random_sst(era.path, 20)  # a tar of several chunks
    bucket = gcs_env.bucket()
    gcs_proxy.chaos(0.3, refuse(503), fail_after(500), reset_after(0), seed=seed,
                    methods=("POST", "PUT"))
    result = run_cli(capsys, "archive", str(era.path), "--dest", f"gs://{bucket}/c",
                     "--mirror", mirror.url, "--format", fmt, "--json")
    gcs_proxy.calm()
    assert result.code in (0, 3), result.out + result.err
    assert "Traceback" not in result.err
    keys = gcs_env.keys(bucket)
    if result.code == 0:
        verified = run_cli(capsys, "verify", str(result.json()["bundle"]))
        assert verified.code == 0, verified.out
    elif fmt == "tar":
        assert keys == []
    else:
        assert not any(k.endswith("tagmanifest-sha256.txt") for k in keys)
    assert [r for r in gcs_proxy.requests() if r.fault is not None], "the chaos broke nothing"
