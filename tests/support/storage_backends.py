"""Every storage backend, for the contract suite: one factory per backend.

A factory yields a :class:`Backend`: a storage rooted somewhere empty, a URI that opens the
same root from another process (credentials come from the environment), how to find the
partial writes it may leave, and the capabilities it must have. Adding a backend to the suite
is adding its factory to BACKENDS. Use the ``backend`` fixture (from tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from crdb_archive.storage import Storage, open_storage
from crdb_archive.storage.base import PARTIAL_PREFIX
from support.faultproxy import FaultProxy
from support.gcs import FakeGcs, open_upload_sessions
from support.s3 import MotoS3

CAPABILITIES = ("local_paths", "cold_storage", "retention_lock")


@dataclass
class Backend:
    storage: Storage
    uri: str  # opens the same root, from another process too
    leftovers: Callable[[], list[str]]  # partial writes still lying around
    capabilities: frozenset[str]
    # A fresh root where objects can be written under a retention lock, for RetentionLock
    # (None where the store the tests run cannot make one).
    locked_root: Callable[[], Storage] | None = None
    # A storage class other than the default, where the store has classes.
    storage_class: str | None = None


@contextmanager
def local_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    root = tmp_path / "root"

    def partial_files() -> list[str]:
        return [str(p) for p in root.rglob(f"{PARTIAL_PREFIX}*")]

    with open_storage(str(root), for_write=True) as local:
        yield Backend(local, str(root), partial_files, frozenset({"local_paths"}))


@contextmanager
def s3_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    env: MotoS3 = request.getfixturevalue("s3_env")
    bucket = env.bucket()
    uri = f"s3://{bucket}/some/root"
    with open_storage(uri) as remote:
        yield Backend(remote, uri, lambda: env.multipart_uploads(bucket),
                      frozenset({"cold_storage", "retention_lock"}),
                      lambda: open_storage(f"s3://{env.bucket(object_lock=True)}/locked"),
                      "STANDARD_IA")


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
                      frozenset({"retention_lock"}), None, "NEARLINE")


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], AbstractContextManager[Backend]]] = {
    "local": local_backend,
    "s3": s3_backend,
    "gcs": gcs_backend,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend in turn, rooted somewhere empty."""
    with BACKENDS[request.param](request, tmp_path) as made:
        yield made
