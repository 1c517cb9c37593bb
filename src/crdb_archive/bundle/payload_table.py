"""What a verification learns about each payload file, in compact columns.

A bundle of a million files must verify in modest memory: one dict from path to row, and per
row a flags byte, two sizes and the 32-byte digests (expected from the manifests, and actual
from the bytes) in flat arrays, instead of dicts of hex strings per manifest and per reading.
"""

from __future__ import annotations

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

    def digested(self, path: str, digests: Digests) -> None:
        row = self._row(path)
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

    def sized(self, path: str, size: int) -> None:
        row = self._row(path)
        self.flags[row] |= IN_SIZES
        self._listed_size[row] = size

    def listed_size(self, row: int) -> int:
        return self._listed_size[row]

    def expected(self, algorithm: Algorithm, row: int) -> bytes | None:
        if not self.flags[row] & _LISTED[algorithm]:
            return None
        return bytes(self._expected[algorithm][row * _DIGEST:(row + 1) * _DIGEST])

    @staticmethod
    def _set(column: bytearray, row: int, digest: bytes) -> None:
        column[row * _DIGEST:(row + 1) * _DIGEST] = digest
