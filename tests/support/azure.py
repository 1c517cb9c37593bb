"""An Azure Blob Storage endpoint on 127.0.0.1: Azurite, talked to by the real SDK.

Azurite is the npm package ``azurite``; the README's test command installs it into the
virtual environment (``npm install --prefix .venv/node azurite``), where this module finds it
(or on PATH). One server runs per test session with ``--skipApiVersionCheck`` (the SDK may be
newer than the emulator) and each test makes its own containers.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from azure.storage.blob import BlobServiceClient

from support.emulators import free_port, stop, wait_until_serving

# Azurite's well-known development account (published in its documentation).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")

_names = itertools.count(1)


def azurite_blob() -> Path:
    """The azurite-blob launcher: in the virtual environment's node folder, else on PATH."""
    local = Path(sys.prefix) / "node" / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return local
    found = shutil.which("azurite-blob")
    if found is None:
        raise RuntimeError("Azurite is not installed: run `npm install --prefix .venv/node "
                           "azurite` (the README's test command does)")
    return Path(found)


class Azurite:
    """The running server: its endpoint, SDK clients for it, fresh containers."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url  # http://127.0.0.1:<port>/devstoreaccount1

    def service(self, *, max_single_put_size: int = 64 << 20,
                max_block_size: int = 4 << 20) -> BlobServiceClient:
        """A real azure-storage-blob client (the sizes are the SDK's own settings)."""
        return BlobServiceClient(account_url=self.endpoint_url,
                                 credential={"account_name": ACCOUNT,
                                             "account_key": ACCOUNT_KEY},
                                 max_single_put_size=max_single_put_size,
                                 max_block_size=max_block_size)

    def container(self) -> str:
        """A new empty container with a name no other test uses."""
        name = f"az-test-{next(_names):05d}"
        with self.service() as service:
            service.create_container(name)
        return name

    def uri(self, container: str, prefix: str = "", *, scheme: str = "azure-blob") -> str:
        """A URI of ``container`` (and ``prefix``) with the account key and this endpoint, as a
        user would write it: the base64 key URL-encoded."""
        return (f"{scheme}://{container}/{prefix}?AZURE_ACCOUNT_NAME={ACCOUNT}"
                f"&AZURE_ACCOUNT_KEY={quote(ACCOUNT_KEY, safe='')}&ENDPOINT={self.endpoint_url}")

    def uncommitted(self, container: str) -> dict[str, int]:
        """Every name holding uncommitted blocks, and how many: what unfinished uploads left."""
        found: dict[str, int] = {}
        with self.service() as service:
            client = service.get_container_client(container)
            for blob in client.list_blobs(include=["uncommittedblobs"]):
                _, uncommitted = client.get_blob_client(blob.name).get_block_list("uncommitted")
                if uncommitted:
                    found[blob.name] = len(uncommitted)
        return found

    def committed(self, container: str) -> set[str]:
        return set(self.keys(container))

    def keys(self, container: str) -> list[str]:
        with self.service() as service:
            return sorted(b.name for b in service.get_container_client(container).list_blobs())

    def upload_tree(self, root: Path, prefix: str, *, container: str | None = None) -> str:
        """Copy every file below ``root`` to ``prefix`` in a container (a new one unless
        given), straight through the SDK; returns the location's URI."""
        container = container or self.container()
        with self.service() as service:
            client = service.get_container_client(container)
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                name = f"{prefix}/{path.relative_to(root).as_posix()}"
                client.get_blob_client(name).upload_blob(path.read_bytes(), overwrite=True)
        return self.uri(container, prefix)

    def xor_byte(self, container: str, name: str, offset: int) -> None:
        """Flip the bits of one byte of a blob in place (never a no-op, unlike a new value)."""
        with self.service() as service:
            blob = service.get_container_client(container).get_blob_client(name)
            data = bytearray(blob.download_blob().readall())
            data[offset] ^= 0xFF
            blob.upload_blob(bytes(data), overwrite=True)

    def object_bytes(self, container: str) -> Iterator[tuple[str, bytes]]:
        """Every blob's name and content, to search stored data for what must not be."""
        with self.service() as service:
            client = service.get_container_client(container)
            for blob in client.list_blobs():
                yield blob.name, client.download_blob(blob.name).readall()


def _connect(port: int) -> None:
    socket.create_connection(("127.0.0.1", port), timeout=1).close()


@contextmanager
def running_azurite(*options: str, scheme: str = "http") -> Iterator[str]:
    """An Azurite blob service on a free port of 127.0.0.1 with ``options`` (such as --cert,
    --key, --oauth); yields the account's endpoint."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="azurite-") as data:
        process = subprocess.Popen(
            [str(azurite_blob()), "--blobHost", "127.0.0.1", "--blobPort", str(port),
             "--location", data, "--skipApiVersionCheck", "--loose", "--silent", *options],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_serving("azurite-blob", process, lambda: _connect(port), seconds=60)
            yield f"{scheme}://127.0.0.1:{port}/{ACCOUNT}"
        finally:
            stop(process)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite's blob service on a free port of 127.0.0.1, for the whole session."""
    with running_azurite() as endpoint:
        yield Azurite(endpoint)


@pytest.fixture
def azure_env(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Azurite:
    """Nothing of the machine's own Azure configuration reaches the tests."""
    for name in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID",
                 "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT",
                 "AZURE_STORAGE_KEY", "AZURE_FEDERATED_TOKEN_FILE", "IDENTITY_ENDPOINT",
                 "MSI_ENDPOINT", "AZURE_AUTHORITY_HOST", "AZURE_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    return azurite
