"""Counted nouns and sizes as people read them."""

from __future__ import annotations

import pytest

from crdb_archive.text import count, exact, files, size


@pytest.mark.parametrize(("number", "expected"), [
    (0, "0 files"), (1, "1 file"), (2, "2 files"), (1234567, "1,234,567 files"),
])
def test_count(number: int, expected: str) -> None:
    assert count(number, "file") == expected


def test_count_with_an_irregular_plural() -> None:
    assert count(1, "index", "indexes") == "1 index"
    assert count(3, "index", "indexes") == "3 indexes"


@pytest.mark.parametrize(("octets", "expected"), [
    (0, "0 bytes"), (1, "1 byte"), (1023, "1,023 bytes"),
    (1024, "1 KiB"),  # a whole number of units, as a limit is written
    (64 * 1024, "64 KiB"),
    (1536, "1.50 KiB"),
    (2004, "1.96 KiB"),
    (10 * 1024 + 512, "10.5 KiB"),
    (600_302_107, "572 MiB"),
    (1 << 30, "1 GiB"),
    (int(1.25 * (1 << 40)), "1.25 TiB"),
    (3 << 60, "3072 PiB"),  # past the last unit the number grows
])
def test_size(octets: int, expected: str) -> None:
    assert size(octets) == expected


def test_exact_keeps_every_digit() -> None:
    assert exact(1_234_567) == "1,234,567 bytes"
    assert exact(1) == "1 byte"


def test_files_with_their_size() -> None:
    assert files(12, 5 << 20) == "5 MiB in 12 files"
    assert files(1, 10) == "10 bytes in 1 file"
