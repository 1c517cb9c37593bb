"""The protobuf wire reader: exact values, cheap skipping, and clean refusal of garbage."""

from __future__ import annotations

import pytest

from crdb_archive.backup import wire
from crdb_archive.errors import MalformedManifest
from support.backups import (
    bytes_field,
    fixed32_field,
    fixed64_field,
    group_field,
    int_field,
    key,
    string_field,
    varint,
)
from support.measure import peak_allocation


def read_all(data: bytes, keep: dict[int, int], *, split: bool = False) -> list[wire.Field]:
    chunks = [data[i : i + 1] for i in range(len(data))] if split else [data]
    return list(wire.fields(wire.ByteSource(chunks), keep))


@pytest.mark.parametrize(
    "value", [0, 1, 127, 128, 300, 2**31 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]
)
@pytest.mark.parametrize("split", [False, True])
def test_varint_values_round_trip(value: int, split: bool) -> None:
    fields = read_all(int_field(3, value), {3: 0}, split=split)
    assert [(f.number, f.wire_type, f.value) for f in fields] == [(3, wire.VARINT, value)]


def test_negative_int32_and_int64_as_go_writes_them() -> None:
    (field,) = read_all(int_field(1, -5), {1: 0})
    assert wire.signed64(field.as_int("x")) == -5
    assert wire.signed32(field.as_int("x")) == -5
    assert wire.signed32(2**31) == -(2**31)
    assert wire.signed64(2**64 - 1) == -1


def test_varint_of_eleven_bytes_is_refused() -> None:
    overlong = key(1, 0) + b"\x80" * 10 + b"\x00"
    with pytest.raises(MalformedManifest, match="longer than 10 bytes"):
        read_all(overlong, {1: 0})


def test_varint_overflowing_64_bits_is_refused() -> None:
    overflow = key(1, 0) + b"\xff" * 9 + b"\x02"
    with pytest.raises(MalformedManifest, match="overflows 64 bits"):
        read_all(overflow, {1: 0})


def test_truncated_varint() -> None:
    with pytest.raises(MalformedManifest, match="truncated"):
        read_all(key(1, 0) + b"\x80\x80", {1: 0})


def test_kept_and_skipped_fields_of_every_wire_type() -> None:
    data = (
        int_field(1, 7)
        + fixed64_field(2, 2**64 - 2)
        + fixed32_field(3, 9)
        + string_field(4, "kept")
        + group_field(5, int_field(1, 1) + group_field(2, string_field(3, "deep")))
        + bytes_field(6, b"skipped" * 100)
        + fixed64_field(7, 1)
        + fixed32_field(8, 1)
        + int_field(9, 1)
        + string_field(10, "last")
    )
    keep = {1: 0, 2: 0, 3: 0, 4: 16, 10: 16}
    for split in (False, True):
        got = [(f.number, f.value) for f in read_all(data, keep, split=split)]
        assert got == [(1, 7), (2, 2**64 - 2), (3, 9), (4, b"kept"), (10, b"last")]


def test_length_beyond_the_input_is_truncation_not_allocation() -> None:
    # A claimed length of about 2**60 bytes over a few bytes of input: refused at once.
    data = key(6, 2) + varint(2**60) + b"abc"
    with peak_allocation() as peak:
        with pytest.raises(MalformedManifest, match="truncated"):
            read_all(data, {})
        with pytest.raises(MalformedManifest, match="claims"):
            read_all(data, {6: 1 << 20})
    assert peak() < 1 << 20


def test_kept_field_longer_than_its_cap_is_refused() -> None:
    with pytest.raises(MalformedManifest, match="at most 4 expected"):
        read_all(string_field(2, "too long"), {2: 4})


@pytest.mark.parametrize("wire_type", [6, 7])
def test_unknown_wire_types(wire_type: int) -> None:
    with pytest.raises(MalformedManifest, match=f"unknown wire type {wire_type}"):
        read_all(key(1, wire_type) + b"\x00", {})


def test_field_number_zero() -> None:
    with pytest.raises(MalformedManifest, match="invalid field number 0"):
        read_all(b"\x00\x00", {})


def test_end_group_without_start() -> None:
    with pytest.raises(MalformedManifest, match="without its start"):
        read_all(key(4, 4), {})


def test_group_closed_by_another_number() -> None:
    with pytest.raises(MalformedManifest, match="closed as group 6"):
        read_all(key(5, 3) + key(6, 4), {})


def test_unclosed_group() -> None:
    with pytest.raises(MalformedManifest, match="not closed"):
        read_all(key(5, 3) + int_field(1, 1), {})


def test_deeply_nested_groups_are_refused_not_recursed() -> None:
    data = key(5, 3) * 100_000
    with pytest.raises(MalformedManifest, match="nested deeper"):
        read_all(data, {})


def test_kept_field_sent_as_group_is_refused() -> None:
    with pytest.raises(MalformedManifest, match="a group"):
        read_all(group_field(3, b""), {3: 0})


def test_field_type_checks() -> None:
    (as_string,) = read_all(string_field(1, "x"), {1: 8})
    with pytest.raises(MalformedManifest, match="wire type 2, expected 0"):
        as_string.as_int("node_id")
    (as_int,) = read_all(int_field(1, 3), {1: 8})
    with pytest.raises(MalformedManifest, match="wire type 0, expected 2"):
        as_int.as_bytes("build_info")


def test_skipping_a_large_field_does_not_copy_it() -> None:
    big = b"\x00" * (64 << 20)
    data = bytes_field(4, big) + int_field(10, 3)
    with peak_allocation() as peak:
        assert [f.value for f in read_all(data, {10: 0})] == [3]
    assert peak() < 1 << 20  # the 64 MiB field was stepped over, never copied
