"""Reading a release archive (.tgz or .zip) member by member, once, streaming, handing each
member to the rules (member_rules.py) before anything may write it.

What a format lets an archive make its reader do before the member is even seen is refused
here: GNU and pax sparse files (a 200-byte archive describing 10 GiB), extended headers
longer than an official archive's, zip central directories larger than a handful of members
need, and decompressed tar streams longer than :data:`MAX_TOTAL_BYTES` allows. The same read
serves the check at fetch time (nothing written) and extraction (every member handed on as it
streams by).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from typing import IO, Any, BinaryIO

from crdb_archive.binaries.member_rules import (
    MAX_MEMBERS,
    MAX_TOTAL_BYTES,
    ArchiveRefusal,
    Member,
    MemberKind,
    ReleaseLayout,
    Rules,
    expected_top,
    member_path,
    too_many,
)
from crdb_archive.hashing import CHUNK_SIZE

# Long names and pax records of an official archive are a few hundred bytes; tarfile reads
# each whole into memory, so a larger one is refused before it is read.
MAX_HEADER_BYTES = 64 << 10
# The tar stream inside the gzip: the members' data plus their headers and padding. Bounds
# the decompression of junk after the end-of-archive marker too.
_MAX_TAR_STREAM = MAX_TOTAL_BYTES + (16 << 20)
# A download larger than this cannot be a release archive: compression does not make an
# archive larger than what it unpacks to, give or take its headers.
MAX_ARCHIVE_BYTES = MAX_TOTAL_BYTES + (16 << 20)
# An official zip's central directory is a few hundred bytes; zipfile reads it whole.
_MAX_ZIP_DIRECTORY = 1 << 20

_ZIP_END = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")
_MAX_MTIME = 1 << 32  # anything outside [0, 2**32) is not a real build time


# Called with each member as it streams by, and a stream of its data for a file member.
MemberVisitor = Callable[[Member, IO[bytes] | None], None]


def read_release_archive(
    handle: BinaryIO, file_name: str, *, visit: MemberVisitor | None = None,
    expect: tuple[Member, ...] | None = None,
) -> ReleaseLayout:
    """Read the archive in ``handle`` (named ``file_name``) to its end, once, applying every
    rule to each member before ``visit`` sees it.

    ``expect``: the members an earlier read found; any difference is refused, so that what is
    written is what was checked. Raises ArchiveRefusal, and OSError when ``handle`` fails.
    """
    top = expected_top(file_name)
    rules = Rules(top, expect)
    if file_name.endswith(".zip"):
        sha256 = _read_zip(handle, rules, visit)
    else:
        sha256 = _read_tgz(handle, rules, visit)
    return rules.finish(sha256)


# --- .tgz --------------------------------------------------------------------------------------


class _HashingReader:
    """The archive's bytes as gzip reads them, hashed on the way."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        chunk = self._raw.read(size)
        self.sha256.update(chunk)
        return chunk

    def seek(self, offset: int, /) -> object:
        # Only a rewind would seek, and nothing here rewinds: one pass, start to end.
        raise OSError("the archive is read once, from start to end")


class _BoundedReader:
    """The decompressed tar stream, refused past ``limit`` bytes."""

    def __init__(self, source: gzip.GzipFile, limit: int) -> None:
        self._source = source
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        chunk = self._source.read(size if size >= 0 else CHUNK_SIZE)
        self._left -= len(chunk)
        if self._left < 0:
            raise ArchiveRefusal(
                f"unpacks to more than {_MAX_TAR_STREAM >> 20} MiB of tar data; an official "
                "release archive is a few hundred MB", unsafe=True)
        return chunk


_EXTENDED_HEADERS = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                     tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


class _GuardedTarInfo(tarfile.TarInfo):
    """Refuses what tarfile would otherwise read whole or expand before we see the member.

    These hooks are tarfile's own (unchanged since Python 2); they run as each header is read.
    """

    def _proc_member(self, tar: tarfile.TarFile) -> Any:
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _sparse(self.name)
        if self.type in _EXTENDED_HEADERS and self.size > MAX_HEADER_BYTES:
            raise ArchiveRefusal(
                f"has a {self.size}-byte extended header (long name or pax record); official "
                "ones are a few hundred bytes", unsafe=True)
        return super()._proc_member(tar)  # type: ignore[misc]

    # GNU sparse files in pax form (formats 0.0, 0.1 and 1.0): refused before their maps are
    # read, because a 200-byte archive can describe a 10 GiB file this way.
    def _proc_gnusparse_00(self, next: tarfile.TarInfo, *args: object) -> None:
        raise _sparse(next.name)

    def _proc_gnusparse_01(self, next: tarfile.TarInfo, *args: object) -> None:
        raise _sparse(next.name)

    def _proc_gnusparse_10(self, next: tarfile.TarInfo, *args: object) -> None:
        raise _sparse(next.name)


def _sparse(name: str) -> ArchiveRefusal:
    return ArchiveRefusal(f"member {name!r} is a sparse file; official release archives "
                          "have none", unsafe=True)


def _read_tgz(handle: BinaryIO, rules: Rules, visit: MemberVisitor | None) -> str:
    hashing = _HashingReader(handle)
    try:
        with gzip.GzipFile(fileobj=hashing, mode="rb") as unzipped:
            stream = _BoundedReader(unzipped, _MAX_TAR_STREAM)
            with tarfile.open(fileobj=stream, mode="r|",  # type: ignore[call-overload]
                              tarinfo=_GuardedTarInfo) as tar:
                for info in tar:
                    member = _tar_member(info)
                    rules.admit(member)
                    if visit is not None:
                        visit(member, tar.extractfile(info) if member.kind == "file" else None)
            # gzip checks its CRC only at the end of the stream, after tar's end marker.
            while stream.read(CHUNK_SIZE):
                pass
    except (tarfile.TarError, zlib.error, EOFError, gzip.BadGzipFile) as error:
        raise ArchiveRefusal(f"is not a readable archive (.tgz): {error}", unsafe=False) from None
    except RecursionError:
        raise ArchiveRefusal("is not a readable archive (.tgz): its headers chain without end",
                             unsafe=True) from None
    while hashing.read(CHUNK_SIZE):
        pass
    return hashing.sha256.hexdigest()


def _tar_member(info: tarfile.TarInfo) -> Member:
    path = member_path(info.name)
    kind: MemberKind
    if info.issparse():
        raise _sparse(info.name)
    if info.isdir():
        kind = "dir"
    elif info.isreg():
        kind = "file"
    elif info.issym():
        kind = "symlink"
    elif info.islnk():
        kind = "hardlink"
    else:
        raise ArchiveRefusal(f"member {info.name!r} is a device or special file", unsafe=True)
    if info.size < 0:
        raise ArchiveRefusal(f"member {info.name!r} has a negative size", unsafe=True)
    return Member(path, kind, info.mode, _mtime(info.mtime),
                  info.size if kind == "file" else 0,
                  info.linkname if kind in ("symlink", "hardlink") else None)


# --- .zip --------------------------------------------------------------------------------------


def _read_zip(handle: BinaryIO, rules: Rules, visit: MemberVisitor | None) -> str:
    digest = hashlib.sha256()
    handle.seek(0)
    while chunk := handle.read(CHUNK_SIZE):
        digest.update(chunk)
    _check_zip_directory(handle)
    handle.seek(0)
    try:
        with zipfile.ZipFile(handle) as archive:
            for info in archive.infolist():
                member = _zip_member(info)
                rules.admit(member)
                if member.kind != "file":
                    if visit is not None:
                        visit(member, None)
                    continue
                # Read to the end even when nothing is written: that is where the CRC is
                # checked.
                with archive.open(info) as data:
                    if visit is not None:
                        visit(member, data)
                    while data.read(CHUNK_SIZE):
                        pass
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
        raise ArchiveRefusal(f"is not a readable archive (.zip): {error}", unsafe=False) from None
    return digest.hexdigest()


def _check_zip_directory(handle: BinaryIO) -> None:
    """Refuse a zip whose central directory is larger than an official one could be, from
    its end record (APPNOTE 4.3.16), before zipfile reads that directory into memory."""
    size = handle.seek(0, 2)
    tail_size = min(size, _ZIP_END.size + 0xFFFF)
    handle.seek(size - tail_size)
    tail = handle.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _ZIP_END.size:
        raise ArchiveRefusal("is not a readable archive (.zip): no end of central directory",
                             unsafe=False)
    _, _, _, _, entries, directory_size, _, _ = _ZIP_END.unpack_from(tail, at)
    locator_at = at - _ZIP64_LOCATOR.size
    if locator_at >= 0 and tail[locator_at:locator_at + 4] == b"PK\x06\x07":
        _, _, end64_offset, _ = _ZIP64_LOCATOR.unpack_from(tail, locator_at)
        handle.seek(end64_offset)
        record = handle.read(_ZIP64_END.size)
        if len(record) == _ZIP64_END.size and record[:4] == b"PK\x06\x06":
            fields = _ZIP64_END.unpack(record)
            entries, directory_size = fields[7], fields[8]
    if entries > MAX_MEMBERS:
        raise too_many(entries)
    if directory_size > _MAX_ZIP_DIRECTORY:
        raise ArchiveRefusal(f"has a {directory_size}-byte central directory; an official "
                             "release archive's is a few hundred bytes", unsafe=True)


def _zip_member(info: zipfile.ZipInfo) -> Member:
    path = member_path(info.filename)
    if info.flag_bits & 0x1:
        raise ArchiveRefusal(f"member {info.filename!r} is encrypted", unsafe=False)
    mode = info.external_attr >> 16 if info.create_system == 3 else 0  # 3: made on Unix
    file_type = stat.S_IFMT(mode)
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ArchiveRefusal(f"member {info.filename!r} is a link or special file; release "
                             "zip archives hold only files and folders", unsafe=True)
    kind: MemberKind = "dir" if info.is_dir() else "file"
    try:
        mtime = int(dt.datetime(*info.date_time).timestamp())
    except (ValueError, OverflowError):
        mtime = 0
    return Member(path, kind, mode & 0o7777 or 0o644, _mtime(mtime),
                  info.file_size if kind == "file" else 0, None)


def _mtime(value: float) -> int:
    return int(value) if 0 <= value < _MAX_MTIME else 0
