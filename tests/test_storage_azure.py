"""What only Azure does, on Azurite with the real SDK: blocks and what an unfinished upload
leaves, the Archive tier, the refusals before any byte, and a network that breaks reads and
block uploads (through the fault proxy)."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from azure.storage.blob import BlobClient

from crdb_archive.errors import (
    BadInput,
    Interrupted,
    NeedsRestoreFromColdStorage,
    StorageError,
)
from crdb_archive.storage import Storage, WriteOptions, open_storage
from support.azure import ACCOUNT, ACCOUNT_KEY, Azurite
from support.cli import run_subprocess
from support.faultproxy import (
    Fault,
    FaultProxy,
    fail_after,
    refuse,
    reset_after,
    short_body,
    through,
    truncate_after,
)

MiB = 1 << 20
DATA = hashlib.sha256(b"azure").digest() * (10 * MiB // 32 + 3)  # 10 MiB and change


def blob(env: Azurite, container: str, name: str) -> BlobClient:
    return env.service().get_container_client(container).get_blob_client(name)


@pytest.fixture(autouse=True)
def _attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_MAX_ATTEMPTS", raising=False)


def test_large_blobs_are_committed_blocks_each_sent_with_its_md5(azure_env: Azurite) -> None:
    container = azure_env.container()
    with open_storage(azure_env.uri(container, "p")) as storage:
        with storage.open_write("big", size_hint=len(DATA)) as writer:
            for offset in range(0, len(DATA), 3 * MiB):
                writer.write(DATA[offset:offset + 3 * MiB])
        with storage.open_read("big") as reader:
            assert reader.read() == DATA
    committed, uncommitted = blob(azure_env, container, "p/big").get_block_list("all")
    # 8 MiB blocks: two of them for 10 MiB, all committed, none left aside.
    assert [block.size for block in committed] == [8 * MiB, len(DATA) - 8 * MiB]
    assert uncommitted == []


def write_then_stop(storage: Storage, key: str, data: bytes) -> None:
    with storage.open_write(key) as writer:
        writer.write(data)
        raise Interrupted("interrupted by SIGTERM")


def test_an_unfinished_upload_leaves_no_blob_only_uncommitted_blocks(
    azure_env: Azurite,
) -> None:
    container = azure_env.container()
    with open_storage(azure_env.uri(container)) as storage:
        with pytest.raises(Interrupted):
            write_then_stop(storage, "cut", DATA[:9 * MiB])  # one block staged
        assert storage.stat("cut") is None
        assert list(storage.list()) == []
        # Invisible, and the service's to discard: a week on, or when the next writer of the
        # name commits its own block list.
        assert azure_env.uncommitted(container) == {"cut": 1}
        storage.put_bytes("cut", DATA)
        assert azure_env.uncommitted(container) == {}
        assert storage.read_bytes("cut", limit=len(DATA)) == DATA


@pytest.mark.parametrize("tier", ["Hot", "Cool", "Cold", "Archive"])
def test_every_tier_is_set_on_single_puts_and_block_lists(azure_env: Azurite,
                                                          tier: str) -> None:
    container = azure_env.container()
    with open_storage(azure_env.uri(container)) as storage:
        storage.put_bytes("small", b"x", options=WriteOptions(storage_class=tier))
        storage.put_bytes("large", DATA, options=WriteOptions(storage_class=tier))
        assert {info.key: info.storage_class for info in storage.list()} == {
            "large": tier, "small": tier}


def test_the_archive_tier_refuses_reads_until_rehydrated(azure_env: Azurite) -> None:
    container = azure_env.container()
    with open_storage(azure_env.uri(container)) as storage:
        storage.check_write_options(WriteOptions(storage_class="Archive"))
        storage.put_bytes("cold.tar", b"cold bytes", options=WriteOptions(storage_class="Archive"))
        info = storage.stat("cold.tar")
        assert info is not None
        assert (info.storage_class, info.restore, info.readable) == ("Archive", "needed", False)
        assert [(i.key, i.restore) for i in storage.list()] == [("cold.tar", "needed")]
        with pytest.raises(NeedsRestoreFromColdStorage, match="Archive tier") as refused:
            storage.read_bytes("cold.tar")
        assert "restore-request" in str(refused.value)
        cold = storage.cold_storage()
        assert cold is not None
        with pytest.raises(BadInput, match="restore tier"):
            cold.request_restore("cold.tar", days=1, tier="Fast")
        # Azurite rehydrates at once, where Azure takes hours (and says rehydrate-pending).
        assert cold.request_restore("cold.tar", days=1, tier="Expedited") == "available"
        assert storage.read_bytes("cold.tar") == b"cold bytes"
        info = storage.stat("cold.tar")
        assert info is not None
        assert (info.storage_class, info.restore) == ("Hot", "not-needed")
        assert cold.request_restore("cold.tar", days=1, tier="Standard") == "not-needed"


def test_what_the_container_cannot_do_is_refused_before_any_byte(azure_env: Azurite) -> None:
    container = azure_env.container()
    until = datetime.now(UTC) + timedelta(days=30)
    with open_storage(azure_env.uri(container, "locked")) as storage:
        lock = storage.retention_lock()
        assert lock is not None
        assert lock.retention_enabled() is False  # Azurite has no version-level immutability
        with pytest.raises(BadInput) as refused:
            storage.check_write_options(WriteOptions(lock_mode="COMPLIANCE", retain_until=until))
        assert str(refused.value) == (
            f"container {container} has no version-level immutability: COMPLIANCE retention "
            "needs a container with version-level immutability support enabled; nothing was "
            "uploaded")
        with pytest.raises(BadInput, match="unknown Azure access tier 'GLACIER'"):
            storage.check_write_options(WriteOptions(storage_class="GLACIER"))
        with pytest.raises(BadInput, match="unknown Azure access tier 'archive'"):
            storage.put_bytes("x", b"x", options=WriteOptions(storage_class="archive"))
    assert azure_env.keys(container) == []
    assert azure_env.uncommitted(container) == {}


def test_a_missing_container_is_named(azure_env: Azurite) -> None:
    with open_storage(azure_env.uri("never-made-container", "p")) as storage:
        with pytest.raises(StorageError, match="the container does not exist"):
            list(storage.list())
        with pytest.raises(StorageError, match="the container does not exist"):
            storage.stat("x")


def test_a_wrong_key_is_refused_and_never_shown(azure_env: Azurite) -> None:
    container = azure_env.container()
    wrong = base64.b64encode(b"\xfb\xff" * 32).decode()
    uri = azure_env.uri(container).replace(quote(ACCOUNT_KEY, safe=""), quote(wrong, safe=""))
    with open_storage(uri) as storage, pytest.raises(StorageError) as refused:
        storage.put_bytes("x", b"x")
    text = str(refused.value)
    assert "access denied" in text or "rejected the credentials" in text
    for secret in (wrong, quote(wrong, safe=""), ACCOUNT_KEY):
        assert secret not in text


# --- a network that breaks ----------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env.update(extra)
    return env


def uri_at(endpoint: str, container: str, prefix: str = "nightly") -> str:
    return (f"azure-blob://{container}/{prefix}?AZURE_ACCOUNT_NAME={ACCOUNT}"
            f"&AZURE_ACCOUNT_KEY={quote(ACCOUNT_KEY, safe='')}&ENDPOINT={endpoint}")


@pytest.mark.parametrize(("attempts", "said"), [(None, "after 3 attempts"),
                                                 ("1", "after 1 attempt;")])
def test_a_refused_connection_fails_fast_with_its_attempt_count(attempts: str | None,
                                                                said: str) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    extra = {"AZURE_MAX_ATTEMPTS": attempts} if attempts else {}
    result = run_subprocess("inspect", uri_at(f"{endpoint}/{ACCOUNT}", "backups"),
                            env=cli_env(**extra), timeout=60)
    assert result.returncode == 3, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert f"cannot reach {endpoint} (connection refused) {said}" in line
    assert "AZURE_MAX_ATTEMPTS" in line
    assert ACCOUNT_KEY not in result.stderr + result.stdout
    assert quote(ACCOUNT_KEY, safe="") not in result.stderr + result.stdout


@pytest.mark.parametrize("attempts", ["1", "3"])
def test_server_errors_are_tried_azure_max_attempts_times(
    azure_env: Azurite, azure_proxy: FaultProxy, attempts: str,
) -> None:
    container = azure_env.container()
    azure_proxy.fail(None, rf"^/{ACCOUNT}/{container}", refuse(503), times=50)
    result = run_subprocess("inspect", uri_at(through(azure_proxy), container),
                            env=cli_env(AZURE_MAX_ATTEMPTS=attempts), timeout=120)
    assert result.returncode == 3, result.stderr
    suffix = "1 attempt" if attempts == "1" else f"{attempts} attempts"
    assert "Azure is unavailable or busy (" in result.stderr
    assert f") after {suffix}" in result.stderr
    assert len(azure_proxy.requests()) == int(attempts)


BODY_FAULTS = [short_body(100), reset_after(100), truncate_after(100), short_body(0),
               fail_after(500)]


@pytest.mark.parametrize("fault", BODY_FAULTS, ids=lambda f: f"{f.kind}-{f.after}")
def test_a_broken_read_is_resumed_never_short(azure_env: Azurite, azure_proxy: FaultProxy,
                                              fault: Fault) -> None:
    container = azure_env.container()
    with open_storage(azure_env.uri(container, "r")) as direct:
        direct.put_bytes("obj", DATA)
    with open_storage(uri_at(through(azure_proxy), container, "r")) as storage:
        # The first range and one in the middle break; the reader goes on from where it was.
        azure_proxy.fail("GET", r"/r/obj$", fault, times=2)
        with storage.open_read("obj", start=7) as reader:
            assert reader.read() == DATA[7:]
        assert azure_proxy.pending() == 0


@pytest.mark.parametrize("fault", [short_body(10), reset_after(10), truncate_after(10)],
                         ids=lambda f: f.kind)
def test_reads_that_keep_breaking_fail_naming_the_blob_and_the_count(
    azure_env: Azurite, azure_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch, fault: Fault,
) -> None:
    monkeypatch.setenv("AZURE_MAX_ATTEMPTS", "2")
    container = azure_env.container()
    with open_storage(azure_env.uri(container, "r")) as direct:
        direct.put_bytes("obj", DATA)
    azure_proxy.fail("GET", r"/r/obj$", fault, times=100)
    with (open_storage(uri_at(through(azure_proxy), container, "r")) as storage,
          pytest.raises(StorageError) as failed, storage.open_read("obj") as reader):
        reader.read()
    text = str(failed.value)
    assert text.startswith(f"cannot read azure-blob://{container}/r/obj: the transfer broke 2 "
                           "times in ")
    assert text.endswith("no byte arrived")


@pytest.mark.parametrize("fault", [fail_after(500), reset_after(0), refuse(503)],
                         ids=lambda f: f.kind)
def test_broken_block_uploads_and_a_lost_commit_answer_still_store_the_bytes(
    azure_env: Azurite, azure_proxy: FaultProxy, fault: Fault,
) -> None:
    container = azure_env.container()
    with open_storage(uri_at(through(azure_proxy), container, "w")) as storage:
        azure_proxy.fail("PUT", r"/w/up$", fault, query="comp=block&", times=2)
        # The block list applied, and its answer lost: the retry finds the blob made.
        azure_proxy.fail("PUT", r"/w/up$", fail_after(500), query="comp=blocklist")
        with storage.open_write("up") as writer:
            writer.write(DATA)
        assert azure_proxy.pending() == 0
    with open_storage(azure_env.uri(container, "w")) as direct:
        assert direct.read_bytes("up") == DATA
    assert azure_env.uncommitted(container) == {}


def test_block_uploads_that_keep_failing_leave_no_blob(
    azure_env: Azurite, azure_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AZURE_MAX_ATTEMPTS", "2")
    container = azure_env.container()
    azure_proxy.fail("PUT", r"/w/up$", refuse(503), query="comp=block&", times=100)
    with open_storage(uri_at(through(azure_proxy), container, "w")) as storage:
        with pytest.raises(StorageError, match="after 2 attempts"), \
                storage.open_write("up") as writer:
            writer.write(DATA)
        assert storage.stat("up") is None
    assert azure_env.keys(container) == []
