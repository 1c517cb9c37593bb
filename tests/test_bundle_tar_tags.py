"""A tar bundle's tag files, read from the offset of the first one to the tar's end.

The offset comes from the test's own reading of the tar with Python's tarfile; the bundles are
real ones, made by the archiver, signed with keys made by ssh-keygen.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from crdb_archive.bundle import layout
from crdb_archive.bundle.signature import AllowedSigners
from crdb_archive.bundle.tar_tags import TarTags, check_tar_tags
from crdb_archive.storage import open_storage
from support.bundles import make_bundle
from support.ssh import allowed_file, make_key


def tail_of(tar_path: Path) -> tuple[int, int, int]:
    """Where the first tag file's header starts, and the payload's files and bytes."""
    with tarfile.open(tar_path) as tar:
        members = tar.getmembers()
    name = tar_path.name.removesuffix(".tar")
    payload = [m for m in members if m.name.startswith(f"{name}/{layout.PAYLOAD_DIR}/")]
    first_tag = next(m for m in members if not m.name.startswith(f"{name}/data/"))
    return first_tag.offset, len(payload), sum(m.size for m in payload)


def check(tar_path: Path, offset: int, files: int, size: int,
          allowed: AllowedSigners | None = None) -> TarTags:
    name = tar_path.name.removesuffix(".tar")
    with open_storage(str(tar_path.parent)) as storage:
        return check_tar_tags(storage, tar_path.name, name, offset, files=files, size=size,
                              allowed=allowed)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A signed tar bundle, the allowed signers of its key, and those of another key."""
    base = tmp_path_factory.mktemp("tar-tags")
    key = make_key(base, "signer")
    other = make_key(base, "other")
    tar = make_bundle(base, fmt="tar", sign_key=key.private)
    return (tar, allowed_file(base, f"ops {key.public_key}"),
            allowed_file(base, f"ops {other.public_key}", name="other_signers"))


def test_the_tag_files_at_the_tars_end_are_read_and_checked(
        signed: tuple[Path, Path, Path]) -> None:
    tar, allowed, _ = signed
    offset, files, size = tail_of(tar)
    found = check(tar, offset, files, size, AllowedSigners.load(allowed))
    assert found.problems == []
    assert set(found.sha256) == {*layout.ALL_TAG_FILES, layout.SIGNATURE}
    assert found.signature is not None
    assert found.signature.valid is True
    # What was read is the tail: the tag files and their headers, never the payload.
    assert found.bytes_read <= tar.stat().st_size - offset
    assert found.bytes_read >= sum(len(c) for c in found.kept.values())


def test_a_signature_by_a_key_not_allowed_is_a_problem(
        signed: tuple[Path, Path, Path]) -> None:
    tar, _, others = signed
    offset, files, size = tail_of(tar)
    found = check(tar, offset, files, size, AllowedSigners.load(others))
    assert [p for p in found.problems if p.startswith("signature:")]


def test_payload_oxum_must_count_what_was_written(signed: tuple[Path, Path, Path]) -> None:
    tar, _, _ = signed
    offset, files, size = tail_of(tar)
    found = check(tar, offset, files + 1, size)
    assert found.problems == [f"size: bag-info.txt: Payload-Oxum {size}.{files} where "
                              f"{size}.{files + 1} were written"]


def test_an_offset_that_is_not_the_first_tag_files_is_caught(
        signed: tuple[Path, Path, Path]) -> None:
    tar, _, _ = signed
    offset, files, size = tail_of(tar)
    # From the start: payload members are no tag files.
    assert any(p.startswith("unexpected:") for p in check(tar, 0, files, size).problems)
    # Past the first tag file: it is missing.
    with tarfile.open(tar) as opened:
        second = sorted(m.offset for m in opened.getmembers() if m.offset > offset)[0]
    assert any(p.startswith("missing:") for p in check(tar, second, files, size).problems)
    # Not at a header: not a tar from there.
    assert any(p.startswith("tag:") for p in check(tar, offset + 7, files, size).problems)
