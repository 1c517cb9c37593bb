"""Hostile release archives, end to end: what a mirror or a forged bundle can make us do.

A mirror vouches for whatever it serves (it publishes the checksum too), and a bundle carries
its own digests. Neither may get garbage into a bundle, code run on this host, a disk filled,
or a user's folder replaced. Bombs run in a subprocess whose file size and address space are
capped, so that a regression fails the test instead of filling the disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from support.backups import ERAS
from support.bundles import run_cli, tree
from support.cli import CliResult
from support.forge import (
    forge_archive,
    read_description,
    rewrite_manifests,
    write_description,
)
from support.mirror import MirrorServer
from support.release_archives import (
    build_archive,
    file_name,
    many_members,
    pax_sparse_bomb,
    publish_bytes,
    sparse_bomb,
    top_folder,
)

RELEASE = "v24.3.1"
PLATFORM = "linux-amd64"
NAME = file_name(RELEASE, PLATFORM)
TOP = top_folder(RELEASE, PLATFORM)

pytestmark = pytest.mark.usefixtures("isolated_env")


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CRDB_ARCHIVE_MIRROR", raising=False)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))


def files_under(directory: Path) -> list[str]:
    if not directory.exists():
        return []
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*"))


def run_capped(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a process that cannot write a file past 64 MiB nor map more than 1 GiB."""
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, 64 << 20))\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from crdb_archive.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          check=False, timeout=300, env=dict(os.environ))


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if not line.startswith("{")]
    assert len(lines) == 1, err
    return lines[0]


def backup(tmp_path: Path) -> Path:
    """A v24.3.1 backup collection; what the mirror serves is up to each test."""
    return ERAS["v24.3"](tmp_path / "backups").path


def bundle_of(capsys: pytest.CaptureFixture[str], tmp_path: Path,
              mirror: MirrorServer) -> Path:
    """A sound bundle made through the mirror (which must hold linux-amd64 by then)."""
    done = run_cli(capsys, "archive", str(backup(tmp_path)), "--dest",
                   str(tmp_path / "bundles"), "--mirror", mirror.url, "--json")
    assert done.code == 0, done.err
    return Path(str(done.json()["bundle"]))


BOMBS: dict[str, Callable[[Path], Path]] = {
    "gnu-sparse-10GiB": lambda d: sparse_bomb(d / NAME, TOP),
    "pax-sparse-10GiB": lambda d: pax_sparse_bomb(d / NAME, TOP),
    "200005-members": lambda d: many_members(d / NAME, TOP, count=200_005),
}


# --- a mirror that vouches for anything ---------------------------------------------------------


def test_garbage_with_a_valid_checksum_is_refused_at_archive_time(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    source = backup(tmp_path)
    publish_bytes(mirror.root, NAME, os.urandom(4096))
    dest = tmp_path / "bundles"
    refused = run_cli(capsys, "archive", str(source), "--dest", str(dest), "--mirror",
                      mirror.url)
    assert refused.code == 1
    line = error_line(refused.err)
    assert f"{NAME} from {mirror.url}/{NAME} is not a CockroachDB release archive" in line
    assert "not a readable archive" in line
    assert files_under(dest) == []
    assert files_under(tmp_path / "cache") == []
    fetched = run_cli(capsys, "fetch-binary", RELEASE, "--mirror", mirror.url, "--to",
                      str(tmp_path / "out"), "--json")
    assert fetched.code == 1
    assert fetched.json()["exit_code"] == 1
    assert files_under(tmp_path / "out") == []


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_bombs_are_refused_at_fetch_time_before_writing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer, bomb: str
) -> None:
    source = backup(tmp_path)
    content = BOMBS[bomb](tmp_path).read_bytes()
    assert len(content) < 2 << 20
    publish_bytes(mirror.root, NAME, content)
    refused = run_cli(capsys, "archive", str(source), "--dest", str(tmp_path / "bundles"),
                      "--mirror", mirror.url)
    assert refused.code == 1, refused.err
    assert "is not a CockroachDB release archive" in error_line(refused.err)
    assert files_under(tmp_path / "bundles") == []
    assert files_under(tmp_path / "cache") == []
    extracted = run_capped("fetch-binary", RELEASE, "--mirror", mirror.url, "--to",
                           str(tmp_path / "out"), "--extract")
    assert extracted.returncode == 1, extracted.stderr
    assert "is not a CockroachDB release archive" in error_line(extracted.stderr)
    assert files_under(tmp_path / "out") == []


def test_top_folder_colliding_with_a_user_folder_is_refused_at_fetch_time(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    out = tmp_path / "out"
    (out / "victim").mkdir(parents=True)
    (out / "victim" / "important.txt").write_text("keep me")
    build_archive(mirror.root, RELEASE, PLATFORM, top="victim")
    for extra in ([], ["--replace"]):
        refused = run_cli(capsys, "fetch-binary", RELEASE, "--mirror", mirror.url, "--to",
                          str(out), "--extract", *extra)
        assert refused.code == 1, refused.err
        assert "its top folder is 'victim'" in error_line(refused.err)
    assert files_under(out) == ["victim", "victim/important.txt"]
    assert (out / "victim" / "important.txt").read_text() == "keep me"


def test_existing_folder_of_the_official_name_is_never_replaced(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    out = tmp_path / "out"
    (out / TOP).mkdir(parents=True)
    (out / TOP / "important.txt").write_text("keep me")
    build_archive(mirror.root, RELEASE, PLATFORM)
    for extra in ([], ["--replace"]):
        refused = run_cli(capsys, "fetch-binary", RELEASE, "--mirror", mirror.url, "--to",
                          str(out), "--extract", *extra)
        assert refused.code == 2, refused.err
        assert str(out / TOP) in error_line(refused.err)
        # The archive this run fetched is removed again; the user's folder is as it was.
        assert files_under(out) == [TOP, f"{TOP}/important.txt"]


def test_replace_replaces_only_an_earlier_extraction(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    build_archive(mirror.root, RELEASE, PLATFORM)
    out = tmp_path / "out"
    args = ("fetch-binary", RELEASE, "--mirror", mirror.url, "--to", str(out), "--extract")
    assert run_cli(capsys, *args).code == 0
    again = run_cli(capsys, *args)
    assert again.code == 2
    assert "--replace" in again.err
    assert run_cli(capsys, *args, "--replace").code == 0
    assert sorted(files_under(out)) == sorted([
        NAME, TOP, f"{TOP}/.crdb-archive-extracted.json", f"{TOP}/cockroach", f"{TOP}/lib",
        f"{TOP}/lib/libgeos.so", f"{TOP}/lib/libgeos_c.so"])


def test_stand_in_that_would_write_a_marker_never_runs_from_a_mirror(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    marker = tmp_path / "ran"
    build_archive(mirror.root, RELEASE, PLATFORM, marker=marker)
    for where in (mirror.url, str(mirror.root)):
        done = run_cli(capsys, "fetch-binary", RELEASE, "--mirror", where, "--to",
                       str(tmp_path / "out"), "--extract", "--replace")
        assert done.code == 0, done.err
        assert "not run: its checksum came from" in done.out
        assert not marker.exists()


@pytest.mark.parametrize("to", ["a-file", "/dev/null"])
def test_fetch_binary_to_a_file_is_bad_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer, to: str
) -> None:
    build_archive(mirror.root, RELEASE, PLATFORM)
    target = tmp_path / to if to == "a-file" else Path(to)
    if to == "a-file":
        target.write_text("mine")
    refused = run_cli(capsys, "fetch-binary", RELEASE, "--mirror", mirror.url, "--to",
                      str(target), "--extract")
    assert refused.code == 2
    assert f"{target} is not a directory" in error_line(refused.err)
    assert mirror.requests() == []
    if to == "a-file":
        assert target.read_text() == "mine"


# --- a bundle that vouches for itself ----------------------------------------------------------


def test_binary_never_runs_the_bundled_binary(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    marker = tmp_path / "ran"
    build_archive(mirror.root, RELEASE, PLATFORM, marker=marker)
    bundle = bundle_of(capsys, tmp_path, mirror)
    out = tmp_path / "restore"
    done = run_cli(capsys, "binary", str(bundle), "--to", str(out), "--platform", PLATFORM,
                   "--json")
    assert done.code == 0, done.err
    check = done.json()["version_check"]
    assert isinstance(check, dict)
    cockroach = out / TOP / "cockroach"
    assert check["checked"] is False
    assert check["command"] == f"{cockroach} version"
    assert "not run" in check["detail"]
    assert not marker.exists()
    text = run_cli(capsys, "binary", str(bundle), "--to", str(out), "--platform", PLATFORM,
                   "--replace")
    assert text.code == 0, text.err
    assert f"to check it yourself: {cockroach} version" in text.out
    assert not marker.exists()
    # The command given is the check: run by hand, the binary answers for its release.
    printed = subprocess.run([str(cockroach), "version"], capture_output=True, text=True,
                             check=True).stdout
    assert "Build Tag:        v24.3.1" in printed
    assert marker.exists()


def test_forged_bundle_verifies_yet_cannot_replace_a_user_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    build_archive(mirror.root, RELEASE, PLATFORM)
    bundle = bundle_of(capsys, tmp_path, mirror)
    (tmp_path / "hostile").mkdir()
    forge_archive(bundle, build_archive(tmp_path / "hostile", RELEASE, PLATFORM,
                                        top="victim").archive.read_bytes())
    assert run_cli(capsys, "verify", str(bundle)).code == 0  # its own records agree
    out = tmp_path / "restore"
    (out / "victim").mkdir(parents=True)
    (out / "victim" / "important.txt").write_text("keep me")
    for extra in ([], ["--replace"]):
        refused = run_cli(capsys, "binary", str(bundle), "--to", str(out), "--platform",
                          PLATFORM, *extra)
        assert refused.code == 2, refused.err
        assert "its top folder is 'victim'" in error_line(refused.err)
    assert files_under(out) == ["victim", "victim/important.txt"]


def test_binary_keeps_a_user_folder_of_the_official_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    build_archive(mirror.root, RELEASE, PLATFORM)
    bundle = bundle_of(capsys, tmp_path, mirror)
    out = tmp_path / "restore"
    (out / TOP).mkdir(parents=True)
    (out / TOP / "important.txt").write_text("keep me")
    before = tree(out)
    for extra in ([], ["--replace"]):
        refused = run_cli(capsys, "binary", str(bundle), "--to", str(out), "--platform",
                          PLATFORM, *extra)
        assert refused.code == 2, refused.err
        assert str(out / TOP) in error_line(refused.err)
        assert tree(out) == before
        assert files_under(out) == [TOP, f"{TOP}/important.txt"]


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_forged_bundle_bombs_are_refused_before_writing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer, bomb: str
) -> None:
    build_archive(mirror.root, RELEASE, PLATFORM)
    bundle = bundle_of(capsys, tmp_path, mirror)
    forge_archive(bundle, BOMBS[bomb](tmp_path).read_bytes())
    assert run_cli(capsys, "verify", str(bundle)).code == 0  # its own records agree
    out = tmp_path / "restore"
    refused = run_capped("binary", str(bundle), "--to", str(out), "--platform", PLATFORM)
    assert refused.returncode == 2, refused.stderr
    assert "refusing to extract" in error_line(refused.stderr)
    assert files_under(out) == []


def test_binary_checks_its_options_before_creating_anything(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    build_archive(mirror.root, RELEASE, PLATFORM)
    bundle = bundle_of(capsys, tmp_path, mirror)
    refused = run_cli(capsys, "binary", str(bundle), "--to", str(tmp_path / "new"),
                      "--platform", "plan9-mips")
    assert refused.code == 2
    assert "unknown platform 'plan9-mips'" in error_line(refused.err)
    assert not (tmp_path / "new").exists()
    (tmp_path / "a-file").write_text("mine")
    for target in (tmp_path / "a-file", Path("/dev/null")):
        refused = run_cli(capsys, "binary", str(bundle), "--to", str(target), "--platform",
                          PLATFORM, "--json")
        assert refused.code == 2
        assert json.loads(refused.out)["exit_code"] == 2
        assert f"{target} is not a directory" in error_line(refused.err)
    assert (tmp_path / "a-file").read_text() == "mine"


def test_bundle_naming_its_archive_otherwise_is_damaged(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    """The archive's file name decides the folder it unpacks to: only the official one."""
    build_archive(mirror.root, RELEASE, PLATFORM)
    bundle = bundle_of(capsys, tmp_path, mirror)
    description = read_description(bundle)
    binary = description["binaries"][0]
    (bundle / binary["file"]).rename(bundle / "data" / "cockroach" / "victim.tgz")
    (bundle / binary["published_checksum_file"]).unlink()
    binary.update(file="data/cockroach/victim.tgz", published_checksum_file=None,
                  published_sha256=None, verified=False)
    write_description(bundle, description)
    rewrite_manifests(bundle)
    assert run_cli(capsys, "verify", str(bundle)).code == 0
    refused: CliResult = run_cli(capsys, "binary", str(bundle), "--to", str(tmp_path / "out"),
                                 "--platform", PLATFORM)
    assert refused.code == 1
    assert "not the official cockroach-v24.3.1.linux-amd64.tgz" in error_line(refused.err)
    assert files_under(tmp_path / "out") == []
