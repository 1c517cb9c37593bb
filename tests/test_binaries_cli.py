"""The fetch-binary command: exit codes, JSON contract, messages, nothing left after failures."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import blake3
import pytest

from crdb_archive.binaries import ArchiveCache, host_platform
from crdb_archive.hashing import Digests
from support.cli import run_cli
from support.mirror import MirrorServer, status
from support.release_archives import ReleaseFiles, build_archive, publish, write_checksum_file

RELEASE = "v23.1.11"
NAME = "cockroach-v23.1.11.linux-amd64.tgz"
OFFICIAL = "https://binaries.cockroachdb.com"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CRDB_ARCHIVE_MIRROR", raising=False)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    result = run_cli(capsys, *args)
    return result.code, result.out, result.err


def error_lines(err: str) -> list[str]:
    """stderr without the progress records (JSON lines when stderr is not a terminal)."""
    return [line for line in err.splitlines() if not line.startswith("{")]


def test_done_when_local_mirror_leaves_the_published_archive(tmp_path: Path) -> None:
    """`fetch-binary v23.1.11 --platform linux-amd64 --mirror <local mirror> --to out`."""
    (tmp_path / "local-mirror").mkdir()
    files = build_archive(tmp_path / "local-mirror", RELEASE, "linux-amd64")
    assert files.checksum_file is not None
    env = {**os.environ, "CRDB_ARCHIVE_CACHE": str(tmp_path / "cache")}
    env.pop("CRDB_ARCHIVE_MIRROR", None)
    done = subprocess.run(
        [sys.executable, "-m", "crdb_archive.cli", "fetch-binary", RELEASE,
         "--platform", "linux-amd64", "--mirror", str(tmp_path / "local-mirror"), "--to", "out"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [NAME]
    assert f"out/{NAME}  sha256 {files.sha256}  verified against published SHA-256" in done.stdout
    # Independent check: coreutils agrees with the published checksum file.
    shutil.copy(files.checksum_file, out)
    checked = subprocess.run(
        ["sha256sum", "-c", f"{NAME}.sha256sum"], cwd=out, capture_output=True, text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_json_for_several_platforms(
    capsys: pytest.CaptureFixture[str], mirror: MirrorServer, tmp_path: Path
) -> None:
    files = publish(mirror.root, RELEASE, ["linux-amd64", "windows-amd64"])
    code, out, _ = run(
        capsys, "fetch-binary", RELEASE, "--platform", "linux-amd64", "--platform",
        "windows-amd64", "--platform", "linux-amd64", "--mirror", mirror.url,
        "--to", str(tmp_path / "out"), "--json",
    )
    assert code == 0
    payload = json.loads(out)
    assert [f["platform"] for f in payload["files"]] == ["linux-amd64", "windows-amd64"]
    for entry in payload["files"]:
        expected = files[entry["platform"]]
        assert {"platform", "path", "url", "bytes", "sha256", "blake3", "published_sha256",
                "verified"} <= set(entry)
        assert entry["sha256"] == entry["published_sha256"] == expected.sha256
        assert entry["verified"] is True
        assert entry["bytes"] == expected.archive.stat().st_size
        assert entry["url"] == f"{mirror.url}/{expected.name}"
        assert Path(entry["path"]).read_bytes() == expected.archive.read_bytes()
    assert payload["warnings"] == []


def test_mirror_from_the_environment_and_cache_hit(
    capsys: pytest.CaptureFixture[str], mirror: MirrorServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build_archive(mirror.root, RELEASE, "linux-amd64")
    monkeypatch.setenv("CRDB_ARCHIVE_MIRROR", mirror.url)
    code, _, _ = run(capsys, "fetch-binary", RELEASE, "--to", str(tmp_path / "one"))
    assert code == 0
    assert mirror.requests()
    mirror.clear_log()
    code, out, _ = run(capsys, "fetch-binary", RELEASE, "--to", str(tmp_path / "two"))
    assert code == 0
    assert mirror.requests() == []
    assert "(from cache)" in out


def test_no_cache_and_cache_dir_options(
    capsys: pytest.CaptureFixture[str], mirror: MirrorServer, tmp_path: Path
) -> None:
    build_archive(mirror.root, RELEASE, "linux-amd64")
    code, _, _ = run(capsys, "fetch-binary", RELEASE, "--mirror", mirror.url,
                     "--to", str(tmp_path / "one"), "--no-cache")
    assert code == 0
    assert not (tmp_path / "cache").exists()
    code, _, _ = run(capsys, "fetch-binary", RELEASE, "--mirror", mirror.url,
                     "--to", str(tmp_path / "two"), "--cache-dir", str(tmp_path / "mine"))
    assert code == 0
    origin_dir = tmp_path / "mine" / "sources" / hashlib.sha256(
        mirror.url.encode()).hexdigest()[:32]
    assert (origin_dir / "archives" / f"{NAME}.json").is_file()
    assert not (tmp_path / "cache").exists()


def test_release_without_checksum_warns_and_says_not_verified(
    capsys: pytest.CaptureFixture[str], mirror: MirrorServer, tmp_path: Path
) -> None:
    build_archive(mirror.root, "v20.2.5", "linux-amd64", checksum=False)
    code, out, err = run(capsys, "fetch-binary", "v20.2.5", "--mirror", mirror.url,
                         "--to", str(tmp_path / "out"))
    assert code == 0
    assert "NOT verified: no published checksum for v20.2.5" in out
    assert any(line.startswith("crdb-archive: warning: v20.2.5 has no published checksum")
               for line in error_lines(err))
    code, out, _ = run(capsys, "fetch-binary", "v20.2.5", "--mirror", mirror.url,
                       "--to", str(tmp_path / "out"), "--json")
    entry = json.loads(out)["files"][0]
    assert entry["verified"] is False
    assert entry["published_sha256"] is None
    assert "no published checksum" in json.loads(out)["warnings"][0]


def test_withdrawn_release_is_flagged(
    capsys: pytest.CaptureFixture[str], mirror: MirrorServer, tmp_path: Path
) -> None:
    build_archive(mirror.root, "v23.1.0", "linux-amd64")
    code, _, err = run(capsys, "fetch-binary", "v23.1.0", "--mirror", mirror.url,
                       "--to", str(tmp_path / "out"))
    assert code == 0
    assert "withdrawn release" in err


def test_extract_from_a_mirror_never_runs_the_binary(
    capsys: pytest.CaptureFixture[str], mirror: MirrorServer, tmp_path: Path
) -> None:
    marker = tmp_path / "cockroach-ran"
    build_archive(mirror.root, RELEASE, "linux-amd64", marker=marker)
    publish(mirror.root, RELEASE, ["windows-amd64"])
    code, out, _ = run(capsys, "fetch-binary", RELEASE, "--platform", "linux-amd64",
                       "--platform", "windows-amd64", "--mirror", mirror.url,
                       "--to", str(tmp_path / "out"), "--extract", "--json")
    assert code == 0
    assert not marker.exists()
    linux, windows = json.loads(out)["files"]
    root = tmp_path / "out" / "cockroach-v23.1.11.linux-amd64"
    assert linux["official"] is False
    assert linux["extracted"]["root"] == str(root)
    assert linux["extracted"]["cockroach"] == str(root / "cockroach")
    assert linux["extracted"]["lib_dir"] == str(root / "lib")
    check = linux["extracted"]["version_check"]
    assert check["checked"] is False
    assert check["matches"] is None
    assert check["command"] == f"{root / 'cockroach'} version"
    assert check["detail"].startswith("not run: ")
    assert f"{mirror.url}/{NAME}.sha256sum" in check["detail"]
    assert windows["extracted"]["cockroach"].endswith("cockroach.exe")
    assert windows["extracted"]["version_check"]["checked"] is False
    # The command given is the right one: run by hand, the stand-in answers for its release.
    if host_platform() == "linux-amd64":
        printed = subprocess.run(check["command"], shell=True, capture_output=True,  # noqa: S602
                                 text=True, check=True).stdout
        assert "Build Tag:        v23.1.11" in printed
        assert marker.exists()
    code, out, _ = run(capsys, "fetch-binary", RELEASE, "--mirror", str(mirror.root),
                       "--to", str(tmp_path / "local"), "--extract")
    assert code == 0
    assert "not run: its checksum came from file://" in out
    assert f"to check it yourself: {tmp_path / 'local'}" in out


def seed_official_cache(cache: Path, files: ReleaseFiles) -> None:
    """Put ``files`` in the cache as if fetched from https://binaries.cockroachdb.com (the
    only way to have the official site's answer on a machine without its network)."""
    assert files.checksum_file is not None
    content = files.archive.read_bytes()
    store = ArchiveCache(cache)
    store.store_checksum_file(OFFICIAL, files.name, files.checksum_file.read_bytes())
    store.add(OFFICIAL, files.name, f"{OFFICIAL}/{files.name}", files.archive,
              Digests(len(content), hashlib.sha256(content).hexdigest(),
                      blake3.blake3(content).hexdigest()))


@pytest.mark.skipif(host_platform() != "linux-amd64", reason="runs the linux-amd64 stand-in")
@pytest.mark.usefixtures("offline")
def test_extract_of_an_official_archive_runs_the_version_check(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "site").mkdir()
    seed_official_cache(tmp_path / "cache", build_archive(tmp_path / "site", RELEASE,
                                                          "linux-amd64"))
    code, out, _ = run(capsys, "fetch-binary", RELEASE, "--to", str(tmp_path / "out"),
                       "--extract", "--json")
    assert code == 0
    (linux,) = json.loads(out)["files"]
    assert linux["official"] is True
    assert linux["from_cache"] is True
    assert linux["url"] == f"{OFFICIAL}/{NAME}"
    assert linux["published_checksum_url"] == f"{OFFICIAL}/{NAME}.sha256sum"
    check = linux["extracted"]["version_check"]
    assert check["checked"] is True
    assert check["matches"] is True
    assert check["build_tag"] == RELEASE


@pytest.mark.skipif(host_platform() != "linux-amd64", reason="runs the linux-amd64 stand-in")
@pytest.mark.usefixtures("offline")
def test_extracted_official_binary_of_another_version_is_exit_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "site").mkdir()
    seed_official_cache(tmp_path / "cache", build_archive(
        tmp_path / "site", RELEASE, "linux-amd64", build_tag="v23.1.12"))
    code, out, _ = run(capsys, "fetch-binary", RELEASE, "--to", str(tmp_path / "out"),
                       "--extract")
    assert code == 1
    assert "cockroach version reports v23.1.12, expected v23.1.11" in out


# --- failures: exit codes, one-line messages, nothing left in DIR ------------------------------


def test_platform_the_release_never_shipped_is_exit_2(
    capsys: pytest.CaptureFixture[str], mirror: MirrorServer, tmp_path: Path
) -> None:
    code, out, err = run(capsys, "fetch-binary", "v22.1.8", "--platform", "linux-amd64",
                         "--platform", "darwin-arm64", "--mirror", mirror.url,
                         "--to", str(tmp_path / "out"), "--json")
    assert code == 2
    assert "darwin-arm64" in err
    assert "linux-amd64, darwin-amd64, windows-amd64" in err
    assert json.loads(out)["exit_code"] == 2
    assert mirror.requests() == []
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["v23.1"], "major version"),
        (["v23.1.999"], "not a release"),
        (["v23.1.11", "--platform", "plan9-mips"], "unknown platform"),
        (["v23.1.11", "--mirror", "ftp://example.com"], "unsupported scheme"),
    ],
)
def test_bad_input_is_exit_2_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], fragment: str
) -> None:
    code, out, err = run(capsys, "fetch-binary", *args, "--to", str(tmp_path / "out"))
    assert code == 2
    assert out == ""
    lines = error_lines(err)
    assert len(lines) == 1
    assert lines[0].startswith("crdb-archive: error: ")
    assert fragment in err
    assert "Traceback" not in err


def test_checksum_mismatch_is_exit_1_and_leaves_nothing(
    capsys: pytest.CaptureFixture[str], mirror: MirrorServer, tmp_path: Path
) -> None:
    files = build_archive(mirror.root, RELEASE, "linux-amd64")
    write_checksum_file(files.archive, "f" * 64)
    code, out, err = run(capsys, "fetch-binary", RELEASE, "--mirror", mirror.url,
                         "--to", str(tmp_path / "out"), "--json")
    assert code == 1
    assert json.loads(out)["exit_code"] == 1
    assert "published checksum is " + "f" * 64 in err
    assert list((tmp_path / "out").iterdir()) == []


def test_missing_archive_is_exit_3_and_leaves_nothing(
    capsys: pytest.CaptureFixture[str], mirror: MirrorServer, tmp_path: Path
) -> None:
    files = build_archive(mirror.root, RELEASE, "linux-amd64")
    files.archive.unlink()
    code, _, err = run(capsys, "fetch-binary", RELEASE, "--mirror", mirror.url,
                       "--to", str(tmp_path / "out"))
    assert code == 3
    assert "not found on the mirror (HTTP 404)" in err
    assert list((tmp_path / "out").iterdir()) == []


def test_failure_on_a_later_platform_removes_the_earlier_ones(
    capsys: pytest.CaptureFixture[str], mirror: MirrorServer, tmp_path: Path
) -> None:
    publish(mirror.root, RELEASE, ["linux-amd64", "darwin-amd64"])
    (mirror.root / "cockroach-v23.1.11.darwin-10.9-amd64.tgz").unlink()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "unrelated.txt").write_text("kept")
    code, _, _ = run(capsys, "fetch-binary", RELEASE, "--platform", "linux-amd64",
                     "--platform", "darwin-amd64", "--mirror", mirror.url,
                     "--to", str(tmp_path / "out"), "--extract")
    assert code == 3
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["unrelated.txt"]


def test_mirror_refusing_the_checksum_file_is_exit_3(
    capsys: pytest.CaptureFixture[str], mirror: MirrorServer, tmp_path: Path
) -> None:
    build_archive(mirror.root, RELEASE, "linux-amd64")
    mirror.fail(f"{NAME}.sha256sum", *[status(403)])
    code, _, err = run(capsys, "fetch-binary", RELEASE, "--mirror", mirror.url,
                       "--to", str(tmp_path / "out"))
    assert code == 3
    assert "HTTP 403" in err
