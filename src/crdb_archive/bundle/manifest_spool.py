"""The payload manifests, spooled to disk as files are written and sorted at the end.

A bundle of a million files must be written in flat memory: each file's manifest lines (its
SHA-256, BLAKE3 and size) go to files on disk as soon as the file is copied, not into a dict
held until the tag files are made. The manifests list paths sorted (bundle-format.md: by
path, which for UTF-8 text is the order of its bytes); the lines arrive in the payload's
order, which is nearly always sorted already (a backup's files are listed sorted, the release
archives follow under ``data/cockroach/``). So lines are kept in sorted *runs*: a small batch
at a time is sorted in memory and appended to the current run while it continues it, and a
new run starts only where the order breaks. One run is the manifests themselves; several are
merged, a bounded number of files open at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from crdb_archive.bundle import layout
from crdb_archive.errors import BadInput
from crdb_archive.hashing import Digests

# Lines sorted in memory at once, before they go to disk.
_BATCH_LINES = 4096
# Runs merged at once (three files open each).
_MERGE_FAN_IN = 32
_BUFFER = 1 << 20
# The three payload manifests, in the order of a run's files.
MANIFESTS = (layout.MANIFEST_SHA256, layout.MANIFEST_BLAKE3, layout.PAYLOAD_SIZES)


@dataclass(frozen=True)
class SpooledFile:
    """A finished tag file on disk: where, how large, its SHA-256 (for the tag manifest)."""

    path: Path
    size: int
    sha256: str

    def chunks(self) -> Iterator[bytes]:
        """Its bytes, a chunk at a time."""
        with self.path.open("rb") as stream:
            while chunk := stream.read(_BUFFER):
                yield chunk


class _Output:
    """One file of a run: written through a buffer, digested on the way."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stream: IO[bytes] = path.open("xb", buffering=_BUFFER)
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._stream.write(data)
        self._digest.update(data)
        self.size += len(data)

    def close(self) -> SpooledFile:
        self._stream.close()
        return SpooledFile(self.path, self.size, self._digest.hexdigest())

    def discard(self) -> None:
        self._stream.close()


class _Run:
    """Lines sorted by path in three files (one per manifest), appended to in order."""

    def __init__(self, directory: Path, number: int) -> None:
        self.outputs = [_Output(directory / f"run-{number}.{i}") for i in range(len(MANIFESTS))]
        self.last: str | None = None

    def append(self, lines: tuple[bytes, bytes, bytes], last: str) -> None:
        for output, data in zip(self.outputs, lines, strict=True):
            output.write(data)
        self.last = last

    def close(self) -> tuple[SpooledFile, ...]:
        return tuple(output.close() for output in self.outputs)

    def discard(self) -> None:
        for output in self.outputs:
            output.discard()


class ManifestSpool:
    """Manifest lines of payload files, added in any order, sorted on :meth:`finish`.

    ``directory`` must exist and be empty, and is the caller's to remove (a temporary
    directory in the staging area). Raises BadInput for a path added twice.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._batch: list[tuple[str, Digests]] = []
        self._runs: list[tuple[SpooledFile, ...]] = []
        self._current: _Run | None = None
        self._made = 0
        self.files = 0
        self.bytes = 0

    def add(self, path: str, digests: Digests) -> None:
        self._batch.append((path, digests))
        self.files += 1
        self.bytes += digests.size
        if len(self._batch) >= _BATCH_LINES:
            self._flush()

    def _new_run(self) -> _Run:
        self._made += 1
        return _Run(self._directory, self._made)

    def _flush(self) -> None:
        batch = self._batch
        if not batch:
            return
        self._batch = []
        batch.sort(key=_path_of)
        for (before, _), (after, _) in itertools.pairwise(batch):
            if before == after:
                raise BadInput(f"payload path {after!r} is given twice")
        first = batch[0][0]
        run = self._current
        if run is None or (run.last is not None and first <= run.last):
            if run is not None:
                if first == run.last:
                    raise BadInput(f"payload path {first!r} is given twice")
                self._runs.append(run.close())
            run = self._current = self._new_run()
        run.append(_encode(batch), batch[-1][0])

    def finish(self) -> dict[str, SpooledFile]:
        """The three payload manifests, sorted by path; raises BadInput for a path given
        twice."""
        try:
            self._flush()
            if self._current is None:
                self._current = self._new_run()
            self._runs.append(self._current.close())
            self._current = None
            runs = self._runs
            while len(runs) > 1:
                runs = [self._merge(runs[i:i + _MERGE_FAN_IN])
                        for i in range(0, len(runs), _MERGE_FAN_IN)]
            self._runs = runs
        except BaseException:
            if self._current is not None:
                self._current.discard()
            raise
        return dict(zip(MANIFESTS, runs[0], strict=True))

    def _merge(self, runs: list[tuple[SpooledFile, ...]]) -> tuple[SpooledFile, ...]:
        if len(runs) == 1:
            return runs[0]
        merged = self._new_run()
        previous: str | None = None
        with contextlib.ExitStack() as stack:
            readers = [_run_lines(run, stack) for run in runs]
            for path, lines in heapq.merge(*readers, key=_path_of):
                if path == previous:
                    merged.discard()
                    raise BadInput(f"payload path {path!r} is given twice")
                previous = path
                merged.append(lines, path)
        for run in runs:
            for spooled in run:
                spooled.path.unlink()
        return merged.close()


def _path_of(entry: tuple[str, object]) -> str:
    return entry[0]


def _encode(batch: list[tuple[str, Digests]]) -> tuple[bytes, bytes, bytes]:
    """A sorted batch as the lines of the three manifests: one encoding per manifest, not
    per line."""
    paths = [layout.encode_path(path) for path, _ in batch]
    sha256 = "".join(f"{d.sha256}  {p}\n" for p, (_, d) in zip(paths, batch, strict=True))
    blake3 = "".join(f"{d.blake3}  {p}\n" for p, (_, d) in zip(paths, batch, strict=True))
    sizes = "".join(f"{d.size}  {p}\n" for p, (_, d) in zip(paths, batch, strict=True))
    return sha256.encode(), blake3.encode(), sizes.encode()


def _run_lines(run: tuple[SpooledFile, ...], stack: contextlib.ExitStack
               ) -> Iterator[tuple[str, tuple[bytes, bytes, bytes]]]:
    """``(path, its three lines)`` of a run, in its order."""
    streams = [stack.enter_context(spooled.path.open("rb", buffering=_BUFFER))
               for spooled in run]
    for sha256, blake3, size in zip(*streams, strict=True):
        encoded = size[size.index(b"  ") + 2:-1].decode("utf-8")
        yield layout.decode_path(encoded), (sha256, blake3, size)
