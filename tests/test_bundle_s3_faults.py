"""Verifying bundles in S3 through a network that breaks: an intact bundle is never called
DAMAGED (exit 0, or 3 when the network wins), and a damaged one still is."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from support.bundles import run_cli
from support.fault_bundles import (
    assert_damage_found,
    assert_never_damaged,
    assert_retries_run_out,
    bundle_objects,
    damaged_tar,
)
from support.faultproxy import (
    Fault,
    FaultProxy,
    reset_after,
    short_body,
    truncate_after,
)
from support.s3 import MotoS3


def upload(env: MotoS3, bundles: tuple[Path, Path], *, damage: bool = False) -> str:
    """Both forms in a new bucket, straight to moto (no proxy); returns the bucket."""
    bucket = env.bucket()
    with closing(env.client()) as client:
        for key, data in bundle_objects(bundles, damage=damage):
            client.put_object(Bucket=bucket, Key=key, Body=data)
    return bucket


def uris(bucket: str, bundles: tuple[Path, Path]) -> list[str]:
    directory, tar = bundles
    return [f"s3://{bucket}/dir/{directory.name}", f"s3://{bucket}/tar/{tar.name}"]


BODY_FAULTS = [short_body(100), reset_after(100), truncate_after(100), short_body(0)]


@pytest.mark.parametrize("fault", BODY_FAULTS, ids=lambda f: f"{f.kind}-{f.after}")
def test_every_get_broken_once_still_verifies(capsys: pytest.CaptureFixture[str],
                                              s3_env: MotoS3, s3_proxy: FaultProxy,
                                              bundles: tuple[Path, Path], fault: Fault
                                              ) -> None:
    bucket = upload(s3_env, bundles)
    for uri in uris(bucket, bundles):
        s3_proxy.clear_log()
        # Each object's first GET breaks; its resumption gets the rest.
        for key in _keys(s3_env, bucket, uri):
            s3_proxy.fail("GET", f"/{bucket}/{key}$", fault)
        result = run_cli(capsys, "verify", uri, "--all-digests")
        assert result.code == 0, result.out + result.err
        assert s3_proxy.pending() == 0


def _keys(env: MotoS3, bucket: str, uri: str) -> list[str]:
    prefix = uri.split(f"s3://{bucket}/", 1)[1]
    return [k for k in env.all_keys(bucket) if k.startswith(prefix)]


def test_retries_running_out_are_exit_3_not_damage(capsys: pytest.CaptureFixture[str],
                                                   s3_env: MotoS3, s3_proxy: FaultProxy,
                                                   bundles: tuple[Path, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    bucket = upload(s3_env, bundles)
    assert_retries_run_out(capsys, s3_proxy, uris(bucket, bundles), r"\.(tar|sst)$",
                           short_body(10), "2 times")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(16))
def test_intact_bundles_under_chaos_are_never_damaged(capsys: pytest.CaptureFixture[str],
                                                      s3_env: MotoS3, s3_proxy: FaultProxy,
                                                      bundles: tuple[Path, Path],
                                                      seed: int) -> None:
    bucket = upload(s3_env, bundles)
    assert_never_damaged(capsys, s3_proxy, uris(bucket, bundles), seed)


def test_damage_is_still_found_through_faults(capsys: pytest.CaptureFixture[str],
                                              s3_env: MotoS3, s3_proxy: FaultProxy,
                                              bundles: tuple[Path, Path], tmp_path: Path
                                              ) -> None:
    bucket = upload(s3_env, bundles, damage=True)
    tar = damaged_tar(bundles, tmp_path)
    with closing(s3_env.client()) as client:
        client.put_object(Bucket=bucket, Key=f"tar/{tar.name}", Body=tar.read_bytes())
    s3_proxy.fail("GET", r"/(dir|tar)/", short_body(50), times=5)
    assert_damage_found(capsys, uris(bucket, bundles))
