"""The main job end to end: archive through a loopback mirror, verify, retrieve the binary.

Independent validators check what crdb-archive writes: bagit-python, ``sha256sum -c`` and
``b3sum -c``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import bagit
import pytest

from crdb_archive.bundle.verify import verify_bundle
from support.backups import ERAS, add_random_sst
from support.bundles import (
    era_with_binaries,
    run_cli,
    small_filesystem,
    tree,
)
from support.cli import run_subprocess, signal_while_archiving
from support.mirror import MirrorServer
from support.release_archives import publish
from support.s3 import MotoS3

pytestmark = pytest.mark.usefixtures("isolated_env")


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CRDB_ARCHIVE_MIRROR", raising=False)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))


def archive(capsys: pytest.CaptureFixture[str], source: Path | str, dest: Path,
            server: MirrorServer, *extra: str) -> dict[str, object]:
    result = run_cli(capsys, "archive", str(source), "--dest", str(dest), "--mirror",
                     server.url, "--json", *extra)
    assert result.code == 0, result.err
    return result.json()


def hidden_leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir() if p.name.startswith(".")) if dest.exists() else []


@pytest.mark.parametrize("fmt", ["dir", "tar"])
def test_archive_verify_and_retrieve(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer, fmt: str
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    dest = tmp_path / "bundles"
    result = archive(capsys, era.path, dest, mirror, "--format", fmt, "--with-incrementals")
    bundle = Path(str(result["bundle"]))
    assert result["version"] == "v24.3.1"
    assert result["platforms"] == ["linux-amd64"]
    assert result["created"] is True
    assert bundle.name.endswith(".tar") == (fmt == "tar")
    assert hidden_leftovers(dest) == []

    verified = run_cli(capsys, "verify", str(bundle), "--all-digests", "--json")
    assert verified.code == 0, verified.out
    report = verified.json()
    assert report["ok"] is True
    assert report["problems"] == []
    assert report["files"] == result["files"]
    assert report["bytes"] == result["bytes"]

    if fmt == "tar":
        unpacked = tmp_path / "unpacked"
        unpacked.mkdir()
        subprocess.run(["tar", "xf", str(bundle), "-C", str(unpacked)], check=True)
        directory = unpacked / str(result["name"])
    else:
        directory = bundle
    check_with_standard_tools(directory)

    # The backup is in the bundle byte for byte, incrementals included.
    backup_files = tree(directory / "data" / "backup")
    for rel, content in backup_files.items():
        assert (era.path / rel).read_bytes() == content
    assert any(rel.startswith("incrementals/") for rel in backup_files)
    description = json.loads((directory / "crdb-archive.json").read_text())
    assert description["cockroachdb"]["restorable_into"] == ["v24.3", "v25.1", "v25.2"]
    assert description["backup"]["incrementals"] == era.incrementals
    assert description["binaries"][0]["verified"] is True
    # A loopback mirror is not the official site: the bundle says where the bytes came from.
    assert description["binaries"][0]["official"] is False
    assert description["binaries"][0]["url"] == f"{mirror.url}/cockroach-v24.3.1.linux-amd64.tgz"
    assert description["binaries"][0]["published_checksum_url"] == (
        f"{mirror.url}/cockroach-v24.3.1.linux-amd64.tgz.sha256sum")
    restore_md = (directory / "RESTORE.md").read_text()
    assert "RESTORE FROM" in restore_md
    assert f"Fetched from {mirror.url}/cockroach-v24.3.1.linux-amd64.tgz" in restore_md

    check_retrieved(capsys, bundle, tmp_path / "restore")


def check_with_standard_tools(directory: Path) -> None:
    """The bundle directory passes bagit-python, sha256sum -c and (where present) b3sum -c."""
    bagit.Bag(str(directory)).validate()
    subprocess.run(["sha256sum", "-c", "--quiet", "manifest-sha256.txt"], cwd=directory,
                   check=True)
    subprocess.run(["sha256sum", "-c", "--quiet", "tagmanifest-sha256.txt"], cwd=directory,
                   check=True)
    if shutil.which("b3sum"):
        subprocess.run(["b3sum", "-c", "--quiet", "manifest-blake3.txt"], cwd=directory,
                       check=True)
    subprocess.run("sha256sum -c --quiet *.sha256sum", shell=True,  # noqa: S602
                   cwd=directory / "data" / "cockroach", check=True)


def check_retrieved(capsys: pytest.CaptureFixture[str], bundle: Path, out: Path) -> None:
    """`binary` takes v24.3.1's cockroach out of the bundle into ``out``, and it runs."""
    retrieved = run_cli(capsys, "binary", str(bundle), "--to", str(out), "--platform",
                        "linux-amd64", "--json")
    assert retrieved.code == 0, retrieved.err
    info = retrieved.json()
    assert info["version"] == "v24.3.1"
    assert info["platform"] == "linux-amd64"
    assert info["verified"] is True
    assert info["version_check"] == {
        "checked": False, "build_tag": None, "matches": None,
        "detail": info["version_check"]["detail"],  # type: ignore[index]
        "command": f"{info['cockroach']} version",
    }
    cockroach = Path(str(info["cockroach"]))
    assert os.access(cockroach, os.X_OK)
    printed = subprocess.run([str(cockroach), "version"], capture_output=True, text=True,
                             check=True).stdout
    assert "v24.3.1" in printed
    assert hidden_leftovers(out) == []


def test_rerun_is_a_no_op(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                          mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    dest = tmp_path / "bundles"
    first = archive(capsys, era.path, dest, mirror)
    before = tree(dest)
    mtimes = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}
    mirror.clear_log()
    second = archive(capsys, era.path, dest, mirror)
    assert second["created"] is False
    assert second["bundle"] == first["bundle"]
    assert second["files"] == first["files"]
    assert tree(dest) == before
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == mtimes
    assert mirror.requests() == []


def test_existing_damaged_bundle_is_reported_not_replaced(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    dest = tmp_path / "bundles"
    first = archive(capsys, era.path, dest, mirror)
    bundle = Path(str(first["bundle"]))
    victim = next((bundle / "data" / "backup").rglob("*.sst"))
    victim.write_bytes(victim.read_bytes()[:-1])
    damaged = tree(dest)
    again = run_cli(capsys, "archive", str(era.path), "--dest", str(dest), "--mirror",
                    mirror.url)
    assert again.code == 1
    assert "damaged" in again.err
    assert tree(dest) == damaged


def test_version_from_user_must_match_the_backup(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    dest = tmp_path / "bundles"
    mismatch = run_cli(capsys, "archive", str(era.path), "--dest", str(dest), "--mirror",
                       mirror.url, "--version", "v23.1.12")
    assert mismatch.code == 2
    assert "v23.1.11" in mismatch.err
    assert "--force-version" in mismatch.err
    assert not dest.exists() or list(dest.iterdir()) == []

    publish(mirror.root, "v23.1.12", ["linux-amd64"])
    forced = archive(capsys, era.path, dest, mirror, "--version", "v23.1.12", "--force-version")
    assert forced["version"] == "v23.1.12"
    description = json.loads((Path(str(forced["bundle"])) / "crdb-archive.json").read_text())
    assert description["cockroachdb"]["version_source"] == "user"
    assert description["backup"]["build_tag"] == "v23.1.11"


def test_encrypted_backup_needs_version(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer
) -> None:
    era = ERAS["encrypted"](tmp_path / "backups")
    dest = tmp_path / "bundles"
    refused = run_cli(capsys, "archive", str(era.path), "--dest", str(dest), "--mirror",
                      mirror.url)
    assert refused.code == 2
    assert "--version" in refused.err
    publish(mirror.root, "v23.1.11", ["linux-amd64"])
    done = archive(capsys, era.path, dest, mirror, "--version", "v23.1.11")
    assert str(done["name"]).startswith("crdb-enc")
    assert verify_bundle(Path(str(done["bundle"]))).ok


def test_secrets_never_reach_bundle_or_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    monkeypatch: pytest.MonkeyPatch, moto_s3: MotoS3,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    secret_uri = "uri-secret-0f9e8d7c6b5a"
    secret_env = "env-secret-a1b2c3d4e5f6"
    secret_mirror = "mirror-token-778899"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_env)
    monkeypatch.setenv("AWS_SESSION_TOKEN", secret_env)
    host = mirror.url.split("://", 1)[1]
    mirror_with_credentials = f"http://archiver:{secret_mirror}@{host}"
    dest = tmp_path / "bundles"
    result = run_cli(capsys, "archive", f"file://{era.path}", "--dest", str(dest), "--mirror",
                     mirror_with_credentials, "--json", "--platform", "linux-amd64")
    assert result.code == 0, result.err
    outputs = result.out + result.err
    verified = run_cli(capsys, "verify", str(result.json()["bundle"]), "--json")
    outputs += verified.out + verified.err
    summary = run_cli(capsys, "inspect", str(result.json()["bundle"]), "--json")
    outputs += summary.out + summary.err
    # A local path takes no parameters: refused, without repeating the secret.
    refused = run_cli(capsys, "archive", f"file://{era.path}?AWS_SECRET_ACCESS_KEY={secret_uri}",
                      "--dest", str(dest), "--mirror", mirror_with_credentials)
    assert refused.code == 2
    outputs += refused.out + refused.err
    missing = run_cli(capsys, "archive", f"s3://no-such-bucket/x?AWS_SECRET_ACCESS_KEY="
                      f"{secret_uri}&AWS_ACCESS_KEY_ID=AKID&AWS_ENDPOINT={moto_s3.endpoint_url}",
                      "--dest", str(dest), "--mirror", mirror_with_credentials)
    assert missing.code == 3
    outputs += missing.out + missing.err
    for secret in (secret_uri, secret_env, secret_mirror):
        assert secret not in outputs
        for rel, content in tree(dest).items():
            assert secret.encode() not in content, rel
    description = json.loads(
        (Path(str(result.json()["bundle"])) / "crdb-archive.json").read_text())
    assert "token" not in json.dumps(description["binaries"])
    assert description["binaries"][0]["url"].startswith("http://127.0.0.1")


def test_killed_mid_copy_leaves_no_bundle_and_rerun_succeeds(
    tmp_path: Path, mirror: MirrorServer
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    # Enough data that the copy is still running when the first progress line arrives.
    add_random_sst(era.path, 96)
    dest = tmp_path / "bundles"
    env = {**os.environ, "CRDB_ARCHIVE_CACHE": str(tmp_path / "cache")}
    args = ["archive", str(era.path), "--dest", str(dest), "--mirror", mirror.url, "--json"]
    killed = signal_while_archiving(args, signal.SIGKILL, env=env)
    assert killed.returncode == -signal.SIGKILL
    complete = [p for p in dest.iterdir() if not p.name.startswith(".")]
    assert complete == []
    assert hidden_leftovers(dest) != []  # the staging area of the killed run

    rerun = run_subprocess(*args, env=env)
    assert rerun.returncode == 0, rerun.stderr
    bundle = Path(json.loads(rerun.stdout)["bundle"])
    assert verify_bundle(bundle).ok
    assert hidden_leftovers(dest) == []


def test_sigterm_cleans_up(tmp_path: Path, mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    add_random_sst(era.path, 96)
    dest = tmp_path / "bundles"
    env = {**os.environ, "CRDB_ARCHIVE_CACHE": str(tmp_path / "cache")}
    stopped = signal_while_archiving(
        ["archive", str(era.path), "--dest", str(dest), "--mirror", mirror.url], signal.SIGTERM,
        env=env)
    assert stopped.returncode == 130
    err = stopped.err
    assert "interrupted" in err
    assert "Traceback" not in err
    assert not dest.exists()  # made by this run, and empty again: removed


# --- bad input ----------------------------------------------------------------------------------


def test_source_not_a_backup(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                             mirror: MirrorServer) -> None:
    (tmp_path / "empty").mkdir()
    dest = tmp_path / "bundles"
    result = run_cli(capsys, "archive", str(tmp_path / "empty"), "--dest", str(dest),
                     "--mirror", mirror.url)
    assert result.code == 2
    assert result.err.count("\n") == 1
    assert not dest.exists()


def test_unknown_platform(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                          mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    dest = tmp_path / "bundles"
    result = run_cli(capsys, "archive", str(era.path), "--dest", str(dest), "--mirror",
                     mirror.url, "--platform", "solaris-sparc")
    assert result.code == 2
    assert "solaris-sparc" in result.err
    assert not dest.exists()


def test_dest_below_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                           mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_cli(capsys, "archive", str(era.path), "--dest", str(blocker / "bundles"),
                     "--mirror", mirror.url)
    assert result.code == 2  # a path that can never be a directory: the user's mistake
    assert f"{blocker} is not a directory" in result.err
    assert result.err.count("\n") == 1


def test_read_only_dest(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                        mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    dest = tmp_path / "ro"
    with small_filesystem(dest, "4m") as mounted:
        if not mounted:
            pytest.skip("needs root to mount a read-only filesystem")
        subprocess.run(["mount", "-o", "remount,ro", str(dest)], check=True)
        result = run_cli(capsys, "archive", str(era.path), "--dest", str(dest), "--mirror",
                         mirror.url)
        assert result.code == 3
        assert "read-only" in result.err.lower() or "cannot write" in result.err
        assert list(dest.iterdir()) == []


def test_disk_full(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                   mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    with (era.path / "data" / "999999.sst").open("wb") as handle:
        handle.write(os.urandom(3 << 20))
    dest = tmp_path / "small"
    with small_filesystem(dest, "2m") as mounted:
        if mounted:
            result = run_cli(capsys, "archive", str(era.path), "--dest", str(dest),
                             "--mirror", mirror.url)
            assert result.code == 3
            assert "no space left" in result.err
            assert list(dest.iterdir()) == []
            return
    # Without a small filesystem: the kernel's file-size limit makes every write past 2 MB fail.
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))\n"
        "from crdb_archive.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    limited = subprocess.run(
        [sys.executable, "-c", code, "archive", str(era.path), "--dest", str(dest),
         "--mirror", mirror.url], capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "CRDB_ARCHIVE_CACHE": str(tmp_path / "cache2")})
    assert limited.returncode == 3, limited.stderr
    assert "Traceback" not in limited.stderr
    assert list(dest.iterdir()) == []
