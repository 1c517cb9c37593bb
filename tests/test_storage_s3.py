"""What only S3 has: storage classes, Object Lock, cold storage, credentials, checksums.

Against moto's server over HTTP. moto records the ChecksumSHA256 we send and returns it, but
does not check it against the bytes (a wrong value is accepted); AWS does check it, so the
tests here assert that the right value is sent and stored, not that moto refuses a wrong one.
"""

from __future__ import annotations

import base64
import hashlib
import socket
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from crdb_archive.errors import (
    BadInput,
    ExitCode,
    Interrupted,
    NeedsRestoreFromColdStorage,
    StorageError,
)
from crdb_archive.storage import Storage, WriteOptions, open_storage
from crdb_archive.storage.s3 import S3Storage, restore_state
from crdb_archive.storage.s3_upload import MAX_PARTS, MIN_PART, base_part_size, part_size
from support import s3 as s3_support
from support.s3 import MotoS3

moto_s3 = s3_support.moto_s3
s3_env = s3_support.s3_env

MiB = 1 << 20
TOMORROW = datetime.now(UTC) + timedelta(days=1)


def s3(uri: str) -> S3Storage:
    """An S3 storage (the type says so, for the attributes only S3 has)."""
    storage = open_storage(uri)
    assert isinstance(storage, S3Storage)
    return storage


def write(storage: Storage, key: str, size: int, options: WriteOptions | None = None) -> bytes:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    with storage.open_write(key, size_hint=size, options=options) as writer:
        for offset in range(0, size, MiB):
            writer.write(data[offset:offset + MiB])
    return data


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


# --- storage classes and checksums -----------------------------------------------------------


@pytest.mark.parametrize("size", [1000, 17 * MiB])
def test_storage_class_and_checksum_reach_s3(s3_env: MotoS3, size: int) -> None:
    bucket = s3_env.bucket()
    with s3(f"s3://{bucket}/archive") as storage:
        data = write(storage, "obj", size, WriteOptions(storage_class="STANDARD_IA"))
        info = storage.stat("obj")
        assert info is not None
        assert info.storage_class == "STANDARD_IA"
        assert [i.storage_class for i in storage.list()] == ["STANDARD_IA"]
    with closing(s3_env.client()) as client:
        head = client.head_object(Bucket=bucket, Key="archive/obj", ChecksumMode="ENABLED")
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ContentLength"] == len(data)
    if size < 8 * MiB:
        assert head["ChecksumSHA256"] == sha256_b64(data)
        assert "-" not in head["ETag"]
    else:  # multipart: 8 MiB parts, a composite checksum of the per-part SHA-256s
        assert head["ETag"].endswith('-3"')
        assert head.get("ChecksumSHA256")


def test_multipart_object_is_invisible_until_complete(s3_env: MotoS3) -> None:
    bucket = s3_env.bucket()
    with s3(f"s3://{bucket}") as storage, storage.open_write("big.tar") as writer:
        writer.write(b"\0" * (9 * MiB))
        assert s3_env.multipart_uploads(bucket) == ["big.tar"]
        assert storage.stat("big.tar") is None
    assert s3_env.multipart_uploads(bucket) == []
    assert s3_env.all_keys(bucket) == ["big.tar"]


def interrupt_upload(storage: Storage, env: MotoS3, bucket: str) -> None:
    with storage.open_write("bundle.tar") as writer:
        writer.write(b"\1" * (8 * MiB))
        assert env.multipart_uploads(bucket) == ["bundle.tar"]
        raise Interrupted("interrupted by SIGTERM")


def test_interrupted_multipart_upload_is_aborted(s3_env: MotoS3) -> None:
    bucket = s3_env.bucket()
    with s3(f"s3://{bucket}") as storage:
        with pytest.raises(Interrupted):
            interrupt_upload(storage, s3_env, bucket)
        assert s3_env.multipart_uploads(bucket) == []
        assert s3_env.all_keys(bucket) == []


def test_unknown_storage_class_is_bad_input(s3_env: MotoS3) -> None:
    bucket = s3_env.bucket()
    with s3(f"s3://{bucket}") as storage:
        with pytest.raises(BadInput, match="unknown storage class 'COLDEST'"):
            storage.check_write_options(WriteOptions(storage_class="COLDEST"))
        with pytest.raises(BadInput, match="COLDEST"):
            storage.put_bytes("x", b"x", options=WriteOptions(storage_class="COLDEST"))
    assert s3_env.all_keys(bucket) == []


def test_part_sizes_fit_s3_limits() -> None:
    assert base_part_size(None) == MIN_PART
    assert base_part_size(100 * MiB) == MIN_PART
    tib = 1 << 40
    base = base_part_size(4 * tib)
    assert base % MiB == 0
    assert 4 * tib / base <= MAX_PARTS
    # Without a hint, parts grow: 10,000 of them hold more than S3's 5 TiB object limit.
    assert sum(part_size(MIN_PART, n) for n in range(1, MAX_PARTS + 1)) > 5 * tib
    assert part_size(MIN_PART, 1000) == MIN_PART
    assert part_size(MIN_PART, 1001) == 2 * MIN_PART


# --- Object Lock ---------------------------------------------------------------------------------


def test_object_lock_is_applied_and_enforced(s3_env: MotoS3) -> None:
    bucket = s3_env.bucket(object_lock=True)
    lock = WriteOptions(lock_mode="COMPLIANCE", retain_until=TOMORROW, storage_class="GLACIER_IR")
    with s3(f"s3://{bucket}/bundles") as storage:
        storage.check_write_options(lock)
        write(storage, "b1/small", 100, lock)
        write(storage, "b1/large", 9 * MiB, lock)
        storage.put_bytes("b1/unlocked", b"free")
        info = storage.stat("b1/large")
        assert info is not None
        assert info.lock_mode == "COMPLIANCE"
        assert info.retain_until is not None
        assert abs(info.retain_until - TOMORROW) < timedelta(seconds=1)
        assert info.storage_class == "GLACIER_IR"

        with pytest.raises(StorageError, match=r"cannot delete s3://.*/bundles/b1/small: "
                                               r"Object Lock COMPLIANCE retention until"):
            storage.delete("b1/small")
        with pytest.raises(StorageError, match="Object Lock"):
            storage.delete_tree("b1")
        # Nothing below the prefix went, not even the unlocked object.
        assert [i.key for i in storage.list()] == ["b1/large", "b1/small", "b1/unlocked"]
        storage.delete("b1/unlocked")

    with closing(s3_env.client()) as client:
        head = client.head_object(Bucket=bucket, Key="bundles/b1/small")
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["StorageClass"] == "GLACIER_IR"
        # S3 itself refuses to delete the locked version.
        with pytest.raises(ClientError, match="AccessDenied"):
            client.delete_object(Bucket=bucket, Key="bundles/b1/small",
                                 VersionId=head["VersionId"])


def test_governance_lock_through_multipart(s3_env: MotoS3) -> None:
    bucket = s3_env.bucket(object_lock=True)
    lock = WriteOptions(lock_mode="GOVERNANCE", retain_until=TOMORROW)
    with s3(f"s3://{bucket}") as storage:
        write(storage, "bundle.tar", 10 * MiB, lock)
        with pytest.raises(StorageError, match="GOVERNANCE"):
            storage.delete("bundle.tar")
    with closing(s3_env.client()) as client:
        head = client.head_object(Bucket=bucket, Key="bundle.tar")
    assert head["ObjectLockMode"] == "GOVERNANCE"


def test_lock_on_a_bucket_without_object_lock_fails_before_upload(s3_env: MotoS3) -> None:
    bucket = s3_env.bucket()
    with s3(f"s3://{bucket}/x") as storage:
        with pytest.raises(BadInput, match=f"bucket {bucket} has no Object Lock") as caught:
            storage.check_write_options(WriteOptions(lock_mode="COMPLIANCE",
                                                     retain_until=TOMORROW))
        assert caught.value.exit_code == ExitCode.BAD_INPUT
        storage.check_write_options(WriteOptions(storage_class="DEEP_ARCHIVE"))
    assert s3_env.all_keys(bucket) == []


@pytest.mark.parametrize(("options", "message"), [
    (WriteOptions(lock_mode="COMPLIANCE"), "needs both a mode"),
    (WriteOptions(retain_until=TOMORROW), "needs both a mode"),
    (WriteOptions(lock_mode="GOVERNANCE", retain_until=datetime(2020, 1, 1, tzinfo=UTC)),
     "not in the future"),
    (WriteOptions(lock_mode="GOVERNANCE", retain_until=datetime(2999, 1, 1)), "time zone"),
])
def test_malformed_lock_options(s3_env: MotoS3, options: WriteOptions, message: str) -> None:
    with s3(f"s3://{s3_env.bucket(object_lock=True)}") as storage:
        with pytest.raises(BadInput, match=message):
            storage.check_write_options(options)
        with pytest.raises(BadInput, match=message):
            storage.put_bytes("x", b"x", options=options)


def test_deleting_on_a_versioned_bucket_keeps_history(s3_env: MotoS3) -> None:
    bucket = s3_env.bucket(versioned=True)
    with s3(f"s3://{bucket}") as storage:
        storage.put_bytes("old", b"1")
        storage.delete("old")
        assert storage.stat("old") is None
    with closing(s3_env.client()) as client:
        versions = client.list_object_versions(Bucket=bucket)
    assert [v["Key"] for v in versions.get("Versions", [])] == ["old"]


# --- cold storage ------------------------------------------------------------------------------


def test_glacier_object_must_be_restored(s3_env: MotoS3) -> None:
    bucket = s3_env.bucket()
    with s3(f"s3://{bucket}/cold") as storage:
        storage.put_bytes("data/a.sst", b"frozen", options=WriteOptions(storage_class="GLACIER"))
        info = storage.stat("data/a.sst")
        assert info is not None
        assert (info.storage_class, info.restore, info.readable) == ("GLACIER", "needed", False)
        assert [(i.key, i.restore) for i in storage.list()] == [("data/a.sst", "needed")]
        with pytest.raises(NeedsRestoreFromColdStorage,
                           match=f"s3://{bucket}/cold/data/a.sst is in GLACIER") as caught:
            storage.read_bytes("data/a.sst")
        assert caught.value.exit_code == ExitCode.WORLD

        with s3_env.restores_take(3):
            assert storage.request_restore("data/a.sst", days=3, tier="Bulk") == "requested"
            assert [i.restore for i in storage.list()] == ["in-progress"]
            assert storage.request_restore("data/a.sst", days=3, tier="Bulk") == "in-progress"
            assert storage.request_restore("data/a.sst", days=3, tier="Bulk") == "available"
        info = storage.stat("data/a.sst")
        assert info is not None
        assert info.restore == "available"
        assert storage.read_bytes("data/a.sst") == b"frozen"


def test_deep_archive_has_no_expedited_restores(s3_env: MotoS3) -> None:
    with s3(f"s3://{s3_env.bucket()}") as storage:
        storage.put_bytes("k", b"x", options=WriteOptions(storage_class="DEEP_ARCHIVE"))
        with pytest.raises(BadInput, match="no Expedited"):
            storage.request_restore("k", days=1, tier="Expedited")
        with pytest.raises(BadInput, match="tier 'Fast'"):
            storage.request_restore("k", days=1, tier="Fast")
        with pytest.raises(BadInput, match="at least 1 day"):
            storage.request_restore("k", days=0, tier="Bulk")


@pytest.mark.parametrize(("storage_class", "header", "state"), [
    ("STANDARD", None, "not-needed"),
    ("GLACIER_IR", None, "not-needed"),
    ("GLACIER", None, "needed"),
    ("DEEP_ARCHIVE", 'ongoing-request="true"', "in-progress"),
    ("GLACIER", 'ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"',
     "available"),
])
def test_restore_header(storage_class: str, header: str | None, state: str) -> None:
    assert restore_state(storage_class, header) == state


# --- failures ------------------------------------------------------------------------------------


def test_missing_bucket(s3_env: MotoS3) -> None:
    with s3("s3://no-such-bucket-here/prefix") as storage:
        for attempt in (
            lambda: list(storage.list()),
            lambda: storage.stat("key"),
            lambda: storage.read_bytes("key"),
            lambda: storage.put_bytes("key", b"x"),
        ):
            with pytest.raises(StorageError, match="no-such-bucket-here") as caught:
                attempt()
            assert "does not exist" in str(caught.value)
            assert caught.value.exit_code == ExitCode.WORLD


def test_wrong_credentials_are_one_line_without_secret(s3_env: MotoS3) -> None:
    bucket = s3_env.bucket()
    wrong_secret = "Wr0ngSecretValue+/abcdefghij"
    with s3_env.enforcing_credentials() as (key_id, secret):
        good = f"s3://{bucket}/p?AWS_ACCESS_KEY_ID={key_id}&AWS_SECRET_ACCESS_KEY={secret}"
        with s3(good) as storage:
            storage.put_bytes("ok", b"fine")
        for uri in (
            f"s3://{bucket}/p?AUTH=specified&AWS_ACCESS_KEY_ID={key_id}"
            f"&AWS_SECRET_ACCESS_KEY={wrong_secret}",
            f"s3://{bucket}/p?AWS_ACCESS_KEY_ID=AKIAUNKNOWNKEY000000&AWS_SECRET_ACCESS_KEY=x1",
        ):
            with s3(uri) as storage, pytest.raises(StorageError) as caught:
                storage.read_bytes("ok")
            message = str(caught.value)
            assert "S3 rejected the credentials" in message
            assert f"s3://{bucket}/p/ok" in message
            assert "\n" not in message
            assert wrong_secret not in message
            assert "Wr0ng" not in message
            assert caught.value.exit_code == ExitCode.WORLD


def test_no_credentials_at_all(s3_env: MotoS3, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with s3(f"s3://{s3_env.bucket()}") as storage, pytest.raises(
        StorageError, match="no AWS credentials found"
    ):
        storage.stat("key")


def test_unreachable_endpoint(s3_env: MotoS3, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nobody listens on once this socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with s3(f"s3://bucket/p?AWS_ENDPOINT=http://127.0.0.1:{port}") as storage, pytest.raises(
        StorageError, match=f"cannot list s3://bucket/p: cannot reach http://127.0.0.1:{port}"
    ):
        list(storage.list())


# --- secrets -------------------------------------------------------------------------------------


SECRET = "SeCrEt/Key+Value0123456789abcdefXYZ"
TOKEN = "SessionTokenSecretValue9876"
KEY_ID = "AKIAREDACTIONTEST001"


def test_secrets_in_the_uri_appear_nowhere(s3_env: MotoS3) -> None:
    bucket = s3_env.bucket()
    quoted = SECRET.replace("/", "%2F").replace("+", "%2B")
    uri = (f"s3://{bucket}/backups?AUTH=specified&AWS_ACCESS_KEY_ID={KEY_ID}"
           f"&AWS_SECRET_ACCESS_KEY={quoted}&AWS_SESSION_TOKEN={TOKEN}&AWS_REGION=us-east-1")
    seen: list[str] = []
    with s3(uri) as storage:
        child = storage.child("bundle")
        seen += [str(storage), repr(storage), storage.display("k"), str(child), repr(child),
                 repr(storage.location), str(storage.location)]
        assert str(storage) == (f"s3://{bucket}/backups?AUTH=redacted&AWS_ACCESS_KEY_ID=redacted"
                                "&AWS_SECRET_ACCESS_KEY=redacted&AWS_SESSION_TOKEN=redacted"
                                "&AWS_REGION=redacted")
        child.put_bytes("data/file", b"payload")
        write(child, "big", 9 * MiB)
        for failing in (
            lambda: child.read_bytes("missing"),
            lambda: storage.check_write_options(WriteOptions(lock_mode="COMPLIANCE",
                                                             retain_until=TOMORROW)),
            lambda: child.put_bytes("x", b"x", options=WriteOptions(storage_class="NOPE")),
        ):
            with pytest.raises(Exception) as caught:
                failing()
            seen.append(str(caught.value))
        with s3(uri.replace(bucket, "missing-bucket-x")) as missing, pytest.raises(
            StorageError
        ) as caught_missing:
            list(missing.list())
        seen.append(str(caught_missing.value))
    for text in seen:
        for secret in (SECRET, quoted, TOKEN, KEY_ID):
            assert secret not in text
    stored = list(s3_env.object_bytes(bucket))
    assert [key for key, _ in stored] == ["backups/bundle/big", "backups/bundle/data/file"]
    for key, content in stored:
        for secret in (SECRET, quoted, TOKEN, KEY_ID):
            assert secret not in key
            assert secret.encode() not in content
