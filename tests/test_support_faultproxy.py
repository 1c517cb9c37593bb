"""The fault proxy itself: each fault does to a real client (boto3, azure-storage-blob) what it
promises."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import boto3
import pytest
from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from support.azure import ACCOUNT, ACCOUNT_KEY, Azurite
from support.faultproxy import (
    FaultProxy,
    fail_after,
    refuse,
    reset_after,
    short_body,
    stall,
    truncate_after,
)
from support.s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoS3

BODY = bytes(range(256)) * 4096  # 1 MiB


@contextlib.contextmanager
def client_via(proxy: FaultProxy, attempts: int = 1) -> Iterator[object]:
    client = boto3.session.Session().client(
        "s3", endpoint_url=proxy.url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(s3={"addressing_style": "path"},
                      retries={"mode": "standard", "total_max_attempts": attempts}),
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def stored(moto_s3: MotoS3) -> Iterator[tuple[FaultProxy, str]]:
    bucket = moto_s3.bucket()
    direct = moto_s3.client()
    direct.put_object(Bucket=bucket, Key="k", Body=BODY)
    direct.close()
    with FaultProxy(moto_s3.endpoint_url) as proxy:
        yield proxy, bucket


def test_clean_requests_pass_through(stored: tuple[FaultProxy, str]) -> None:
    proxy, bucket = stored
    with client_via(proxy) as client:
        body = client.get_object(Bucket=bucket, Key="k")["Body"].read()  # type: ignore[attr-defined]
    assert body == BODY
    [logged] = proxy.requests()
    assert (logged.method, logged.status, logged.body_bytes, logged.fault) == (
        "GET", 200, len(BODY), None)


def test_short_body_is_consistent_and_short(stored: tuple[FaultProxy, str]) -> None:
    proxy, bucket = stored
    proxy.fail("GET", r"/k$", short_body(1000))
    with client_via(proxy) as client:
        # A ranged GET: the client has no whole-object checksum to catch the cut with.
        answer = client.get_object(Bucket=bucket, Key="k", Range="bytes=0-99999")  # type: ignore[attr-defined]
        body = answer["Body"].read()
    assert body == BODY[:1000]
    assert answer["ContentLength"] == 1000
    assert answer["ContentRange"] == f"bytes 0-99999/{len(BODY)}"
    assert proxy.pending() == 0


@pytest.mark.parametrize("fault", [reset_after(5000), truncate_after(5000)])
def test_broken_bodies_raise_in_the_client(stored: tuple[FaultProxy, str], fault: object
                                           ) -> None:
    proxy, bucket = stored
    proxy.fail("GET", r"/k$", fault)  # type: ignore[arg-type]
    with client_via(proxy) as client, pytest.raises((BotoCoreError, OSError, ValueError)):
        client.get_object(Bucket=bucket, Key="k")["Body"].read()  # type: ignore[attr-defined]


def test_refuse_never_reaches_the_server(stored: tuple[FaultProxy, str],
                                         moto_s3: MotoS3) -> None:
    proxy, bucket = stored
    proxy.fail("PUT", r"/new$", refuse(500))
    with client_via(proxy) as client, pytest.raises(ClientError):
        client.put_object(Bucket=bucket, Key="new", Body=b"x")  # type: ignore[attr-defined]
    assert "new" not in moto_s3.all_keys(bucket)


def test_fail_after_applies_the_request(stored: tuple[FaultProxy, str],
                                        moto_s3: MotoS3) -> None:
    proxy, bucket = stored
    proxy.fail("PUT", r"/new$", fail_after(500))
    with client_via(proxy) as client, pytest.raises(ClientError):
        client.put_object(Bucket=bucket, Key="new", Body=b"x")  # type: ignore[attr-defined]
    assert "new" in moto_s3.all_keys(bucket)


def test_stall_holds_until_released(stored: tuple[FaultProxy, str]) -> None:
    proxy, bucket = stored
    proxy.fail("HEAD", r"/k$", stall(30))
    with client_via(proxy) as client:
        done = threading.Event()

        def head() -> None:
            client.head_object(Bucket=bucket, Key="k")  # type: ignore[attr-defined]
            done.set()

        worker = threading.Thread(target=head)
        worker.start()
        assert proxy.stalled.wait(10)
        assert not done.wait(0.3)
        proxy.release()
        worker.join(10)
    assert done.is_set()


def test_a_stalled_request_whose_client_hangs_up_is_never_forwarded(
    stored: tuple[FaultProxy, str], moto_s3: MotoS3
) -> None:
    proxy, bucket = stored
    proxy.fail("PUT", r"/dropped$", stall(30))
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(f"PUT /{bucket}/dropped HTTP/1.1\r\nHost: {host}\r\n"
                           "Content-Length: 1\r\n\r\nx".encode())
        assert proxy.stalled.wait(10)
    # The client is gone while its request is held: as if the network had lost it.
    assert proxy.wait_logged(1)
    [logged] = proxy.requests()
    assert (logged.method, logged.path, logged.fault, logged.status) == (
        "PUT", f"/{bucket}/dropped", "stall", None)
    assert "dropped" not in moto_s3.all_keys(bucket)


def test_a_short_chunked_body_is_sent_plain_and_short(azurite: Azurite) -> None:
    # Azurite sends listings chunked; a short body must still be short and consistent, not a
    # chunk cut in the middle that leaves the client waiting for the rest.
    container = azurite.container()
    seen: list[dict[str, str]] = []
    with FaultProxy(azurite.endpoint_url.rsplit("/", 1)[0]) as proxy, BlobServiceClient(
        f"{proxy.url}/{ACCOUNT}", credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY},
        retry_total=0, read_timeout=20,
    ) as service:
        proxy.fail("GET", rf"/{container}$", short_body(20))
        listing = service.get_container_client(container).list_blobs(
            raw_response_hook=lambda answer: seen.append(dict(answer.http_response.headers)))
        with pytest.raises(AzureError):
            list(listing)
        [logged] = proxy.requests()
    assert (logged.fault, logged.body_bytes) == ("short", 20)
    assert seen[0]["Content-Length"] == "20"
    assert "Transfer-Encoding" not in seen[0]
