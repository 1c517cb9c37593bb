"""What a verification learns about each payload file, in compact columns.

A bundle of a million files must verify in modest memory: one dict from path to row, and per
row a flags byte, two sizes and the 32-byte digests (expected from the manifests, and actual
from the bytes) in flat arrays, instead of dicts of hex strings per manifest and per reading.
"""

from __future__ import annotations

import functools
from array import array
from collections.abc import Iterator
from typing import Literal

from crdb_archive.hashing import Digests

Algorithm = Literal["blake3", "sha256"]

IN_BLAKE3 = 1
IN_SHA256 = 2
IN_SIZES = 4
PRESENT = 8
HAS_BLAKE3 = 16
HAS_SHA256 = 32

_LISTED = {"blake3": IN_BLAKE3, "sha256": IN_SHA256}
_HAS = {"blake3": HAS_BLAKE3, "sha256": HAS_SHA256}
_DIGEST = 32
_EMPTY = bytes(_DIGEST)


@functools.cache
def bits(mask: int) -> bytes:
    """The byte translation (``bytes.translate``) that keeps the bits of ``mask``."""
    return bytes(value & mask for value in range(256))


@functools.cache
def _setting(flags: int) -> bytes:
    """The byte translation that sets ``flags``: flags of many rows set in one step."""
    return bytes(value | flags for value in range(256))


class PayloadTable:
    """Payload paths, each with what the manifests say and what the bundle holds."""

    def __init__(self) -> None:
        self._rows: dict[str, int] = {}
        self.flags = bytearray()
        self._present_size = array("q")
        self._listed_size = array("q")
        self._expected: dict[Algorithm, bytearray] = {"blake3": bytearray(),
                                                      "sha256": bytearray()}
        self._actual: dict[Algorithm, bytearray] = {"blake3": bytearray(),
                                                    "sha256": bytearray()}

    def __len__(self) -> int:
        return len(self._rows)

    def _row(self, path: str) -> int:
        row = self._rows.get(path)
        if row is None:
            row = self._rows[path] = len(self.flags)
            self.flags.append(0)
            self._present_size.append(-1)
            self._listed_size.append(-1)
            for column in (*self._expected.values(), *self._actual.values()):
                column.extend(_EMPTY)
        return row

    def _rows_for(self, paths: list[str]) -> range | list[int]:
        """The rows of ``paths``, made where missing: a range when they are consecutive (a
        manifest after the first lists the same paths in the same order)."""
        rows = self._rows
        found = list(map(rows.get, paths))
        if found.count(None) == len(found):
            start = len(self.flags)
            rows.update(zip(paths, range(start, start + len(paths)), strict=True))
            count = len(paths)
            self.flags.extend(bytes(count))
            self._present_size.extend(array("q", [-1]) * count)
            self._listed_size.extend(array("q", [-1]) * count)
            for column in (*self._expected.values(), *self._actual.values()):
                column.extend(bytes(_DIGEST * count))
            return range(start, start + count)
        if None in found:
            return [self._row(path) for path in paths]
        first = found[0]
        if isinstance(first, int) and found == list(range(first, first + len(found))):
            return range(first, first + len(found))
        return found  # type: ignore[return-value]

    def _flag_rows(self, rows: range | list[int], flag: int) -> None:
        if isinstance(rows, range):
            part = slice(rows.start, rows.stop)
            self.flags[part] = self.flags[part].translate(_setting(flag))
            return
        for row in rows:
            self.flags[row] |= flag

    def all_match(self, required: int) -> bool:
        """Whether every row has every flag in ``required``, the size payload-sizes.txt
        lists, and each digest that was both computed and listed equal to the listed one:
        one pass over the columns instead of one step per row."""
        count = len(self.flags)
        if self.flags.translate(bits(required)) != bytes([required]) * count:
            return False
        if self._present_size != self._listed_size:
            return False
        for algorithm in ("blake3", "sha256"):
            have = _HAS[algorithm] | _LISTED[algorithm]
            marks = self.flags.translate(bits(have))
            if marks.count(have) == count:
                if self._actual[algorithm] != self._expected[algorithm]:
                    return False
                continue
            row = marks.find(have)
            while row >= 0:
                if self.actual(algorithm, row) != self.expected(algorithm, row):
                    return False
                row = marks.find(have, row + 1)
        return True

    def items(self) -> Iterator[tuple[str, int]]:
        """``(path, row)`` of every path, in the order first met."""
        return iter(self._rows.items())

    def row_of(self, path: str) -> int | None:
        return self._rows.get(path)

    # --- what the bundle holds -----------------------------------------------------------

    def present(self, path: str, size: int) -> None:
        row = self._row(path)
        self.flags[row] |= PRESENT
        self._present_size[row] = size

    def record(self, path: str, size: int, digests: Digests) -> None:
        """:meth:`present` and :meth:`digested` in one step."""
        row = self._row(path)
        self.flags[row] |= PRESENT
        self._present_size[row] = size
        self._digested(row, digests)

    def record_many(self, paths: list[str], sizes: array[int], blake3: bytes,
                    sha256: bytes | None) -> None:
        """:meth:`record` for many paths, their sizes and 32-byte digests in flat columns
        (``sha256`` None where it was not computed)."""
        rows = self._rows_for(paths)
        flags = PRESENT | HAS_BLAKE3 | (HAS_SHA256 if sha256 is not None else 0)
        self._flag_rows(rows, flags)
        if isinstance(rows, range):
            self._present_size[rows.start:rows.stop] = sizes
            span = slice(rows.start * _DIGEST, rows.stop * _DIGEST)
            self._actual["blake3"][span] = blake3
            if sha256 is not None:
                self._actual["sha256"][span] = sha256
            return
        for index, row in enumerate(rows):
            self._present_size[row] = sizes[index]
            digest = slice(index * _DIGEST, (index + 1) * _DIGEST)
            self._set(self._actual["blake3"], row, blake3[digest])
            if sha256 is not None:
                self._set(self._actual["sha256"], row, sha256[digest])

    def digested(self, path: str, digests: Digests) -> None:
        self._digested(self._row(path), digests)

    def _digested(self, row: int, digests: Digests) -> None:
        self._set(self._actual["blake3"], row, bytes.fromhex(digests.blake3))
        self.flags[row] |= HAS_BLAKE3
        if digests.sha256:
            self._set(self._actual["sha256"], row, bytes.fromhex(digests.sha256))
            self.flags[row] |= HAS_SHA256

    def present_size(self, row: int) -> int:
        return self._present_size[row]

    def actual(self, algorithm: Algorithm, row: int) -> bytes | None:
        if not self.flags[row] & _HAS[algorithm]:
            return None
        return bytes(self._actual[algorithm][row * _DIGEST:(row + 1) * _DIGEST])

    # --- what the manifests say ----------------------------------------------------------

    def listed(self, algorithm: Algorithm, path: str, digest: bytes) -> None:
        row = self._row(path)
        self.flags[row] |= _LISTED[algorithm]
        self._set(self._expected[algorithm], row, digest)

    def listed_many(self, algorithm: Algorithm, paths: list[str], digests: bytes) -> None:
        """:meth:`listed` for many paths, their 32-byte digests concatenated."""
        rows = self._rows_for(paths)
        self._flag_rows(rows, _LISTED[algorithm])
        column = self._expected[algorithm]
        if isinstance(rows, range):
            column[rows.start * _DIGEST:rows.stop * _DIGEST] = digests
            return
        for index, row in enumerate(rows):
            self._set(column, row, digests[index * _DIGEST:(index + 1) * _DIGEST])

    def sized_many(self, paths: list[str], sizes: list[int]) -> None:
        """:meth:`sized` for many paths."""
        rows = self._rows_for(paths)
        self._flag_rows(rows, IN_SIZES)
        if isinstance(rows, range):
            self._listed_size[rows.start:rows.stop] = array("q", sizes)
            return
        for row, size in zip(rows, sizes, strict=True):
            self._listed_size[row] = size

    def sized(self, path: str, size: int) -> None:
        row = self._row(path)
        self.flags[row] |= IN_SIZES
        self._listed_size[row] = size

    def listed_total(self) -> int:
        """The sum of the sizes payload-sizes.txt lists."""
        return sum(size for size in self._listed_size if size > 0)

    def listed_size(self, row: int) -> int:
        return self._listed_size[row]

    def expected(self, algorithm: Algorithm, row: int) -> bytes | None:
        if not self.flags[row] & _LISTED[algorithm]:
            return None
        return bytes(self._expected[algorithm][row * _DIGEST:(row + 1) * _DIGEST])

    @staticmethod
    def _set(column: bytearray, row: int, digest: bytes) -> None:
        column[row * _DIGEST:(row + 1) * _DIGEST] = digest
