"""A strict, streaming reader of bundle tars: what a bundle tar holds, and nothing else.

Python's tarfile, like most tar readers, is lenient by design: it skips what it cannot read
and stops at the first zero block, ignoring what follows. A bundle tar is read strictly
instead, front to back, once:

- every header is a POSIX ustar header (or GNU tar's variant of it), its checksum right and
  its numeric fields well formed;
- pax extended headers (``x``) hold records exactly as POSIX.1-2001 specifies them
  (``"<length> <keyword>=<value>\\n"``), UTF-8 paths, decimal sizes; GNU long names (``L``)
  are read too, since ``tar cf`` writes them;
- member types are regular files and directories; links and devices are yielded as
  ``other`` for the caller to report; global headers, sparse and multi-volume members are not
  of a bundle and end the read;
- the archive ends with two zero blocks, and nothing but zeros follows them.

Damage raises :class:`TarDamaged` (a DamagedBundle, exit 1) saying where and what.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Literal

from crdb_archive.errors import DamagedBundle
from crdb_archive.text import exact

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
MAX_EXTENDED = 1 << 20  # a pax header or GNU long name larger than this is not ours
_SKIP_CHUNK = 1 << 20
_READ_TO_SKIP = 64 << 10
_LOW_BYTES = bytes(range(128))

_POSIX_MAGIC = b"ustar\x0000"
_GNU_MAGIC = b"ustar  \x00"
_OCTAL = re.compile(rb" *([0-7]*)[ \x00]*")
_DECIMAL = re.compile(rb"(0|[1-9][0-9]{0,19})")
_REGULAR = (b"0", b"\x00")
_OTHER = (b"1", b"2", b"3", b"4", b"6")  # links, devices, FIFOs: reported, never followed
_TYPE_NAMES = {b"1": "hard link", b"2": "symbolic link", b"3": "character device",
               b"4": "block device", b"6": "FIFO"}

EntryKind = Literal["file", "dir", "other"]
DamageKind = Literal["size", "unexpected"]


class TarDamaged(DamagedBundle):
    """The tar breaks the rules of a bundle tar; ``kind`` is the verifier's problem kind and
    ``complete`` whether every member had been read before the damage."""

    def __init__(self, where: str, kind: DamageKind, detail: str, *, complete: bool) -> None:
        super().__init__(f"{where}: {detail}")
        self.where = where
        self.kind: DamageKind = kind
        self.detail = detail
        self.complete = complete


@dataclass(frozen=True)
class TarEntry:
    name: str  # as in the tar, without a leading "./" or trailing "/"
    kind: EntryKind
    size: int
    offset: int  # where its data starts in the tar
    type_name: str = "regular file"


def looks_like_tar(head: bytes) -> bool:
    """Whether ``head`` (the first block of a file) is a ustar header with a right checksum."""
    if len(head) < BLOCK:
        return False
    block = head[:BLOCK]
    return block[257:265] in (_POSIX_MAGIC, _GNU_MAGIC) and _checksum_ok(block)


def _checksum_ok(block: bytes) -> bool:
    match = _OCTAL.fullmatch(block[148:156])
    if match is None or not match.group(1):
        return False
    stored = int(match.group(1), 8)
    others = block[:148] + block[156:]
    unsigned = sum(others) + 8 * 32
    # Old tars summed the bytes as signed chars: each byte above 127 counts 256 less.
    signed = unsigned - 256 * len(others.translate(None, _LOW_BYTES))
    return stored in (unsigned, signed)


@functools.lru_cache(maxsize=4096)
def _octal(field: bytes) -> int | None:
    """A numeric header field in octal (leading spaces, trailing spaces or NULs), or None.
    Cached: most headers of a bundle tar repeat the same mode, owner and time fields."""
    match = _OCTAL.fullmatch(field)
    if match is None or field[:1] == b"\xff":
        return None
    return int(match.group(1) or b"0", 8)


class StrictTar:
    """Entries of a tar read from ``source``, front to back.

    After an entry is yielded, its data may be read through :meth:`open` until the iteration
    moves on; what is not read is skipped (by seeking when the source can).
    """

    def __init__(self, source: IO[bytes], where: str, *, seekable: bool = False) -> None:
        self._source = source
        self._where = where
        self._seekable = seekable
        self._position = 0
        self._data_left = 0  # data bytes of the current entry not yet consumed
        self._padding = 0
        self._complete = False

    # --- reading the source --------------------------------------------------------------

    def _damage(self, kind: DamageKind, detail: str) -> TarDamaged:
        return TarDamaged(self._where, kind, detail, complete=self._complete)

    def _read(self, count: int) -> bytes:
        """Up to ``count`` bytes, fewer only at the end of the source."""
        pieces: list[bytes] = []
        wanted = count
        while wanted > 0:
            piece = self._source.read(wanted)
            if not piece:
                break
            pieces.append(piece)
            wanted -= len(piece)
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self._position += len(data)
        return data

    def _read_exact(self, count: int, inside: str) -> bytes:
        data = self._read(count)
        if len(data) < count:
            raise self._damage("size", f"the tar ends at byte {self._position}, inside "
                                       f"{inside}: it is cut short")
        return data

    def _skip(self, count: int, inside: str) -> None:
        if count <= 0:
            return
        if self._seekable:
            # A short skip is read: a seek would drop the read buffer, and the next header
            # is usually in it. Past the end, the position moves on as a seek moves it.
            skipped = len(self._source.read(count)) if count <= _READ_TO_SKIP else 0
            if skipped < count:
                self._source.seek(count - skipped, io.SEEK_CUR)
            self._position += count
            return
        while count > 0:
            piece = self._read(min(count, _SKIP_CHUNK))
            if not piece:
                raise self._damage("size", f"the tar ends at byte {self._position}, inside "
                                           f"{inside}: it is cut short")
            count -= len(piece)

    def _finish_data(self, inside: str) -> None:
        self._skip(self._data_left + self._padding, inside)
        self._data_left = self._padding = 0

    def read_data(self, count: int, inside: str) -> bytes:
        """Up to ``count`` bytes of the current entry's data; b"" at its end."""
        count = min(count, self._data_left)
        if count <= 0:
            return b""
        data = self._read(count)
        if not data:
            raise self._damage("size", f"the tar ends at byte {self._position}, inside "
                                       f"{inside}: it is cut short")
        self._data_left -= len(data)
        return data

    def open(self, entry: TarEntry) -> IO[bytes]:
        """A reader of the current entry's data (valid until the iteration moves on)."""
        return io.BufferedReader(_EntryData(self, entry.name), buffer_size=1 << 16)

    # --- headers -------------------------------------------------------------------------

    def entries(self) -> Iterator[TarEntry]:
        """Every member, in order; raises TarDamaged at the first damage."""
        pax: dict[str, bytes] | None = None
        long_name: bytes | None = None
        previous = "the start of the tar"
        while True:
            self._finish_data(previous)
            start = self._position
            block = self._read(BLOCK)
            if not block:
                detail = ("the tar is empty (0 bytes)" if start == 0 else
                          f"it ends at byte {start} without its two end-of-archive blocks: "
                          "it is cut short")
                raise self._damage("size", detail)
            if len(block) < BLOCK:
                raise self._damage("size", f"the tar ends at byte {self._position}, inside a "
                                           "header: it is cut short")
            if block == ZERO_BLOCK:
                if pax is not None or long_name is not None:
                    raise self._damage("unexpected", f"an extended header at byte {start} "
                                                     "has no member after it")
                self._complete = True
                self._end(start)
                return
            kind, size = self._header(block, start)
            if kind == b"x":
                if pax is not None:
                    raise self._damage("unexpected", f"two pax headers in a row at byte {start}")
                pax = _pax_records(self._extended(size, start), self._damage, start)
                previous = f"the pax header at byte {start}"
                continue
            if kind in (b"L", b"K"):
                data = self._extended(size, start)
                if kind == b"L":
                    long_name = data.split(b"\x00", 1)[0]
                previous = f"the GNU long name at byte {start}"
                continue
            entry = self._entry(block, kind, size, start, pax, long_name)
            pax = long_name = None
            self._data_left = entry.size
            self._padding = -entry.size % BLOCK
            previous = entry.name
            yield entry

    def _header(self, block: bytes, start: int) -> tuple[bytes, int]:
        magic = block[257:265]
        if magic not in (_POSIX_MAGIC, _GNU_MAGIC):
            raise self._damage("unexpected", f"the block at byte {start} is not a POSIX tar "
                                             "header")
        if not _checksum_ok(block):
            raise self._damage("unexpected", f"the header at byte {start} has a wrong checksum")
        for field_start, field_end in ((100, 108), (108, 116), (116, 124), (136, 148)):
            self._number(block[field_start:field_end], start)
        kind = block[156:157]
        size = self._number(block[124:136], start)
        if kind in (b"g", b"S", b"M", b"V", b"N", b"D", b"7"):
            raise self._damage("unexpected", f"the member at byte {start} is of type "
                                             f"{kind.decode('latin-1')!r}, which a bundle tar "
                                             "does not hold")
        if kind not in (*_REGULAR, b"5", b"x", b"L", b"K", *_OTHER):
            raise self._damage("unexpected", f"the member at byte {start} has an unknown type")
        return kind, size

    def _number(self, field: bytes, start: int) -> int:
        if field[:1] == b"\x80":  # GNU base-256, for sizes of 8 GiB and more
            return int.from_bytes(field[1:], "big")
        value = _octal(field)
        if value is None:
            raise self._damage("unexpected", f"the header at byte {start} has a malformed "
                                             "number")
        return value

    def _extended(self, size: int, start: int) -> bytes:
        if size > MAX_EXTENDED:
            raise self._damage("unexpected", f"the extended header at byte {start} is "
                                             f"{exact(size)} long")
        data = self._read_exact(size, f"the extended header at byte {start}")
        self._skip(-size % BLOCK, f"the extended header at byte {start}")
        return data

    def _entry(self, block: bytes, kind: bytes, size: int, start: int,
               pax: dict[str, bytes] | None, long_name: bytes | None) -> TarEntry:
        raw = block[:100].split(b"\x00", 1)[0]
        prefix = block[345:500].split(b"\x00", 1)[0]
        if block[257:265] == _POSIX_MAGIC and prefix:
            raw = prefix + b"/" + raw
        if long_name is not None:
            raw = long_name
        if pax is not None:
            raw, size = self._apply_pax(pax, raw, size, start)
        name = self._name(raw, start)
        if kind in _REGULAR:
            return TarEntry(name, "file", size, self._position)
        if size:
            raise self._damage("unexpected", f"the {'directory' if kind == b'5' else 'link'} "
                                             f"{name} carries data")
        if kind == b"5":
            return TarEntry(name, "dir", 0, self._position, "directory")
        return TarEntry(name, "other", 0, self._position, _TYPE_NAMES[kind])

    def _apply_pax(self, pax: dict[str, bytes], raw: bytes, size: int, start: int
                   ) -> tuple[bytes, int]:
        """The name and size a pax header gives the member after it."""
        if pax.get("hdrcharset") == b"BINARY" or any(k.startswith("GNU.sparse") for k in pax):
            raise self._damage("unexpected", f"the member at byte {start} uses pax "
                                             "records a bundle tar does not hold")
        if "size" in pax:
            match = _DECIMAL.fullmatch(pax["size"])
            if match is None:
                raise self._damage("unexpected", f"the pax size of the member at byte "
                                                 f"{start} is not a decimal number")
            size = int(match.group(1))
        return pax.get("path", raw), size

    def _name(self, raw: bytes, start: int) -> str:
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self._damage("unexpected", f"the name of the member at byte {start} is not "
                                             "UTF-8") from None
        if not name or "\x00" in name:
            raise self._damage("unexpected", f"the member at byte {start} has no name")
        return name.removeprefix("./").rstrip("/")

    def _end(self, start: int) -> None:
        second = self._read(BLOCK)
        if len(second) < BLOCK:
            raise self._damage("size", f"the tar ends at byte {self._position}, inside its "
                                       "end-of-archive blocks: it is cut short")
        if second != ZERO_BLOCK:
            raise self._damage("unexpected", f"the end-of-archive block at byte {start + BLOCK}"
                                             " is not zeros")
        while chunk := self._read(_SKIP_CHUNK):
            if chunk.count(0) != len(chunk):
                offset = self._position - len(chunk) + next(
                    i for i, b in enumerate(chunk) if b)
                raise self._damage("unexpected", f"data after the end of the archive, at byte "
                                                 f"{offset}")


def _pax_records(data: bytes, damage: Callable[[DamageKind, str], TarDamaged], start: int
                 ) -> dict[str, bytes]:
    """The records of a pax extended header, exactly as POSIX.1-2001 lays them out."""
    records: dict[str, bytes] = {}
    position = 0
    while position < len(data):
        space = data.find(b" ", position, position + 21)
        length_text = data[position:space] if space > position else b""
        if not _DECIMAL.fullmatch(length_text):
            raise damage("unexpected", f"the pax header at byte {start} has a "
                                             "record without a length")
        end = position + int(length_text)
        if end > len(data) or end <= space + 1 or data[end - 1:end] != b"\n":
            raise damage("unexpected", f"the pax header at byte {start} has a "
                                             "record that does not end with a newline where "
                                             "its length says")
        keyword, equals, value = data[space + 1:end - 1].partition(b"=")
        if not equals or not keyword:
            raise damage("unexpected", f"the pax header at byte {start} has a "
                                             "record without 'keyword=value'")
        try:
            records[keyword.decode("utf-8")] = value
        except UnicodeDecodeError:
            raise damage("unexpected", f"the pax header at byte {start} has a "
                                             "keyword that is not UTF-8") from None
        position = end
    return records


class _EntryData(io.RawIOBase):
    def __init__(self, tar: StrictTar, name: str) -> None:
        super().__init__()
        self._tar = tar
        self._name = name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self._tar.read_data(len(view), self._name)
        view[:len(data)] = data
        return len(data)
