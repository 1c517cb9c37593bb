"""inspect_backup from S3 when things are not right: cold objects, no backup, no bucket, wrong
credentials, and secrets in the source URI, which must never be shown.

Real boto3 clients talk HTTP to moto's server on 127.0.0.1; nothing in boto3 is patched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from crdb_archive.backup import inspect_backup
from crdb_archive.errors import (
    CrdbArchiveError,
    ExitCode,
    NeedsRestoreFromColdStorage,
    StorageError,
)
from support.backups import ERAS, assert_same_report, upload
from support.cli import run_cli
from support.s3 import MotoS3

if TYPE_CHECKING:
    from mypy_boto3_s3.literals import StorageClassType


@pytest.fixture
def moto(s3_env: MotoS3) -> MotoS3:
    """moto's S3 server, with boto3's default chain (environment) pointed at it."""
    return s3_env


# --- cold storage ------------------------------------------------------------------------------


def _manifests(subdir: str | None) -> Callable[[str], StorageClassType | None]:
    def choose(relative: str) -> StorageClassType | None:
        return "GLACIER" if relative.startswith(f"{subdir}/BACKUP_MANIFEST") else None
    return choose


def test_manifest_in_glacier_must_be_restored(capsys: pytest.CaptureFixture[str],
                                              moto: MotoS3, tmp_path: Path) -> None:
    era = ERAS["v22.2"](tmp_path)
    uri = upload(moto, era.path, "cold", storage_class=_manifests(era.subdir))
    with pytest.raises(NeedsRestoreFromColdStorage) as caught:
        inspect_backup(uri)
    assert str(caught.value).startswith(
        f"{uri}/{era.subdir}/BACKUP_MANIFEST (GLACIER), "
        f"{uri}/{era.subdir}/BACKUP_MANIFEST-CHECKSUM (GLACIER) are in an archive storage "
        "class and must be restored before the backup's manifest can be read")
    assert caught.value.exit_code == ExitCode.WORLD
    result = run_cli(capsys, "inspect", uri, "--json")
    assert result.code == 3
    assert result.json()["exit_code"] == 3
    assert result.err.count("\n") == 1

    bucket = uri.split("/")[2]
    with closing(moto.client()) as client:
        for name in ("BACKUP_MANIFEST", "BACKUP_MANIFEST-CHECKSUM"):
            client.restore_object(Bucket=bucket, Key=f"cold/{era.subdir}/{name}",
                                  RestoreRequest={"Days": 1})
    with inspect_backup(uri) as remote:
        assert_same_report(inspect_backup(era.path), remote, uri)


def test_latest_files_in_deep_archive_must_be_restored(moto: MotoS3, tmp_path: Path) -> None:
    era = ERAS["v22.2"](tmp_path)
    uri = upload(moto, era.path, "cold", storage_class=lambda rel: (
        "DEEP_ARCHIVE" if "LATEST" in rel else None))
    with pytest.raises(NeedsRestoreFromColdStorage,
                       match=r"/cold/LATEST \(DEEP_ARCHIVE\) are in an archive storage class "
                       "and must be restored before the collection's LATEST files") as caught:
        inspect_backup(uri)
    assert str(caught.value).count("metadata/latest/LATEST-") == 2


def test_cold_data_files_are_a_warning(moto: MotoS3, tmp_path: Path) -> None:
    era = ERAS["v24.3"](tmp_path)
    uri = upload(moto, era.path, "cold", storage_class=lambda rel: (
        "DEEP_ARCHIVE" if rel.endswith(".sst") else None))
    local = inspect_backup(era.path)
    with inspect_backup(uri) as remote:
        ssts = [f for f in remote.files + remote.incremental_files if f.path.endswith(".sst")]
        assert remote.warnings[:-1] == local.warnings
        total = sum(f.size for f in ssts)
        assert len(ssts) > 1
        assert 1024 <= total < 10 * 1024  # shown in KiB, two decimals
        assert remote.warnings[-1] == (
            f"{len(ssts)} files of the backup ({total / 1024:.2f} KiB: "
            f"{len(ssts)} in DEEP_ARCHIVE) wait in an archive storage class: they must be "
            "restored before the backup can be archived")
        assert remote.files == local.files


# --- failures ----------------------------------------------------------------------------------


def test_prefix_that_holds_no_backup_is_exit_2(capsys: pytest.CaptureFixture[str],
                                               moto: MotoS3) -> None:
    bucket = moto.bucket()
    result = run_cli(capsys, "inspect", f"s3://{bucket}/nothing/here")
    assert (result.code, result.out) == (2, "")
    assert result.err == (f"crdb-archive: error: s3://{bucket}/nothing/here holds no objects: "
                   "expected a CockroachDB backup directory (holding BACKUP_MANIFEST, "
                   "BACKUP_METADATA or BACKUP) or a backup collection (holding LATEST, "
                   "metadata/latest/ or dated YYYY/MM/DD-HHMMSS.ss full backups)\n")
    with closing(moto.client()) as client:
        client.put_object(Bucket=bucket, Key="junk/notes.txt", Body=b"not a backup")
        client.put_object(Bucket=bucket, Key="junk/2023/BACKUP-CHECKPOINT-1", Body=b"x")
    result = run_cli(capsys, "inspect", f"s3://{bucket}/junk", "--json")
    assert result.code == 2
    assert result.json()["exit_code"] == 2
    assert result.err.startswith(f"crdb-archive: error: s3://{bucket}/junk holds no "
                                 "CockroachDB backup: expected")
    assert result.err.count("\n") == 1


def test_missing_bucket_is_exit_3(capsys: pytest.CaptureFixture[str], moto: MotoS3) -> None:
    with pytest.raises(StorageError, match=r"no-such-bucket-for-backups.*does not exist"):
        inspect_backup("s3://no-such-bucket-for-backups/prefix")
    result = run_cli(capsys, "inspect", "s3://no-such-bucket-for-backups/prefix")
    assert result.code == 3
    assert result.err.count("\n") == 1
    assert "does not exist" in result.err


WRONG_SECRET = "Wr0ngSecretValue+/abcdefghij"


def test_wrong_credentials_are_exit_3_in_one_line(capsys: pytest.CaptureFixture[str],
                                                 moto: MotoS3, tmp_path: Path) -> None:
    era = ERAS["v23.1"](tmp_path)
    uri = upload(moto, era.path, "b")
    quoted = quote(WRONG_SECRET, safe="")
    with moto.enforcing_credentials() as (key_id, secret):
        good = f"{uri}?AWS_ACCESS_KEY_ID={key_id}&AWS_SECRET_ACCESS_KEY={quote(secret, safe='')}"
        with inspect_backup(good) as info:
            assert info.manifest.build_tag == "v23.1.11"
        bad = f"{uri}?AWS_ACCESS_KEY_ID={key_id}&AWS_SECRET_ACCESS_KEY={quoted}"
        with pytest.raises(StorageError, match="S3 rejected the credentials") as caught:
            inspect_backup(bad)
        assert caught.value.exit_code == ExitCode.WORLD
        result = run_cli(capsys, "inspect", bad, "--json")
    assert result.code == 3
    assert result.err.count("\n") == 1
    for text in (str(caught.value), result.out, result.err):
        for secret_part in (WRONG_SECRET, quoted, "Wr0ng", key_id):
            assert secret_part not in text


# --- secrets ----------------------------------------------------------------------------------


SECRET = "SeCrEt/Key+Value0123456789abcdefXYZ"
TOKEN = "SessionTokenSecretValue9876"
KEY_ID = "AKIAREDACTIONTEST001"


def with_secrets(uri: str) -> str:
    quoted = quote(SECRET, safe="")
    return (f"{uri}?AUTH=specified&AWS_ACCESS_KEY_ID={KEY_ID}"
            f"&AWS_SECRET_ACCESS_KEY={quoted}&AWS_SESSION_TOKEN={TOKEN}")


def assert_no_secret(text: str) -> None:
    for secret in (SECRET, quote(SECRET, safe=""), TOKEN, KEY_ID, "SeCrEt", "SessionToken"):
        assert secret not in text


def test_secrets_in_the_source_appear_nowhere(capsys: pytest.CaptureFixture[str],
                                             moto: MotoS3, tmp_path: Path) -> None:
    era = ERAS["v22.2"](tmp_path)
    uri = upload(moto, era.path, "prod")
    cold = upload(moto, era.path, "cold", storage_class=_manifests(era.subdir))
    bucket = uri.split("/")[2]
    with inspect_backup(with_secrets(uri)) as info:
        assert info.location == uri
        assert_no_secret(json.dumps(info.to_json()) + repr(info) + str(info.storage))
        with inspect_backup(with_secrets(f"{uri}/{era.subdir}")) as single:
            assert single.warnings  # the hint names the collection
            assert_no_secret(json.dumps(single.to_json()) + repr(single))

    failures: list[Callable[[], object]] = [
        lambda: inspect_backup(with_secrets(f"s3://{bucket}/empty")),
        lambda: inspect_backup(with_secrets(uri), subdir="2000/01/01-000000.00"),
        lambda: inspect_backup(with_secrets(f"{uri}/{era.subdir}"), subdir="LATEST"),
        lambda: inspect_backup(with_secrets("s3://no-such-bucket-for-secrets/p")),
        lambda: inspect_backup(with_secrets(uri) + "&UNKNOWN_PARAMETER=1"),
        lambda: inspect_backup(with_secrets(cold)),
    ]
    for attempt in failures:
        with pytest.raises(CrdbArchiveError) as caught:
            attempt()
        assert_no_secret(str(caught.value))
        assert "\n" not in str(caught.value)

    for args in (["inspect", with_secrets(uri), "--json"], ["inspect", with_secrets(uri)],
                 ["inspect", with_secrets(f"s3://{bucket}/empty")],
                 ["inspect", with_secrets(cold), "--json"]):
        result = run_cli(capsys, *args)
        assert_no_secret(result.out + result.err)
