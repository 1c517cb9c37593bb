"""Reading an object's bytes whole or not at all, over ranged GETs that are resumed.

A response body can end early in two ways a client cannot tell from a good one by itself: the
connection breaks (a reset, a close before Content-Length), or a middlebox answers with a body
that is short and a Content-Length that agrees with it. Every GET is therefore ranged, and the
range the answer names says how many bytes must come; when fewer arrive, the read goes on from
the byte reached with a new ranged GET of the same version of the object (an S3 ETag, a Cloud
Storage generation), so that a replaced object is never stitched onto the old one. After a
bounded number of attempts the read fails with StorageError: a network fault is never passed
up as a short file. Each store's module says how it asks for a range (:class:`Fetch`).
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Protocol

from crdb_archive.errors import CrdbArchiveError, ObjectNotFound, StorageError
from crdb_archive.storage.backoff import backoff
from crdb_archive.storage.streams import READ_BUFFER

_CONTENT_RANGE = re.compile(r"^bytes (\d{1,20})-(\d{1,20})/(\d{1,20}|\*)$")


@dataclass(frozen=True)
class Answer:
    """One ranged GET's answer: its body, the bytes it carries, the version it is of."""

    read: Callable[[int], bytes]  # up to n bytes of the body; b"" at its end
    close: Callable[[], None]
    last: int  # the last byte the answer carries, from its range
    version: str | None  # None when the store named none


class Fetch(Protocol):
    """How one store asks for a range of one object."""

    @property
    def where(self) -> str:
        """The object's name for messages, without secrets."""

    @property
    def attempts(self) -> int:
        """How many times a body may break before the read fails."""

    @property
    def version_word(self) -> str | None:
        """The name of the store's version ("generation") when a read cannot be resumed
        without one; None when it may go on unconditioned."""

    def get(self, start: int, end: int | None, version: str | None) -> Answer | None:
        """Bytes ``start``..``end`` (to the end when None), of ``version`` when given; None
        when the range starts past the end (asked without a version).

        Raises ObjectNotFound, StorageError (also for a replaced object).
        """


def byte_range(where: str, content_range: str, start: int, close: Callable[[], None]
               ) -> tuple[int, int]:
    """The first and last byte of an answer, from its Content-Range; it must begin at
    ``start``. Raises StorageError (after ``close``) for a range missing or elsewhere."""
    match = _CONTENT_RANGE.match(content_range)
    if match is None:
        close()
        # A store that ignores Range sends the whole object from byte 0 with a length that
        # nothing else confirms; reading on would risk the wrong bytes or a silent cut.
        raise StorageError(f"cannot read {where}: the store answered a ranged request "
                           "without a Content-Range")
    first, last = int(match.group(1)), int(match.group(2))
    if first != start or last < first:
        close()
        raise StorageError(f"cannot read {where}: asked for bytes from {start}, the store "
                           f"sent {first}-{last}")
    return first, last


def open_range(fetch: Fetch, start: int, length: int | None) -> tuple[IO[bytes], str] | None:
    """A reader of ``length`` bytes from ``start`` (to the end when None) and the version it
    reads, or None when the range starts at or past the end of the object.

    Raises ObjectNotFound, NeedsRestoreFromColdStorage, StorageError; the reader raises
    StorageError when the bytes cannot all be had.
    """
    end = None if length is None else start + length - 1
    answer = fetch.get(start, end, None)
    if answer is None:
        return None
    last = answer.last if end is None else min(answer.last, end)
    body = _ResumingBody(fetch, answer, start, last + 1)
    return io.BufferedReader(body, buffer_size=READ_BUFFER), answer.version or ""


def read_small(fetch: Fetch, limit: int, stat: Callable[[], tuple[int, str] | None]
               ) -> tuple[bytes, str] | None:
    """At most ``limit + 1`` bytes of a small object and its version, all of one version;
    None when there is no object. ``stat`` gives the size and version of the object (for an
    empty one, whose ranges are all past its end), None when there is none.

    Raises NeedsRestoreFromColdStorage, StorageError.
    """
    try:
        opened = open_range(fetch, 0, limit + 1)
    except ObjectNotFound:
        return None
    if opened is None:
        found = stat()
        if found is None:
            return None
        size, version = found
        if size:
            raise StorageError(f"cannot read {fetch.where}: it changed while it was read")
        return b"", version
    body, version = opened
    with body:
        return body.read(), version


class _ResumingBody(io.RawIOBase):
    """The bytes ``[start, end)`` of one version of an object, resumed after a broken or
    short body."""

    def __init__(self, fetch: Fetch, answer: Answer, start: int, end: int) -> None:
        super().__init__()
        self._fetch = fetch
        self._answer = answer
        self._version = answer.version
        self._start = start
        self._position = start
        self._end = end
        self._attempt = 1

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._end - self._position)
        if wanted <= 0:
            return 0
        while True:
            failure: str | None = None
            try:
                data = self._answer.read(wanted)
            except CrdbArchiveError:
                raise  # our own, such as Interrupted from a signal handler
            # Every transport failure (urllib3, botocore, requests, OSError) is a reason to
            # resume.
            except Exception as error:  # noqa: BLE001
                failure = type(error).__name__
                data = b""
            if data:
                count = min(len(data), wanted)
                view[:count] = data[:count]
                self._position += count
                return count
            self._resume(failure or "the body ended early")

    def _resume(self, reason: str) -> None:
        self._close_answer()
        got = self._position - self._start
        total = self._end - self._start
        where = self._fetch.where
        if self._attempt >= self._fetch.attempts:
            raise StorageError(
                f"cannot read {where}: the transfer broke {self._attempt} times "
                f"({reason}); {got} of {total} bytes arrived")
        if not self._version and self._fetch.version_word is not None:
            raise StorageError(f"cannot read {where}: the transfer broke ({reason}), and the "
                               f"store named no {self._fetch.version_word} to resume")
        self._attempt += 1
        time.sleep(backoff(self._attempt))
        answer = self._fetch.get(self._position, self._end - 1, self._version)
        if answer is None:  # pragma: no cover - only asked with a version, never None
            raise StorageError(f"cannot read {where}: it became shorter while read")
        if answer.last < self._end - 1:
            answer.close()
            raise StorageError(f"cannot read {where}: it became shorter while read")
        self._answer = answer

    def _close_answer(self) -> None:
        try:
            self._answer.close()
        except CrdbArchiveError:
            raise
        except Exception:  # noqa: BLE001, S110 - a broken connection may fail to close; it is dropped
            pass

    def close(self) -> None:
        if not self.closed:
            self._close_answer()
        super().close()
