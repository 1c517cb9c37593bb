"""S3 reads and writes through a network that breaks: whole bytes or a storage error, never a
short file, and no multipart upload left behind."""

from __future__ import annotations

import hashlib
import os
from contextlib import closing

import pytest

from crdb_archive.errors import StorageError
from crdb_archive.storage.base import open_storage
from crdb_archive.storage.ranged import RangedReader
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

DATA = os.urandom(3 * (1 << 20) + 12345)

BODY_FAULTS = [short_body(1000), reset_after(1000), truncate_after(1000), reset_after(0),
               short_body(0), truncate_after(1 << 20)]


@pytest.fixture
def stored(s3_env: MotoS3) -> str:
    bucket = s3_env.bucket()
    with closing(s3_env.client()) as client:
        client.put_object(Bucket=bucket, Key="dir/object", Body=DATA)
    return bucket


@pytest.mark.parametrize("fault", BODY_FAULTS, ids=lambda f: f"{f.kind}-{f.after}")
def test_broken_body_is_resumed_to_the_last_byte(stored: str, s3_proxy: FaultProxy,
                                                 fault: Fault) -> None:
    s3_proxy.fail("GET", r"/dir/object$", fault, times=3)
    with open_storage(f"s3://{stored}/dir") as storage, storage.open_read("object") as reader:
        assert hashlib.sha256(reader.read()).digest() == hashlib.sha256(DATA).digest()
    assert s3_proxy.pending() == 0
    gets = [r for r in s3_proxy.requests() if r.method == "GET"]
    assert len(gets) == 4
    # Each resumption asks only for what is still missing (bytes sent before a reset may be
    # lost on the way, so they may be asked for again).
    assert len(DATA) <= sum(r.body_bytes for r in gets) <= len(DATA) + 3 * fault.after


@pytest.mark.parametrize("fault", BODY_FAULTS[:3], ids=lambda f: f"{f.kind}-{f.after}")
def test_ranged_window_is_resumed(stored: str, s3_proxy: FaultProxy, fault: Fault) -> None:
    s3_proxy.fail("GET", r"/dir/object$", fault, times=2)
    with open_storage(f"s3://{stored}/dir") as storage, storage.open_read(
            "object", start=5000, length=200_000) as reader:
        assert reader.read() == DATA[5000:205_000]


@pytest.mark.parametrize("fault", BODY_FAULTS[:3], ids=lambda f: f"{f.kind}-{f.after}")
def test_parallel_ranges_come_out_whole(stored: str, s3_proxy: FaultProxy, fault: Fault
                                        ) -> None:
    s3_proxy.fail("GET", r"/dir/object$", fault, times=6)
    with open_storage(f"s3://{stored}/dir") as storage, RangedReader(
            storage, "object", len(DATA), part_size=256 << 10, parallel=3) as reader:
        assert reader.read() == DATA
    assert s3_proxy.pending() == 0


def test_attempts_run_out_as_a_storage_error(stored: str, s3_proxy: FaultProxy,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    s3_proxy.fail("GET", r"/dir/object$", short_body(100), times=10)
    with open_storage(f"s3://{stored}/dir") as storage, pytest.raises(StorageError) as caught, \
            storage.open_read("object") as reader:
        reader.read()
    message = str(caught.value)
    assert f"s3://{stored}/dir/object" in message
    assert "3 times" in message
    assert "300 of" in message


def test_object_replaced_during_a_resumed_read(stored: str, s3_proxy: FaultProxy,
                                               s3_env: MotoS3) -> None:
    s3_proxy.fail("GET", r"/dir/object$", truncate_after(100))
    with open_storage(f"s3://{stored}/dir") as storage, storage.open_read("object") as reader:
        assert reader.read(10) == DATA[:10]
        with closing(s3_env.client()) as client:
            client.put_object(Bucket=stored, Key="dir/object", Body=DATA[::-1])
        with pytest.raises(StorageError, match="replaced while it was being read"):
            reader.read()


def test_read_bytes_of_a_small_object_survives_a_short_body(stored: str, s3_proxy: FaultProxy,
                                                            s3_env: MotoS3) -> None:
    with closing(s3_env.client()) as client:
        client.put_object(Bucket=stored, Key="dir/small", Body=b"0123456789" * 10)
    s3_proxy.fail("GET", r"/dir/small$", short_body(7))
    with open_storage(f"s3://{stored}/dir") as storage:
        assert storage.read_bytes("small") == b"0123456789" * 10
        assert storage.read_bytes("object", limit=len(DATA)) == DATA


def test_status_faults_on_reads_are_retried(stored: str, s3_proxy: FaultProxy) -> None:
    s3_proxy.fail("GET", r"/dir/object$", refuse(500), fail_after(503))
    with open_storage(f"s3://{stored}/dir") as storage, storage.open_read("object") as reader:
        assert reader.read() == DATA


def test_empty_object_and_range_past_the_end(stored: str, s3_env: MotoS3) -> None:
    with closing(s3_env.client()) as client:
        client.put_object(Bucket=stored, Key="dir/empty", Body=b"")
    with open_storage(f"s3://{stored}/dir") as storage:
        with storage.open_read("empty") as reader:
            assert reader.read() == b""
        with storage.open_read("object", start=len(DATA) + 5) as reader:
            assert reader.read() == b""


# --- writes ------------------------------------------------------------------------------------

MiB = 1 << 20
BIG = os.urandom(17 * MiB + 5)  # three parts of 8 MiB at most


def upload(bucket: str, key: str, data: bytes) -> None:
    with open_storage(f"s3://{bucket}") as storage, storage.open_write(
            key, size_hint=len(data)) as writer:
        for offset in range(0, len(data), MiB):
            writer.write(data[offset:offset + MiB])


def stored_bytes(env: MotoS3, bucket: str, key: str) -> bytes:
    with closing(env.client()) as client:
        body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


CREATE = r"(^|&)uploads(=|&|$)"
COMPLETE = r"uploadId="


@pytest.mark.parametrize("fault", [fail_after(500), reset_after(0), short_body(20),
                                   truncate_after(30)], ids=lambda f: f.kind)
def test_lost_answer_to_complete_is_a_success(s3_env: MotoS3, s3_proxy: FaultProxy,
                                             fault: Fault) -> None:
    bucket = s3_env.bucket()
    s3_proxy.fail("POST", r"/big$", fault, query=COMPLETE)
    upload(bucket, "big", BIG)
    assert s3_proxy.pending() == 0
    assert stored_bytes(s3_env, bucket, "big") == BIG
    assert s3_env.multipart_uploads(bucket) == []


@pytest.mark.parametrize("fault", [fail_after(500), reset_after(0), short_body(20),
                                   truncate_after(30)], ids=lambda f: f.kind)
def test_lost_answer_to_create_leaves_no_upload(s3_env: MotoS3, s3_proxy: FaultProxy,
                                               fault: Fault) -> None:
    bucket = s3_env.bucket()
    s3_proxy.fail("POST", r"/big$", fault, query=CREATE, times=2)
    upload(bucket, "big", BIG)
    assert s3_proxy.pending() == 0
    assert stored_bytes(s3_env, bucket, "big") == BIG
    assert s3_env.multipart_uploads(bucket) == []


def test_other_writers_uploads_are_left_alone(s3_env: MotoS3, s3_proxy: FaultProxy) -> None:
    bucket = s3_env.bucket()
    with closing(s3_env.client()) as client:
        other = client.create_multipart_upload(Bucket=bucket, Key="other")["UploadId"]
    s3_proxy.fail("POST", r"/big$", fail_after(500), query=CREATE)
    upload(bucket, "big", BIG)
    assert s3_env.multipart_uploads(bucket) == ["other"]
    with closing(s3_env.client()) as client:
        client.abort_multipart_upload(Bucket=bucket, Key="other", UploadId=other)


def test_lost_answers_to_a_small_put_are_a_success(s3_env: MotoS3, s3_proxy: FaultProxy,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    bucket = s3_env.bucket()
    s3_proxy.fail("PUT", r"/small$", fail_after(500), times=2)
    upload(bucket, "small", b"payload" * 100)
    assert s3_proxy.pending() == 0
    assert stored_bytes(s3_env, bucket, "small") == b"payload" * 100


def test_complete_refused_to_the_end_fails_and_aborts(s3_env: MotoS3, s3_proxy: FaultProxy,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    bucket = s3_env.bucket()
    s3_proxy.fail("POST", r"/big$", refuse(500), query=COMPLETE, times=5)
    s3_proxy.fail("POST", r"/big$", fail_after(500), query=CREATE)
    with pytest.raises(StorageError, match=f"s3://{bucket}/big"):
        upload(bucket, "big", BIG)
    assert s3_env.all_keys(bucket) == []
    assert s3_env.multipart_uploads(bucket) == []


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
def test_uploads_under_chaos_leave_nothing_open(s3_env: MotoS3, s3_proxy: FaultProxy,
                                                seed: int) -> None:
    bucket = s3_env.bucket()
    data = BIG[:9 * MiB + seed]
    s3_proxy.chaos(0.3, refuse(500), fail_after(500), reset_after(0), truncate_after(10),
                   short_body(10), seed=seed)
    try:
        upload(bucket, "big", data)
        written = True
    except StorageError:
        written = False
    s3_proxy.calm()
    assert s3_env.multipart_uploads(bucket) == []
    if written:
        assert stored_bytes(s3_env, bucket, "big") == data
