"""Files that appear under their final name only when complete: hidden temp file, then rename."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from crdb_archive.errors import StorageError


class StagedFile:
    """A hidden ``.<name>.part-<random>`` file next to ``final``; :meth:`commit` renames it.

    Used as a context manager, the temporary file is removed on every way out that is not a
    commit, interruptions included. Raises StorageError when the file cannot be created.
    """

    def __init__(self, final: Path) -> None:
        self.final = final
        self.path = final.with_name(f".{final.name}.part-{secrets.token_hex(6)}")
        try:
            # O_EXCL: never write through a file or link someone else placed under this name.
            # Mode 0o666 lets the umask decide, as for any file the user creates.
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
        except OSError as error:
            reason = describe_os_error(error)
            raise StorageError(f"cannot create a file in {final.parent}: {reason}") from None
        self.file: BinaryIO = os.fdopen(fd, "wb")
        self._done = False

    def write(self, chunk: bytes) -> None:
        try:
            self.file.write(chunk)
        except OSError as error:
            raise self._write_failed(error) from None

    def flush(self) -> None:
        """Make everything written so far readable through :attr:`path`; raises StorageError."""
        try:
            self.file.flush()
        except OSError as error:
            raise self._write_failed(error) from None

    def restart(self) -> None:
        """Drop everything written so far."""
        try:
            self.file.seek(0)
            self.file.truncate()
        except OSError as error:
            raise self._write_failed(error) from None

    def commit(self, final: Path | None = None) -> None:
        """Flush to disk and rename to the final name (or ``final``, in the same directory).

        Raises StorageError.
        """
        if final is not None:
            self.final = final
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            self.path.replace(self.final)
        except OSError as error:
            self.discard()
            raise self._write_failed(error) from None
        self._done = True

    def discard(self) -> None:
        """Close and remove the temporary file (idempotent)."""
        if self._done:
            return
        self._done = True
        # Cleanup runs while another error is on its way out: it must not replace that error.
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

    def _write_failed(self, error: OSError) -> StorageError:
        return StorageError(f"cannot write {self.final}: {describe_os_error(error)}")

    def __enter__(self) -> StagedFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.discard()


_O_BINARY: int = getattr(os, "O_BINARY", 0)


def describe_os_error(error: OSError) -> str:
    """The operating system's reason for ``error``, without the path it already names."""
    return error.strerror or str(error)
