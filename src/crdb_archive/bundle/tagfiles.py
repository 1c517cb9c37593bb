"""Tag files of format 1 read strictly, in bounded time and memory.

What a tag file may be is part of the format (bundle-format.md, 4.8): small ones are read
whole up to a size limit, the manifests and payload-sizes.txt are read line by line however
large, every line ends in LF alone, numbers are ASCII digits of bounded length, JSON has a
bounded nesting depth. Whatever breaks these rules is reported as a problem with the file
(damage), never raised from deep inside a parser.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import itertools
import json
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import IO, Any

from crdb_archive import text
from crdb_archive.bundle import layout
from crdb_archive.text import exact

KiB = 1 << 10
MiB = 1 << 20

# Read whole: a generous multiple of what a writer of format 1 makes, and a bound on memory.
READ_WHOLE = {
    layout.BAGIT_TXT: 4 * KiB,  # exactly 55 bytes
    layout.BAG_INFO: 1 * MiB,  # about 1 KiB
    layout.DESCRIPTION: 8 * MiB,  # a few KiB; grows with incrementals and warnings
    layout.RESTORE_MD: 4 * MiB,  # a few KiB of prose
    layout.TAGMANIFEST_SHA256: 64 * KiB,  # 7 lines
    layout.SIGNATURE: 16 * KiB,  # about 300 bytes: one Ed25519 SSHSIG, armored
}
# Read line by line: as long as the payload needs, each line bounded.
STREAMED = (layout.MANIFEST_SHA256, layout.MANIFEST_BLAKE3, layout.PAYLOAD_SIZES)
MAX_LINE = 64 * KiB
MAX_DIGITS = 20  # 2**64 has 20 digits
MAX_JSON_DEPTH = 32
MAX_NUMBER_TOKEN = 40
# Problems listed per tag file; beyond this they are counted (a garbage manifest of a million
# lines is one damaged file, not a million messages).
MAX_LISTED_ERRORS = 100

# Small enough that a thread walking the payload beside the reading gets its turn often: the
# interpreter lock is held through each chunk's regular expressions.
_CHUNK = 64 * KiB
_MANIFEST_LINE = re.compile(rb"([0-9a-f]{64})  ([^\r\n]+)")
_SIZES_LINE = re.compile(rb"(0|[1-9][0-9]{0,19})  ([^\r\n]+)")
# Whole batches of lines: payload paths with no character to decode or refuse, ...
_MANIFEST_BATCH = re.compile(rb"(?:[0-9a-f]{64}  data/[^\r\n%\\\x00]+\n)+")
_SIZES_BATCH = re.compile(rb"(?:(?:0|[1-9][0-9]{0,19})  data/[^\r\n%\\\x00]+\n)+")
# ... and no empty, "." or ".." part (is_safe_relative), ...
_UNSAFE_IN_BATCH = re.compile(rb"/\.{0,2}(?:/|\n)")
# ... then split into values and paths.
_BATCH_LINE = re.compile(rb"([0-9a-f]+)  ([^\n]+)\n")
_LABEL_LINE = re.compile(r"([^\s:][^:]*):[ \t](.*)")
_OXUM = re.compile(r"(0|[1-9][0-9]{0,19})\.(0|[1-9][0-9]{0,19})")
# A JSON string, its closing quote optional: an unterminated one then runs to the end once,
# instead of the scan starting again at every later quote (quadratic).
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class TagFileError(ValueError):
    """A tag file that breaks the rules of format 1; the message names the rule."""


def limit_of(name: str) -> int:
    """How large the tag file ``name`` may be when it is read whole."""
    return READ_WHOLE[name]


def too_large(name: str, size: int) -> str:
    return (f"{exact(size)}: larger than the {text.size(limit_of(name))} a {name} of format 1 "
            "may be")


# --- lines --------------------------------------------------------------------------------------


@dataclass
class LineReader:
    """Split a stream into LF-terminated lines, digesting every byte on the way.

    Lines are yielded as bytes without their LF; problems (a CR LF ending, an overlong line,
    no final LF) go to ``errors`` and end the parse, not the digest.
    """

    name: str
    errors: list[str] = field(default_factory=list)
    sha256: str = ""
    size: int = 0

    def lines(self, stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
        for first, batch in self.line_batches(stream):
            for offset, line in enumerate(batch):
                yield first + offset, line

    def line_batches(self, stream: IO[bytes]) -> Iterator[tuple[int, list[bytes]]]:
        """The lines in batches (one per chunk read), each with the number of its first line.

        A chunk is checked as a whole where it can be (no CR LF in it, no line too long), so
        that a manifest of 100k lines is not checked line by line in Python.
        """
        digest = hashlib.sha256()
        carry = b""
        number = 0
        parsing = True
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
            self.size += len(chunk)
            if not parsing:
                continue
            data = carry + chunk
            pieces = data.split(b"\n")
            carry = pieces.pop()
            good = self._good_lines(number, pieces, data)
            if good:
                yield number + 1, pieces if good == len(pieces) else pieces[:good]
            number += good
            parsing = good == len(pieces)
            if parsing and len(carry) > MAX_LINE:
                self.errors.append(f"line {number + 1} is longer than {text.size(MAX_LINE)}")
                parsing = False
            if not parsing:
                carry = b""
        self.sha256 = digest.hexdigest()
        if parsing and carry:
            self.errors.append(f"line {number + 1} does not end with a line feed")

    def _good_lines(self, number: int, pieces: list[bytes], data: bytes) -> int:
        """How many of ``pieces`` (lines from ``number + 1``) fit, before the first that does
        not. Every LF in ``data`` ends a line, so a line ends in CR exactly where it holds
        CR LF."""
        if not pieces or (b"\r\n" not in data and max(map(len, pieces)) <= MAX_LINE):
            return len(pieces)
        for offset, line in enumerate(pieces):
            if not self._fits(number + offset + 1, line):
                return offset
        return len(pieces)

    def _fits(self, number: int, line: bytes) -> bool:
        if len(line) > MAX_LINE:
            self.errors.append(f"line {number} is longer than {text.size(MAX_LINE)}")
            return False
        if line.endswith(b"\r"):
            self.errors.append(f"line {number} ends in CR LF: lines of format 1 tag files end "
                               "in LF alone")
            return False
        return True


def lines_of(content: bytes) -> Iterator[tuple[int, bytes]]:
    """Lines of a small tag file held whole; raises TagFileError on a bad ending."""
    reader = LineReader("")
    yield from reader.lines(io.BytesIO(content))
    if reader.errors:
        raise TagFileError(reader.errors[0])


# --- manifests and payload-sizes.txt ------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One line of a manifest (``value`` a 32-byte digest) or of payload-sizes.txt (a size)."""

    path: str
    value: bytes | int


@dataclass(frozen=True)
class EntryBatch:
    """Good lines of a manifest (``values`` their 32-byte digests, concatenated) or of
    payload-sizes.txt (``values`` the sizes), in file order."""

    paths: list[str]
    values: bytes | list[int]


class _EntryParser:
    """The checks of manifest lines, with the state that spans lines (the previous path, how
    many problems went unlisted)."""

    def __init__(self, name: str, errors: list[str]) -> None:
        self.sizes = name == layout.PAYLOAD_SIZES
        self.pattern = _SIZES_LINE if self.sizes else _MANIFEST_LINE
        self.shape = "<bytes>  <path>" if self.sizes else "<lowercase hex digest>  <path>"
        self.errors = errors
        self.previous: str | None = None
        self.unlisted = 0

    def problem(self, text: str) -> None:
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append(text)
        else:
            self.unlisted += 1

    def line(self, number: int, line: bytes) -> Entry | None:
        """The entry of one line, or None (its problem added)."""
        match = self.pattern.fullmatch(line)
        if match is None:
            self.problem(f"line {number} is not '{self.shape}'")
            return None
        try:
            path = layout.decode_path(match.group(2).decode("utf-8"))
        except UnicodeDecodeError:
            self.problem(f"line {number}: the path is not UTF-8")
            return None
        previous = self.previous
        if previous is not None and path <= previous:
            self.problem(f"line {number} lists {path} twice" if path == previous else
                         f"line {number} is out of order: paths are sorted")
            return None
        self.previous = path
        if not path.startswith(layout.PAYLOAD_DIR + "/") or not layout.is_safe_relative(path):
            self.problem(f"line {number} lists {path!r}, which is not a payload path")
            return None
        value: bytes | int = (int(match.group(1)) if self.sizes
                              else bytes.fromhex(match.group(1).decode("ascii")))
        return Entry(path, value)

    def batch(self, first: int, lines: list[bytes]) -> EntryBatch:
        """The entries of consecutive lines, the first numbered ``first``."""
        fast = self._fast(b"\n".join(lines) + b"\n")
        if fast is not None:
            return fast
        entries = [e for e in (self.line(first + i, line) for i, line in enumerate(lines))
                   if e is not None]
        paths = [e.path for e in entries]
        if self.sizes:
            return EntryBatch(paths, [e.value for e in entries])  # type: ignore[misc]
        return EntryBatch(paths, b"".join(e.value for e in entries))  # type: ignore[misc]

    def _fast(self, text: bytes) -> EntryBatch | None:
        """The batch checked as a whole, when every line is plainly good: the right shape, a
        payload path with nothing to decode or refuse, UTF-8, in strictly ascending order
        (UTF-8 bytes sort as the text does). None sends it line by line."""
        if ((_SIZES_BATCH if self.sizes else _MANIFEST_BATCH).fullmatch(text) is None
                or _UNSAFE_IN_BATCH.search(text) is not None):
            return None
        values, raw_paths = zip(*_BATCH_LINE.findall(text), strict=True)
        try:
            paths = b"\n".join(raw_paths).decode("utf-8").split("\n")
        except UnicodeDecodeError:
            return None
        if self.previous is not None and paths[0] <= self.previous:
            return None
        if not all(map(operator.lt, paths, itertools.islice(paths, 1, None))):
            return None
        self.previous = paths[-1]
        if self.sizes:
            return EntryBatch(paths, list(map(int, values)))
        return EntryBatch(paths, binascii.unhexlify(b"".join(values)))

    def close(self) -> None:
        if self.unlisted:
            self.errors.append(f"{self.unlisted} more malformed lines")


def parse_entries(name: str, lines: Iterator[tuple[int, bytes]], errors: list[str]
                  ) -> Iterator[Entry]:
    """The entries of a manifest or of payload-sizes.txt, checked line by line.

    Malformed lines, paths out of order or listed twice, and paths that are not payload paths
    are added to ``errors``; the good lines are yielded.
    """
    parser = _EntryParser(name, errors)
    for number, line in lines:
        entry = parser.line(number, line)
        if entry is not None:
            yield entry
    parser.close()


def parse_entry_batches(name: str, batches: Iterator[tuple[int, list[bytes]]],
                        errors: list[str]) -> Iterator[EntryBatch]:
    """As :func:`parse_entries`, in batches of lines (from :meth:`LineReader.line_batches`):
    the same checks and problems, at a small cost per line when the lines are good."""
    parser = _EntryParser(name, errors)
    for first, lines in batches:
        batch = parser.batch(first, lines)
        if batch.paths:
            yield batch
    parser.close()


def parse_tag_manifest(content: bytes) -> tuple[dict[str, str], list[str]]:
    """tagmanifest-sha256.txt: ``{tag file: hex digest}`` and the problems found."""
    errors: list[str] = []
    listed: dict[str, str] = {}
    try:
        for number, line in lines_of(content):
            match = _MANIFEST_LINE.fullmatch(line)
            name = match.group(2).decode("utf-8", "replace") if match else ""
            if match is None or name not in layout.TAG_FILES:
                errors.append(f"line {number} is not '<lowercase hex digest>  <tag file>'")
            elif name in listed:
                errors.append(f"line {number} lists {name} twice")
            else:
                listed[name] = match.group(1).decode("ascii")
    except TagFileError as error:
        errors.append(str(error))
    return listed, errors


# --- bag-info.txt ---------------------------------------------------------------------------------


def parse_bag_info(content: bytes) -> dict[str, list[str]]:
    """``Label: value`` lines, continuation lines (leading space or tab) folded in, in linear
    time. Raises TagFileError for text that is not UTF-8 or a line of another shape."""
    tags: dict[str, list[str]] = {}
    parts: list[str] | None = None  # the value being built, folded at the end
    folded: list[tuple[str, list[str]]] = []
    for number, raw in lines_of(content):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise TagFileError(f"line {number} is not UTF-8 text") from None
        if line[:1] in (" ", "\t") and parts is not None:
            parts.append(line.strip())
            continue
        match = _LABEL_LINE.fullmatch(line)
        if match is None:
            raise TagFileError(f"line {number} is not 'Label: value'")
        parts = [match.group(2).strip()]
        folded.append((match.group(1), parts))
    for label, pieces in folded:
        tags.setdefault(label, []).append(" ".join(p for p in pieces if p))
    return tags


def parse_oxum(value: str) -> tuple[int, int]:
    """``<bytes>.<files>`` in ASCII digits; raises TagFileError."""
    match = _OXUM.fullmatch(value)
    if match is None:
        raise TagFileError(f"Payload-Oxum {value[:60]!r} is not '<bytes>.<files>' in at most "
                           f"{MAX_DIGITS} ASCII digits each")
    return int(match.group(1)), int(match.group(2))


# --- crdb-archive.json ------------------------------------------------------------------------


def load_json(content: bytes) -> Any:
    """Parse crdb-archive.json within the format's bounds.

    Raises TagFileError for text that is not UTF-8, nesting deeper than MAX_JSON_DEPTH,
    numbers longer than MAX_DIGITS digits, NaN or Infinity; json.JSONDecodeError when it is
    not JSON at all.
    """
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TagFileError(f"not UTF-8 text (byte {error.start})") from None
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    depth = max(accumulate(map(_DEPTH_STEP.__getitem__, brackets), initial=0))
    if depth > MAX_JSON_DEPTH:
        raise TagFileError(f"nested {depth} levels deep, deeper than the {MAX_JSON_DEPTH} "
                           "format 1 allows")
    return json.loads(text, parse_int=_bounded(int), parse_float=_bounded(float),
                      parse_constant=_no_constant)


def _bounded(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(token: str) -> Any:
        digits = len(token.lstrip("-"))
        if (convert is int and digits > MAX_DIGITS) or len(token) > MAX_NUMBER_TOKEN:
            raise TagFileError(f"a number of {digits} digits: format 1 allows {MAX_DIGITS}")
        return convert(token)

    return parse


def _no_constant(token: str) -> Any:
    raise TagFileError(f"{token} is not a JSON number")
