"""archive of a backup of many files, which worker processes copy: the bundle the standard
tools accept, the same refusals and messages as a copy on threads, no half-written bundle and
no worker left after a failure or an interrupt, and threads when processes cannot start.

Expected digests come from hashlib and the blake3 library over the source the test wrote;
``b3sum -c``, ``sha256sum -c`` and bagit-python check the bundle independently.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import bagit
import blake3
import pytest

from crdb_archive.bundle import layout
from crdb_archive.bundle.publish import write_bundle
from crdb_archive.bundle.writer import PROCESSES_FROM, PayloadItem
from crdb_archive.errors import ObjectNotFound, StorageError
from crdb_archive.progress import ProgressEvent
from crdb_archive.storage.base import open_storage
from support.bundles import run_cli, small_filesystem
from support.cli import signal_during_task
from support.many_files import backup_of
from support.mirror import MirrorServer
from support.processes import workers_running

FILES = 2600  # past the number from which archive hands the copy to worker processes
# What archive does not take of the era: its older full backup (LATEST names the newer one).
OLDER_FULL = "2023/01/05-030000.00/"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MirrorServer]:
    root = tmp_path_factory.mktemp("mirror")
    with MirrorServer(root) as server:
        yield server


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("CRDB_ARCHIVE_MIRROR", raising=False)


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory, mirror: MirrorServer) -> Path:
    return backup_of(tmp_path_factory.mktemp("many"), mirror, FILES)


def model(backup: Path) -> dict[str, tuple[str, str]]:
    """Bundle path -> (SHA-256, BLAKE3) of every file of the backup that archive takes with
    its incrementals, from the test's walk: all but the older full backup and the older
    pointers in metadata/latest (their names sort newest first)."""
    pointers = sorted((backup / "metadata" / "latest").iterdir())
    found = {}
    for path in backup.rglob("*"):
        if (path.is_file() and not str(path.relative_to(backup)).startswith(OLDER_FULL)
                and path not in pointers[1:]):
            data = path.read_bytes()
            found[f"data/backup/{path.relative_to(backup)}"] = (
                hashlib.sha256(data).hexdigest(), blake3.blake3(data).hexdigest())
    return found


def manifest(bundle: Path, name: str) -> dict[str, str]:
    lines = (bundle / name).read_text().splitlines()
    return {path: digest for digest, path in (line.split("  ", 1) for line in lines)}


def check_bundle(bundle: Path, backup: Path) -> None:
    expected = model(backup)
    sha256 = {p: d for p, d in manifest(bundle, "manifest-sha256.txt").items()
              if p.startswith("data/backup/")}
    b3 = {p: d for p, d in manifest(bundle, "manifest-blake3.txt").items()
          if p.startswith("data/backup/")}
    assert sha256 == {p: s for p, (s, _) in expected.items()}
    assert b3 == {p: b for p, (_, b) in expected.items()}
    for tool, name in (("b3sum", "manifest-blake3.txt"), ("sha256sum", "manifest-sha256.txt")):
        subprocess.run([tool, "-c", "--quiet", name], cwd=bundle, check=True)
    bagit.Bag(str(bundle)).validate()


def copying_workers() -> list[int]:
    return workers_running("copying_worker")


def archive(capsys: pytest.CaptureFixture[str], backup: Path, dest: Path,
            mirror: MirrorServer) -> tuple[int, str, dict[str, object]]:
    result = run_cli(capsys, "archive", str(backup), "--dest", str(dest), "--mirror",
                     mirror.url, "--with-incrementals", "--json")
    assert "Traceback" not in result.err
    return result.code, result.err, json.loads(result.out)


def test_a_backup_of_many_files_is_archived_as_the_tools_expect(
        capsys: pytest.CaptureFixture[str], backup: Path, mirror: MirrorServer,
        tmp_path: Path) -> None:
    code, err, made = archive(capsys, backup, tmp_path / "bundles", mirror)
    assert code == 0, err
    bundle = Path(str(made["bundle"]))
    check_bundle(bundle, backup)
    assert copying_workers() == []
    # The copies are new files of the bundle's own, not links to the backup's.
    copy = bundle / "data" / "backup" / "2023/01/12-030000.12/data/500000.sst"
    assert copy.stat().st_ino != (backup / "2023/01/12-030000.12/data/500000.sst").stat().st_ino


def test_without_processes_threads_make_the_same_bundle(
        capsys: pytest.CaptureFixture[str], backup: Path, mirror: MirrorServer,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An interpreter that cannot be started, and one that ends at once without a word.
    for index, executable in enumerate((str(tmp_path / "no-such-python"),
                                        shutil.which("false") or "false")):
        monkeypatch.setattr(sys, "executable", executable)
        code, err, made = archive(capsys, backup, tmp_path / f"bundles-{index}", mirror)
        assert code == 0, err
        check_bundle(Path(str(made["bundle"])), backup)


def describe_nothing(_: object) -> dict[str, bytes]:
    return {layout.DESCRIPTION: b"{}\n", layout.RESTORE_MD: b"# restore\n"}


def _never(*_: object) -> bytes:
    raise AssertionError("a file the workers copy is never opened here")


def local_payload(files: list[Path], root: Path) -> list[PayloadItem]:
    """Items that only worker processes can copy: their openers fail the test."""
    return [PayloadItem(path=f"data/{path.relative_to(root)}", size=path.stat().st_size,
                        open=_never, read_whole=_never, local_source=str(path))  # type: ignore[arg-type]
            for path in files]


def source_tree(root: Path, count: int) -> list[Path]:
    made = []
    for index in range(count):
        path = root / f"d{index % 3}" / f"{index:05d}.sst"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{index}\n".encode() * (index % 50))
        made.append(path)
    big = root / "big.sst"
    big.write_bytes(os.urandom((2 << 20) + 7))  # streamed by a worker, not read whole
    return [*made, big]


def test_the_workers_copy_files_whose_openers_are_never_called(tmp_path: Path) -> None:
    files = source_tree(tmp_path / "src", PROCESSES_FROM)
    with open_storage(str(tmp_path / "dest"), for_write=True) as storage:
        written = write_bundle(storage, "b", local_payload(files, tmp_path / "src"),
                               bag_info=[], describe=describe_nothing)
    bundle = tmp_path / "dest" / "b"
    expected = {f"data/{p.relative_to(tmp_path / 'src')}": p.read_bytes() for p in files}
    assert manifest(bundle, "manifest-sha256.txt") == {
        p: hashlib.sha256(c).hexdigest() for p, c in expected.items()}
    assert manifest(bundle, "manifest-blake3.txt") == {
        p: blake3.blake3(c).hexdigest() for p, c in expected.items()}
    assert written.payload.oxum == f"{sum(map(len, expected.values()))}.{len(expected)}"
    bagit.Bag(str(bundle)).validate()


def test_files_not_of_this_host_are_copied_by_threads_after(tmp_path: Path) -> None:
    files = source_tree(tmp_path / "src", PROCESSES_FROM)
    payload = local_payload(files, tmp_path / "src")
    # Every third item only opens (as a file in a bucket does); the rest only the workers
    # copy. The first decides whether workers are used: it is of this host.
    payload = [PayloadItem(i.path, i.size, open=functools.partial(_open, Path(str(i.local_source))))
               if index % 3 == 1 else i for index, i in enumerate(payload)]
    with open_storage(str(tmp_path / "dest"), for_write=True) as storage:
        write_bundle(storage, "b", payload, bag_info=[], describe=describe_nothing)
    bundle = tmp_path / "dest" / "b"
    assert manifest(bundle, "manifest-sha256.txt") == {
        f"data/{p.relative_to(tmp_path / 'src')}": hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files}
    bagit.Bag(str(bundle)).validate()


def test_progress_counts_every_byte_once(tmp_path: Path) -> None:
    files = source_tree(tmp_path / "src", PROCESSES_FROM)
    large = tmp_path / "src" / "large.sst"
    large.write_bytes(b"x" * (40 << 20))  # told on the way, in steps, by its worker
    files.append(large)
    events: list[ProgressEvent] = []
    with open_storage(str(tmp_path / "dest"), for_write=True) as storage:
        write_bundle(storage, "b", local_payload(files, tmp_path / "src"), bag_info=[],
                     describe=describe_nothing, progress=events.append)
    total = sum(p.stat().st_size for p in files)
    done = [e.done for e in events if e.task == "archive b"]
    assert done == sorted(done)
    assert done[-1] == total
    assert all(e.total == total for e in events if e.task == "archive b")
    assert len(done) > 3  # not one event at the end


Breakage = Callable[[Path], None]


def _remove(path: Path) -> None:
    path.unlink()


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _link(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.with_name("00000.sst"))


def _grow(path: Path) -> None:
    with path.open("ab") as handle:
        handle.write(b"more")


def _shrink(path: Path) -> None:
    path.write_bytes(b"")


BREAKAGES: list[tuple[str, Breakage, Callable[[Path, str, int], tuple[type, str]]]] = [
    ("removed", _remove, lambda p, _, __: (ObjectNotFound, f"{p} does not exist")),
    ("a FIFO", _fifo, lambda p, _, __: (ObjectNotFound, f"{p} is not a regular file")),
    ("a symbolic link", _link,
     lambda p, _, __: (StorageError, f"cannot read {p}: {os.strerror(errno.ELOOP)}")),
    ("grown", _grow, lambda _, b, n: (
        StorageError, f"{b} changed while it was archived: expected {n:,} bytes, read {n + 1:,}")),
    ("emptied", _shrink, lambda _, b, n: (
        StorageError, f"{b} changed while it was archived: expected {n:,} bytes, read 0")),
]


@pytest.mark.parametrize(("case", "breakage", "expected"), BREAKAGES,
                         ids=[b[0] for b in BREAKAGES])
@pytest.mark.parametrize("copier", ["processes", "threads"])
def test_a_file_that_changed_after_the_listing_is_named_alike(
        tmp_path: Path, case: str, breakage: Breakage,
        expected: Callable[[Path, str, int], tuple[type, str]], copier: str) -> None:
    count = PROCESSES_FROM if copier == "processes" else PROCESSES_FROM - 10
    files = source_tree(tmp_path / "src", count)
    broken = files[count // 2]
    size = broken.stat().st_size
    payload = local_payload(files, tmp_path / "src")
    if copier == "threads":  # as the backup's own items are: read whole, here
        payload = [threaded(item) for item in payload]
    breakage(broken)
    kind, message = expected(broken, f"data/{broken.relative_to(tmp_path / 'src')}", size)
    with open_storage(str(tmp_path / "dest"), for_write=True) as storage, \
            pytest.raises(kind) as raised:
        write_bundle(storage, "b", payload, bag_info=[], describe=describe_nothing)
    assert str(raised.value) == message
    assert list((tmp_path / "dest").iterdir()) == []  # no bundle, no staging area
    assert copying_workers() == []


def threaded(item: PayloadItem) -> PayloadItem:
    """The item as threads copy it: opened, or read whole as a local storage reads it."""
    source = Path(str(item.local_source))
    return PayloadItem(item.path, item.size, open=functools.partial(_open, source),
                       read_whole=functools.partial(_read_whole, str(source)))


def _open(path: Path) -> IO[bytes]:
    return path.open("rb")


def _read_whole(path: str, limit: int) -> bytes:
    """What a local storage's read_whole does, for the thread side of the comparison."""
    with open_storage(str(Path(path).parent)) as storage:
        paths = storage.local_paths()
        assert paths is not None
        return paths.read_whole(Path(path).name, limit)


def test_a_destination_that_fills_up(capsys: pytest.CaptureFixture[str], backup: Path,
                                     mirror: MirrorServer, tmp_path: Path) -> None:
    dest = tmp_path / "small"
    with small_filesystem(dest, "2m") as mounted:
        if not mounted:
            pytest.skip("needs root to mount a small filesystem")
        code, err, made = archive(capsys, backup, dest, mirror)
        assert code == 3, err
        assert made["exit_code"] == 3
        assert "no space left on the device while writing" in str(made["error"])
        assert list(dest.iterdir()) == []
    assert copying_workers() == []


@pytest.fixture(scope="module")
def larger(tmp_path_factory: pytest.TempPathFactory, mirror: MirrorServer) -> Path:
    return backup_of(tmp_path_factory.mktemp("larger"), mirror, 30_000)


def workers_are_copying() -> None:
    assert copying_workers() != []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("group", [False, True], ids=["process", "process group"])
def test_an_interrupt_ends_the_workers_and_leaves_nothing(
        larger: Path, mirror: MirrorServer, tmp_path: Path, signum: int, group: bool) -> None:
    assert copying_workers() == []
    dest = tmp_path / "bundles"
    stopped = signal_during_task(
        ["archive", str(larger), "--dest", str(dest), "--mirror", mirror.url, "--json"],
        signum, "archive ", env=dict(os.environ), group=group, before=workers_are_copying)
    assert stopped.returncode == 130, stopped.err
    name = signal.Signals(signum).name
    assert json.loads(stopped.out) == {"error": f"interrupted by {name}", "exit_code": 130}
    assert "Traceback" not in stopped.err
    assert copying_workers() == []
    assert not dest.exists() or list(dest.iterdir()) == []
