"""Payload manifests spooled to disk while a bundle is written: sorted as the format says
whatever order the files come in, and the spool gone however the write ends.

The expected manifests are computed here, from the source bytes, with hashlib and blake3.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO

import blake3
import pytest

from crdb_archive.bundle import layout, manifest_spool
from crdb_archive.bundle.publish import write_bundle
from crdb_archive.bundle.writer import BundleFormat, PayloadItem
from crdb_archive.errors import BadInput, StorageError
from crdb_archive.storage.base import open_storage, staging_name
from support.backups import add_random_sst
from support.bundles import era_with_binaries
from support.cli import signal_while_archiving
from support.mirror import MirrorServer
from support.s3 import MotoS3

# Names whose order as text differs from the order a directory walk or a careless sort gives:
# "/" sorts after "-" and ".", "%" and line breaks are percent-encoded in the manifests, and
# non-ASCII sorts by its UTF-8 bytes (by code point). "p\nq" sorts before "p!q", and its
# encoded form "p%0Aq" after: the order is the paths', not their encodings'.
AWKWARD = ["x/a", "x-a", "x.a", "x/b/c", "x0", "100%.sst", "line\nbreak", "cr\rx", "é",
           "z", "Z", "ünïcode/ß", "a b.sst", "~", "p\nq", "p!q", "p%q", "p&q"]


def open_for_reading(path: Path) -> IO[bytes]:
    return path.open("rb")


def describe_nothing(_: object) -> dict[str, bytes]:
    return {layout.DESCRIPTION: b"{}\n", layout.RESTORE_MD: b"# restore\n"}


def make_payload(root: Path, names: list[str]) -> list[PayloadItem]:
    """A file per name below ``root``, each of different bytes, as payload items."""
    items = []
    for index, name in enumerate(names):
        path = root / f"src{index}"
        path.write_bytes(os.urandom(index % 5000) + name.encode())
        items.append(PayloadItem(f"data/backup/{name}", path.stat().st_size,
                                 functools.partial(open_for_reading, path)))
    return items


def model_manifests(root: Path, names: list[str]) -> dict[str, bytes]:
    """The three manifests as the format defines them: one line per file, sorted by the
    path's UTF-8 bytes, the path percent-encoded (RFC 8493 2.1.3)."""
    rows = []
    for index, name in enumerate(names):
        data = (root / f"src{index}").read_bytes()
        rows.append((f"data/backup/{name}".encode(), data))
    rows.sort()

    def encoded(path: bytes) -> bytes:
        return path.replace(b"%", b"%25").replace(b"\r", b"%0D").replace(b"\n", b"%0A")

    return {
        layout.MANIFEST_SHA256: b"".join(
            hashlib.sha256(data).hexdigest().encode() + b"  " + encoded(p) + b"\n"
            for p, data in rows),
        layout.MANIFEST_BLAKE3: b"".join(
            blake3.blake3(data).hexdigest().encode() + b"  " + encoded(p) + b"\n"
            for p, data in rows),
        layout.PAYLOAD_SIZES: b"".join(
            str(len(data)).encode() + b"  " + encoded(p) + b"\n" for p, data in rows),
    }


def written_manifests(location: Path, fmt: str) -> dict[str, bytes]:
    names = (layout.MANIFEST_SHA256, layout.MANIFEST_BLAKE3, layout.PAYLOAD_SIZES)
    if fmt == "dir":
        return {name: (location / name).read_bytes() for name in names}
    with tarfile.open(location) as tar:
        found = {}
        for name in names:
            member = tar.extractfile(f"{location.name.removesuffix('.tar')}/{name}")
            assert member is not None
            found[name] = member.read()
        return found


@pytest.fixture
def small_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs of a few lines, merged three at a time: a few hundred files out of order then
    take every path of the spool (many runs, merges of merges) that a million would."""
    monkeypatch.setattr(manifest_spool, "_BATCH_LINES", 7)
    monkeypatch.setattr(manifest_spool, "_MERGE_FAN_IN", 3)


def shuffled_names() -> list[str]:
    names = AWKWARD + [f"d{i % 7}/{i:04d}-{'x' * (i % 3)}.sst" for i in range(300)]
    random.Random(8493).shuffle(names)  # noqa: S311 - an order, not a secret
    return names


@pytest.mark.parametrize("fmt", ["dir", "tar"])
@pytest.mark.parametrize("runs", ["one batch", "many runs"])
def test_manifests_sorted_whatever_the_order_files_come_in(
    tmp_path: Path, fmt: BundleFormat, runs: str, request: pytest.FixtureRequest,
) -> None:
    if runs == "many runs":
        request.getfixturevalue("small_runs")
    names = shuffled_names()
    items = make_payload(tmp_path, names)
    dest = tmp_path / "dest"
    written = write_bundle(open_storage(str(dest)), "b1", items, bag_info=[],
                           describe=describe_nothing, fmt=fmt)
    location = Path(written.location)
    assert written_manifests(location, fmt) == model_manifests(tmp_path, names)
    assert written.payload.files == len(names)
    assert written.payload.bytes == sum(i.size for i in items)
    assert sorted(p.name for p in dest.iterdir()) == [location.name]  # no staging left


@pytest.mark.parametrize("fmt", ["dir", "tar"])
def test_sorted_payload_of_many_files_matches_the_model(tmp_path: Path, fmt: BundleFormat) -> None:
    """The usual case at the real batch size: files in order, more than one batch of them,
    the manifests checked by the standard tools too."""
    names = [f"{i:05d}.sst" for i in range(9000)]
    items = make_payload(tmp_path, names)
    written = write_bundle(open_storage(str(tmp_path / "dest")), "b1", items, bag_info=[],
                           describe=describe_nothing, fmt=fmt)
    location = Path(written.location)
    assert written_manifests(location, fmt) == model_manifests(tmp_path, names)
    if fmt == "dir" and shutil.which("b3sum"):
        subprocess.run(["b3sum", "-c", "--quiet", layout.MANIFEST_BLAKE3], cwd=location,
                       check=True)
    if fmt == "dir":
        subprocess.run(["sha256sum", "-c", "--quiet", layout.MANIFEST_SHA256], cwd=location,
                       check=True)


@pytest.mark.usefixtures("small_runs")
@pytest.mark.parametrize("apart", [1, 40])
def test_a_path_given_twice_is_refused(tmp_path: Path, apart: int) -> None:
    """The tar form writes whatever it is given: the spool is what notices the same path
    twice, in one batch or in two runs, before anything is published."""
    names = [f"f{i:03d}" for i in range(60)]
    items = make_payload(tmp_path, names)
    items.insert(apart, items[0])
    dest = tmp_path / "dest"
    with pytest.raises(BadInput, match=r"data/backup/f000.*twice"):
        write_bundle(open_storage(str(dest)), "b1", list(reversed(items)), bag_info=[],
                     describe=describe_nothing, fmt="tar")
    assert not dest.exists()


def spool_files(staging: Path) -> list[str]:
    return sorted(str(p.relative_to(staging)) for p in staging.glob("scratch/manifests-*/*"))


class Watched:
    """Payload items that stop the write at the item ``stop_at`` by raising ``error``, once
    the spool has files (the directory form copies on threads, the spool fills behind them:
    that item waits for it) and remembers them."""

    def __init__(self, staging: Path, stop_at: int, error: BaseException) -> None:
        self.staging = staging
        self.stop_at = stop_at
        self.error = error
        self.seen: list[str] = []

    def wrap(self, items: list[PayloadItem]) -> list[PayloadItem]:
        return [PayloadItem(item.path, item.size, self._opener(index, item.open))
                for index, item in enumerate(items)]

    def _opener(self, index: int, opener: Callable[[], AbstractContextManager[IO[bytes]]]
                ) -> Callable[[], AbstractContextManager[IO[bytes]]]:
        def opened() -> AbstractContextManager[IO[bytes]]:
            if index == self.stop_at:
                deadline = time.monotonic() + 60  # against a hang, not a timing
                while not self.seen and time.monotonic() < deadline:
                    self.seen = spool_files(self.staging)
                    time.sleep(0.01)
                raise self.error
            return opener()
        return opened


@pytest.mark.usefixtures("small_runs")
@pytest.mark.parametrize("fmt", ["dir", "tar"])
@pytest.mark.parametrize(("error", "raised"), [
    (KeyboardInterrupt(), KeyboardInterrupt),
    (OSError(5, "Input/output error"), StorageError),  # a source that fails to read
])
def test_spool_removed_when_the_write_stops(tmp_path: Path, fmt: BundleFormat, error: BaseException,
                                            raised: type[BaseException]) -> None:
    dest = tmp_path / "dest"
    # Past the copy's first batches (256 files each), which must reach the spool first.
    watched = Watched(dest / staging_name("b1"), 590, error)
    items = watched.wrap(make_payload(tmp_path, [f"f{i:03d}" for i in range(600)]))
    with pytest.raises(raised):
        write_bundle(open_storage(str(dest)), "b1", items, bag_info=[],
                     describe=describe_nothing, fmt=fmt)
    assert any("run-" in name for name in watched.seen)  # spooled lines were on disk
    assert not dest.exists()


def test_spool_removed_after_success(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Path] = []
    real = manifest_spool.ManifestSpool.__init__

    def remember(self: manifest_spool.ManifestSpool, directory: Path) -> None:
        made.append(directory)
        real(self, directory)

    monkeypatch.setattr(manifest_spool.ManifestSpool, "__init__", remember)
    dest = tmp_path / "dest"
    write_bundle(open_storage(str(dest)), "b1", make_payload(tmp_path, ["a", "b"]),
                 bag_info=[], describe=describe_nothing)
    assert len(made) == 1
    assert not made[0].exists()
    assert sorted(p.name for p in dest.iterdir()) == ["b1"]


@pytest.fixture
def own_tmpdir(tmp_path: Path) -> Path:
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    return scratch


@pytest.mark.parametrize("fmt", ["dir", "tar"])
def test_sigterm_mid_copy_to_s3_leaves_no_local_spool(
    tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3, own_tmpdir: Path, fmt: str,
) -> None:
    """An object store's bundle is staged in place; its spool lives in a local temporary
    directory, which a stopped run removes too."""
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    add_random_sst(era.path, 40)
    bucket = s3_env.bucket()
    stopped = signal_while_archiving(
        ["archive", str(era.path), "--dest", f"s3://{bucket}/t", "--mirror", mirror.url,
         "--format", fmt], signal.SIGTERM,
        env={**os.environ, "TMPDIR": str(own_tmpdir),
             "CRDB_ARCHIVE_CACHE": str(tmp_path / "cache")})
    assert stopped.returncode == 130, stopped.err
    assert list(own_tmpdir.iterdir()) == []
