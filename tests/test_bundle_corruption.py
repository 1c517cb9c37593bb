"""The corruption matrix: every way a bundle can be damaged is found, named, and exits 1.

Each case damages a fresh copy of a real bundle (directory form, and the tar form built from
the damaged directory), then runs ``crdb-archive verify``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from crdb_archive.archive import ArchiveRequest, archive_backup
from support.bundles import era_with_binaries, run_cli, xor_byte
from support.mirror import MirrorServer

Damage = Callable[[Path], object]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One good bundle, made once for the module through a loopback mirror."""
    base = tmp_path_factory.mktemp("pristine")
    (base / "mirror").mkdir()
    with MirrorServer(base / "mirror") as server, pytest.MonkeyPatch.context() as patch:
        patch.setenv("CRDB_ARCHIVE_CACHE", str(base / "cache"))
        patch.delenv("CRDB_ARCHIVE_MIRROR", raising=False)
        era = era_with_binaries(base, server, "v22.2")
        result = archive_backup(ArchiveRequest(
            source=str(era.path), dest=base / "bundles", mirror=server.url,
            with_incrementals=True,
        ))
    return Path(result.bundle)


def first_sst(bundle: Path) -> Path:
    return sorted((bundle / "data" / "backup").rglob("*.sst"))[0]


def rel(bundle: Path, path: Path) -> str:
    return path.relative_to(bundle).as_posix()


def binary_archive(bundle: Path) -> Path:
    return next((bundle / "data" / "cockroach").glob("*.tgz"))


# Each case: a name, the damage, and the (kind, path) that must be among the problems; the path
# is taken from the bundle before it is damaged.
CASES: list[tuple[str, Damage, str, Callable[[Path], str]]] = [
    ("xor payload byte", lambda b: xor_byte(first_sst(b), 3), "digest",
     lambda b: rel(b, first_sst(b))),
    ("truncate payload", lambda b: first_sst(b).write_bytes(first_sst(b).read_bytes()[:-1]),
     "size", lambda b: rel(b, first_sst(b))),
    ("delete payload", lambda b: first_sst(b).unlink(), "missing",
     lambda b: rel(b, first_sst(b))),
    ("add unlisted payload", lambda b: (b / "data" / "backup" / "extra.sst").write_bytes(b"x"),
     "unexpected", lambda b: "data/backup/extra.sst"),
    ("add unlisted tag file", lambda b: (b / "notes.txt").write_text("hello\n"),
     "unexpected", lambda b: "notes.txt"),
    ("xor binary archive", lambda b: xor_byte(binary_archive(b), 100), "binary",
     lambda b: rel(b, binary_archive(b))),
    ("rename payload", lambda b: first_sst(b).rename(first_sst(b).with_name("renamed.sst")),
     "unexpected", lambda b: rel(b, first_sst(b).with_name("renamed.sst"))),
    ("delete tag manifest", lambda b: (b / "tagmanifest-sha256.txt").unlink(), "missing",
     lambda b: "tagmanifest-sha256.txt"),
]

TAG_FILES = ["bagit.txt", "bag-info.txt", "manifest-sha256.txt", "manifest-blake3.txt",
             "payload-sizes.txt", "crdb-archive.json", "RESTORE.md", "tagmanifest-sha256.txt"]


def damaged_copy(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / pristine.name
    shutil.copytree(pristine, copy)
    return copy


def as_tar(directory: Path, tmp_path: Path) -> Path:
    target = tmp_path / f"{directory.name}.tar"
    subprocess.run(["tar", "cf", str(target), "-C", str(directory.parent), directory.name],
                   check=True)
    return target


def problems(capsys: pytest.CaptureFixture[str], bundle: Path,
             *flags: str) -> list[dict[str, str]]:
    result = run_cli(capsys, "verify", str(bundle), "--json", *flags)
    assert result.code == 1, result.out
    payload = result.json()
    assert payload["ok"] is False
    found = payload["problems"]
    assert isinstance(found, list)
    return found


@pytest.mark.parametrize("flags", [(), ("--all-digests",), ("--fast",)])
def test_pristine_is_valid(capsys: pytest.CaptureFixture[str], pristine: Path,
                           tmp_path: Path, flags: tuple[str, ...]) -> None:
    assert run_cli(capsys, "verify", str(pristine), *flags).code == 0
    assert run_cli(capsys, "verify", str(as_tar(pristine, tmp_path)), *flags).code == 0


@pytest.mark.parametrize("form", ["dir", "tar"])
@pytest.mark.parametrize(("case", "damage", "kind", "where"), CASES, ids=[c[0] for c in CASES])
def test_damage_detected(
    capsys: pytest.CaptureFixture[str], pristine: Path, tmp_path: Path, form: str, case: str,
    damage: Damage, kind: str, where: Callable[[Path], str],
) -> None:
    bundle = damaged_copy(pristine, tmp_path)
    expected_path = where(bundle)
    original = rel(bundle, first_sst(bundle))
    damage(bundle)
    target = as_tar(bundle, tmp_path) if form == "tar" else bundle
    found = problems(capsys, target)
    assert {"kind": kind, "path": expected_path} in [
        {"kind": p["kind"], "path": p["path"]} for p in found
    ], found
    if case == "rename payload":
        assert {"kind": "missing", "path": original} in [
            {"kind": p["kind"], "path": p["path"]} for p in found]
    text = run_cli(capsys, "verify", str(target))
    assert text.code == 1
    assert expected_path in text.out + text.err


@pytest.mark.parametrize("form", ["dir", "tar"])
@pytest.mark.parametrize("tag_file", TAG_FILES)
def test_each_tag_file_edit_detected(
    capsys: pytest.CaptureFixture[str], pristine: Path, tmp_path: Path, form: str,
    tag_file: str,
) -> None:
    bundle = damaged_copy(pristine, tmp_path)
    xor_byte(bundle / tag_file, 0)
    target = as_tar(bundle, tmp_path) if form == "tar" else bundle
    found = problems(capsys, target)
    assert any(p["path"] == tag_file for p in found), found


@pytest.mark.parametrize("form", ["dir", "tar"])
def test_fast_mode_finds_truncation_without_reading_payload(
    capsys: pytest.CaptureFixture[str], pristine: Path, tmp_path: Path, form: str
) -> None:
    bundle = damaged_copy(pristine, tmp_path)
    victim = first_sst(bundle)
    victim.write_bytes(victim.read_bytes()[:-1])
    target = as_tar(bundle, tmp_path) if form == "tar" else bundle
    found = problems(capsys, target, "--fast")
    kinds = {(p["kind"], p["path"]) for p in found}
    assert ("size", rel(bundle, victim)) in kinds
    assert ("size", "bag-info.txt") in kinds


def test_fast_mode_does_not_read_payload_digests(
    capsys: pytest.CaptureFixture[str], pristine: Path, tmp_path: Path
) -> None:
    bundle = damaged_copy(pristine, tmp_path)
    xor_byte(first_sst(bundle), 0)
    assert run_cli(capsys, "verify", str(bundle), "--fast").code == 0
    assert run_cli(capsys, "verify", str(bundle)).code == 1


def test_every_problem_reported(capsys: pytest.CaptureFixture[str], pristine: Path,
                                tmp_path: Path) -> None:
    bundle = damaged_copy(pristine, tmp_path)
    ssts = sorted((bundle / "data" / "backup").rglob("*.sst"))
    for sst in ssts[:3]:
        xor_byte(sst, 0)
    found = problems(capsys, bundle)
    digests = {p["path"] for p in found if p["kind"] == "digest"}
    assert digests == {rel(bundle, s) for s in ssts[:3]}


def test_truncated_tar_is_damage_not_a_crash(capsys: pytest.CaptureFixture[str],
                                             pristine: Path, tmp_path: Path) -> None:
    tar = as_tar(pristine, tmp_path)
    size = tar.stat().st_size
    with tar.open("r+b") as handle:
        handle.truncate(size // 2)
    result = run_cli(capsys, "verify", str(tar), "--json")
    assert result.code == 1
    assert "Traceback" not in result.err


def test_not_a_bundle_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    assert run_cli(capsys, "verify", str(tmp_path / "plain")).code == 2
    (tmp_path / "file.bin").write_bytes(b"hello")
    assert run_cli(capsys, "verify", str(tmp_path / "file.bin")).code == 2
    assert run_cli(capsys, "verify", str(tmp_path / "missing")).code == 2


def test_dot_names_the_bundle_it_is_run_in(capsys: pytest.CaptureFixture[str], pristine: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(pristine)
    for where in (".", "./"):
        done = run_cli(capsys, "verify", where)
        assert (done.code, done.out) == (0, f"{pristine}: OK " + done.out.split(": OK ", 1)[1])
    monkeypatch.chdir(pristine / "data")
    assert run_cli(capsys, "verify", "..").code == 0
    assert run_cli(capsys, "verify", "../data/..").code == 0
