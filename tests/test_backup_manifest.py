"""Decoding manifests: every framing, every version field, checksums, and hostile input."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import uuid
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdb_archive.backup import decode_manifest, read_manifest
from crdb_archive.errors import (
    CrdbArchiveError,
    DamagedManifest,
    ExitCode,
    MalformedManifest,
    NotABackup,
    StorageError,
)
from support.backups import (
    CLUSTER_ID,
    T0,
    Manifest,
    bytes_field,
    checksum,
    encrypted,
    gzipped,
    int_field,
    string_field,
    write,
    write_backup,
)
from support.measure import peak_allocation

BASE = Manifest(end_time=T0, start_time=T0 - dt.timedelta(days=1), end_logical=4,
                extra_end_nanos=789, node_id=3)


@pytest.mark.parametrize("framing", ["raw", "gzip"])
def test_every_field_decoded(framing: str) -> None:
    data = BASE.encode()
    info = decode_manifest(gzipped(data) if framing == "gzip" else data, file="BACKUP_MANIFEST")
    assert info.file == "BACKUP_MANIFEST"
    assert info.gzip is (framing == "gzip")
    assert info.encrypted is False
    assert info.build_tag == "v23.1.11"
    assert info.build_time == "2023/10/09 17:49:25"
    assert info.revision == BASE.revision
    assert info.go_version == "go1.19.13"
    assert info.cluster_version == "23.1"
    assert info.cluster_version_parts == (23, 1, 0, 0)
    assert info.development_build is False
    assert info.end_time == T0
    assert info.end_wall_time == BASE.end_wall_time
    assert info.end_wall_time % 1000 == 789
    assert info.start_time == T0 - dt.timedelta(days=1)
    assert info.cluster_id == str(CLUSTER_ID)
    assert info.node_id == 3


def test_encrypted_manifest_reports_only_that() -> None:
    info = decode_manifest(encrypted(gzipped(BASE.encode())))
    assert info.encrypted is True
    assert (info.build_tag, info.cluster_version, info.end_time) == (None, None, None)


def test_encrypted_header_too_short() -> None:
    with pytest.raises(MalformedManifest, match="shorter than its 20-byte header"):
        decode_manifest(b"encrypt\x01abc")


def test_development_offset_removed_and_flagged() -> None:
    info = decode_manifest(replace(BASE, cluster_version=(1_000_024, 1, 0, 8)).encode())
    assert info.cluster_version == "24.1"
    assert info.cluster_version_parts == (24, 1, 0, 8)
    assert info.development_build is True


def test_no_cluster_version_before_v21_1() -> None:
    info = decode_manifest(replace(BASE, cluster_version=None).encode())
    assert info.cluster_version is None
    assert info.cluster_version_parts is None


def test_zero_cluster_id_and_node_id_mean_unknown() -> None:
    info = decode_manifest(replace(BASE, cluster_id=uuid.UUID(int=0), node_id=0).encode())
    assert info.cluster_id is None
    assert info.node_id is None


def test_cluster_id_of_wrong_length() -> None:
    data = BASE.encode() + bytes_field(9, b"\x01" * 5)
    with pytest.raises(MalformedManifest, match="cluster_id has 5 bytes"):
        decode_manifest(data)


def test_repeated_message_fields_merge_and_scalars_keep_the_last() -> None:
    data = BASE.encode() + bytes_field(11, string_field(2, "v23.1.12")) + int_field(10, 9)
    info = decode_manifest(data)
    assert info.build_tag == "v23.1.12"
    assert info.go_version == "go1.19.13"  # from the first occurrence
    assert info.node_id == 9


def test_negative_cluster_version_is_malformed() -> None:
    data = BASE.encode() + bytes_field(25, int_field(1, -1))
    with pytest.raises(MalformedManifest, match="negative"):
        decode_manifest(data)


def test_build_tag_that_is_not_utf8() -> None:
    data = BASE.encode() + bytes_field(11, bytes_field(2, b"\xff\xfe"))
    with pytest.raises(MalformedManifest, match="not UTF-8"):
        decode_manifest(data)


def test_empty_and_versionless_input_is_not_a_manifest() -> None:
    with pytest.raises(MalformedManifest, match="empty"):
        decode_manifest(b"")
    with pytest.raises(MalformedManifest, match="not a CockroachDB backup manifest"):
        decode_manifest(int_field(10, 1) + string_field(30, "unrelated"))


def test_multi_member_gzip_is_read_like_go_does() -> None:
    data = BASE.encode()
    half = len(data) // 2
    assert decode_manifest(gzipped(data[:half]) + gzipped(data[half:])).build_tag == "v23.1.11"


def test_bytes_after_gzip_data_are_refused() -> None:
    with pytest.raises(MalformedManifest, match="gzip data is corrupt"):
        decode_manifest(gzipped(BASE.encode()) + b"trailing garbage")


def test_truncated_and_corrupt_gzip() -> None:
    stored = gzipped(BASE.encode())
    with pytest.raises(MalformedManifest, match="truncated"):
        decode_manifest(stored[:-10])
    broken = bytearray(stored)
    broken[len(broken) // 2] ^= 0xFF
    with pytest.raises(MalformedManifest):
        decode_manifest(bytes(broken))


def test_inflation_is_capped() -> None:
    # A well-formed field to skip, so that only the cap can stop the inflating.
    bomb = gzip.compress(bytes_field(4, b"\x00" * (8 << 20)), compresslevel=9)
    with pytest.raises(MalformedManifest, match="inflates to more than 1 MiB"):
        decode_manifest(bomb, limit=1 << 20)


def test_large_manifest_streams_through_in_pieces() -> None:
    # 60,000 file entries: many inflate pieces, each field crossing piece boundaries.
    big = replace(BASE, files=60_000)
    stored = gzip.compress(big.encode(), compresslevel=1)
    info = decode_manifest(stored)
    assert info.build_tag == "v23.1.11"
    assert info.cluster_version == "23.1"


# --- read_manifest: files and checksums -------------------------------------------------------


def test_checksum_verified(tmp_path: Path) -> None:
    write_backup(tmp_path, BASE)
    info = read_manifest(tmp_path, root=tmp_path)
    assert info.checksum_verified is True
    assert info.file == "BACKUP_MANIFEST"


def test_manifest_preference(tmp_path: Path) -> None:
    write_backup(tmp_path, replace(BASE, build_tag="v23.1.12"), names=("BACKUP_METADATA",))
    write_backup(tmp_path, BASE, names=("BACKUP",), compress=False, with_checksum=False)
    assert read_manifest(tmp_path, root=tmp_path).file == "BACKUP_METADATA"
    write_backup(tmp_path, replace(BASE, build_tag="v23.1.13"), names=("BACKUP_MANIFEST",))
    info = read_manifest(tmp_path, root=tmp_path)
    assert (info.file, info.build_tag) == ("BACKUP_MANIFEST", "v23.1.13")


def test_wrong_checksum_is_damage_exit_1(tmp_path: Path) -> None:
    write_backup(tmp_path, BASE)
    write(tmp_path / "BACKUP_MANIFEST-CHECKSUM", b"\x00\x01\x02\x03")
    with pytest.raises(DamagedManifest, match="does not match BACKUP_MANIFEST-CHECKSUM") as info:
        read_manifest(tmp_path, root=tmp_path)
    assert info.value.exit_code == ExitCode.NO


def test_flipped_byte_caught_by_checksum(tmp_path: Path) -> None:
    stored = write_backup(tmp_path, BASE)
    flipped = bytearray(stored)
    flipped[40] ^= 0x01
    write(tmp_path / "BACKUP_MANIFEST", bytes(flipped))
    with pytest.raises(DamagedManifest):
        read_manifest(tmp_path, root=tmp_path)


def test_checksum_file_of_wrong_size(tmp_path: Path) -> None:
    write_backup(tmp_path, BASE)
    write(tmp_path / "BACKUP_MANIFEST-CHECKSUM", b"abc")
    with pytest.raises(DamagedManifest, match="holds 3 byte"):
        read_manifest(tmp_path, root=tmp_path)


def test_truncated_without_checksum_is_damage(tmp_path: Path) -> None:
    stored = write_backup(tmp_path, BASE, names=("BACKUP",), compress=False,
                          with_checksum=False)
    # Cut inside the build tag: a raw protobuf cut between two fields would still parse.
    write(tmp_path / "BACKUP", stored[: stored.index(b"v23.1.11") + 3])
    with pytest.raises(DamagedManifest, match="no -CHECKSUM file"):
        read_manifest(tmp_path, root=tmp_path)


def test_undecodable_but_intact_is_malformed_exit_2(tmp_path: Path) -> None:
    garbage = b"\x1f\x8b\x08" + b"not really gzip" * 10
    write(tmp_path / "BACKUP_MANIFEST", garbage)
    write(tmp_path / "BACKUP_MANIFEST-CHECKSUM", checksum(garbage))
    with pytest.raises(MalformedManifest, match="matches its -CHECKSUM") as info:
        read_manifest(tmp_path, root=tmp_path)
    assert info.value.exit_code == ExitCode.BAD_INPUT


def test_encrypted_manifest_checksum_checked(tmp_path: Path) -> None:
    write_backup(tmp_path, BASE, encrypt=True)
    assert read_manifest(tmp_path, root=tmp_path).encrypted is True
    write(tmp_path / "BACKUP_MANIFEST-CHECKSUM", b"\x00\x00\x00\x00")
    with pytest.raises(DamagedManifest):
        read_manifest(tmp_path, root=tmp_path)


def test_unreadable_checksum_is_a_storage_error(tmp_path: Path) -> None:
    write_backup(tmp_path, BASE, with_checksum=False)
    (tmp_path / "BACKUP_MANIFEST-CHECKSUM").mkdir()
    with pytest.raises(StorageError, match="BACKUP_MANIFEST-CHECKSUM"):
        read_manifest(tmp_path, root=tmp_path)


def test_no_manifest(tmp_path: Path) -> None:
    with pytest.raises(NotABackup):
        read_manifest(tmp_path, root=tmp_path)


def test_relative_name_in_a_collection(tmp_path: Path) -> None:
    write_backup(tmp_path / "2023" / "06" / "02-093257.93", BASE)
    info = read_manifest(tmp_path / "2023" / "06" / "02-093257.93", root=tmp_path)
    assert info.file == "2023/06/02-093257.93/BACKUP_MANIFEST"


# --- properties -------------------------------------------------------------------------------

int32 = st.integers(min_value=0, max_value=2**31 - 1)
text = st.text(max_size=40)
manifests = st.builds(
    Manifest,
    end_time=st.datetimes(
        min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1),
        timezones=st.just(dt.UTC),
    ),
    build_tag=st.one_of(st.none(), text.filter(bool)),
    build_time=st.one_of(st.none(), text.filter(bool)),
    revision=st.one_of(st.none(), text.filter(bool)),
    go_version=st.one_of(st.none(), text.filter(bool)),
    cluster_version=st.one_of(
        st.none(),
        st.tuples(st.integers(1, 30), st.integers(1, 4), st.just(0), st.integers(0, 200)),
        st.tuples(st.integers(1_000_001, 1_000_030), st.integers(1, 4), st.just(0),
                  st.integers(0, 200)),
    ),
    end_logical=int32,
    extra_end_nanos=st.integers(0, 999),
    cluster_id=st.one_of(st.none(), st.uuids().filter(lambda u: u.int != 0)),
    node_id=st.one_of(st.none(), st.integers(1, 2**31 - 1)),
    files=st.integers(0, 5),
    descriptors=st.integers(0, 3),
    unknown_fields=st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(manifest=manifests, compress=st.booleans())
def test_round_trip(manifest: Manifest, compress: bool) -> None:
    stored = manifest.encode()
    info = decode_manifest(gzipped(stored) if compress else stored)
    assert info.build_tag == manifest.build_tag
    assert info.build_time == manifest.build_time
    assert info.revision == manifest.revision
    assert info.go_version == manifest.go_version
    assert info.end_wall_time == manifest.end_wall_time
    assert info.cluster_id == (str(manifest.cluster_id) if manifest.cluster_id else None)
    assert info.node_id == manifest.node_id
    if manifest.cluster_version is None:
        assert info.cluster_version is None
    else:
        major, minor, _, internal = manifest.cluster_version
        assert info.development_build is (major > 1_000_000)
        assert info.cluster_version == f"{major % 1_000_000}.{minor}"
        assert info.cluster_version_parts == (major % 1_000_000, minor, 0, internal)


def assert_clean(data: bytes) -> None:
    """decode_manifest returns or raises one of ours, never anything else, and allocates
    in proportion to what the input holds, never to what it claims (a length of 2**60)."""
    with peak_allocation() as peak, contextlib.suppress(CrdbArchiveError):
        decode_manifest(data)
    # At most 4 KiB of input, which gzip inflates a thousandfold at the most.
    assert peak() < 32 << 20


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    assert_clean(data)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=4096))
def test_random_bytes_behind_each_framing(data: bytes) -> None:
    assert_clean(gzipped(data))
    assert_clean(b"\x1f\x8b\x08" + data)
    assert_clean(zlib.compress(data))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifest=manifests, compress=st.booleans(), data=st.data())
def test_mutated_and_truncated_manifests(manifest: Manifest, compress: bool,
                                         data: st.DataObject) -> None:
    stored = manifest.encode()
    if compress:
        stored = gzipped(stored)
    cut = data.draw(st.integers(0, len(stored)), label="cut")
    assert_clean(stored[:cut])
    position = data.draw(st.integers(0, len(stored) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    mutated = bytearray(stored)
    mutated[position] ^= mask
    assert_clean(bytes(mutated))
