"""restore-request: bring a bundle back from GLACIER / DEEP_ARCHIVE, and say what is pending."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crdb_archive.cli import main
from crdb_archive.errors import BadInput, NotABundle, StorageError
from crdb_archive.storage import WriteOptions, open_storage
from crdb_archive.storage.restore import request_bundle_restore
from support import s3 as s3_support
from support.s3 import MotoS3

moto_s3 = s3_support.moto_s3
s3_env = s3_support.s3_env

TAG_FILES = ["bagit.txt", "bag-info.txt", "manifest-sha256.txt", "tagmanifest-sha256.txt"]
COLD = {
    "data/backup/data/1.sst": "GLACIER",
    "data/backup/data/2.sst": "DEEP_ARCHIVE",
    "data/cockroach/cockroach-v23.1.11.linux-amd64.tgz": "GLACIER",
}
SECRET = "RestoreSecretValue0123456789"


def put_bundle(uri: str) -> None:
    """A bundle's objects as an archive job leaves them: tag files warm, the payload cold."""
    with open_storage(uri) as storage:
        for key in TAG_FILES:
            storage.put_bytes(key, key.encode())
        storage.put_bytes("data/backup/BACKUP_MANIFEST", b"manifest",
                          options=WriteOptions(storage_class="STANDARD_IA"))
        for key, storage_class in COLD.items():
            storage.put_bytes(key, b"payload", options=WriteOptions(storage_class=storage_class))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as caught:
        main(["restore-request", *args])
    captured = capsys.readouterr()
    code = caught.value.code
    return (code if isinstance(code, int) else 0), captured.out, captured.err


def test_restores_are_requested_then_available(s3_env: MotoS3) -> None:
    uri = f"s3://{s3_env.bucket()}/bundles/b1"
    put_bundle(uri)
    first = request_bundle_restore(uri, days=2, tier="Bulk")
    assert first.requested == tuple(sorted(COLD))
    assert (first.in_progress, first.available, first.not_needed) == ((), 0, 5)
    assert not first.complete
    # moto finishes a restore at once unless told otherwise.
    second = request_bundle_restore(uri, days=2, tier="Bulk")
    assert (second.requested, second.in_progress, second.available) == ((), (), 3)
    assert second.complete
    with open_storage(uri) as storage:
        assert storage.read_bytes("data/backup/data/2.sst") == b"payload"


def test_cli_reports_pending_keys_then_success(
    s3_env: MotoS3, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"s3://{s3_env.bucket()}/b2"
    put_bundle(uri)
    with s3_env.restores_take(2):
        code, out, _ = run(capsys, uri, "--days", "1")
        assert code == 1
        assert "3 restores requested, 0 in progress, 0 restored, 5 need no restore" in out
        assert "still pending, not readable yet (3 objects):" in out
        assert "  data/backup/data/2.sst" in out
        code, out, _ = run(capsys, uri, "--days", "1", "--json")
        assert code == 1
        payload = json.loads(out)
        assert payload["in_progress"] == 3
        assert payload["requested"] == 0
        assert payload["pending"] == sorted(COLD)
        assert payload["complete"] is False
    code, out, _ = run(capsys, uri, "--days", "1", "--tier", "Standard")
    assert code == 0
    assert "every object is readable now" in out


def test_a_tar_bundle_is_one_object(s3_env: MotoS3, capsys: pytest.CaptureFixture[str]) -> None:
    bucket = s3_env.bucket()
    with open_storage(f"s3://{bucket}/tars") as storage:
        storage.put_bytes("name.tar", b"tar", options=WriteOptions(storage_class="DEEP_ARCHIVE"))
    code, out, _ = run(capsys, f"s3://{bucket}/tars/name.tar", "--days", "7", "--json")
    assert code == 1
    assert json.loads(out)["pending"] == ["name.tar"]
    code, _, err = run(capsys, f"s3://{bucket}/tars/other.tar", "--days", "7")
    assert code == 2
    assert "other.tar does not exist" in err


def test_not_a_bundle(s3_env: MotoS3, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"s3://{s3_env.bucket()}/plain"
    with open_storage(uri) as storage:
        storage.put_bytes("file", b"x")
    with pytest.raises(NotABundle, match=r"no bagit\.txt"):
        request_bundle_restore(uri, days=1)
    code, _, err = run(capsys, uri, "--days", "1")
    assert code == 2
    assert err.count("\n") == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--days", "0"], "at least 1 day"),
    (["--days", "1", "--tier", "Instant"], "tier 'Instant'"),
])
def test_bad_days_or_tier_fail_before_any_request(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    # The endpoint is never contacted: nothing listens there.
    code, _, err = run(capsys, "s3://bucket/b?AWS_ENDPOINT=http://127.0.0.1:9", *args)
    assert code == 2
    assert message in err
    with pytest.raises(BadInput):
        request_bundle_restore("s3://bucket/b", days=0)


def test_a_local_bundle_needs_no_restore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in TAG_FILES:
        (tmp_path / key).write_text(key)
    code, out, _ = run(capsys, str(tmp_path), "--days", "1", "--json")
    assert code == 0
    assert json.loads(out)["not_needed"] == len(TAG_FILES)


def test_missing_bucket_is_a_storage_failure(
    s3_env: MotoS3, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        request_bundle_restore("s3://missing-bucket-r/b", days=1)
    code, _, err = run(capsys, "s3://missing-bucket-r/b", "--days", "1")
    assert code == 3
    assert err.startswith("crdb-archive: error: ")
    assert err.count("\n") == 1


def test_no_secret_in_any_output(s3_env: MotoS3, capsys: pytest.CaptureFixture[str]) -> None:
    bucket = s3_env.bucket()
    put_bundle(f"s3://{bucket}/b3")
    uri = f"s3://{bucket}/b3?AWS_ACCESS_KEY_ID=AKIARESTORE&AWS_SECRET_ACCESS_KEY={SECRET}"
    outputs = []
    for extra in ([], ["--json"]):
        code, out, err = run(capsys, uri, "--days", "1", *extra)
        assert code in (0, 1)
        outputs += [out, err]
    code, out, err = run(capsys, uri.replace(bucket, "missing-bucket-s"), "--days", "1")
    assert code == 3
    outputs += [out, err]
    assert "AWS_SECRET_ACCESS_KEY=redacted" in outputs[0]
    for text in outputs:
        assert SECRET not in text
        assert "AKIARESTORE" not in text
