"""The cloud emulators the tests start, exercised with the real SDKs alone.

These pin down what fake-gcs-server and Azurite do for the behaviours the storage backends are
tested on (conditional writes, ranged reads, stored checksums, the Archive tier), so that a
backend test failing is about the backend, not about an emulator that cannot do the thing.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from google.api_core.exceptions import PreconditionFailed

from support.azure import Azurite
from support.gcs import FakeGcs

BODY = bytes(range(256)) * 3000  # 750 KiB: several chunks of a resumable upload


def test_gcs_resumable_upload_reports_checksums_and_reads_ranges(fake_gcs: FakeGcs) -> None:
    bucket = fake_gcs.client().bucket(fake_gcs.bucket())
    blob = bucket.blob("data/file.bin")
    blob.chunk_size = 256 << 10  # a resumable upload of three chunks
    blob.upload_from_string(BODY, checksum="crc32c")
    blob.reload()
    assert blob.size == len(BODY)
    assert blob.md5_hash == base64.b64encode(hashlib.md5(BODY).digest()).decode()  # noqa: S324 - the store's own checksum
    assert blob.crc32c is not None
    assert blob.download_as_bytes(start=1000, end=1999) == BODY[1000:2000]


def test_gcs_create_if_absent_and_replace_if_generation(fake_gcs: FakeGcs) -> None:
    bucket = fake_gcs.client().bucket(fake_gcs.bucket())
    blob = bucket.blob("lock")
    blob.upload_from_string(b"first", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        bucket.blob("lock").upload_from_string(b"second", if_generation_match=0)
    blob.reload()
    generation = blob.generation
    blob.upload_from_string(b"third", if_generation_match=generation)
    with pytest.raises(PreconditionFailed):
        bucket.blob("lock").upload_from_string(b"fourth", if_generation_match=generation)
    assert bucket.blob("lock").download_as_bytes() == b"third"


def test_azure_blocks_conditions_and_ranges(azurite: Azurite) -> None:
    with azurite.service(max_single_put_size=64 << 10, max_block_size=256 << 10) as service:
        container = service.get_container_client(azurite.container())
        blob = container.get_blob_client("data/file.bin")
        blob.upload_blob(BODY, validate_content=True)  # three blocks, each with its MD5
        properties = blob.get_blob_properties()
        assert properties.size == len(BODY)
        assert blob.download_blob(offset=1000, length=1000).readall() == BODY[1000:2000]
        lock = container.get_blob_client("lock")
        lock.upload_blob(b"first", overwrite=False)
        with pytest.raises(ResourceExistsError):
            lock.upload_blob(b"second", overwrite=False)
        etag = lock.get_blob_properties().etag
        lock.upload_blob(b"third", overwrite=True, etag=etag,
                         match_condition=MatchConditions.IfNotModified)
        with pytest.raises(HttpResponseError):
            lock.upload_blob(b"fourth", overwrite=True, etag=etag,
                             match_condition=MatchConditions.IfNotModified)
        assert lock.download_blob().readall() == b"third"


def test_azure_archive_tier_refuses_reads_until_rehydrated(azurite: Azurite) -> None:
    with azurite.service() as service:
        container = service.get_container_client(azurite.container())
        blob = container.get_blob_client("cold.tar")
        blob.upload_blob(b"cold bytes")
        blob.set_standard_blob_tier("Archive")
        assert blob.get_blob_properties().blob_tier == "Archive"
        with pytest.raises(HttpResponseError) as refused:
            blob.download_blob().readall()
        assert getattr(refused.value, "error_code", None) == "BlobArchived"
