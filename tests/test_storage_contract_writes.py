"""The contract, continued: one-level listings, conditional writes, and staging, on every backend.

Conditional writes are what locks and records rely on, so they are raced here for real: from
threads sharing one storage, and from separate processes that each open the same root, every
one incrementing a counter by read, then replace-if-unchanged. A lost update would show as a
count short of the number of increments.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from crdb_archive.errors import BadInput, ConditionFailed, ExitCode, StorageError
from crdb_archive.storage import ObjectInfo, Prefix, Storage, Versioned
from support.storage_backends import Backend

WORKERS = 6


def read(storage: Storage, key: str) -> bytes:
    found = storage.read_versioned(key)
    assert found is not None
    return found.content


# --- one level of a listing ---------------------------------------------------------------------


def test_list_level_gives_objects_and_levels_in_key_order(backend: Backend) -> None:
    storage = backend.storage
    for key in ["a/b/c", "a/d", "a-b", "e", "f/g/h", "a0"]:
        storage.put_bytes(key, key.encode() * 2)
    top = [(e.key, e.size) if isinstance(e, ObjectInfo) else e
           for e in storage.list_level()]
    # A level sorts as "a/", so "a-b" (0x2d) comes before it and "a0" (0x30) after it.
    assert top == [("a-b", 6), Prefix("a"), ("a0", 4), ("e", 2), Prefix("f")]
    assert [(e.key, isinstance(e, Prefix)) for e in storage.list_level("a")] == [
        ("a/b", True), ("a/d", False)]
    assert [e.key for e in storage.list_level("a/")] == ["a/b", "a/d"]
    assert [e.key for e in storage.list_level("f/g")] == ["f/g/h"]
    assert [e.name for e in storage.list_level("f") if isinstance(e, Prefix)] == ["g"]
    assert list(storage.list_level("nothing/here")) == []
    assert list(storage.list_level("e")) == []  # an object is not a level
    with pytest.raises(BadInput):
        list(storage.list_level("../up"))


def test_list_level_of_a_child(backend: Backend) -> None:
    backend.storage.put_bytes("tree/x/y", b"1")
    child = backend.storage.child("tree")
    assert [e.key for e in child.list_level()] == ["x"]
    assert [e.key for e in child.list_level("x")] == ["x/y"]


# --- conditional writes -------------------------------------------------------------------------


def test_create_replace_delete_under_conditions(backend: Backend) -> None:
    storage = backend.storage
    assert storage.read_versioned("lock/held") is None
    first = storage.put_if_absent("lock/held", b"one")
    found = storage.read_versioned("lock/held")
    assert found is not None
    assert (found.content, found.version) == (b"one", first)

    with pytest.raises(ConditionFailed, match="lock/held") as caught:
        storage.put_if_absent("lock/held", b"other")
    assert caught.value.exit_code == ExitCode.WORLD
    assert isinstance(caught.value, StorageError)
    assert read(storage, "lock/held") == b"one"

    with pytest.raises(ConditionFailed):
        storage.put_if_version("lock/held", b"other", "not-a-version")
    second = storage.put_if_version("lock/held", b"two", first)
    assert second != first
    assert storage.read_versioned("lock/held") == Versioned(b"two", second)
    with pytest.raises(ConditionFailed):  # the version read before is not current any more
        storage.put_if_version("lock/held", b"three", first)
    with pytest.raises(ConditionFailed):
        storage.delete_if_version("lock/held", first)
    assert read(storage, "lock/held") == b"two"

    storage.delete_if_version("lock/held", second)
    assert storage.read_versioned("lock/held") is None
    assert storage.stat("lock/held") is None
    with pytest.raises(ConditionFailed):
        storage.delete_if_version("lock/held", second)
    with pytest.raises(ConditionFailed):
        storage.put_if_version("lock/held", b"back", second)
    assert storage.read_versioned("lock/held") is None
    assert backend.leftovers() == []


def test_conditional_writes_of_empty_and_binary_content(backend: Backend) -> None:
    storage = backend.storage
    empty = storage.put_if_absent("empty", b"")
    assert storage.read_versioned("empty") == Versioned(b"", empty)
    binary = bytes(range(256)) * 3
    replaced = storage.put_if_version("empty", binary, empty)
    assert read(storage, "empty") == binary
    assert storage.read_bytes("empty") == binary  # the same object as the plain verbs see
    storage.delete_if_version("empty", replaced)
    assert not storage.exists("empty")


def test_read_versioned_has_a_limit(backend: Backend) -> None:
    backend.storage.put_bytes("record", b"x" * 101)
    found = backend.storage.read_versioned("record", limit=101)
    assert found is not None
    assert found.content == b"x" * 101
    with pytest.raises(BadInput, match="larger than 100 bytes"):
        backend.storage.read_versioned("record", limit=100)


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", ".."])
def test_conditional_verbs_refuse_invalid_keys(backend: Backend, key: str) -> None:
    storage = backend.storage
    for attempt in (
        lambda: storage.read_versioned(key),
        lambda: storage.put_if_absent(key, b"x"),
        lambda: storage.put_if_version(key, b"x", "v"),
        lambda: storage.delete_if_version(key, "v"),
    ):
        with pytest.raises(BadInput):
            attempt()


def race(count: int, attempt: object) -> list[BaseException | None]:
    """Run ``attempt(i)`` in ``count`` threads released together; what each raised, or None."""
    assert callable(attempt)
    start = threading.Barrier(count)
    outcomes: list[BaseException | None] = [None] * count

    def run(i: int) -> None:
        start.wait()
        try:
            attempt(i)
        except BaseException as error:  # noqa: BLE001 - recorded for the assertions
            outcomes[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_racing_creates_from_threads_have_one_winner(backend: Backend) -> None:
    storage = backend.storage
    outcomes = race(WORKERS, lambda i: storage.put_if_absent("race/lock", f"writer {i}".encode()))
    winners = [i for i, outcome in enumerate(outcomes) if outcome is None]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, ConditionFailed) for o in outcomes if o is not None), outcomes
    assert read(storage, "race/lock") == f"writer {winners[0]}".encode()
    assert backend.leftovers() == []


def test_racing_replaces_from_threads_have_one_winner(backend: Backend) -> None:
    storage = backend.storage
    base = storage.put_if_absent("race/record", b"base")
    outcomes = race(WORKERS, lambda i: storage.put_if_version(
        "race/record", f"writer {i}".encode(), base))
    winners = [i for i, outcome in enumerate(outcomes) if outcome is None]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, ConditionFailed) for o in outcomes if o is not None), outcomes
    assert read(storage, "race/record") == f"writer {winners[0]}".encode()


COUNTER = """
import sys
from crdb_archive.errors import ConditionFailed
from crdb_archive.storage import open_storage

uri, times = sys.argv[1], int(sys.argv[2])
with open_storage(uri) as storage:
    print("ready", flush=True)
    sys.stdin.readline()  # the go, once every process is ready
    done = 0
    while done < times:
        found = storage.read_versioned("counter")
        try:
            storage.put_if_version("counter", str(int(found.content) + 1).encode(),
                                   found.version)
        except ConditionFailed:
            continue
        done += 1
print("ok")
"""


def test_racing_increments_from_processes_lose_no_update(backend: Backend) -> None:
    storage = backend.storage
    storage.put_if_absent("counter", b"0")
    times = 8
    processes = [subprocess.Popen([sys.executable, "-c", COUNTER, backend.uri, str(times)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                 for _ in range(3)]
    try:
        # A barrier: every process has started and opened the store before any increments.
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [process.communicate(timeout=120)[0] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    assert read(storage, "counter") == str(3 * times).encode()
    assert backend.leftovers() == []


# --- staging ------------------------------------------------------------------------------------


def test_staged_tree_appears_when_published(backend: Backend) -> None:
    storage = backend.storage
    with storage.staging("tree") as staging:
        assert staging.scratch.is_dir()
        (staging.scratch / "download").write_bytes(b"scratch")
        scratch = staging.scratch
        for i in range(5):
            with staging.open_member(f"tree/data/{i}.sst", size_hint=3) as writer:
                writer.write(f"x{i}!".encode())
                assert writer.bytes_written == 3
        assert not storage.exists("tree/marker")
        if storage.publishes_atomically:
            assert list(storage.list("tree")) == []
        staging.publish_tree("tree/marker", b"done")
    assert not scratch.exists()
    assert {i.key: storage.read_bytes(i.key) for i in storage.list("tree")} == {
        **{f"tree/data/{i}.sst": f"x{i}!".encode() for i in range(5)}, "tree/marker": b"done"}
    assert [i.key for i in storage.list()] == sorted(i.key for i in storage.list("tree"))
    assert backend.leftovers() == []


def fail_while_staging(storage: Storage, scratches: list[Path]) -> None:
    """Stage two members of ``tree``, the second cut short by an error."""
    with storage.staging("tree") as staging:
        scratches.append(staging.scratch)
        with staging.open_member("tree/data/a", size_hint=10) as writer:
            writer.write(b"0123456789")
        with staging.open_member("tree/data/b") as writer:
            writer.write(b"half")
            raise RuntimeError("copy failed")


def test_staged_tree_is_gone_after_a_failure(backend: Backend) -> None:
    storage = backend.storage
    scratches: list[Path] = []
    with pytest.raises(RuntimeError, match="copy failed"):
        fail_while_staging(storage, scratches)
    assert not scratches[0].exists()
    assert list(storage.list()) == []
    assert backend.leftovers() == []


def refuse() -> None:
    raise StorageError("someone else holds the place now")


def publish_refused(storage: Storage) -> None:
    with storage.staging("tree") as staging:
        with staging.open_member("tree/data/a") as writer:
            writer.write(b"a")
        staging.publish_tree("tree/marker", b"done", check=refuse)


def test_a_refused_publication_check_publishes_nothing(backend: Backend) -> None:
    storage = backend.storage

    with pytest.raises(StorageError, match="someone else"):
        publish_refused(storage)
    assert not storage.exists("tree/marker")
    # A private staging area goes; in place, what was written is left to whoever holds the
    # place now (this writer may no longer change it).
    assert storage.exists("tree/data/a") is not storage.publishes_atomically
    assert not [i for i in storage.list() if "marker" in i.key]


def test_staged_object_appears_when_its_block_ends(backend: Backend) -> None:
    storage = backend.storage
    data = b"tar" * 300_000
    with storage.staging("bundle") as staging, \
            staging.open_object("bundle.tar", size_hint=len(data)) as writer:
        writer.write(data[:100])
        writer.write(data[100:])
        assert writer.bytes_written == len(data)
        assert not storage.exists("bundle.tar")
    assert storage.read_bytes("bundle.tar") == data
    assert [i.key for i in storage.list()] == ["bundle.tar"]
    assert backend.leftovers() == []


def write_object_then(storage: Storage, how: str) -> None:
    """Write most of ``bundle.tar``, then fail (``raise``) or have its check refuse it."""
    with storage.staging("bundle") as staging, \
            staging.open_object("bundle.tar", size_hint=10 << 20,
                                check=refuse if how == "check" else lambda: None) as writer:
        writer.write(b"y" * (9 << 20))  # a multipart upload where there are parts
        if how == "raise":
            raise RuntimeError("stopped")


@pytest.mark.parametrize("how", ["raise", "check"])
def test_staged_object_failed_or_refused_leaves_nothing(backend: Backend, how: str) -> None:
    storage = backend.storage
    with pytest.raises(RuntimeError if how == "raise" else StorageError):
        write_object_then(storage, how)
    assert list(storage.list()) == []
    assert backend.leftovers() == []


def test_staging_names_are_keys(backend: Backend) -> None:
    with pytest.raises(BadInput), backend.storage.staging("../escape"):
        pass
