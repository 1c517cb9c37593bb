"""A bundle tar holds each member once, ends with its two end blocks, and reads cleanly:
anything else is damage (exit 1), said in a few lines, in verify, inspect and binary alike.

GNU tar is the independent judge where it has an opinion: what it refuses, we refuse too.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from support.bundles import gnu_tar, make_bundle, run_cli, xor_byte
from support.cli import CliResult

BLOCK = 512


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("pristine"))


@pytest.fixture(scope="module")
def our_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("tar"), fmt="tar")


def first_sst(bundle: Path) -> Path:
    return sorted((bundle / "data" / "backup").rglob("*.sst"))[0]


def copy_of(tar: Path, tmp_path: Path) -> Path:
    target = tmp_path / tar.name
    shutil.copyfile(tar, target)
    return target


def end_of_members(tar: Path) -> int:
    """Offset of the first end-of-archive block, from Python's own reading of the tar."""
    with tarfile.open(tar) as archive:
        last = archive.getmembers()[-1]
    return last.offset_data + -(-last.size // BLOCK) * BLOCK


def gnu_tar_accepts(tar: Path) -> bool:
    listing = subprocess.run(["tar", "tf", str(tar)], capture_output=True, check=False)
    return listing.returncode == 0 and not listing.stderr


def verify(capsys: pytest.CaptureFixture[str], target: Path
           ) -> tuple[CliResult, list[dict[str, str]]]:
    result = run_cli(capsys, "verify", str(target), "--json")
    assert "Traceback" not in result.err
    found = result.json().get("problems", [])
    assert isinstance(found, list)
    return result, found


def assert_damaged_everywhere(capsys: pytest.CaptureFixture[str], target: Path,
                              tmp_path: Path, expect: str) -> list[dict[str, str]]:
    """verify, inspect and binary all say exit 1 without a traceback; returns the problems."""
    result, found = verify(capsys, target)
    assert result.code == 1, result.out
    assert 1 <= len(found) <= 4, found
    assert any(expect in p["detail"] for p in found), found
    for args in (("inspect", str(target)),
                 ("binary", str(target), "--to", str(tmp_path / "bin"),
                  "--platform", "linux-amd64")):
        other = run_cli(capsys, *args)
        assert other.code == 1, (args, other.out, other.err)
        assert "Traceback" not in other.err
        assert len(other.err.strip().splitlines()) == 1, other.err
    return found


# --- what is accepted -----------------------------------------------------------------------------


@pytest.mark.parametrize("options", [(), ("--format=pax",), ("--format=gnu",)],
                         ids=["gnu-default", "pax", "gnu"])
def test_tars_made_by_gnu_tar_verify(capsys: pytest.CaptureFixture[str], pristine: Path,
                                     tmp_path: Path, options: tuple[str, ...]) -> None:
    target = gnu_tar(pristine, tmp_path / f"{pristine.name}.tar", *options)
    result, found = verify(capsys, target)
    assert (result.code, found) == (0, [])


def test_our_tar_verifies_and_yields_its_binary(capsys: pytest.CaptureFixture[str],
                                                our_tar: Path, tmp_path: Path) -> None:
    assert gnu_tar_accepts(our_tar)
    result, found = verify(capsys, our_tar)
    assert (result.code, found) == (0, [])
    assert run_cli(capsys, "inspect", str(our_tar)).code == 0
    unpacked = run_cli(capsys, "binary", str(our_tar), "--to", str(tmp_path / "bin"),
                       "--platform", "linux-amd64", "--json")
    assert unpacked.code == 0, unpacked.err
    assert Path(str(unpacked.json()["cockroach"])).is_file()


# --- what is damage -------------------------------------------------------------------------------


def test_a_member_twice_is_damage_even_when_the_second_copy_is_good(
        capsys: pytest.CaptureFixture[str], pristine: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged" / pristine.name
    shutil.copytree(pristine, damaged)
    victim = first_sst(damaged)
    xor_byte(victim, 0)
    target = gnu_tar(damaged, tmp_path / f"{pristine.name}.tar")
    relative = victim.relative_to(damaged).as_posix()
    # Append the good copy: `tar xf` would extract it over the damaged one.
    subprocess.run(["tar", "rf", str(target), "-C", str(pristine.parent),
                    f"{pristine.name}/{relative}"], check=True)
    result, found = verify(capsys, target)
    assert result.code == 1
    pairs = {(p["kind"], p["path"]) for p in found}
    assert ("unexpected", relative) in pairs
    assert ("digest", relative) in pairs
    assert any("more than once" in p["detail"] for p in found)
    assert run_cli(capsys, "inspect", str(target)).code == 1


def test_data_after_the_end_blocks_is_damage(capsys: pytest.CaptureFixture[str],
                                             our_tar: Path, pristine: Path,
                                             tmp_path: Path) -> None:
    # What `tar -i` would extract over a payload file.
    evil = tmp_path / "evil" / pristine.name
    target_file = evil / first_sst(pristine).relative_to(pristine)
    target_file.parent.mkdir(parents=True)
    target_file.write_bytes(b"not the backup")
    appended = gnu_tar(evil, tmp_path / "evil.tar")
    combined = tmp_path / our_tar.name
    combined.write_bytes(our_tar.read_bytes() + appended.read_bytes())
    found = assert_damaged_everywhere(capsys, combined, tmp_path, "after the end")
    assert [p["kind"] for p in found] == ["unexpected"]


def test_a_broken_end_block_is_damage(capsys: pytest.CaptureFixture[str], our_tar: Path,
                                      tmp_path: Path) -> None:
    target = copy_of(our_tar, tmp_path)
    end = end_of_members(target)
    with target.open("r+b") as handle:
        handle.seek(end + BLOCK + 100)
        handle.write(b"\x01")
    assert not gnu_tar_accepts(target)
    assert_damaged_everywhere(capsys, target, tmp_path, "end-of-archive block")


def test_a_pax_record_without_its_newline_is_damage(capsys: pytest.CaptureFixture[str],
                                                    our_tar: Path, tmp_path: Path) -> None:
    target = copy_of(our_tar, tmp_path)
    data = bytearray(target.read_bytes())
    offset = 0
    while data[offset + 156:offset + 157] != b"x":
        size = int(data[offset + 124:offset + 136].strip(b"\0 ") or b"0", 8)
        offset += BLOCK + -(-size // BLOCK) * BLOCK
    size = int(data[offset + 124:offset + 136].strip(b"\0 "), 8)
    record_end = offset + BLOCK + size - 1
    assert data[record_end:record_end + 1] == b"\n"
    data[record_end:record_end + 1] = b" "
    target.write_bytes(bytes(data))
    assert not gnu_tar_accepts(target)
    assert_damaged_everywhere(capsys, target, tmp_path, "newline")


def test_a_header_with_a_wrong_checksum_is_damage(capsys: pytest.CaptureFixture[str],
                                                  our_tar: Path, tmp_path: Path) -> None:
    target = copy_of(our_tar, tmp_path)
    xor_byte(target, 10)  # inside the first member's name
    assert not gnu_tar_accepts(target)
    assert_damaged_everywhere(capsys, target, tmp_path, "checksum")


CUTS: list[tuple[str, Callable[[Path], int]]] = [
    ("empty", lambda tar: 0),
    ("inside the first header", lambda tar: 100),
    ("inside the payload", lambda tar: tar.stat().st_size // 3),
    ("inside a tag file", lambda tar: end_of_members(tar) - 700),
    ("before the end blocks", end_of_members),
    ("between the end blocks", lambda tar: end_of_members(tar) + BLOCK),
]


@pytest.mark.parametrize(("case", "cut"), CUTS, ids=[c[0] for c in CUTS])
def test_a_cut_tar_is_damage_in_a_few_lines(capsys: pytest.CaptureFixture[str], our_tar: Path,
                                            tmp_path: Path, case: str,
                                            cut: Callable[[Path], int]) -> None:
    target = copy_of(our_tar, tmp_path)
    with target.open("r+b") as handle:
        handle.truncate(cut(target))
    found = assert_damaged_everywhere(capsys, target, tmp_path, "")
    assert found[0]["kind"] == "size", found
    assert found[0]["path"] == str(target)


def test_a_cut_tar_made_by_gnu_tar_names_what_was_not_reached(
        capsys: pytest.CaptureFixture[str], pristine: Path, tmp_path: Path) -> None:
    target = gnu_tar(pristine, tmp_path / f"{pristine.name}.tar")
    with target.open("r+b") as handle:
        handle.truncate(target.stat().st_size // 2)
    result, found = verify(capsys, target)
    assert result.code == 1
    assert len(found) <= 4, found
    assert {p["kind"] for p in found} <= {"size", "missing", "unexpected", "tag"}


def test_a_file_that_is_not_a_tar_is_not_a_bundle(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    (tmp_path / "notes.bin").write_bytes(b"hello" * 200)
    assert run_cli(capsys, "verify", str(tmp_path / "notes.bin")).code == 2
    (tmp_path / "garbage.tar").write_bytes(b"hello" * 200)
    result = run_cli(capsys, "verify", str(tmp_path / "garbage.tar"))
    assert result.code == 1
    assert "not a POSIX tar header" in result.out
