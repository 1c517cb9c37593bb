"""How a Cloud Storage read asks for a range: a GET of the object's media with ``Range``, of
the generation the first answer named (``x-goog-generation``) when it resumes. The resuming
itself is storage/resumable_read.py's.

The stored bytes are read as they are (``Accept-Encoding: identity``); an object stored
compressed, which the store would serve decompressed and whole whatever the range, is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO
from urllib.parse import quote

import requests

from crdb_archive.errors import StorageError
from crdb_archive.storage import resumable_read
from crdb_archive.storage.gcs_errors import api_error, with_retries
from crdb_archive.storage.resumable_read import Answer, byte_range

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
    version_word: str | None = "generation"  # a read is resumed only of the same one

    def get(self, start: int, end: int | None, version: str | None) -> Answer | None:
        """See :meth:`~crdb_archive.storage.resumable_read.Fetch.get`."""
        answer = _get(self, start, end, version)
        if answer is None:
            return None
        last = _last_byte(self, answer, start)

        def read(count: int) -> bytes:
            data: bytes = answer.raw.read(count, decode_content=False)
            return data

        return Answer(read, answer.close, last, answer.headers.get("x-goog-generation") or "")


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
    opened = resumable_read.open_range(read, start, length)
    return None if opened is None else opened[0]


def read_small(read: ObjectRead, limit: int, stat: Callable[[], tuple[int, str] | None]
               ) -> tuple[bytes, str] | None:
    """At most ``limit + 1`` bytes of a small object and its generation, all of one
    generation; None when there is no object. ``stat`` gives the size and generation of the
    object (for an empty one, whose ranges are all past its end).

    Raises StorageError.
    """
    return resumable_read.read_small(read, limit, stat)


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


def _last_byte(read: ObjectRead, answer: requests.Response, start: int) -> int:
    """The last byte the answer carries, from its Content-Range (or, for a whole object
    answered with 200, its Content-Length)."""
    stored = answer.headers.get("x-goog-stored-content-encoding", "identity").lower()
    if stored not in ("", "identity"):
        answer.close()
        raise StorageError(f"cannot read {read.where}: it is stored compressed "
                           f"(Content-Encoding {stored}), and its stored bytes cannot be "
                           "read as they are")
    if answer.status_code == 200:
        size = answer.headers.get("Content-Length", "")
        if start == 0 and size.isdigit() and int(size) > 0:
            return int(size) - 1
        answer.close()
        raise StorageError(f"cannot read {read.where}: the store answered a ranged request "
                           "without a range")
    return byte_range(read.where, answer.headers.get("Content-Range", ""), start,
                      answer.close)[1]
