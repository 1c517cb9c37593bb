"""One contract for every backend: each test here runs on a local directory, an S3 bucket, a
Google Cloud Storage bucket and an Azure container.

A backend joins the suite with one factory in tests/support/storage_backends.py. Tests of verbs
every backend has assert the same results everywhere; conditional writes and staging are in
test_storage_contract_writes.py, the optional capabilities in
test_storage_contract_capabilities.py.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from crdb_archive.errors import BadInput, ExitCode, Interrupted, ObjectNotFound
from crdb_archive.storage import Storage, WriteOptions
from crdb_archive.storage.local import LocalStorage
from support.storage_backends import Backend

MiB = 1 << 20


def pattern(size: int, seed: int = 0) -> bytes:
    """Bytes that differ at every offset (a misplaced range cannot look right)."""
    block = hashlib.sha256(str(seed).encode()).digest() * 4096
    return (block * (size // len(block) + 1))[:size]


def read_all(storage: Storage, key: str, *, start: int = 0, length: int | None = None) -> bytes:
    with storage.open_read(key, start=start, length=length) as reader:
        return reader.read()


def write_then_fail(
    storage: Storage, key: str, size: int, error: BaseException, *, size_hint: int | None = None
) -> None:
    """Write ``size`` bytes of ``key``, then fail inside the write block."""
    with storage.open_write(key, size_hint=size_hint) as writer:
        writer.write(pattern(size))
        raise error


def test_small_roundtrip(backend: Backend) -> None:
    storage = backend.storage
    storage.put_bytes("dir/file.txt", b"hello")
    assert storage.read_bytes("dir/file.txt") == b"hello"
    info = storage.stat("dir/file.txt")
    assert info is not None
    assert (info.key, info.size, info.restore) == ("dir/file.txt", 5, "not-needed")
    assert info.mtime is not None
    assert info.mtime.utcoffset() is not None
    assert storage.exists("dir/file.txt")
    assert not storage.exists("dir")  # directories are implicit
    assert storage.stat("dir") is None


def test_empty_object(backend: Backend) -> None:
    backend.storage.put_bytes("empty", b"")
    assert backend.storage.read_bytes("empty") == b""
    info = backend.storage.stat("empty")
    assert info is not None
    assert info.size == 0


def test_streamed_multipart_sized_roundtrip(backend: Backend) -> None:
    data = pattern(2 * 8 * MiB + 12345)
    with backend.storage.open_write("big/object.bin", size_hint=len(data)) as writer:
        for offset in range(0, len(data), 3 * MiB + 17):
            writer.write(data[offset:offset + 3 * MiB + 17])
        assert writer.bytes_written == len(data)
    digest = hashlib.sha256()
    with backend.storage.open_read("big/object.bin") as reader:
        while chunk := reader.read(MiB):
            digest.update(chunk)
    assert digest.digest() == hashlib.sha256(data).digest()
    info = backend.storage.stat("big/object.bin")
    assert info is not None
    assert info.size == len(data)
    assert backend.leftovers() == []


@pytest.mark.parametrize(("start", "length", "expected"), [
    (0, None, slice(0, None)),
    (10, None, slice(10, None)),
    (0, 1, slice(0, 1)),
    (100, 250, slice(100, 350)),
    (990, 50, slice(990, 1000)),  # past the end: what is there
    (1000, None, slice(1000, 1000)),  # exactly at the end
    (5000, 10, slice(0, 0)),  # beyond the end
    (20, 0, slice(0, 0)),
])
def test_ranged_reads(backend: Backend, start: int, length: int | None, expected: slice) -> None:
    data = pattern(1000, seed=1)
    backend.storage.put_bytes("ranged", data)
    with backend.storage.open_read("ranged", start=start, length=length) as reader:
        assert reader.read() == data[expected]


def test_small_reads_from_a_reader_add_up(backend: Backend) -> None:
    data = pattern(100_000, seed=2)
    backend.storage.put_bytes("pieces", data)
    pieces = []
    with backend.storage.open_read("pieces", start=7, length=90_000) as reader:
        while piece := reader.read(4093):
            pieces.append(piece)
    assert b"".join(pieces) == data[7:90_007]


def test_list_is_sorted_recursive_and_by_prefix(backend: Backend) -> None:
    keys = ["b", "a/c/d", "a0", "a-b", "a/b", "z/y/x/w", "a/c.txt"]
    for key in keys:
        backend.storage.put_bytes(key, key.encode())
    listed = list(backend.storage.list())
    assert [i.key for i in listed] == sorted(keys)
    assert {i.key: i.size for i in listed} == {k: len(k) for k in keys}
    assert [i.key for i in backend.storage.list("a")] == ["a/b", "a/c.txt", "a/c/d"]
    assert [i.key for i in backend.storage.list("a/")] == ["a/b", "a/c.txt", "a/c/d"]
    assert [i.key for i in backend.storage.list("a/c")] == ["a/c/d"]
    assert list(backend.storage.list("nothing/here")) == []
    assert list(backend.storage.list("b")) == []  # an object is not a directory


def test_list_of_an_empty_root(backend: Backend) -> None:
    assert list(backend.storage.list()) == []


def test_missing_object(backend: Backend) -> None:
    storage = backend.storage
    assert storage.stat("missing/key") is None
    assert not storage.exists("missing/key")
    with pytest.raises(ObjectNotFound, match="missing/key") as caught:
        read_all(storage, "missing/key")
    assert caught.value.exit_code == ExitCode.WORLD
    with pytest.raises(ObjectNotFound, match="missing/key"):
        read_all(storage, "missing/key", start=3, length=0)
    cold = storage.cold_storage()
    if cold is not None:
        with pytest.raises(ObjectNotFound, match="missing/key"):
            cold.request_restore("missing/key", days=1, tier="Standard")


def test_delete(backend: Backend) -> None:
    storage = backend.storage
    storage.put_bytes("keep/one", b"1")
    storage.put_bytes("gone/two", b"2")
    storage.delete("gone/two")
    assert storage.stat("gone/two") is None
    assert [i.key for i in storage.list()] == ["keep/one"]
    storage.delete("gone/two")  # deleting what is not there is not an error
    storage.delete("never/was")


def test_delete_tree(backend: Backend) -> None:
    storage = backend.storage
    for key in ["stage/a", "stage/b/c", "stage-x", "other/d"]:
        storage.put_bytes(key, b"x")
    storage.delete_tree("stage")
    assert [i.key for i in storage.list()] == ["other/d", "stage-x"]
    storage.delete_tree("not/there")
    storage.delete_tree("")
    assert list(storage.list()) == []


def test_failed_write_leaves_nothing(backend: Backend) -> None:
    storage = backend.storage
    for size in (10, 9 * MiB):  # a single request and a multipart upload
        with pytest.raises(RuntimeError, match="boom"):
            write_then_fail(storage, "failed", size, RuntimeError("boom"))
        assert storage.stat("failed") is None
        assert list(storage.list()) == []
        assert backend.leftovers() == []


def test_interrupted_write_leaves_nothing(backend: Backend) -> None:
    storage = backend.storage
    with pytest.raises(Interrupted):
        write_then_fail(storage, "cut", 10 * MiB, Interrupted("interrupted by SIGINT"),
                        size_hint=40 * MiB)
    assert storage.stat("cut") is None
    assert backend.leftovers() == []


def test_overwrite_is_atomic(backend: Backend) -> None:
    storage = backend.storage
    storage.put_bytes("doc", b"old content")
    with storage.open_write("doc") as writer:
        writer.write(b"new content, longer")
        assert storage.read_bytes("doc") == b"old content"
    assert storage.read_bytes("doc") == b"new content, longer"


def test_child_is_rooted_below(backend: Backend) -> None:
    storage = backend.storage
    child = storage.child("bundle/name")
    child.put_bytes("data/file", b"abc")
    assert [i.key for i in child.list()] == ["data/file"]
    assert [i.key for i in storage.list()] == ["bundle/name/data/file"]
    assert storage.child("bundle").child("name").read_bytes("data/file") == b"abc"
    assert "bundle/name" in str(child)
    child.delete_tree("")
    assert list(storage.list()) == []


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "..", "a//b", "./a", "a/.", "a\x00b"])
def test_invalid_keys_are_bad_input(backend: Backend, key: str) -> None:
    storage = backend.storage
    for attempt in (
        lambda: storage.stat(key),
        lambda: storage.put_bytes(key, b"x"),
        lambda: read_all(storage, key),
        lambda: storage.delete(key),
        lambda: storage.child(key),
    ):
        with pytest.raises(BadInput):
            attempt()
    if key:  # "" is the whole root for a listing
        with pytest.raises(BadInput):
            list(storage.list(key))


def test_read_bytes_has_a_limit(backend: Backend) -> None:
    backend.storage.put_bytes("large", b"x" * 101)
    assert backend.storage.read_bytes("large", limit=101) == b"x" * 101
    with pytest.raises(BadInput, match="larger than 100 bytes"):
        backend.storage.read_bytes("large", limit=100)


def test_parallel_reads_and_writes(backend: Backend) -> None:
    storage = backend.storage
    blobs = {f"p/{i:02d}": pattern(50_000 + i, seed=i) for i in range(24)}

    def write(key: str) -> None:
        storage.put_bytes(key, blobs[key])

    def read(key: str) -> bool:
        return read_all(storage, key, start=5) == blobs[key][5:]

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, blobs))
        assert all(pool.map(read, blobs))
    # Every write landed whole, under its own key, next to the others.
    assert [(i.key, i.size) for i in storage.list("p")] == [
        (key, len(blobs[key])) for key in sorted(blobs)]


def test_standard_objects_need_no_restore(backend: Backend) -> None:
    backend.storage.put_bytes("warm", b"x")
    cold = backend.storage.cold_storage()
    if cold is not None:
        assert cold.request_restore("warm", days=1, tier="Bulk") == "not-needed"
    assert all(i.readable for i in backend.storage.list())


@pytest.mark.slow
def test_listing_two_thousand_objects(backend: Backend) -> None:
    # Stands in for a 100k-file backup: S3 pages by 1,000, so this crosses page boundaries.
    keys = [f"data/{i // 100:03d}/{i:05d}.sst" for i in range(2000)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: backend.storage.put_bytes(key, b""), keys))
    listed = [info.key for info in backend.storage.list("data")]
    assert listed == keys
    assert sum(1 for _ in backend.storage.list("data/007")) == 100


def test_backend_types(backend: Backend) -> None:
    storage = backend.storage
    assert type(storage) is backend.storage_type
    if isinstance(storage, LocalStorage):
        assert storage.local_path.is_dir()
    else:
        assert backend.endpoint is not None
        assert backend.endpoint.startswith("http://127.0.0.1:")


def test_callers_own_errors_pass_through_unchanged(backend: Backend) -> None:
    with pytest.raises(OSError, match="the source broke"):
        write_then_fail(backend.storage, "copy", 100, OSError("the source broke"))
    assert backend.storage.stat("copy") is None
    assert backend.leftovers() == []


def test_write_options(backend: Backend) -> None:
    options = WriteOptions(storage_class=backend.storage_class or "STANDARD_IA")
    if backend.storage.is_local:
        with pytest.raises(BadInput, match="no storage class"):
            backend.storage.check_write_options(options)
        with pytest.raises(BadInput, match="no Object Lock"):
            backend.storage.put_bytes("x", b"x", options=WriteOptions(
                lock_mode="GOVERNANCE", retain_until=datetime.now(UTC) + timedelta(days=1)))
        assert backend.storage.stat("x") is None
    else:
        backend.storage.check_write_options(options)
        backend.storage.put_bytes("x", b"x", options=options)
        info = backend.storage.stat("x")
        assert info is not None
        assert info.storage_class == backend.storage_class
    backend.storage.check_write_options(WriteOptions())
