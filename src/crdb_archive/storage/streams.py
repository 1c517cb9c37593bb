"""A reader over part of a file, as a buffered binary stream."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO

READ_BUFFER = 1 << 20


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
