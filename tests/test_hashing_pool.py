"""Worker processes that walk a directory and hash it: every file once, the right digests,
what is not a file named, and no worker left behind however the walk ends.

Expected digests come from hashlib and the blake3 library over the files the test wrote.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import blake3
import pytest

from crdb_archive import hashing_worker
from crdb_archive.errors import StorageError
from crdb_archive.hashing_pool import HashedBatch, HashingPool, Strange
from crdb_archive.worker_process import PoolFailed, PoolUnavailable
from support.processes import zombies

LARGE = (16 << 20) + 5  # past the size a worker reads whole: mapped, as hashing.py does


def write_tree(root: Path) -> dict[str, bytes]:
    """Files in several directories: empty ones, small ones, one large, and a directory
    whose files sort after its subdirectory's (the walk's order is not the sorted order)."""
    files: dict[str, bytes] = {}
    for index in range(700):
        files[f"data/{index:04d}.sst"] = f"{index}\n".encode() * (index % 37)
    for index in range(5):
        files[f"data/a/{index}.sst"] = bytes([index]) * 1000
    files["data/a/deeper/one"] = b"one"
    files["data/b-file"] = b"b"
    files["data/cockroach/cockroach-v23.1.11.linux-amd64.tgz"] = b"archive" * 100
    files["data/big.sst"] = bytes(range(256)) * (LARGE // 256) + b"tail!"
    files["data/empty-dir-sibling.sst"] = b""
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    (root / "data" / "empty").mkdir()
    (root / "outside.txt").write_bytes(b"not under data/")
    return files


def collect(pool: HashingPool) -> tuple[dict[str, tuple[int, bytes, bytes | None]],
                                        list[Strange]]:
    found: dict[str, tuple[int, bytes, bytes | None]] = {}
    strange: list[Strange] = []
    for answer in pool.answers():
        if isinstance(answer, Strange):
            strange.append(answer)
            continue
        assert answer.first_failure("/") is None
        for index, path in enumerate(answer.paths):
            assert path not in found, f"{path} hashed twice"
            digest = slice(index * 32, (index + 1) * 32)
            found[path] = (answer.sizes[index], answer.blake3[digest],
                           answer.sha256[digest] if answer.sha256 is not None else None)
    return found, strange


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_every_file_once_with_its_digests(tmp_path: Path, workers: int) -> None:
    files = write_tree(tmp_path)
    with HashingPool(str(tmp_path), "data", workers=workers, sha256_all=False,
                     sha256_under="data/cockroach") as pool:
        found, strange = collect(pool)
    assert strange == []
    assert set(found) == set(files)
    for path, content in files.items():
        size, b3, sha = found[path]
        assert size == len(content), path
        assert b3 == blake3.blake3(content).digest(), path
        # SHA-256 below the binaries' directory alone.
        expected = (hashlib.sha256(content).digest() if path.startswith("data/cockroach/")
                    else None)
        assert sha == expected, path


def test_sha256_of_every_file_when_asked(tmp_path: Path) -> None:
    files = write_tree(tmp_path)
    with HashingPool(str(tmp_path), "data", workers=2, sha256_all=True,
                     sha256_under="") as pool:
        found, _ = collect(pool)
    assert {path: sha for path, (_, _, sha) in found.items()} == {
        path: hashlib.sha256(content).digest() for path, content in files.items()}


def test_links_and_special_files_are_named_never_followed(tmp_path: Path) -> None:
    files = write_tree(tmp_path)
    (tmp_path / "secret").write_bytes(b"outside the tree")
    (tmp_path / "data" / "link.sst").symlink_to(tmp_path / "secret")
    (tmp_path / "data" / "a" / "dirlink").symlink_to(tmp_path)
    os.mkfifo(tmp_path / "data" / "a" / "fifo")
    with HashingPool(str(tmp_path), "data", workers=2, sha256_all=False,
                     sha256_under="") as pool:
        found, strange = collect(pool)
    assert set(found) == set(files)  # nothing through the links, the FIFO never opened
    assert sorted((s.path, s.symlink) for s in strange) == [
        ("data/a/dirlink", True), ("data/a/fifo", False), ("data/link.sst", True)]


@pytest.mark.parametrize("make", ["absent", "symlink", "file"])
def test_a_start_that_is_not_a_directory_has_nothing(tmp_path: Path, make: str) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x").write_bytes(b"x")
    if make == "symlink":
        (tmp_path / "data").symlink_to(tmp_path / "elsewhere")
    elif make == "file":
        (tmp_path / "data").write_bytes(b"a file where the payload directory goes")
    with HashingPool(str(tmp_path), "data", workers=2, sha256_all=False,
                     sha256_under="") as pool:
        assert collect(pool) == ({}, [])


def test_names_that_are_not_utf8_come_back_as_the_walk_names_them(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    raw = os.fsencode(tmp_path) + b"/data/caf\xe9.sst"
    with open(raw, "wb") as handle:  # noqa: PTH123 - a name that is not UTF-8
        handle.write(b"latin-1 name")
    with HashingPool(str(tmp_path), "data", workers=1, sha256_all=False,
                     sha256_under="") as pool:
        found, _ = collect(pool)
    assert list(found) == [os.fsdecode(b"data/caf\xe9.sst")]


def test_a_file_that_cannot_be_read_is_a_failure_with_its_errno(tmp_path: Path) -> None:
    (tmp_path / "a.sst").write_bytes(b"a")
    directory = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        message = hashing_worker.batch_answer(directory, "data/", ["a.sst", "gone.sst"],
                                              sha256=False)
    finally:
        os.close(directory)
    kind, count, failed, length = hashing_worker.MESSAGE.unpack_from(message)
    assert (kind, count, failed) == (hashing_worker.BATCH, 2, 1)
    columns = message[hashing_worker.MESSAGE.size + length:]
    assert list(hashing_worker.FAILURE.iter_unpack(columns[-8:])) == [(1, 2)]  # ENOENT
    from array import array  # noqa: PLC0415

    sizes = array("q", columns[:16])
    batch = HashedBatch(["data/a.sst", "data/gone.sst"], sizes, columns[16:80], None,
                        [(1, 2)])
    failure = batch.first_failure(str(tmp_path))
    assert failure is not None
    assert failure.filename == str(tmp_path / "data" / "gone.sst")
    assert list(sizes) == [1, -1]


def worker_pids(pool: HashingPool) -> list[int]:
    return [worker.process.pid for worker in pool._workers]


def running(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still exist, even as zombies (not reaped)."""
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def test_workers_that_never_start_leave_the_work_to_the_caller(tmp_path: Path) -> None:
    write_tree(tmp_path)
    pool = HashingPool(str(tmp_path), "data", workers=2, sha256_all=False, sha256_under="")
    pids = worker_pids(pool)
    with pool:
        for worker in pool._workers:
            worker.process.kill()  # before an interpreter can even start
        with pytest.raises(PoolUnavailable):
            list(pool.answers())
    assert running(pids) == []


def test_a_worker_that_dies_midway_is_a_storage_failure(tmp_path: Path) -> None:
    write_tree(tmp_path)
    pool = HashingPool(str(tmp_path), "data", workers=2, sha256_all=False, sha256_under="")
    pids = worker_pids(pool)
    with pool:
        stopped = pool._workers[0].process
        stopped.send_signal(signal.SIGSTOP)  # no progress at all: not started, not done
        answers = pool.answers()
        first = next(answers)  # from the other worker
        assert isinstance(first, HashedBatch | Strange)
        stopped.kill()
        with pytest.raises(PoolFailed) as failed:
            list(answers)
    assert isinstance(failed.value, StorageError)
    assert failed.value.exit_code == 3
    assert running(pids) == []


def test_leaving_early_ends_every_worker(tmp_path: Path) -> None:
    write_tree(tmp_path)
    pids: list[int] = []
    with pytest.raises(KeyError), HashingPool(  # noqa: PT012 - the pool is left by the raise
            str(tmp_path), "data", workers=3, sha256_all=True, sha256_under="") as pool:
        pids += worker_pids(pool)
        next(pool.answers())
        raise KeyError("stop")
    assert len(pids) == 3
    assert running(pids) == []


def test_a_worker_whose_parent_has_gone_ends_quietly(tmp_path: Path) -> None:
    write_tree(tmp_path)
    pool = HashingPool(str(tmp_path), "data", workers=1, sha256_all=False, sha256_under="")
    worker = pool._workers[0]
    worker.stdout.close()  # nobody reads its answers any more
    deadline = time.monotonic() + 60
    while worker.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.process.returncode == 1
    pool.close()


_UNREADABLE = """
import sys
from crdb_archive.errors import StorageError
from crdb_archive.hashing_pool import HashingPool
try:
    with HashingPool(sys.argv[1], "data", workers=2, sha256_all=False, sha256_under="") as pool:
        list(pool.answers())
except StorageError as error:
    print(error)
"""


def test_an_unreadable_directory_is_named(tmp_path: Path) -> None:
    write_tree(tmp_path)
    (tmp_path / "data" / "a").chmod(0)
    # Root reads every directory: as root the walk runs without that power.
    limited = (["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
               if os.geteuid() == 0 else [])
    try:
        done = subprocess.run([*limited, sys.executable, "-c", _UNREADABLE, str(tmp_path)],
                              capture_output=True, text=True, check=False, timeout=120)
    finally:
        (tmp_path / "data" / "a").chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"cannot read {tmp_path / 'data' / 'a'}: Permission denied\n"


def test_workers_that_end_at_once_are_all_waited_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tree(tmp_path)
    before = zombies()
    # Ends before reading its request (the parent's write may then fail) or after.
    monkeypatch.setattr(sys, "executable", shutil.which("false") or "false")
    for _ in range(20):
        with pytest.raises(PoolFailed), HashingPool(
                str(tmp_path), "data", workers=3, sha256_all=False, sha256_under="") as pool:
            list(pool.answers())
    assert zombies() == before
