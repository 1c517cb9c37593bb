"""Receipts of uploads and Storage.confirm, on moto's S3 server, fake-gcs-server and Azurite.

The checksums a receipt must hold are computed here from the test's own bytes (hashlib, base64,
google-crc32c), in the forms each store documents; the stores are real servers on 127.0.0.1,
and what they hold is changed behind the writer's back through their own SDKs.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import pytest
from azure.storage.blob import BlobBlock

from crdb_archive.errors import ObjectNotFound
from crdb_archive.storage import Storage, open_storage
from crdb_archive.storage.receipts import Receipt
from support.azure import Azurite
from support.gcs import FakeGcs
from support.s3 import MotoS3

PART = 8 << 20  # the first part (S3), chunk (Cloud Storage) and block (Azure) size
SMALL = b"a small object\n" * 100
LARGE = os.urandom(PART) + os.urandom(PART // 2 + 7)


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def s3_form(data: bytes) -> dict[str, str]:
    """x-amz-checksum-sha256 of an object written as this code writes it: one PUT up to a
    part, else parts of 8 MiB and the SHA-256 of their digests, then "-<parts>"."""
    if len(data) <= PART:
        return {"sha256": b64(hashlib.sha256(data).digest())}
    parts = [data[i:i + PART] for i in range(0, len(data), PART)]
    joined = b"".join(hashlib.sha256(p).digest() for p in parts)
    return {"sha256-composite": f"{b64(hashlib.sha256(joined).digest())}-{len(parts)}"}


def gcs_form(data: bytes) -> dict[str, str]:
    return {"crc32c": b64(google_crc32c.Checksum(data).digest()),  # type: ignore[no-untyped-call]
            "md5": b64(hashlib.md5(data).digest())}  # noqa: S324 - the store's form


def azure_form(data: bytes) -> dict[str, str]:
    return {"md5": b64(hashlib.md5(data).digest())}  # noqa: S324 - the store's form


@dataclass
class Store:
    storage: Storage
    form: Callable[[bytes], dict[str, str]]
    # Replace the object at a key (below the storage's root) through the store's own SDK;
    # ``checksum`` False writes it so that the store keeps none of the receipt's checksums.
    replace: Callable[[str, bytes, bool], None]
    # Whether the store can hold an object without any of the receipt's checksums.
    can_drop_checksum: bool = True


@pytest.fixture(params=["s3", "gcs", "azure"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    maker = {"s3": _s3, "gcs": _gcs, "azure": _azure}[request.param]
    yield from maker(request)


def _s3(request: pytest.FixtureRequest) -> Iterator[Store]:
    s3: MotoS3 = request.getfixturevalue("s3_env")
    bucket = s3.bucket()

    def replace(key: str, data: bytes, checksum: bool) -> None:
        extra = {"ChecksumAlgorithm": "SHA256"} if checksum else {}
        with closing(s3.client()) as client:
            client.put_object(Bucket=bucket, Key=f"root/{key}", Body=data, **extra)  # type: ignore[arg-type]

    with open_storage(f"s3://{bucket}/root") as storage:
        yield Store(storage, s3_form, replace)


def _gcs(request: pytest.FixtureRequest) -> Iterator[Store]:
    gcs: FakeGcs = request.getfixturevalue("gcs_env")
    bucket = gcs.bucket()

    def replace(key: str, data: bytes, checksum: bool) -> None:
        gcs.client().bucket(bucket).blob(f"root/{key}").upload_from_string(data)

    with open_storage(f"gs://{bucket}/root", endpoint_url=gcs.endpoint_url) as storage:
        # Cloud Storage computes CRC32C and MD5 of every object it stores, whoever wrote it.
        yield Store(storage, gcs_form, replace, can_drop_checksum=False)


def _azure(request: pytest.FixtureRequest) -> Iterator[Store]:
    azure: Azurite = request.getfixturevalue("azure_env")
    container = azure.container()

    def replace(key: str, data: bytes, checksum: bool) -> None:
        with azure.service() as service:
            blob = service.get_container_client(container).get_blob_client(f"root/{key}")
            if checksum:  # Put Blob: the service computes Content-MD5
                blob.upload_blob(data, overwrite=True)
                return
            # A block list committed without Content-MD5 leaves the blob without one.
            blob.stage_block("YmxvY2stMQ==", data)
            blob.commit_block_list([BlobBlock("YmxvY2stMQ==")])

    with open_storage(azure.uri(container, "root")) as storage:
        yield Store(storage, azure_form, replace)


def written(storage: Storage, key: str, data: bytes) -> Receipt:
    """Write ``data`` in pieces smaller than a part, as a bundle writer does; its receipt."""
    with storage.open_write(key, size_hint=len(data)) as writer:
        for start in range(0, len(data), 1 << 20):
            writer.write(data[start:start + (1 << 20)])
    receipt = writer.receipt
    assert receipt is not None
    return receipt


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["one-request", "multipart"])
def test_receipt_holds_the_stores_checksum_and_the_store_confirms_it(
        store: Store, data: bytes) -> None:
    receipt = written(store.storage, "dir/object", data)
    assert (receipt.key, receipt.size) == ("dir/object", len(data))
    assert dict(receipt.checksums) == store.form(data)
    confirmation = store.storage.confirm(receipt)
    assert (confirmation.ok, confirmation.how, confirmation.bytes_read) == (True, "store", 0)


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["one-request", "multipart"])
def test_an_object_replaced_after_its_upload_is_not_confirmed(
        store: Store, data: bytes) -> None:
    receipt = written(store.storage, "object", data)
    other = bytes([data[0] ^ 0xFF]) + data[1:]  # same size, one byte differs
    store.replace("object", other, True)
    confirmation = store.storage.confirm(receipt)
    assert confirmation.how == "store"
    assert confirmation.problem is not None
    assert "computed while uploading" in confirmation.problem


def test_without_the_stores_checksum_the_object_is_read_back(store: Store) -> None:
    if not store.can_drop_checksum:
        pytest.skip("this store keeps its checksums of every object")
    receipt = written(store.storage, "object", LARGE)
    store.replace("object", LARGE, False)  # the same bytes, no checksum to compare with
    same = store.storage.confirm(receipt)
    assert (same.ok, same.how, same.bytes_read) == (True, "read", len(LARGE))
    damaged = LARGE[:-1] + bytes([LARGE[-1] ^ 0x01])
    store.replace("object", damaged, False)
    differs = store.storage.confirm(receipt)
    assert (differs.how, differs.bytes_read) == ("read", len(LARGE))
    assert differs.problem is not None
    store.replace("object", LARGE[:100], False)
    short = store.storage.confirm(receipt)
    assert short.problem is not None
    assert "bytes where" in short.problem


def test_a_missing_object_is_not_found(store: Store) -> None:
    receipt = written(store.storage, "object", SMALL)
    store.storage.delete("object")
    with pytest.raises(ObjectNotFound):
        store.storage.confirm(receipt)


def test_staging_collects_a_receipt_of_every_object_it_publishes(store: Store) -> None:
    with store.storage.staging("tree") as staging:
        with staging.open_member("tree/data/a", size_hint=len(LARGE)) as writer:
            writer.write(LARGE)
        staging.publish_tree("tree/last", SMALL)
        receipts = {r.key: dict(r.checksums) for r in staging.receipts()}
    assert receipts == {"tree/data/a": store.form(LARGE), "tree/last": store.form(SMALL)}


def test_a_local_directory_has_nothing_to_confirm(tmp_path: Path) -> None:
    with open_storage(str(tmp_path / "root"), for_write=True) as storage:
        with storage.open_write("object") as writer:
            writer.write(SMALL)
        assert writer.receipt is None
        with storage.staging("tree") as staging:
            staging.publish_tree("tree/last", SMALL)
            assert staging.receipts() == []
