"""Bundles in a cloud behind a fault proxy, as every cloud's bundle fault tests use them: both
forms of one bundle, their files as a store receives them, and the verdicts a network that
breaks must never change."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from support import faultproxy
from support.bundles import make_bundle, run_cli, xor_byte
from support.faultproxy import Fault, FaultProxy


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One bundle as a directory and as a tar."""
    base = tmp_path_factory.mktemp("bundles")
    return make_bundle(base / "dir"), make_bundle(base / "tar", fmt="tar")


def bundle_objects(bundles: tuple[Path, Path], *, damage: bool = False
                   ) -> Iterator[tuple[str, bytes]]:
    """Each object of both forms, named below ``dir/`` and ``tar/``, and its bytes; with
    ``damage``, the first byte of the directory's first SST is flipped."""
    directory, tar = bundles
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if damage and path.suffix == ".sst":
                data = bytes([data[0] ^ 0xFF]) + data[1:]
                damage = False
            yield f"dir/{path.relative_to(directory.parent).as_posix()}", data
    yield f"tar/{tar.name}", tar.read_bytes()


def damaged_tar(bundles: tuple[Path, Path], tmp_path: Path) -> Path:
    """A copy of the tar form in ``tmp_path`` with one byte of its first SST flipped."""
    copy = tmp_path / bundles[1].name
    copy.write_bytes(bundles[1].read_bytes())
    with tarfile.open(copy) as archive:
        first = next(m for m in archive.getmembers() if m.name.endswith(".sst"))
    xor_byte(copy, first.offset_data)
    return copy


def assert_retries_run_out(capsys: pytest.CaptureFixture[str], proxy: FaultProxy,
                           uris: Sequence[str], path: str, fault: Fault, said: str) -> None:
    """Every read of ``path`` breaks: verify gives up with exit 3 saying ``said``, and never
    calls an intact bundle damaged."""
    for uri in uris:
        proxy.calm()
        proxy.fail("GET", path, fault, times=1000)
        result = run_cli(capsys, "verify", uri)
        assert result.code == 3, result.out + result.err
        assert said in result.err
        assert "DAMAGED" not in result.out


def assert_never_damaged(capsys: pytest.CaptureFixture[str], proxy: FaultProxy,
                         uris: Sequence[str], seed: int) -> None:
    """Under chaos (a third of the requests fail, each its own way), intact bundles verify (0)
    or the network wins (3), without a traceback; and the chaos broke something."""
    proxy.chaos(0.3, faultproxy.refuse(500), faultproxy.fail_after(500),
                faultproxy.reset_after(200), faultproxy.truncate_after(200),
                faultproxy.short_body(200), seed=seed)
    results = [run_cli(capsys, "verify", uri) for uri in uris]
    assert {r.code for r in results} <= {0, 3}, "\n".join(results[-1].out.splitlines()[:3])
    for result in results:
        assert "Traceback" not in result.err, result.err
    assert [r for r in proxy.requests() if r.fault is not None], "the chaos broke nothing"


def assert_damage_found(capsys: pytest.CaptureFixture[str], uris: Sequence[str]) -> None:
    """Damaged bundles are found damaged (exit 1) through whatever the proxy does."""
    for uri in uris:
        result = run_cli(capsys, "verify", uri)
        assert result.code == 1, result.out + result.err
