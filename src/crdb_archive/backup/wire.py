"""A small, defensive reader of the protobuf wire format.

Only what a backup manifest needs: walk the fields of a message, hand back the few the caller
asks for, and skip everything else without copying it. Input is untrusted: every length is
checked against the bytes actually present, a varint is at most 10 bytes, group nesting is
bounded, so garbage ends in :class:`MalformedManifest` rather than a crash, a hang or an
allocation sized by a claimed length.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from crdb_archive.errors import MalformedManifest
from crdb_archive.text import count

VARINT = 0
FIXED64 = 1
LENGTH_DELIMITED = 2
START_GROUP = 3
END_GROUP = 4
FIXED32 = 5

_MAX_VARINT_BYTES = 10
_MAX_FIELD_NUMBER = (1 << 29) - 1
# Deprecated groups never appear in a manifest; a deep nest of them is garbage.
_MAX_GROUP_DEPTH = 32


class ByteSource:
    """Bytes pulled on demand from chunks, read exactly or skipped, never beyond what exists."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._view = memoryview(b"")
        self._pos = 0
        self.offset = 0  # bytes consumed so far, for messages

    @classmethod
    def of(cls, data: bytes) -> ByteSource:
        return cls((data,))

    def _fill(self) -> bool:
        """Make the current chunk non-empty; False at the end of the input."""
        while self._pos >= len(self._view):
            chunk = next(self._chunks, None)
            if chunk is None:
                return False
            self._view = memoryview(chunk)
            self._pos = 0
        return True

    def at_end(self) -> bool:
        return not self._fill()

    def _truncated(self, wanted: int, what: str) -> MalformedManifest:
        return MalformedManifest(
            f"truncated at byte {self.offset}: {what} needs {count(wanted, 'more byte')}"
        )

    def read(self, n: int, what: str) -> bytes:
        """Exactly ``n`` bytes. Memory grows with bytes present, not with ``n`` claimed."""
        if self._fill() and len(self._view) - self._pos >= n:
            out = bytes(self._view[self._pos : self._pos + n])
            self._pos += n
            self.offset += n
            return out
        parts = bytearray()
        while len(parts) < n:
            if not self._fill():
                raise self._truncated(n - len(parts), what)
            take = min(n - len(parts), len(self._view) - self._pos)
            parts += self._view[self._pos : self._pos + take]
            self._pos += take
            self.offset += take
        return bytes(parts)

    def skip(self, n: int, what: str) -> None:
        left = n
        while left:
            if not self._fill():
                raise self._truncated(left, what)
            take = min(left, len(self._view) - self._pos)
            self._pos += take
            self.offset += take
            left -= take

    def varint(self, what: str) -> int:
        """An unsigned varint of at most 10 bytes whose value fits in 64 bits."""
        value = 0
        for index in range(_MAX_VARINT_BYTES):
            if not self._fill():
                raise self._truncated(1, what)
            byte = self._view[self._pos]
            self._pos += 1
            self.offset += 1
            value |= (byte & 0x7F) << (7 * index)
            if not byte & 0x80:
                if index == _MAX_VARINT_BYTES - 1 and byte > 1:
                    raise MalformedManifest(
                        f"varint ending at byte {self.offset} overflows 64 bits ({what})"
                    )
                return value
        raise MalformedManifest(
            f"varint ending at byte {self.offset} is longer than 10 bytes ({what})"
        )


@dataclass(frozen=True)
class Field:
    """One field the caller asked for: a number, its wire type and its value."""

    number: int
    wire_type: int
    value: int | bytes

    def _wrong(self, expected: int, name: str) -> MalformedManifest:
        return MalformedManifest(
            f"field {self.number} ({name}) has wire type {self.wire_type}, "
            f"expected {expected}"
        )

    def as_int(self, name: str) -> int:
        """The value of a varint field; raises MalformedManifest for another wire type."""
        if self.wire_type != VARINT or not isinstance(self.value, int):
            raise self._wrong(VARINT, name)
        return self.value

    def as_bytes(self, name: str) -> bytes:
        """The value of a length-delimited field; raises MalformedManifest otherwise."""
        if self.wire_type != LENGTH_DELIMITED or not isinstance(self.value, bytes):
            raise self._wrong(LENGTH_DELIMITED, name)
        return self.value


def fields(source: ByteSource, keep: Mapping[int, int]) -> Iterator[Field]:
    """The fields of a message whose numbers are in ``keep``, in order; others are skipped.

    ``keep`` maps a field number to the most bytes its length-delimited value may have: the
    fields a caller reads are small, so a larger claim is garbage, refused before reading.
    Raises MalformedManifest.
    """
    while not source.at_end():
        number, wire_type = _tag(source)
        if wire_type == END_GROUP:
            raise MalformedManifest(
                f"end of group {number} at byte {source.offset} without its start"
            )
        if number not in keep:
            _skip(source, number, wire_type)
            continue
        what = f"field {number}"
        if wire_type == VARINT:
            yield Field(number, wire_type, source.varint(what))
        elif wire_type == FIXED64:
            yield Field(number, wire_type, int.from_bytes(source.read(8, what), "little"))
        elif wire_type == FIXED32:
            yield Field(number, wire_type, int.from_bytes(source.read(4, what), "little"))
        elif wire_type == LENGTH_DELIMITED:
            length = source.varint(f"length of {what}")
            if length > keep[number]:
                raise MalformedManifest(
                    f"{what} claims {length} bytes at byte {source.offset}; at most "
                    f"{keep[number]} expected"
                )
            yield Field(number, wire_type, source.read(length, what))
        else:  # a group where a scalar or message is expected
            raise MalformedManifest(f"{what} has wire type {wire_type}, a group")


def _tag(source: ByteSource) -> tuple[int, int]:
    key = source.varint("field key")
    number, wire_type = key >> 3, key & 7
    if number == 0 or number > _MAX_FIELD_NUMBER:
        raise MalformedManifest(
            f"invalid field number {number} ending at byte {source.offset}"
        )
    if wire_type > FIXED32:
        raise MalformedManifest(
            f"unknown wire type {wire_type} ending at byte {source.offset}"
        )
    return number, wire_type


def _skip(source: ByteSource, number: int, wire_type: int) -> None:
    what = f"field {number}"
    if wire_type == VARINT:
        source.varint(what)
    elif wire_type == FIXED64:
        source.skip(8, what)
    elif wire_type == FIXED32:
        source.skip(4, what)
    elif wire_type == LENGTH_DELIMITED:
        source.skip(source.varint(f"length of {what}"), what)
    elif wire_type == START_GROUP:
        _skip_group(source, number)


def _skip_group(source: ByteSource, number: int) -> None:
    # Iterative, with a bounded stack, so nesting cannot exhaust Python's recursion limit.
    open_groups = [number]
    while open_groups:
        if source.at_end():
            raise MalformedManifest(f"group {open_groups[-1]} is not closed before the end")
        inner, wire_type = _tag(source)
        if wire_type == START_GROUP:
            if len(open_groups) >= _MAX_GROUP_DEPTH:
                raise MalformedManifest(f"groups nested deeper than {_MAX_GROUP_DEPTH}")
            open_groups.append(inner)
        elif wire_type == END_GROUP:
            if inner != open_groups[-1]:
                raise MalformedManifest(
                    f"group {open_groups[-1]} closed as group {inner} at byte {source.offset}"
                )
            open_groups.pop()
        else:
            _skip(source, inner, wire_type)


def signed64(value: int) -> int:
    """A varint read as int64 (two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def signed32(value: int) -> int:
    """A varint read as int32: the low 32 bits, as Go's protobuf decoder does."""
    low = value & 0xFFFFFFFF
    return low - (1 << 32) if low >= 1 << 31 else low
