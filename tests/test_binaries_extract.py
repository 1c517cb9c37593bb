"""Safe extraction of release archives, and the `cockroach version` check of what came out."""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from crdb_archive.binaries import check_binary_version, extract_archive, host_platform
from crdb_archive.errors import (
    BadInput,
    BadReleaseArchive,
    ChecksumMismatch,
    ExitCode,
    StorageError,
    UnsafeArchive,
)
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


def test_extraction_leaves_a_marker_naming_the_archive(tmp_path: Path) -> None:
    files = build_archive(tmp_path, RELEASE, "linux-amd64")
    extracted = extract_archive(files.archive, tmp_path / "out")
    marker = json.loads((extracted.root / ".crdb-archive-extracted.json").read_text())
    assert marker["archive"] == files.name
    assert marker["sha256"] == files.sha256


def test_extracting_again_is_refused_without_replace(tmp_path: Path) -> None:
    files = build_archive(tmp_path, RELEASE, "linux-amd64")
    first = extract_archive(files.archive, tmp_path / "out")
    before = everything_under(tmp_path / "out")
    with pytest.raises(BadInput) as info:
        extract_archive(files.archive, tmp_path / "out")
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert str(first.root) in str(info.value)
    assert "--replace" in str(info.value)
    assert everything_under(tmp_path / "out") == before


def test_replace_replaces_an_earlier_extraction_of_the_same_archive(tmp_path: Path) -> None:
    files = build_archive(tmp_path, RELEASE, "linux-amd64")
    first = extract_archive(files.archive, tmp_path / "out")
    first.cockroach.write_text("changed by hand")
    second = extract_archive(files.archive, tmp_path / "out", replace=True)
    assert second.cockroach.read_bytes().startswith(b"#!/bin/sh\n")
    assert [p.name for p in (tmp_path / "out").iterdir()] == [TOP]


def test_replace_keeps_an_extraction_holding_anything_else(tmp_path: Path) -> None:
    files = build_archive(tmp_path, RELEASE, "linux-amd64")
    first = extract_archive(files.archive, tmp_path / "out")
    (first.root / "store").mkdir()
    (first.root / "store" / "data.sst").write_text("a cluster's data")
    before = everything_under(tmp_path / "out")
    with pytest.raises(BadInput) as info:
        extract_archive(files.archive, tmp_path / "out", replace=True)
    assert "store" in str(info.value)
    assert everything_under(tmp_path / "out") == before
    assert (first.root / "store" / "data.sst").read_text() == "a cluster's data"


@pytest.mark.parametrize("case", ["no-marker", "other-archive", "symlink", "file"])
def test_replace_never_touches_what_no_extraction_of_this_archive_made(
    tmp_path: Path, case: str
) -> None:
    files = build_archive(tmp_path, RELEASE, "linux-amd64")
    out = tmp_path / "out"
    target = out / TOP
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "important.txt").write_text("keep me")
    if case == "no-marker":
        target.mkdir(parents=True)
        (target / "important.txt").write_text("keep me")
    elif case == "other-archive":
        (tmp_path / "other").mkdir()
        other = build_archive(tmp_path / "other", RELEASE, "linux-amd64", padding_size=10)
        extract_archive(other.archive, out)
    elif case == "symlink":
        out.mkdir()
        target.symlink_to(elsewhere)
    else:
        out.mkdir()
        target.write_text("keep me")
    before = everything_under(out)
    for replace in (False, True):
        with pytest.raises(BadInput) as info:
            extract_archive(files.archive, out, replace=replace)
        assert info.value.exit_code == ExitCode.BAD_INPUT
        assert str(target) in str(info.value)
        if replace and case == "other-archive":
            assert "another archive" in str(info.value)
    assert everything_under(out) == before
    assert (elsewhere / "important.txt").read_text() == "keep me"
    if case == "no-marker":
        assert (target / "important.txt").read_text() == "keep me"


def test_destination_that_is_a_file_is_bad_input(tmp_path: Path) -> None:
    files = build_archive(tmp_path, RELEASE, "linux-amd64")
    (tmp_path / "out").write_text("a file")
    with pytest.raises(BadInput) as info:
        extract_archive(files.archive, tmp_path / "out")
    assert "not a directory" in str(info.value)
    assert (tmp_path / "out").read_text() == "a file"


def test_archive_other_than_the_checked_one_is_not_extracted(tmp_path: Path) -> None:
    files = build_archive(tmp_path, RELEASE, "linux-amd64")
    with pytest.raises(ChecksumMismatch):
        extract_archive(files.archive, tmp_path / "out", sha256="0" * 64)
    assert everything_under(tmp_path / "out") == []


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
    "holds-the-extraction-marker": lambda: [
        cockroach(), (entry(f"{TOP}/.crdb-archive-extracted.json"), b"{}")
    ],
    "sixty-five-members": lambda: [
        cockroach(), *[(entry(f"{TOP}/f{i:02d}"), b"") for i in range(64)]
    ],
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
        tmp_path / f"{TOP}.tgz",
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


def test_top_folder_must_be_named_like_the_archive(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    files = build_archive(tmp_path / "src", RELEASE, "linux-amd64", top="victim")
    (tmp_path / "out" / "victim").mkdir(parents=True)
    (tmp_path / "out" / "victim" / "important.txt").write_text("keep me")
    for replace in (False, True):
        with pytest.raises(BadReleaseArchive) as info:
            extract_archive(files.archive, tmp_path / "out", replace=replace)
        assert "'victim'" in str(info.value)
        assert TOP in str(info.value)
    assert everything_under(tmp_path / "out") == ["victim", "victim/important.txt"]


@functools.cache
def zeros_member() -> bytes:
    """64 MiB of zeros as one gzip member (about 64 KB)."""
    return gzip.compress(bytes(64 << 20), compresslevel=1, mtime=0)


def promising_tgz(path: Path, *members: tuple[tarfile.TarInfo, int]) -> Path:
    """A .tgz whose headers promise sizes, each followed by that many zero bytes of data but
    only ``carried`` of them (the rest never comes): the rules must refuse from the headers.

    Zeros come as repeated 64 MiB gzip members, so a gigabyte costs milliseconds to write.
    """
    parts: list[bytes] = []
    for info, carried in members:
        parts.append(gzip.compress(info.tobuf(tarfile.GNU_FORMAT), mtime=0))
        whole, rest = divmod(carried, 64 << 20)
        parts += [zeros_member()] * whole
        padded = rest + (-carried % 512)
        parts.append(gzip.compress(bytes(padded), mtime=0))
    parts.append(gzip.compress(bytes(1024), mtime=0))
    path.write_bytes(b"".join(parts))
    return path


def _sized(name: str, size: int) -> tarfile.TarInfo:
    info = entry(name)
    info.size = size
    return info


def test_promising_tgz_makes_a_valid_archive(tmp_path: Path) -> None:
    archive = promising_tgz(tmp_path / f"{TOP}.tgz", (_sized(f"{TOP}/cockroach", 1000), 1000),
                            (entry(f"{TOP}/copy", tarfile.LNKTYPE, f"{TOP}/cockroach"), 0))
    extracted = extract_archive(archive, tmp_path / "out")
    assert extracted.cockroach.read_bytes() == bytes(1000)
    assert (extracted.root / "copy").read_bytes() == bytes(1000)


@pytest.mark.parametrize(
    "members",
    [
        lambda: [(_sized(f"{TOP}/cockroach", 3 << 30), 0)],
        lambda: [(_sized(f"{TOP}/cockroach", 1 << 20), 1 << 20),
                 (_sized(f"{TOP}/lib/libgeos.so", 2 << 30), 0)],
        lambda: [(_sized(f"{TOP}/cockroach", 1152 << 20), 1152 << 20),
                 (entry(f"{TOP}/copy", tarfile.LNKTYPE, f"{TOP}/cockroach"), 0)],
    ],
    ids=["one-huge-member", "huge-in-total", "hard-link-copies-add-up"],
)
def test_sizes_from_the_headers_are_refused_before_writing(
    tmp_path: Path, members: Callable[[], list[tuple[tarfile.TarInfo, int]]]
) -> None:
    archive = promising_tgz(tmp_path / f"{TOP}.tgz", *members())
    with pytest.raises(UnsafeArchive) as info:
        extract_archive(archive, tmp_path / "out")
    assert "more than 2048 MiB" in str(info.value)
    assert everything_under(tmp_path / "out") == []


def test_long_extended_header_is_refused_before_it_is_read(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(entry(f"{TOP}/" + "x" * 70_000).tobuf(tarfile.PAX_FORMAT))
    (tmp_path / f"{TOP}.tgz").write_bytes(raw.getvalue())
    with pytest.raises(UnsafeArchive) as info:
        extract_archive(tmp_path / f"{TOP}.tgz", tmp_path / "out")
    assert "extended header" in str(info.value)


def test_zip_with_too_many_entries_is_refused_from_its_end_record(tmp_path: Path) -> None:
    archive = zip_with(
        tmp_path / f"{WIN_TOP}.zip", (f"{WIN_TOP}/cockroach.exe", b"MZ", stat.S_IFREG | 0o755),
        *[(f"{WIN_TOP}/f{i:03d}", b"", stat.S_IFREG | 0o644) for i in range(300)],
    )
    with pytest.raises(UnsafeArchive) as info:
        extract_archive(archive, tmp_path / "out")
    assert "301 or more members" in str(info.value)
    assert everything_under(tmp_path / "out") == []


def test_official_zip_layout_passes_the_same_rules(tmp_path: Path) -> None:
    archive = zip_with(
        tmp_path / f"{WIN_TOP}.zip", (f"{WIN_TOP}/cockroach.exe", b"MZ", stat.S_IFREG | 0o755),
    )
    extracted = extract_archive(archive, tmp_path / "out")
    assert extracted.cockroach.read_bytes() == b"MZ"


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
        "checked": True, "build_tag": RELEASE, "matches": True, "detail": check.detail,
        "command": f"{extracted.cockroach} version",
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
