"""inspect_backup through object storage: backups in moto's S3 server read as they do on disk.

Real boto3 clients talk HTTP to moto on 127.0.0.1; nothing in boto3 or botocore is patched.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from crdb_archive.backup import inspect_backup
from crdb_archive.errors import DamagedManifest, NotABackup, UnsupportedBackupFile
from crdb_archive.storage import open_storage
from support.backups import (
    ERAS,
    T0,
    Era,
    Manifest,
    RecordingStorage,
    assert_same_report,
    incremental_name,
    latest_history_name,
    upload,
    write,
    write_backup,
    write_fulls,
    write_latest,
)
from support.cli import run_cli
from support.s3 import MotoS3


@pytest.fixture
def moto(s3_env: MotoS3) -> MotoS3:
    """moto's S3 server, with boto3's default chain (environment) pointed at it."""
    return s3_env


@pytest.mark.parametrize("name", list(ERAS))
def test_each_era_reads_from_s3_as_from_disk(moto: MotoS3, tmp_path: Path,
                                             name: str) -> None:
    era: Era = ERAS[name](tmp_path)
    uri = upload(moto, era.path, f"backups/{name}")
    local = inspect_backup(era.path)
    with inspect_backup(uri) as remote:
        assert_same_report(local, remote, uri)
        assert remote.owns_storage is True
        assert not remote.storage.is_local
        # The keys are relative to the storage: they read back the very bytes on disk.
        for f in remote.files + remote.incremental_files:
            assert remote.storage.read_bytes(f.path) == (era.path / f.path).read_bytes()


def test_choosing_an_older_full_backup(moto: MotoS3, tmp_path: Path) -> None:
    era = ERAS["v24.3"](tmp_path)
    uri = upload(moto, era.path, "nightly")
    for subdir in ("2024/12/08-000000.00", "LATEST"):
        with inspect_backup(uri, subdir=subdir) as remote:
            assert_same_report(inspect_backup(era.path, subdir=subdir), remote, uri)
    with pytest.raises(NotABackup, match=f"not a full backup in {uri} .found: 2024/12/01"):
        inspect_backup(uri, subdir="2024/12/02-000000.00")
    with pytest.raises(NotABackup, match="--subdir does not apply"):
        inspect_backup(f"{uri}/{era.subdir}", subdir="2024/12/08-000000.00")


# --- collection layouts, as on disk --------------------------------------------------------------


def newest_history_wins(root: Path) -> None:
    old, new = write_fulls(root, 1, 2)
    write_latest(root, old, at=T0, root_file=True, history=True)
    write_latest(root, new, at=T0 + dt.timedelta(days=1), root_file=False, history=True)


def bad_pointer_falls_back(root: Path) -> None:
    old, _ = write_fulls(root, 1, 2)
    write_latest(root, old, at=T0, root_file=True, history=False)
    write(root / "metadata" / "latest" / latest_history_name(T0), b"")


def no_latest(root: Path) -> None:
    write_fulls(root, 1, 2)


def unfinished_full_backup(root: Path) -> None:
    (done,) = write_fulls(root, 1)
    write(root / "2023/03/05-010000.00/BACKUP-CHECKPOINT-123", b"x")
    write_latest(root, done, at=T0, root_file=True, history=False)


def incrementals_in_both_layouts(root: Path) -> None:
    (full,) = write_fulls(root, 1)
    when = dt.datetime(2023, 3, 1, 5, 0, tzinfo=dt.UTC)
    write_backup(root / f"{full}/{incremental_name(when)}", Manifest(end_time=when))
    later = when + dt.timedelta(hours=1)
    write_backup(root / f"incrementals/{full}/{incremental_name(later)}",
                 Manifest(end_time=later))
    unfinished = f"incrementals/{full}/{incremental_name(later + dt.timedelta(hours=1))}"
    write(root / unfinished / "BACKUP-CHECKPOINT-1", b"x")


def latest_names_an_undated_subdirectory(root: Path) -> None:
    write_backup(root / "weekly" / "one", Manifest(end_time=T0))
    write(root / "LATEST", b"weekly/one")


def single_backup_with_appended_incrementals(root: Path) -> None:
    write_backup(root, Manifest(end_time=T0))
    later = T0 + dt.timedelta(hours=1)
    write_backup(root / incremental_name(later), Manifest(end_time=later))


@pytest.mark.parametrize("build", [
    newest_history_wins, bad_pointer_falls_back, no_latest, unfinished_full_backup,
    incrementals_in_both_layouts, latest_names_an_undated_subdirectory,
    single_backup_with_appended_incrementals,
], ids=lambda build: build.__name__)
def test_layouts_read_from_s3_as_from_disk(moto: MotoS3, tmp_path: Path,
                                           build: Callable[[Path], None]) -> None:
    root = tmp_path / "backup"
    build(root)
    uri = upload(moto, root, "collection")
    local = inspect_backup(root)
    assert local.warnings or local.incrementals or local.backups  # something to compare
    with inspect_backup(uri) as remote:
        assert_same_report(local, remote, uri)


def test_latest_naming_a_missing_backup(moto: MotoS3, tmp_path: Path) -> None:
    write_fulls(tmp_path, 1)
    write(tmp_path / "LATEST", b"/2023/03/09-010000.00")
    uri = upload(moto, tmp_path, "c")
    with pytest.raises(NotABackup, match=f"LATEST in {uri} names 2023/03/09-010000.00, which "
                       "holds no backup manifest"):
        inspect_backup(uri)


def test_damaged_manifest_is_exit_1(capsys: pytest.CaptureFixture[str], moto: MotoS3,
                                    tmp_path: Path) -> None:
    era = ERAS["v22.2"](tmp_path)
    manifest = era.path / f"{era.subdir}/BACKUP_MANIFEST"
    data = bytearray(manifest.read_bytes())
    data[-5] ^= 0x10
    manifest.write_bytes(bytes(data))
    uri = upload(moto, era.path, "damaged")
    with pytest.raises(DamagedManifest, match=f"{era.subdir}/BACKUP_MANIFEST does not match"):
        inspect_backup(uri)
    result = run_cli(capsys, "inspect", uri)
    assert (result.code, result.out, result.err.count("\n")) == (1, "", 1)


def test_a_full_backup_of_a_collection_hints_at_the_collection(moto: MotoS3,
                                                               tmp_path: Path) -> None:
    era = ERAS["v22.2"](tmp_path)
    uri = upload(moto, era.path, "prod/crdb")
    with inspect_backup(f"{uri}/{era.subdir}") as info:
        assert info.kind == "backup"
        assert any(f"the full backup {era.subdir} of the collection {uri}; if it is one, "
                   "inspect the collection" in w for w in info.warnings)


# --- reading only what is needed ---------------------------------------------------------------


def test_one_listing_and_only_the_needed_reads(moto: MotoS3, tmp_path: Path) -> None:
    era = ERAS["v24.3"](tmp_path)
    uri = upload(moto, era.path, "nightly")
    with open_storage(uri) as storage:
        recording = RecordingStorage(storage)
        info = inspect_backup(recording)
        info.close()  # not its storage: left open
        assert len(info.files) + len(info.incremental_files) == 18
        history = sorted(f"metadata/latest/{p.name}"
                         for p in (era.path / "metadata" / "latest").iterdir())
        assert len(history) == 3
        # The LATEST files are read side by side, in any order.
        calls = recording.calls
        assert calls[0] == ("list", "")
        assert sorted(calls[1:4]) == [("read", rel) for rel in history]
        assert calls[4:] == [("read", f"{era.subdir}/BACKUP_MANIFEST"),
                             ("read", f"{era.subdir}/BACKUP_MANIFEST-CHECKSUM")]
        assert info.storage is recording
        assert info.owns_storage is False
        assert storage.read_bytes(info.files[0].path) == (
            era.path / info.files[0].path).read_bytes()


# --- what object storage adds -------------------------------------------------------------------


def test_an_object_key_no_path_can_hold_is_refused(moto: MotoS3, tmp_path: Path) -> None:
    era = ERAS["v22.2"](tmp_path)
    uri = upload(moto, era.path, "odd")
    bucket = uri.split("/")[2]
    with closing(moto.client()) as client:
        # In another full backup: not read, so no matter.
        client.put_object(Bucket=bucket, Key="odd/2023/01/05-030000.00/data//x.sst", Body=b"x")
        assert inspect_backup(uri).subdir == era.subdir
        client.put_object(Bucket=bucket, Key=f"odd/{era.subdir}/data//x.sst", Body=b"x")
    with pytest.raises(UnsupportedBackupFile, match=r"'.*data//x.sst', whose key has an empty"):
        inspect_backup(uri)


# --- the command line ---------------------------------------------------------------------------


def test_endpoint_url_option(capsys: pytest.CaptureFixture[str], moto: MotoS3,
                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    era = ERAS["v24.3"](tmp_path)
    uri = upload(moto, era.path, "nightly")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    result = run_cli(capsys, "inspect", uri, "--endpoint-url", moto.endpoint_url, "--json")
    assert (result.code, result.err) == (0, "")
    payload = result.json()
    expected = inspect_backup(era.path, with_left_out=True).to_json()
    assert payload.pop("source") == uri
    expected.pop("source")
    assert payload == json.loads(json.dumps(expected))
    with inspect_backup(uri, endpoint_url=moto.endpoint_url) as info:
        assert info.subdir == era.subdir

    result = run_cli(capsys, "inspect", uri, "--endpoint-url", moto.endpoint_url,
                     "--subdir", "2024/12/01-000000.00")
    assert result.code == 0
    assert "collection, full backup 2024/12/01-000000.00" in result.out
