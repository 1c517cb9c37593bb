"""Verifying bundles in S3 through a network that breaks: an intact bundle is never called
DAMAGED (exit 0, or 3 when the network wins), and a damaged one still is."""

from __future__ import annotations

import tarfile
from contextlib import closing
from pathlib import Path

import pytest

from support.bundles import make_bundle, run_cli, xor_byte
from support.faultproxy import (
    Fault,
    FaultProxy,
    fail_after,
    refuse,
    reset_after,
    short_body,
    truncate_after,
)
from support.s3 import MotoS3


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("bundles")
    return make_bundle(base / "dir"), make_bundle(base / "tar", fmt="tar")


def upload(env: MotoS3, bundles: tuple[Path, Path], *, damage: bool = False) -> str:
    """Both forms in a new bucket, straight to moto (no proxy); returns the bucket."""
    directory, tar = bundles
    bucket = env.bucket()
    with closing(env.client()) as client:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                if damage and path.suffix == ".sst":
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                    damage = False
                client.put_object(Bucket=bucket, Body=data,
                                  Key=f"dir/{path.relative_to(directory.parent).as_posix()}")
        client.put_object(Bucket=bucket, Key=f"tar/{tar.name}", Body=tar.read_bytes())
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
    for uri in uris(bucket, bundles):
        s3_proxy.calm()
        s3_proxy.fail("GET", r"\.(tar|sst)$", short_body(10), times=1000)
        result = run_cli(capsys, "verify", uri)
        assert result.code == 3, result.out + result.err
        assert "2 times" in result.err
        assert "DAMAGED" not in result.out


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(16))
def test_intact_bundles_under_chaos_are_never_damaged(capsys: pytest.CaptureFixture[str],
                                                      s3_env: MotoS3, s3_proxy: FaultProxy,
                                                      bundles: tuple[Path, Path],
                                                      seed: int) -> None:
    bucket = upload(s3_env, bundles)
    s3_proxy.chaos(0.3, refuse(500), fail_after(500), reset_after(200), truncate_after(200),
                   short_body(200), seed=seed)
    results = [run_cli(capsys, "verify", uri) for uri in uris(bucket, bundles)]
    codes = [r.code for r in results]
    assert set(codes) <= {0, 3}, "\n".join(results[-1].out.splitlines()[:3])
    broken = [r for r in s3_proxy.requests() if r.fault is not None]
    assert broken, "the chaos broke nothing"


def test_damage_is_still_found_through_faults(capsys: pytest.CaptureFixture[str],
                                              s3_env: MotoS3, s3_proxy: FaultProxy,
                                              bundles: tuple[Path, Path], tmp_path: Path
                                              ) -> None:
    bucket = upload(s3_env, bundles, damage=True)
    damaged_tar = tmp_path / bundles[1].name
    damaged_tar.write_bytes(bundles[1].read_bytes())
    with tarfile.open(damaged_tar) as archive:
        first = next(m for m in archive.getmembers() if m.name.endswith(".sst"))
    xor_byte(damaged_tar, first.offset_data)
    with closing(s3_env.client()) as client:
        client.put_object(Bucket=bucket, Key=f"tar/{damaged_tar.name}",
                          Body=damaged_tar.read_bytes())
    s3_proxy.fail("GET", r"/(dir|tar)/", short_body(50), times=5)
    for uri in uris(bucket, bundles):
        result = run_cli(capsys, "verify", uri)
        assert result.code == 1, result.out + result.err
