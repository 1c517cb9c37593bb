"""Every storage backend, for the contract suite: one factory per backend.

A factory yields a :class:`Backend`: a storage rooted somewhere empty, a URI that opens the
same root from another process (credentials come from the environment), how to find the
partial writes it may leave, and the capabilities it must have. Adding a backend to the suite
is adding its factory to BACKENDS. Use the ``backend`` fixture (from tests/conftest.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from crdb_archive.storage import Storage, open_storage
from crdb_archive.storage.azure import AzureStorage
from crdb_archive.storage.base import PARTIAL_PREFIX
from crdb_archive.storage.gcs import GcsStorage
from crdb_archive.storage.local import LocalStorage
from crdb_archive.storage.s3 import S3Storage
from support.azure import Azurite
from support.faultproxy import FaultProxy
from support.gcs import FakeGcs, open_upload_sessions
from support.s3 import MotoS3

CAPABILITIES = ("local_paths", "cold_storage", "retention_lock")


@dataclass
class Backend:
    storage: Storage
    uri: str  # opens the same root, from another process too
    # Partial writes the store keeps until someone removes them.
    leftovers: Callable[[], list[str]]
    capabilities: frozenset[str]
    storage_type: type[Storage]
    # Where the objects are served: a loopback endpoint, never a real cloud; None on disk.
    endpoint: str | None = None
    # A storage class the store offers besides its default one; None when it has none.
    storage_class: str | None = None
    # A fresh root where objects can be written under a retention lock, for RetentionLock;
    # None where the emulator cannot make one (the refusal is still tested).
    locked_root: Callable[[], Storage] | None = None


@contextmanager
def local_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    root = tmp_path / "root"

    def partial_files() -> list[str]:
        return [str(p) for p in root.rglob(f"{PARTIAL_PREFIX}*")]

    with open_storage(str(root), for_write=True) as local:
        yield Backend(local, str(root), partial_files, frozenset({"local_paths"}), LocalStorage)


@contextmanager
def s3_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    env: MotoS3 = request.getfixturevalue("s3_env")
    bucket = env.bucket()
    uri = f"s3://{bucket}/some/root"
    with open_storage(uri) as remote:
        yield Backend(remote, uri, lambda: env.multipart_uploads(bucket),
                      frozenset({"cold_storage", "retention_lock"}), S3Storage,
                      endpoint=os.environ["AWS_ENDPOINT_URL"], storage_class="STANDARD_IA",
                      locked_root=lambda: open_storage(
                          f"s3://{env.bucket(object_lock=True)}/locked"))


@contextmanager
def gcs_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    # Through a proxy that only logs: upload sessions are not listed by the store, so the log
    # tells the sessions left open.
    env: FakeGcs = request.getfixturevalue("gcs_env")
    proxy: FaultProxy = request.getfixturevalue("gcs_proxy")
    bucket = env.bucket()
    uri = f"gs://{bucket}/some/root"
    with open_storage(uri) as remote:
        # fake-gcs-server has no bucket with object retention or a retention policy: the
        # locked part of the RetentionLock contract cannot run there.
        yield Backend(remote, uri, lambda: open_upload_sessions(proxy),
                      frozenset({"retention_lock"}), GcsStorage,
                      endpoint=os.environ["STORAGE_EMULATOR_HOST"], storage_class="NEARLINE")


@contextmanager
def azure_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    env: Azurite = request.getfixturevalue("azure_env")
    container = env.container()
    uri = env.uri(container, "some/root")

    def stray_blocks() -> list[str]:
        # Blocks left uncommitted beside a committed blob: staged and then left out of the
        # blob's own list. The blocks of an upload that never committed are not blobs; the
        # service discards them (test_storage_azure.py pins down what such an upload leaves).
        committed = env.committed(container)
        return sorted(name for name in env.uncommitted(container) if name in committed)

    with open_storage(uri) as remote:
        # Azurite has no version-level immutability: no locked root can be made.
        yield Backend(remote, uri, stray_blocks, frozenset({"cold_storage", "retention_lock"}),
                      AzureStorage, endpoint=env.endpoint_url, storage_class="Cool")


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], AbstractContextManager[Backend]]] = {
    "local": local_backend,
    "s3": s3_backend,
    "gcs": gcs_backend,
    "azure": azure_backend,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend in turn, rooted somewhere empty."""
    with BACKENDS[request.param](request, tmp_path) as made:
        yield made
