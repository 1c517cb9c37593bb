"""Reading a Cloud Storage object's bytes whole or not at all: a broken or short body is resumed.

Every GET asks for a range, and the ``Content-Range`` of the answer says how many bytes must
come. A body can end early without the client seeing an error (a middlebox that answers with a
short body and a Content-Length that agrees with it), or break; either way the read goes on
from the byte reached with a new ranged GET of the same generation (``generation=``, named by
the first answer's ``x-goog-generation``), so that a replaced object is never stitched onto the
old one. After a bounded number of attempts the read fails with StorageError naming the object
and the attempts: a network fault is never passed up as a short file.

The stored bytes are read as they are (``Accept-Encoding: identity``); an object stored
compressed, which the store would serve decompressed and whole whatever the range, is refused.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO
from urllib.parse import quote

import requests

from crdb_archive.errors import CrdbArchiveError, ObjectNotFound, StorageError
from crdb_archive.storage.gcs_errors import api_error, backoff, with_retries
from crdb_archive.storage.streams import READ_BUFFER

_CONTENT_RANGE = re.compile(r"^bytes (\d{1,20})-(\d{1,20})/(\d{1,20}|\*)$")
TIMEOUT = (10, 60)  # connect, and each read of the socket


@dataclass(frozen=True)
class ObjectRead:
    """Where one read goes and how hard it tries."""

    session: requests.Session
    url: str  # the object's media URL (alt=media), without a generation
    where: str  # the object's name for messages, without secrets
    secrets: Sequence[str]
    attempts: int
    endpoint: str


def media_url(endpoint: str, bucket: str, name: str, user_project: str | None) -> str:
    """The JSON API's download URL of ``bucket``/``name``."""
    url = (f"{endpoint}/download/storage/v1/b/{quote(bucket, safe='')}/o/"
           f"{quote(name, safe='')}?alt=media")
    return url + (f"&userProject={quote(user_project, safe='')}" if user_project else "")


def open_object_range(read: ObjectRead, start: int, length: int | None) -> IO[bytes] | None:
    """A reader of ``length`` bytes from ``start`` (to the end when None), or None when the
    range starts at or past the end of the object.

    Raises ObjectNotFound, StorageError; the reader raises StorageError when the bytes cannot
    all be had.
    """
    opened = _open_range(read, start, length)
    return None if opened is None else opened[0]


def read_small(read: ObjectRead, limit: int, stat: Callable[[], tuple[int, str] | None]
               ) -> tuple[bytes, str] | None:
    """At most ``limit + 1`` bytes of a small object and its generation, all of one
    generation; None when there is no object. ``stat`` gives the size and generation of the
    object (for an empty one, whose ranges are all past its end).

    Raises StorageError.
    """
    try:
        opened = _open_range(read, 0, limit + 1)
    except ObjectNotFound:
        return None
    if opened is None:
        found = stat()
        if found is None:
            return None
        size, generation = found
        if size:
            raise StorageError(f"cannot read {read.where}: it changed while it was read")
        return b"", generation
    body, generation = opened
    with body:
        return body.read(), generation


def _open_range(read: ObjectRead, start: int, length: int | None
                ) -> tuple[IO[bytes], str] | None:
    """As :func:`open_object_range`, with the generation the reader reads."""
    end = None if length is None else start + length - 1
    answer = _get(read, start, end, None)
    if answer is None:
        return None
    generation = answer.headers.get("x-goog-generation") or ""
    _, last = _range_of(read, answer, start)
    if end is not None:
        last = min(last, end)
    body = _ResumingBody(read, answer, generation, start, last + 1)
    return io.BufferedReader(body, buffer_size=READ_BUFFER), generation


def _get(read: ObjectRead, start: int, end: int | None, generation: str | None
         ) -> requests.Response | None:
    """A streaming answer for bytes ``start``..``end`` (of ``generation``, when given); None
    when the range starts past the end of the object."""
    url = read.url + (f"&generation={generation}" if generation else "")
    headers = {"Range": f"bytes={start}-{'' if end is None else end}",
               "Accept-Encoding": "identity"}

    def attempt() -> requests.Response | None:
        answer = read.session.get(url, headers=headers, stream=True, timeout=TIMEOUT)
        if answer.status_code in (200, 206):
            return answer
        try:
            _ = answer.content  # an error's small body, for its message
        finally:
            answer.close()
        if answer.status_code == 416 and generation is None:
            return None
        if generation is not None and answer.status_code in (404, 416):
            raise StorageError(f"cannot read {read.where}: the object was replaced or cut "
                               "short while it was being read")
        raise api_error(answer)

    return with_retries(attempt, "read", read.where, read.secrets, attempts=read.attempts,
                        endpoint=read.endpoint)


def _range_of(read: ObjectRead, answer: requests.Response, start: int) -> tuple[int, int]:
    """The first and last byte the answer carries, from its Content-Range (or, for a whole
    object answered with 200, its Content-Length)."""
    stored = answer.headers.get("x-goog-stored-content-encoding", "identity").lower()
    if stored not in ("", "identity"):
        answer.close()
        raise StorageError(f"cannot read {read.where}: it is stored compressed "
                           f"(Content-Encoding {stored}), and its stored bytes cannot be "
                           "read as they are")
    if answer.status_code == 200:
        size = answer.headers.get("Content-Length", "")
        if start == 0 and size.isdigit() and int(size) > 0:
            return 0, int(size) - 1
        answer.close()
        raise StorageError(f"cannot read {read.where}: the store answered a ranged request "
                           "without a range")
    match = _CONTENT_RANGE.match(answer.headers.get("Content-Range", ""))
    if match is None:
        answer.close()
        raise StorageError(f"cannot read {read.where}: the store answered a ranged request "
                           "without a Content-Range")
    first, last = int(match.group(1)), int(match.group(2))
    if first != start or last < first:
        answer.close()
        raise StorageError(f"cannot read {read.where}: asked for bytes from {start}, the store "
                           f"sent {first}-{last}")
    return first, last


class _ResumingBody(io.RawIOBase):
    """The bytes ``[start, end)`` of one generation, resumed after a broken or short body."""

    def __init__(self, read: ObjectRead, answer: requests.Response, generation: str,
                 start: int, end: int) -> None:
        super().__init__()
        self._read = read
        self._answer = answer
        self._generation = generation
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
                data: bytes = self._answer.raw.read(wanted, decode_content=False)
            except CrdbArchiveError:
                raise  # our own, such as Interrupted from a signal handler
            # Every transport failure (urllib3, requests, OSError) is a reason to resume.
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
        if self._attempt >= self._read.attempts:
            raise StorageError(
                f"cannot read {self._read.where}: the transfer broke {self._attempt} times "
                f"({reason}); {got} of {total} bytes arrived")
        if not self._generation:
            raise StorageError(f"cannot read {self._read.where}: the transfer broke "
                               f"({reason}), and the store named no generation to resume")
        self._attempt += 1
        time.sleep(backoff(self._attempt))
        answer = _get(self._read, self._position, self._end - 1, self._generation)
        if answer is None:  # pragma: no cover - only asked with a generation, never None
            raise StorageError(f"cannot read {self._read.where}: it became shorter while read")
        _, last = _range_of(self._read, answer, self._position)
        if last < self._end - 1:
            answer.close()
            raise StorageError(f"cannot read {self._read.where}: it became shorter while read")
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
