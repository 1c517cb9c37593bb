"""Release archives for the tests: the stand-ins of :mod:`crdb_archive.demo.release_archives`
(the official layout, generated deterministically), and hostile archives beside them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

from crdb_archive.demo.release_archives import (
    DEFAULT_PADDING,
    FIXED_MTIME,
    SUFFIXES,
    ReleaseFiles,
    build_archive,
    cockroach_script,
    file_name,
    padding,
    publish,
    top_folder,
    write_checksum_file,
)

__all__ = [
    "DEFAULT_PADDING", "FIXED_MTIME", "SUFFIXES", "ReleaseFiles", "build_archive",
    "cockroach_script", "file_name", "many_members", "padding", "pax_sparse_bomb", "publish",
    "publish_bytes", "sparse_bomb", "top_folder", "write_checksum_file",
]


# --- hostile archives: small files that unpack to far more than an official archive -----------


def _gnu_header(name: str, *, size: int, mode: int = 0o644) -> bytearray:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = FIXED_MTIME
    return bytearray(info.tobuf(tarfile.GNU_FORMAT))


def _seal(header: bytearray) -> bytes:
    """Recompute a hand-edited header's checksum (POSIX: the sum of its bytes, the checksum
    field counted as spaces)."""
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def _gzip(parts: list[bytes]) -> bytes:
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        for part in parts:
            gz.write(part)
        gz.write(b"\0" * 1024)  # end-of-archive marker
    return raw.getvalue()


def sparse_bomb(path: Path, top: str, *, real_size: int = 10 << 30) -> Path:
    """A .tgz of a few hundred bytes whose ``cockroach`` is a GNU sparse file (type 'S') of
    ``real_size`` bytes: one byte of data at its very end, the rest a hole that tar fills."""
    header = _gnu_header(f"{top}/cockroach", size=1, mode=0o755)
    header[156:157] = b"S"
    # The old GNU sparse map (GNU tar's tar.h): entries of offset and size from byte 386,
    # then isextended (482) and the file's real size (483), 12-digit octal numbers.
    header[386:398] = b"%012o" % (real_size - 1)
    header[398:410] = b"%012o" % 1
    header[483:495] = b"%012o" % real_size
    path.write_bytes(_gzip([_seal(header), b"X" + b"\0" * 511]))
    return path


def pax_sparse_bomb(path: Path, top: str, *, real_size: int = 10 << 30) -> Path:
    """The same bomb in the pax form of GNU sparse files (format 1.0): a map of one byte at
    the end, written in the member's data, and GNU.sparse.realsize in its pax header."""
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, tarfile.open(
        fileobj=gz, mode="w", format=tarfile.PAX_FORMAT
    ) as tar:
        data = f"1\n{real_size - 1}\n1\n".encode().ljust(512, b"\0") + b"X"
        info = tarfile.TarInfo(f"{top}/GNUSparseFile.0/cockroach")
        info.size = len(data)
        info.mode = 0o755
        info.mtime = FIXED_MTIME
        info.pax_headers = {
            "GNU.sparse.major": "1", "GNU.sparse.minor": "0",
            "GNU.sparse.name": f"{top}/cockroach", "GNU.sparse.realsize": str(real_size),
        }
        tar.addfile(info, io.BytesIO(data))
    path.write_bytes(raw.getvalue())
    return path


def many_members(path: Path, top: str, *, count: int = 200_000) -> Path:
    """A .tgz of about 1.9 MB (for 200,000) holding ``cockroach`` and ``count`` empty files."""
    first = bytes(_gnu_header(f"{top}/cockroach", size=0, mode=0o755))
    header = _gnu_header(f"{top}/f000000", size=0)
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=1) as gz:
        gz.write(first)
        for i in range(count):
            name = f"{top}/f{i:06d}".encode()
            header[0:len(name)] = name
            gz.write(_seal(header))
        gz.write(b"\0" * 1024)
    path.write_bytes(raw.getvalue())
    return path


def publish_bytes(directory: Path, name: str, content: bytes) -> str:
    """Put ``content`` on a mirror under ``name`` with a matching published checksum file, as
    a mirror that vouches for whatever it serves would; returns its SHA-256."""
    path = directory / name
    path.write_bytes(content)
    sha256 = hashlib.sha256(content).hexdigest()
    write_checksum_file(path, sha256)
    return sha256
