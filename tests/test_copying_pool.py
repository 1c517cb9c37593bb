"""Worker processes that copy files and digest them: every byte copied, the right digests, the
answers in the order asked, each kind of failure told apart, and no worker left behind
however the copy ends.

Expected digests come from hashlib and the blake3 library over the bytes the test wrote;
expected errors from the test's own knowledge of what it broke.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sys
from pathlib import Path

import blake3
import pytest

from crdb_archive import copying_worker as protocol
from crdb_archive.copying_pool import Copied, CopyingPool
from crdb_archive.worker_process import PoolFailed, PoolUnavailable
from support.processes import zombies

LARGE = (1 << 20) + 1  # past what a worker reads whole: streamed


def sizes() -> list[int]:
    """Empty, small, the edge of reading whole, and past it."""
    return [0, 1, 4096, 65_537, 1 << 20, LARGE, (17 << 20) + 3] + [i * 37 for i in range(300)]


def make_sources(root: Path) -> list[tuple[str, bytes]]:
    (root / "in").mkdir()
    (root / "out").mkdir()
    made = []
    for index, size in enumerate(sizes()):
        content = (f"{index}:".encode() * (size // 2 + 1))[:size]
        path = root / "in" / f"{index:05d}.sst"
        path.write_bytes(content)
        made.append((str(path), content))
    return made


def job(root: Path) -> object:
    def make(item: tuple[str, bytes]) -> tuple[str, str, int]:
        source, content = item
        return source, str(root / "out" / Path(source).name), len(content)
    return make


def batches(items: list[tuple[str, bytes]], size: int) -> list[list[tuple[str, bytes]]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def running(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still exist, even as zombies (not reaped)."""
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def pids_of(pool: CopyingPool) -> list[int]:
    return [worker.process.pid for worker in pool._workers]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_every_file_is_copied_with_both_digests_in_order(tmp_path: Path, workers: int) -> None:
    items = make_sources(tmp_path)
    answered: list[Copied[tuple[str, bytes]]] = []
    with CopyingPool(workers) as pool:
        answered += pool.copy(batches(items, 7), job(tmp_path))  # type: ignore[arg-type]
    assert [a.items for a in answered] == batches(items, 7)
    for answer in answered:
        assert (answer.done, answer.failure, answer.failed) == (len(answer.items), 0, None)
        for index, (source, content) in enumerate(answer.items):
            digest = slice(32 * index, 32 * index + 32)
            assert answer.sha256[digest] == hashlib.sha256(content).digest(), source
            assert answer.blake3[digest] == blake3.blake3(content).digest(), source
            copy = tmp_path / "out" / Path(source).name
            assert copy.read_bytes() == content
            assert copy.stat().st_mode & 0o777 == 0o644


def test_no_batches_and_empty_batches(tmp_path: Path) -> None:
    with CopyingPool(2) as pool:
        assert list(pool.copy([], job(tmp_path))) == []  # type: ignore[arg-type]


def one(tmp_path: Path, source: str, copy: str, size: int) -> Copied[int]:
    """Copy a batch of: a sound file, the file under test, another sound file."""
    sound = tmp_path / "sound"
    sound.write_bytes(b"sound")
    jobs = {0: (str(sound), str(tmp_path / "sound-copy"), 5), 1: (source, copy, size),
            2: (str(sound), str(tmp_path / "never"), 5)}
    with CopyingPool(2) as pool:
        (answer,) = pool.copy([[0, 1, 2]], jobs.__getitem__)
    assert answer.done == 1
    assert answer.failed == 1
    assert not (tmp_path / "never").exists()  # the rest of the batch is left
    return answer


def test_a_missing_source(tmp_path: Path) -> None:
    answer = one(tmp_path, str(tmp_path / "absent"), str(tmp_path / "copy"), 3)
    assert (answer.failure, answer.errno) == (protocol.OPEN, errno.ENOENT)
    assert not (tmp_path / "copy").exists()


def test_a_symbolic_link_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "target").write_bytes(b"abc")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    answer = one(tmp_path, str(tmp_path / "link"), str(tmp_path / "copy"), 3)
    assert (answer.failure, answer.errno) == (protocol.OPEN, errno.ELOOP)
    assert not (tmp_path / "copy").exists()


def test_a_fifo_is_named_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    answer = one(tmp_path, str(tmp_path / "fifo"), str(tmp_path / "copy"), 3)
    assert answer.failure == protocol.NOT_REGULAR
    assert not (tmp_path / "copy").exists()


@pytest.mark.parametrize(("actual", "expected"), [(10, 9), (10, 11), (LARGE + 5, LARGE),
                                                  (LARGE, LARGE + 5), (LARGE, 100)])
def test_a_file_of_another_size(tmp_path: Path, actual: int, expected: int) -> None:
    (tmp_path / "grown").write_bytes(b"g" * actual)
    answer = one(tmp_path, str(tmp_path / "grown"), str(tmp_path / "copy"), expected)
    assert answer.failure == protocol.SIZE
    # A small file is read with one byte more than expected, so growth shows as that much.
    read = min(actual, expected + 1) if expected <= protocol.WHOLE_UP_TO else actual
    assert answer.read == read
    if expected <= protocol.WHOLE_UP_TO:
        assert not (tmp_path / "copy").exists()  # nothing is written from a file that changed


@pytest.mark.parametrize("size", [5, LARGE])
def test_a_copy_that_exists_is_never_replaced(tmp_path: Path, size: int) -> None:
    (tmp_path / "source").write_bytes(b"s" * size)
    (tmp_path / "copy").write_bytes(b"someone else's")
    answer = one(tmp_path, str(tmp_path / "source"), str(tmp_path / "copy"), size)
    assert (answer.failure, answer.errno) == (protocol.CREATE, errno.EEXIST)
    assert (tmp_path / "copy").read_bytes() == b"someone else's"


def test_a_copy_whose_directory_is_gone(tmp_path: Path) -> None:
    (tmp_path / "source").write_bytes(b"s")
    answer = one(tmp_path, str(tmp_path / "source"), str(tmp_path / "gone" / "copy"), 1)
    assert (answer.failure, answer.errno) == (protocol.CREATE, errno.ENOENT)


def test_names_that_are_not_utf8_are_copied(tmp_path: Path) -> None:
    source = os.fsencode(tmp_path) + b"/caf\xe9.sst"
    Path(os.fsdecode(source)).write_bytes(b"latin-1")
    copy = os.fsencode(tmp_path) + b"/copy-\xff"
    with CopyingPool(1) as pool:
        (answer,) = pool.copy([[0]], lambda _: (os.fsdecode(source), os.fsdecode(copy), 7))
    assert answer.done == 1
    assert Path(os.fsdecode(copy)).read_bytes() == b"latin-1"


def test_workers_that_do_not_start_leave_the_copy_to_the_caller(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for executable in (str(tmp_path / "no-such-python"), shutil.which("false") or "false"):
        monkeypatch.setattr(sys, "executable", executable)
        with pytest.raises(PoolUnavailable):
            CopyingPool(2)


def test_workers_that_end_at_once_are_all_waited_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = zombies()
    monkeypatch.setattr(sys, "executable", shutil.which("false") or "false")
    for _ in range(20):
        with pytest.raises(PoolUnavailable):
            CopyingPool(3)
    assert zombies() == before


def test_a_worker_that_dies_midway_fails_the_copy(tmp_path: Path) -> None:
    items = make_sources(tmp_path)
    pool = CopyingPool(2)
    pids = pids_of(pool)
    with pytest.raises(PoolFailed, match="ended before its work was done"), pool:  # noqa: PT012
        for count, _ in enumerate(pool.copy(batches(items, 1), job(tmp_path))):  # type: ignore[arg-type]
            if count == 2:
                pool._workers[0].process.kill()
    assert running(pids) == []


def test_leaving_early_ends_every_worker(tmp_path: Path) -> None:
    items = make_sources(tmp_path)
    pids: list[int] = []
    with pytest.raises(KeyError), CopyingPool(3) as pool:  # noqa: PT012
        pids += pids_of(pool)
        copies = pool.copy(batches(items, 3), job(tmp_path))  # type: ignore[arg-type]
        next(copies)
        raise KeyError("stop")
    assert len(pids) == 3
    assert running(pids) == []


def test_a_finished_pool_is_waited_for(tmp_path: Path) -> None:
    items = make_sources(tmp_path)
    with CopyingPool(2) as pool:
        pids = pids_of(pool)
        list(pool.copy(batches(items, 50), job(tmp_path)))  # type: ignore[arg-type]
    assert running(pids) == []


def test_a_worker_ignores_an_interrupt_meant_for_its_parent(tmp_path: Path) -> None:
    items = make_sources(tmp_path)
    with CopyingPool(2) as pool:
        for worker in pool._workers:
            os.kill(worker.process.pid, 2)  # SIGINT, as a terminal's Ctrl-C to the group
            os.kill(worker.process.pid, 15)
        answered = list(pool.copy(batches(items, 10), job(tmp_path)))  # type: ignore[arg-type]
    assert sum(a.done for a in answered) == len(items)


def test_a_worker_whose_parent_has_gone_ends_quietly(tmp_path: Path) -> None:
    pool = CopyingPool(1)
    worker = pool._workers[0]
    worker.stdin.close()  # no more requests, and none to end them
    assert worker.process.wait(timeout=60) == 1
    pool.close()


def test_a_large_file_tells_its_progress_on_the_way(tmp_path: Path) -> None:
    step = protocol.PROGRESS_STEP
    (tmp_path / "large").write_bytes(b"L" * (3 * step + 5))
    (tmp_path / "small").write_bytes(b"s")
    jobs = {0: (str(tmp_path / "large"), str(tmp_path / "large-copy"), 3 * step + 5),
            1: (str(tmp_path / "small"), str(tmp_path / "small-copy"), 1)}
    told: list[int] = []
    with CopyingPool(1) as pool:
        answers = list(pool.copy([[0], [1]], jobs.__getitem__, told.append))
    # Every full step of the large file is told once, the rest with its answer.
    assert told == [step] * 3
    assert [a.told for a in answers] == [3 * step, 0]
    assert (tmp_path / "large-copy").stat().st_size == 3 * step + 5
