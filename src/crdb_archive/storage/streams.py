"""Readers over part of a file and over an S3 response body, as buffered binary streams."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO, Protocol

from crdb_archive.errors import CrdbArchiveError

READ_BUFFER = 1 << 20


class _Body(Protocol):
    def read(self, amt: int | None = None) -> bytes: ...

    def close(self) -> None: ...


class _FileWindow(io.RawIOBase):
    """A file from its current position, for ``length`` bytes or to its end."""

    def __init__(
        self, raw: io.FileIO, length: int | None, on_error: Callable[[OSError], Exception]
    ) -> None:
        super().__init__()
        self._raw = raw
        self._left = length
        self._on_error = on_error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if self._left is not None:
            if self._left <= 0:
                return 0
            view = view[: min(len(view), self._left)]
        try:
            count = self._raw.readinto(view) or 0
        except OSError as error:
            raise self._on_error(error) from error
        if self._left is not None:
            self._left -= count
        return count

    def close(self) -> None:
        self._raw.close()
        super().close()


def file_window(
    raw: io.FileIO, length: int | None, on_error: Callable[[OSError], Exception]
) -> IO[bytes]:
    """A buffered reader of ``raw`` (at most ``length`` bytes); closing it closes ``raw``.

    ``on_error`` turns a failed read into the exception to raise.
    """
    return io.BufferedReader(_FileWindow(raw, length, on_error), buffer_size=READ_BUFFER)


class _BodyStream(io.RawIOBase):
    """An HTTP response body as a raw stream; ``on_error`` turns a broken read into ours."""

    def __init__(self, body: _Body, on_error: Callable[[Exception], Exception]) -> None:
        super().__init__()
        self._body = body
        self._on_error = on_error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        try:
            data = self._body.read(len(view))
        except CrdbArchiveError:
            raise  # already ours: not a transport failure (an interrupt is no Exception at all)
        # Every transport failure (urllib3, botocore, OSError) becomes one of our errors.
        except Exception as error:
            raise self._on_error(error) from error
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


def body_reader(body: _Body, on_error: Callable[[Exception], Exception]) -> IO[bytes]:
    """A buffered reader over an S3 ``StreamingBody``; closing it releases the connection."""
    return io.BufferedReader(_BodyStream(body, on_error), buffer_size=READ_BUFFER)
