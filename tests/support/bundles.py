"""Helpers for bundle tests: a backup plus a loopback mirror holding its release archives."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.backups import ERAS, Era
from support.cli import CliResult, run_cli, run_subprocess
from support.mirror import MirrorServer
from support.release_archives import publish

# The CLI runners are re-exported: bundle and job tests import them from here.
__all__ = ["CliResult", "era_with_binaries", "gnu_tar", "make_bundle", "retag", "run_cli",
           "run_subprocess", "small_filesystem", "tree", "xor_byte"]


def era_with_binaries(tmp_path: Path, mirror: MirrorServer, era: str,
                      platforms: tuple[str, ...] = ("linux-amd64",)) -> Era:
    """Build the backup of an era and publish its release's archives on the mirror."""
    built = ERAS[era](tmp_path / "backups")
    assert built.build_tag is not None
    publish(mirror.root, built.build_tag, list(platforms))
    return built


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under root with its bytes (for before/after comparisons)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def xor_byte(path: Path, offset: int = 0) -> None:
    """Flip the bits of one byte: unlike writing a value, never a no-op."""
    with path.open("r+b") as handle:
        handle.seek(offset)
        value = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([value ^ 0xFF]))


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[bool]:
    """A tmpfs of ``size`` mounted at ``path`` when this process may mount one (as root)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        yield False
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, check=False).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def make_bundle(base: Path, *, fmt: str = "dir", era: str = "v22.2",
                sign_key: Path | None = None, dest: Path | str | None = None) -> Path:
    """A real bundle made through a loopback mirror under ``base`` (its cache there too),
    written into ``dest`` (default ``base/bundles``); signed with ``sign_key`` when given.

    Returns the bundle's location (a Path, also for an s3:// one: use str() of it then)."""
    from crdb_archive.archive import ArchiveRequest, archive_backup  # noqa: PLC0415
    from crdb_archive.bundle.signature import load_signing_key  # noqa: PLC0415

    (base / "mirror").mkdir(parents=True, exist_ok=True)
    with MirrorServer(base / "mirror") as server, pytest.MonkeyPatch.context() as patch:
        patch.setenv("CRDB_ARCHIVE_CACHE", str(base / "cache"))
        patch.delenv("CRDB_ARCHIVE_MIRROR", raising=False)
        built = era_with_binaries(base, server, era)
        result = archive_backup(ArchiveRequest(
            source=str(built.path), dest=dest if dest is not None else base / "bundles",
            mirror=server.url, with_incrementals=True, format="tar" if fmt == "tar" else "dir",
            sign_key=load_signing_key(sign_key) if sign_key is not None else None,
        ))
    return Path(result.bundle)


def retag(bundle: Path) -> None:
    """Rewrite tagmanifest-sha256.txt for the tag files as they are now, so that an edit of a
    tag file is caught only by the rule it breaks, not by its digest."""
    lines = []
    for name in ("RESTORE.md", "bag-info.txt", "bagit.txt", "crdb-archive.json",
                 "manifest-blake3.txt", "manifest-sha256.txt", "payload-sizes.txt"):
        digest = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
        lines.append(f"{digest}  {name}\n")
    (bundle / "tagmanifest-sha256.txt").write_text("".join(lines))


def gnu_tar(directory: Path, target: Path, *options: str) -> Path:
    """``tar cf`` of a bundle directory with GNU tar (members under ``<name>/``)."""
    subprocess.run(["tar", "cf", str(target), *options, "-C", str(directory.parent),
                    directory.name], check=True)
    return target
