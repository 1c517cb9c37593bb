"""One read, many digests: SHA-256 (the BagIt and CockroachDB standard) and BLAKE3 (fast).

Everything streams in fixed-size chunks, so memory does not grow with file size.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import blake3

from crdb_archive.progress import ProgressCallback, ProgressEvent, no_progress

CHUNK_SIZE = 1 << 20

# Below this size a file is hashed on one thread; above it BLAKE3 spreads over cores.
_BLAKE3_THREADS_FROM = 16 << 20


@dataclass(frozen=True)
class Digests:
    """The digests and size of one stream of bytes."""

    size: int
    sha256: str
    blake3: str


class DigestWriter:
    """Computes both digests of everything passed to :meth:`update`."""

    def __init__(self, *, sha256: bool = True, size_hint: int | None = None) -> None:
        self._sha256 = hashlib.sha256() if sha256 else None
        threads = (
            blake3.blake3.AUTO
            if size_hint is not None and size_hint >= _BLAKE3_THREADS_FROM
            else 1
        )
        self._blake3 = blake3.blake3(max_threads=threads)
        self.size = 0

    def update(self, chunk: bytes | memoryview) -> None:
        if self._sha256 is not None:
            self._sha256.update(chunk)
        self._blake3.update(chunk)
        self.size += len(chunk)

    def digests(self) -> Digests:
        return Digests(
            size=self.size,
            sha256=self._sha256.hexdigest() if self._sha256 is not None else "",
            blake3=self._blake3.hexdigest(),
        )


def iter_chunks(stream: IO[bytes], chunk_size: int = CHUNK_SIZE) -> Iterable[bytes]:
    """Yield ``stream`` in chunks of at most ``chunk_size`` bytes until EOF."""
    while chunk := stream.read(chunk_size):
        yield chunk


def digest_stream(
    stream: IO[bytes],
    *,
    sha256: bool = True,
    size_hint: int | None = None,
    task: str = "",
    progress: ProgressCallback = no_progress,
) -> Digests:
    """Digest a binary stream to its end."""
    writer = DigestWriter(sha256=sha256, size_hint=size_hint)
    for chunk in iter_chunks(stream):
        writer.update(chunk)
        progress(ProgressEvent(task, writer.size, size_hint))
    return writer.digests()


def digest_file(
    path: Path,
    *,
    sha256: bool = True,
    task: str = "",
    progress: ProgressCallback = no_progress,
) -> Digests:
    """Digest a file; raises OSError as the file system does."""
    with path.open("rb") as stream:
        size = path.stat().st_size
        return digest_stream(
            stream, sha256=sha256, size_hint=size, task=task or path.name, progress=progress
        )


def same_digest(a: str, b: str) -> bool:
    """Compare two hex digests in constant time, ignoring case."""
    return hmac.compare_digest(a.lower().encode(), b.lower().encode())
