"""Cloud Storage through a fault proxy: reads resumed or failed with their attempt count, never
short; uploads completed, or failed leaving no object; an endpoint nobody answers on found fast.

fake-gcs-server stands behind the proxy; the real SDK and our HTTP session talk to the proxy.
"""

from __future__ import annotations

import datetime as dt
import os
import re

import pytest

from crdb_archive.errors import ExitCode, ObjectNotFound, StorageError
from crdb_archive.storage import Storage, WriteOptions, open_storage
from crdb_archive.storage.gcs import GcsStorage
from support.faultproxy import (
    FaultProxy,
    fail_after,
    refuse,
    reset_after,
    short_body,
    truncate_after,
)
from support.gcs import FakeGcs, open_upload_sessions, upload_id

MiB = 1 << 20
BODY = os.urandom(3 * MiB + 12345)
MEDIA = r"^/download/storage/v1/b/"
UPLOAD = r"^/upload/storage/v1/b/"


@pytest.fixture
def storage(gcs_env: FakeGcs, gcs_proxy: FaultProxy) -> GcsStorage:
    opened = open_storage(f"gs://{gcs_env.bucket()}/faults")
    assert isinstance(opened, GcsStorage)
    return opened


def read(storage: Storage, key: str, start: int = 0, length: int | None = None) -> bytes:
    with storage.open_read(key, start=start, length=length) as reader:
        return reader.read()


@pytest.mark.parametrize("fault", [reset_after(1000), truncate_after(64 << 10),
                                   short_body(5000), refuse(503), refuse(429)])
def test_a_broken_read_is_resumed_from_the_byte_reached(
    storage: GcsStorage, gcs_proxy: FaultProxy, fault: object,
) -> None:
    storage.put_bytes("obj", BODY)
    gcs_proxy.clear_log()
    gcs_proxy.fail("GET", MEDIA, fault, times=2)  # type: ignore[arg-type]
    assert read(storage, "obj") == BODY
    assert read(storage, "obj", start=100, length=2 * MiB) == BODY[100:100 + 2 * MiB]
    gets = [r for r in gcs_proxy.requests() if r.method == "GET"]
    assert len(gets) > 2
    # Every read after the first of an object asks for the generation the first one saw.
    resumed = [r for r in gets if "generation=" in r.query]
    assert all(re.search(r"generation=\d+", r.query) for r in resumed)


def test_reads_give_up_after_the_attempts_and_say_so(
    storage: GcsStorage, gcs_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_GCS_MAX_ATTEMPTS", "3")
    with open_storage(storage.display()) as fresh:
        fresh.put_bytes("obj", BODY)
        gcs_proxy.fail("GET", MEDIA, truncate_after(1000), times=3)
        with pytest.raises(StorageError, match="the transfer broke 3 times") as caught:
            read(fresh, "obj")
        assert caught.value.exit_code == ExitCode.WORLD
        assert f"{fresh.display('obj')}: " in str(caught.value)
        gcs_proxy.fail("GET", MEDIA, refuse(503), times=3)
        with pytest.raises(StorageError, match=r"unavailable or throttling \(503\) after 3 "
                                               "attempts"):
            read(fresh, "obj")


def test_an_object_replaced_while_read_is_never_stitched(
    storage: GcsStorage, gcs_proxy: FaultProxy, gcs_env: FakeGcs,
) -> None:
    storage.put_bytes("obj", BODY)
    gcs_proxy.fail("GET", MEDIA, truncate_after(1000))
    with storage.open_read("obj") as reader:
        # Between the first answer and its resumption, another writer replaces the object.
        storage.put_bytes("obj", b"other content " * 1000)
        with pytest.raises(StorageError, match="replaced or cut short while it was being read"):
            reader.read()


def test_missing_objects_and_buckets(storage: GcsStorage, gcs_env: FakeGcs) -> None:
    with pytest.raises(ObjectNotFound, match="faults/none"):
        read(storage, "none")
    with open_storage("gs://no-such-bucket-here/x") as missing:
        with pytest.raises(StorageError, match="bucket no-such-bucket-here does not exist"):
            missing.stat("a")
        with pytest.raises(StorageError, match="bucket no-such-bucket-here does not exist"):
            list(missing.list())


def test_a_lost_answer_to_a_single_request_upload(
    storage: GcsStorage, gcs_proxy: FaultProxy,
) -> None:
    data = os.urandom(10_000)
    gcs_proxy.fail("POST", UPLOAD, fail_after(500), query="uploadType=multipart")
    storage.put_bytes("obj", data)
    assert gcs_proxy.pending() == 0
    assert read(storage, "obj") == data


@pytest.mark.parametrize("fault", [fail_after(502), reset_after(0)])
def test_a_lost_answer_to_the_last_chunk_of_an_upload(
    storage: GcsStorage, gcs_proxy: FaultProxy, fault: object,
) -> None:
    data = os.urandom(20 * MiB)
    with storage.open_write("obj", size_hint=len(data)) as writer:
        writer.write(data[:17 * MiB])  # two chunks of 8 MiB are sent
        # The store completes the upload with the last chunk, and its answer is lost: the
        # session is gone then, and the object found is the one sent.
        gcs_proxy.fail("PUT", UPLOAD, fault, query="upload_id=")  # type: ignore[arg-type]
        writer.write(data[17 * MiB:])
    assert gcs_proxy.pending() == 0
    assert read(storage, "obj") == data
    assert open_upload_sessions(gcs_proxy) == []


def test_a_chunk_whose_answer_is_lost_leaves_no_object_when_the_store_ends_the_upload(
    storage: GcsStorage, gcs_proxy: FaultProxy,
) -> None:
    # fake-gcs-server completes an upload when asked how much of it it holds, as GCS does
    # not; the writer sees an object it did not finish, removes it, and fails.
    gcs_proxy.fail("PUT", UPLOAD, refuse(503), query="upload_id=")
    with pytest.raises(StorageError, match="completed the upload after") as caught, \
            storage.open_write("obj") as writer:
        writer.write(os.urandom(20 * MiB))
    assert "nothing was kept" in str(caught.value)
    assert storage.stat("obj") is None
    assert list(storage.list()) == []


def test_uploads_give_up_after_the_attempts_leaving_nothing(
    gcs_env: FakeGcs, gcs_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_GCS_MAX_ATTEMPTS", "2")
    with open_storage(f"gs://{gcs_env.bucket()}/u") as storage:
        gcs_proxy.fail("POST", UPLOAD, refuse(500), times=2)
        with pytest.raises(StorageError, match=r"\(500\) after 2 attempts"):
            storage.put_bytes("small", b"x" * 100)
        gcs_proxy.fail("POST", UPLOAD, refuse(503), query="uploadType=resumable", times=2)
        with pytest.raises(StorageError, match=r"start the upload of .*\(503\) after 2 "
                                               "attempts"):
            storage.put_bytes("large", b"x" * (9 * MiB))
        assert list(storage.list()) == []
        assert open_upload_sessions(gcs_proxy) == []


def test_a_storage_class_the_store_drops_is_not_passed_off(
    storage: GcsStorage, gcs_proxy: FaultProxy,
) -> None:
    # fake-gcs-server ignores the class given when a resumable upload starts: the writer
    # finds the object in another class, removes it, and fails.
    with pytest.raises(StorageError, match="did not apply the storage class NEARLINE"), \
            storage.open_write("big", options=WriteOptions("NEARLINE")) as writer:
        writer.write(os.urandom(9 * MiB))
    assert storage.stat("big") is None
    # One request carries the class, and the store applies it.
    storage.put_bytes("small", b"x", options=WriteOptions("NEARLINE"))
    info = storage.stat("small")
    assert info is not None
    assert info.storage_class == "NEARLINE"


def test_an_endpoint_nobody_answers_on_fails_fast(monkeypatch: pytest.MonkeyPatch,
                                                 gcs_env: FakeGcs) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
    with open_storage("gs://bkt-nowhere/x") as storage, \
            pytest.raises(StorageError) as caught:
        storage.stat("k")
    message = str(caught.value)
    assert message.startswith("cannot read gs://bkt-nowhere/x/k: cannot reach "
                              "http://127.0.0.1:9 (connection refused) after 3 attempts")
    assert caught.value.exit_code == ExitCode.WORLD


def test_retention_on_objects_is_reported_and_respected(
    storage: GcsStorage, gcs_env: FakeGcs,
) -> None:
    # The emulator keeps the retention an object is written with (its buckets cannot enforce
    # it): what stat reports, and what delete refuses, come from the object's own metadata.
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    blob = gcs_env.client().bucket(storage.bucket).blob("faults/kept")
    blob.retention.mode = "Locked"
    blob.retention.retain_until_time = until
    blob.upload_from_string(b"kept")
    info = storage.stat("kept")
    assert info is not None
    assert info.lock_mode == "COMPLIANCE"
    assert info.retain_until is not None
    assert abs(info.retain_until - until) < dt.timedelta(seconds=1)
    assert [i.lock_mode for i in storage.list()] == ["COMPLIANCE"]
    storage.put_bytes("free", b"x")
    with pytest.raises(StorageError, match="retention COMPLIANCE until"):
        storage.delete("kept")
    with pytest.raises(StorageError, match="retention COMPLIANCE until"):
        storage.delete_tree("")
    assert sorted(i.key for i in storage.list()) == ["free", "kept"]  # nothing deleted
    assert storage.read_bytes("kept") == b"kept"


def test_upload_sessions_are_named_in_no_message(
    storage: GcsStorage, gcs_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_GCS_MAX_ATTEMPTS", "1")
    with open_storage(storage.display()) as fresh:
        gcs_proxy.fail("PUT", UPLOAD, refuse(400), query="upload_id=")
        with pytest.raises(StorageError) as caught:
            fresh.put_bytes("large", os.urandom(9 * MiB))
    sessions = {upload_id(r) for r in gcs_proxy.requests()} - {None}
    assert sessions
    for session in sessions:
        assert str(session) not in str(caught.value)
    assert "upload_id" not in str(caught.value)
