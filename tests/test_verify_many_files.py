"""verify of a bundle of many files, which worker processes hash: the same findings as ever,
agreement with the standard tools, nothing left running after an interrupt, and threads when
processes cannot start.

Expected counts and sizes come from the test's own walk of the bundle; ``b3sum -c`` and
``sha256sum -c`` check the manifests independently.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from crdb_archive.bundle import verify
from crdb_archive.hashing_pool import HashingPool
from support.bundles import run_cli, xor_byte
from support.cli import signal_during_task
from support.many_files import FULL_BACKUP, LARGE, bundle_of, content
from support.processes import workers_running

FILES = 2600  # past the number from which verify hands the payload to worker processes


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundle_of(tmp_path_factory.mktemp("many"), FILES)


def payload_model(bundle: Path) -> tuple[int, int]:
    """(files, bytes) under data/, from a walk of the test's own."""
    files = [p for p in (bundle / "data").rglob("*") if p.is_file() and not p.is_symlink()]
    return len(files), sum(p.stat().st_size for p in files)


def report(capsys: pytest.CaptureFixture[str], bundle: Path, *flags: str
           ) -> tuple[int, dict[str, object]]:
    result = run_cli(capsys, "verify", str(bundle), "--json", *flags)
    assert "Traceback" not in result.err
    return result.code, result.json()


def test_the_workers_take_a_bundle_of_many_files(many: Path, tmp_path: Path) -> None:
    with verify._pool_for(str(many), "blake3") as pool:
        assert isinstance(pool, HashingPool)
    small = tmp_path / "small"
    shutil.copytree(many, small)
    (small / "manifest-blake3.txt").write_text("")
    with verify._pool_for(str(small), "blake3") as pool:
        assert pool is None


@pytest.mark.parametrize("flags", [(), ("--all-digests",)])
def test_a_sound_bundle_agrees_with_the_standard_tools(
        capsys: pytest.CaptureFixture[str], many: Path, flags: tuple[str, ...]) -> None:
    code, found = report(capsys, many, *flags)
    assert code == 0, found
    files, size = payload_model(many)
    assert files > FILES
    assert (found["ok"], found["files"], found["bytes"]) == (True, files, size)
    for tool, manifest in (("b3sum", "manifest-blake3.txt"),
                           ("sha256sum", "manifest-sha256.txt")):
        checked = subprocess.run([tool, "-c", "--quiet", manifest], cwd=many,
                                 capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def middle(bundle: Path) -> Path:
    return bundle / "data" / "backup" / FULL_BACKUP / f"{500000 + FILES // 2}.sst"


def rel(bundle: Path, path: Path) -> str:
    return path.relative_to(bundle).as_posix()


def binary_archive(bundle: Path) -> Path:
    return next((bundle / "data" / "cockroach").glob("*.tgz"))


def add_directory(directory: Path) -> None:
    directory.mkdir()
    (directory / "x.sst").write_bytes(b"x")


Damage = Callable[[Path], object]
# (name, damage, flags, the problems that must be among those found: (kind, path, detail))
CASES: list[tuple[str, Damage, tuple[str, ...], Callable[[Path], set[tuple[str, str, str]]]]]
CASES = [
    ("xor a byte", lambda b: xor_byte(middle(b), 7), (),
     lambda b: {("digest", rel(b, middle(b)), "BLAKE3 differs from manifest-blake3.txt")}),
    ("xor a byte, all digests", lambda b: xor_byte(middle(b), 7), ("--all-digests",),
     lambda b: {("digest", rel(b, middle(b)), "BLAKE3 differs from manifest-blake3.txt"),
                ("digest", rel(b, middle(b)), "SHA-256 differs from manifest-sha256.txt")}),
    ("xor the large file", lambda b: xor_byte(middle(b).with_name("900000.sst"), LARGE - 1),
     (), lambda b: {("digest", rel(b, middle(b).with_name("900000.sst")),
                     "BLAKE3 differs from manifest-blake3.txt")}),
    ("truncate", lambda b: os.truncate(middle(b), 5), (),
     lambda b: {("size", rel(b, middle(b)),
                 f"5 bytes, payload-sizes.txt says {len(content(FILES // 2)):,}")}),
    ("delete", lambda b: middle(b).unlink(), (),
     lambda b: {("missing", rel(b, middle(b)),
                 "listed in the manifests, absent from the bundle")}),
    ("add a file", lambda b: middle(b).with_name("extra.sst").write_bytes(b"x"), (),
     lambda b: {("unexpected", rel(b, middle(b).with_name("extra.sst")),
                 "a payload file no manifest lists")}),
    ("add a directory", lambda b: add_directory(middle(b).parent / "zz"), (),
     lambda b: {("unexpected", rel(b, middle(b).parent / "zz" / "x.sst"),
                 "a payload file no manifest lists")}),
    ("a symbolic link", lambda b: middle(b).with_name("link.sst").symlink_to(middle(b)), (),
     lambda b: {("unexpected", rel(b, middle(b).with_name("link.sst")),
                 "symbolic link, not a regular file")}),
    ("a FIFO", lambda b: os.mkfifo(middle(b).with_name("fifo.sst")), (),
     lambda b: {("unexpected", rel(b, middle(b).with_name("fifo.sst")),
                 "special file, not a regular file")}),
    ("xor the binary archive", lambda b: xor_byte(binary_archive(b), 100), (),
     lambda b: {("binary", rel(b, binary_archive(b)),
                 "SHA-256 differs from the one recorded at archive time")}),
]


@pytest.mark.parametrize(("case", "damage", "flags", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_damage_among_many_files_is_found(
        capsys: pytest.CaptureFixture[str], many: Path, tmp_path: Path, case: str,
        damage: Damage, flags: tuple[str, ...],
        expected: Callable[[Path], set[tuple[str, str, str]]]) -> None:
    bundle = tmp_path / many.name
    shutil.copytree(many, bundle, symlinks=True)
    damage(bundle)
    code, found = report(capsys, bundle, *flags)
    assert code == 1, found
    problems = found["problems"]
    assert isinstance(problems, list)
    seen = {(p["kind"], p["path"], p["detail"]) for p in problems}
    assert expected(bundle) <= seen, problems


def test_without_processes_threads_do_the_same_work(
        capsys: pytest.CaptureFixture[str], many: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / many.name
    shutil.copytree(many, bundle)
    xor_byte(middle(bundle), 1)
    files, size = payload_model(bundle)
    expected = {"kind": "digest", "path": rel(bundle, middle(bundle)),
                "detail": "BLAKE3 differs from manifest-blake3.txt"}
    # An interpreter that cannot be started, and one that ends at once without a word.
    for executable in (str(tmp_path / "no-such-python"), shutil.which("false") or "false"):
        monkeypatch.setattr(sys, "executable", executable)
        code, found = report(capsys, bundle)
        assert code == 1
        assert (found["files"], found["bytes"], found["problems"]) == (files, size, [expected])


def hashing_workers() -> list[int]:
    return workers_running("hashing_worker")


@pytest.fixture(scope="module")
def larger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundle_of(tmp_path_factory.mktemp("larger"), 30_000)


def workers_are_hashing() -> None:
    assert hashing_workers() != []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("group", [False, True], ids=["process", "process group"])
def test_an_interrupt_ends_the_workers_too(larger: Path, signum: int, group: bool) -> None:
    assert hashing_workers() == []
    stopped = signal_during_task(["verify", str(larger), "--json"], signum, "verify ",
                                 group=group, before=workers_are_hashing)
    assert stopped.returncode == 130, stopped.err
    name = signal.Signals(signum).name
    assert json.loads(stopped.out) == {"error": f"interrupted by {name}", "exit_code": 130}
    assert "Traceback" not in stopped.err
    assert hashing_workers() == []
