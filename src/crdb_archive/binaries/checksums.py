"""Published ``.sha256sum`` files: one line, ``<64 hex>  <archive file name>\\n`` (DESIGN 2.2)."""

from __future__ import annotations

import re

import requests

from crdb_archive.binaries.mirror import Mirror
from crdb_archive.binaries.transfer import DEFAULT_POLICY, NetworkPolicy, download
from crdb_archive.errors import MalformedChecksumFile
from crdb_archive.text import size

CHECKSUM_SUFFIX = ".sha256sum"

# The official files are about 100 bytes; anything much larger is not one.
MAX_CHECKSUM_FILE_SIZE = 4096

_LINE = re.compile(rb"([0-9a-fA-F]{64})  ([^\r\n]+)\n?")


def checksum_file_name(archive: str) -> str:
    """The name of the checksum file published next to ``archive``."""
    return archive + CHECKSUM_SUFFIX


def parse_checksum_file(content: bytes, expected_name: str) -> str:
    """The SHA-256 (lower-case hex) that a published checksum file states for its archive.

    The file must be exactly one line: 64 hex digits, two spaces, ``expected_name``, and
    (optionally) a newline. Raises MalformedChecksumFile for anything else, a file naming
    another archive included.
    """
    shown = checksum_file_name(expected_name)
    match = _LINE.fullmatch(content)
    if match is None:
        raise MalformedChecksumFile(
            f"{shown} is not a published checksum file: expected one line "
            f"'<64 hex digits>  {expected_name}'"
        )
    named = match[2].decode("utf-8", errors="replace")
    if named != expected_name:
        raise MalformedChecksumFile(
            f"{shown} vouches for {named!r}, not for {expected_name}"
        )
    return match[1].decode("ascii").lower()


class _Buffer:
    """A bounded in-memory sink for a checksum file."""

    def __init__(self, shown: str) -> None:
        self._shown = shown
        self.data = bytearray()

    def write(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > MAX_CHECKSUM_FILE_SIZE:
            raise MalformedChecksumFile(
                f"{self._shown} is larger than {size(MAX_CHECKSUM_FILE_SIZE)}: not a checksum "
                "file"
            )

    def restart(self) -> None:
        self.data.clear()


def download_checksum_file(
    session: requests.Session,
    mirror: Mirror,
    archive: str,
    *,
    policy: NetworkPolicy = DEFAULT_POLICY,
) -> bytes:
    """The checksum file of ``archive`` as the mirror serves it, byte for byte.

    Raises NotFoundOnMirror, NetworkError or StorageError as :func:`transfer.download` does,
    and MalformedChecksumFile for a file too large to be one.
    """
    name = checksum_file_name(archive)
    buffer = _Buffer(mirror.display_url(name))
    download(session, mirror, name, buffer, policy=policy)
    return bytes(buffer.data)
