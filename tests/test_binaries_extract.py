"""Safe extraction of release archives, and the `cockroach version` check of what came out."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from crdb_archive.binaries import check_binary_version, extract_archive, host_platform
from crdb_archive.errors import BadReleaseArchive, ExitCode, StorageError, UnsafeArchive
from support.release_archives import build_archive, top_folder

RELEASE = "v23.1.11"
TOP = "cockroach-v23.1.11.linux-amd64"
needs_linux_amd64 = pytest.mark.skipif(
    host_platform() != "linux-amd64", reason="runs the linux-amd64 stand-in binary"
)


def everything_under(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


# --- the official layout -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "executable", "has_lib"),
    [
        ("linux-amd64", "cockroach", True),
        ("linux-arm64", "cockroach", True),
        ("darwin-amd64", "cockroach", True),
        ("darwin-arm64", "cockroach", False),
        ("windows-amd64", "cockroach.exe", False),
    ],
)
def test_official_layout_extracts(
    tmp_path: Path, platform: str, executable: str, has_lib: bool
) -> None:
    files = build_archive(tmp_path, RELEASE, platform)
    extracted = extract_archive(files.archive, tmp_path / "out")
    root = tmp_path / "out" / top_folder(RELEASE, platform)
    assert extracted.root == root
    assert extracted.cockroach == root / executable
    assert extracted.lib_dir == (root / "lib" if has_lib else None)
    assert extracted.cockroach.read_bytes().startswith(b"#!/bin/sh\n")
    if has_lib:
        assert sorted(p.name for p in (root / "lib").iterdir()) == ["libgeos.so", "libgeos_c.so"]
    # Only the folder itself: the staging directory is gone.
    assert [p.name for p in (tmp_path / "out").iterdir()] == [root.name]


def test_executable_bit_and_mtime_survive(tmp_path: Path) -> None:
    files = build_archive(tmp_path, RELEASE, "linux-amd64")
    extracted = extract_archive(files.archive, tmp_path / "out")
    assert os.access(extracted.cockroach, os.X_OK)
    assert extracted.cockroach.stat().st_mode & 0o777 == 0o755
    assert extracted.lib_dir is not None
    assert (extracted.lib_dir / "libgeos.so").stat().st_mode & 0o777 == 0o644
    assert int(extracted.cockroach.stat().st_mtime) == 1_696_204_800


def test_extracting_again_replaces_the_earlier_folder(tmp_path: Path) -> None:
    files = build_archive(tmp_path, RELEASE, "linux-amd64")
    first = extract_archive(files.archive, tmp_path / "out")
    (first.root / "stray-file").write_text("left from before")
    second = extract_archive(files.archive, tmp_path / "out")
    assert not (second.root / "stray-file").exists()
    assert second.cockroach.is_file()
    assert [p.name for p in (tmp_path / "out").iterdir()] == [TOP]


# --- hostile archives --------------------------------------------------------------------------


def tar_with(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, content in members:
            if content is not None:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)
    return path


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def cockroach() -> tuple[tarfile.TarInfo, bytes]:
    return entry(f"{TOP}/cockroach"), b"#!/bin/sh\n"


HOSTILE_TARS: dict[str, Callable[[], list[tuple[tarfile.TarInfo, bytes | None]]]] = {
    "dot-dot": lambda: [cockroach(), (entry(f"{TOP}/../../x"), b"escaped")],
    "dot-dot-at-start": lambda: [(entry("../x"), b"escaped"), cockroach()],
    "absolute-path": lambda: [cockroach(), (entry("/tmp/crdb-archive-test-x"), b"escaped")],
    "symlink-to-etc-passwd": lambda: [
        cockroach(), (entry(f"{TOP}/passwd", tarfile.SYMTYPE, "/etc/passwd"), None)
    ],
    "symlink-climbing-out": lambda: [
        cockroach(), (entry(f"{TOP}/lib/up", tarfile.SYMTYPE, "../../../etc"), None)
    ],
    "write-through-symlink": lambda: [
        cockroach(),
        (entry(f"{TOP}/lib", tarfile.SYMTYPE, "."), None),
        (entry(f"{TOP}/lib/libgeos.so"), b"through a link"),
    ],
    "symlink-chain": lambda: [
        cockroach(),
        (entry(f"{TOP}/here", tarfile.SYMTYPE, "."), None),
        (entry(f"{TOP}/out", tarfile.SYMTYPE, "here/../../x"), None),
    ],
    "hard-link-to-etc-passwd": lambda: [
        cockroach(), (entry(f"{TOP}/passwd", tarfile.LNKTYPE, "/etc/passwd"), None)
    ],
    "hard-link-climbing-out": lambda: [
        cockroach(), (entry(f"{TOP}/passwd", tarfile.LNKTYPE, "../../../etc/passwd"), None)
    ],
    "hard-link-to-unknown-member": lambda: [
        cockroach(), (entry(f"{TOP}/copy", tarfile.LNKTYPE, f"{TOP}/missing"), None)
    ],
    "character-device": lambda: [cockroach(), (entry(f"{TOP}/null", tarfile.CHRTYPE), None)],
    "block-device": lambda: [cockroach(), (entry(f"{TOP}/sda", tarfile.BLKTYPE), None)],
    "fifo": lambda: [cockroach(), (entry(f"{TOP}/pipe", tarfile.FIFOTYPE), None)],
    "duplicate-member": lambda: [cockroach(), cockroach()],
    "backslash-name": lambda: [cockroach(), (entry(f"{TOP}\\..\\x"), b"windows style")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE_TARS))
def test_hostile_tar_is_refused_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    archive = tar_with(tmp_path / "hostile.tgz", *HOSTILE_TARS[case]())
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchive) as info:
        extract_archive(archive, out)
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert str(archive) in str(info.value)
    assert everything_under(out) == []
    assert not (tmp_path / "x").exists()
    assert not Path("/tmp/crdb-archive-test-x").exists()


def test_symlink_inside_the_archive_is_allowed(tmp_path: Path) -> None:
    archive = tar_with(
        tmp_path / "links.tgz",
        cockroach(),
        (entry(f"{TOP}/lib/libgeos.so.3.11.2"), b"geos"),
        (entry(f"{TOP}/lib/libgeos.so", tarfile.SYMTYPE, "libgeos.so.3.11.2"), None),
        (entry(f"{TOP}/geos", tarfile.SYMTYPE, "lib/../lib/libgeos.so.3.11.2"), None),
        (entry(f"{TOP}/cockroach-copy", tarfile.LNKTYPE, f"{TOP}/cockroach"), None),
    )
    extracted = extract_archive(archive, tmp_path / "out")
    assert extracted.lib_dir is not None
    assert (extracted.lib_dir / "libgeos.so").read_bytes() == b"geos"
    assert (extracted.root / "geos").read_bytes() == b"geos"
    assert (extracted.root / "cockroach-copy").read_bytes() == b"#!/bin/sh\n"


def zip_with(path: Path, *members: tuple[str, bytes, int]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content, mode in members:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            archive.writestr(info, content)
    return path


WIN_TOP = "cockroach-v23.1.11.windows-6.2-amd64"


@pytest.mark.parametrize(
    "member",
    [
        ("../x", b"escaped", stat.S_IFREG | 0o644),
        (f"{WIN_TOP}/../../x", b"escaped", stat.S_IFREG | 0o644),
        ("/tmp/crdb-archive-test-x", b"escaped", stat.S_IFREG | 0o644),
        ("C:/Windows/x", b"escaped", stat.S_IFREG | 0o644),
        (f"{WIN_TOP}/passwd", b"/etc/passwd", stat.S_IFLNK | 0o777),
        (f"{WIN_TOP}/pipe", b"", stat.S_IFIFO | 0o644),
    ],
    ids=["dot-dot", "nested-dot-dot", "absolute", "drive-letter", "symlink", "fifo"],
)
def test_hostile_zip_is_refused_and_leaves_nothing(
    tmp_path: Path, member: tuple[str, bytes, int]
) -> None:
    archive = zip_with(
        tmp_path / "hostile.zip", (f"{WIN_TOP}/cockroach.exe", b"MZ", stat.S_IFREG | 0o755), member
    )
    with pytest.raises(UnsafeArchive):
        extract_archive(archive, tmp_path / "out")
    assert everything_under(tmp_path / "out") == []
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: p.write_bytes(b"not an archive at all"), "not a readable archive"),
        (lambda p: p.write_bytes(
            build_archive(p.parent, RELEASE, "linux-amd64").archive.read_bytes()[:50_000]
        ), "not a readable archive"),
        (lambda p: tar_with(p, (entry("cockroach"), b"#!/bin/sh\n")), "one top folder"),
        (lambda p: tar_with(p, (entry(f"{TOP}/lib/libgeos.so"), b"x")), "cockroach executable"),
        (lambda p: tar_with(p, cockroach(), (entry("other/file"), b"x")), "one top folder"),
    ],
    ids=["garbage", "truncated", "no-top-folder", "no-cockroach", "two-top-folders"],
)
def test_corrupt_or_unofficial_archive_is_bad_input(
    tmp_path: Path, make: Callable[[Path], object], fragment: str
) -> None:
    (tmp_path / "src").mkdir()
    archive = tmp_path / "src" / "cockroach-v23.1.11.linux-amd64.tgz"
    make(archive)
    with pytest.raises(BadReleaseArchive) as info:
        extract_archive(archive, tmp_path / "out")
    assert fragment in str(info.value)
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert everything_under(tmp_path / "out") == []


@pytest.mark.parametrize("platform", ["linux-amd64", "windows-amd64"])
def test_flipped_byte_in_compressed_data_is_bad_input(tmp_path: Path, platform: str) -> None:
    files = build_archive(tmp_path, RELEASE, platform)
    data = bytearray(files.archive.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the padding member's compressed bytes
    files.archive.write_bytes(bytes(data))
    with pytest.raises(BadReleaseArchive):
        extract_archive(files.archive, tmp_path / "out")
    assert everything_under(tmp_path / "out") == []


def test_missing_archive_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        extract_archive(tmp_path / "missing.tgz", tmp_path / "out")


# --- cockroach version -------------------------------------------------------------------------


@needs_linux_amd64
def test_version_check_matches(tmp_path: Path) -> None:
    extracted = extract_archive(build_archive(tmp_path, RELEASE, "linux-amd64").archive,
                                tmp_path / "out")
    check = check_binary_version(extracted.cockroach, RELEASE, platform="linux-amd64")
    assert check.checked
    assert check.matches is True
    assert check.build_tag == RELEASE
    assert check.to_json() == {
        "checked": True, "build_tag": RELEASE, "matches": True, "detail": check.detail
    }


@needs_linux_amd64
def test_version_check_reports_a_mismatch(tmp_path: Path) -> None:
    files = build_archive(tmp_path, RELEASE, "linux-amd64", build_tag="v23.1.10")
    extracted = extract_archive(files.archive, tmp_path / "out")
    check = check_binary_version(extracted.cockroach, RELEASE, platform="linux-amd64")
    assert check.checked
    assert check.matches is False
    assert check.build_tag == "v23.1.10"
    assert "expected v23.1.11" in check.detail


def test_version_check_skips_foreign_platforms(tmp_path: Path) -> None:
    foreign = "windows-amd64" if host_platform() != "windows-amd64" else "linux-arm64"
    check = check_binary_version(tmp_path / "cockroach", RELEASE, platform=foreign)
    assert not check.checked
    assert check.matches is None
    assert check.detail.startswith("not checked")


@needs_linux_amd64
def test_version_check_times_out(tmp_path: Path) -> None:
    files = build_archive(tmp_path, RELEASE, "linux-amd64", sleep=30)
    extracted = extract_archive(files.archive, tmp_path / "out")
    check = check_binary_version(extracted.cockroach, RELEASE, platform="linux-amd64",
                                 timeout=0.3)
    assert not check.checked
    assert "did not finish within 0.3 s" in check.detail


@needs_linux_amd64
def test_version_check_of_a_binary_that_fails(tmp_path: Path) -> None:
    binary = tmp_path / "cockroach"
    binary.write_text("#!/bin/sh\necho 'error while loading shared libraries' >&2\nexit 127\n")
    binary.chmod(0o755)
    check = check_binary_version(binary, RELEASE, platform="linux-amd64")
    assert not check.checked
    assert "status 127" in check.detail
    assert "shared libraries" in check.detail


@needs_linux_amd64
def test_version_check_of_output_without_build_tag(tmp_path: Path) -> None:
    binary = tmp_path / "cockroach"
    binary.write_text("#!/bin/sh\necho 'hello'\n")
    binary.chmod(0o755)
    check = check_binary_version(binary, RELEASE, platform="linux-amd64")
    assert check.checked
    assert check.matches is False
    assert check.build_tag is None


def test_version_check_of_a_missing_binary(tmp_path: Path) -> None:
    host = host_platform()
    if host is None:
        pytest.skip("no CockroachDB platform for this host")
    check = check_binary_version(tmp_path / "nope", RELEASE, platform=host)
    assert not check.checked
    assert "cannot run" in check.detail
