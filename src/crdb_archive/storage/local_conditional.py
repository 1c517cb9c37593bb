"""Conditional writes of small files: create if absent, replace or delete if unchanged.

A file's version is the SHA-256 of its content, as an S3 ETag is the MD5 of an object's.
Every new content is written to a temp file, made durable, and then put in place:

- create: ``link(2)`` of the temp file to the final name, which fails when the name exists,
  so of racing creators exactly one succeeds;
- replace and delete: under ``flock`` of the file found at the name, after checking that the
  name still leads to that file (a writer that waited for the lock may find it replaced), the
  content is compared and the temp file renamed over it (or the name unlinked).

Readers never see a partial file (renames are atomic), so they take no lock. Every writer of a
file by these verbs excludes the others; a plain write or delete of the same name does not
take part (use these verbs for every change of a file they guard). ``flock`` works on local
file systems and on NFS, where Linux maps it to byte-range locks.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import stat as stat_module
from collections.abc import Iterator
from pathlib import Path

from crdb_archive.errors import BadInput, ConditionFailed, CrdbArchiveError, StorageError
from crdb_archive.storage.base import PARTIAL_PREFIX, Versioned
from crdb_archive.storage.local_staging import fsync_directory

_OPEN = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# A writer whose lock is handed a file that was replaced meanwhile tries the new one; a name
# replaced this often while one writer waits is contended beyond reason.
_ATTEMPTS = 16


def version_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def read_versioned(path: Path, limit: int) -> Versioned | None:
    """The file at ``path`` and its version, or None; raises BadInput (too large, not a regular
    file), StorageError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _OPEN)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        raise _failed("read", path, error) from None
    with os.fdopen(fd, "rb") as handle:
        content = _read(handle.fileno(), path, limit)
    return Versioned(content, version_of(content))


def put_if_absent(path: Path, data: bytes) -> str:
    """Create ``path`` holding ``data`` unless something is there; raises ConditionFailed."""
    with _temp_file(path, data) as temp:
        try:
            os.link(temp, path)
        except FileExistsError:
            raise ConditionFailed(f"{path} exists") from None
        except OSError as error:
            raise _failed("write", path, error) from None
    fsync_directory(path.parent)
    return version_of(data)


def put_if_version(path: Path, data: bytes, version: str) -> str:
    """Replace ``path`` with ``data`` if its version is ``version``; raises ConditionFailed."""
    with _temp_file(path, data) as temp, _locked(path, version):
        try:
            temp.replace(path)
        except OSError as error:
            raise _failed("write", path, error) from None
    fsync_directory(path.parent)
    return version_of(data)


def delete_if_version(path: Path, version: str) -> None:
    """Delete ``path`` if its version is ``version``; raises ConditionFailed."""
    with _locked(path, version):
        try:
            path.unlink()
        except OSError as error:
            raise _failed("delete", path, error) from None
    fsync_directory(path.parent)


@contextlib.contextmanager
def _locked(path: Path, version: str) -> Iterator[None]:
    """Hold the lock of the file at ``path`` while it is the one of ``version``."""
    for _ in range(_ATTEMPTS):
        fd = _lock_current(path, version)
        if fd is None:
            continue  # replaced while this writer waited: look at the new one
        try:
            yield
        finally:
            os.close(fd)  # releases the lock
        return
    raise ConditionFailed(f"{path} kept changing while this run waited to change it")


def _lock_current(path: Path, version: str) -> int | None:
    """The locked descriptor of the file at ``path``, or None when another writer replaced it
    while this one waited for its lock; raises ConditionFailed when it is not ``version``."""
    try:
        fd = os.open(path, os.O_RDWR | _OPEN)
    except (FileNotFoundError, NotADirectoryError):
        raise ConditionFailed(f"{path} is gone") from None
    except OSError as error:
        raise _failed("write", path, error) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held = os.fstat(fd)
        try:
            current: os.stat_result | None = os.lstat(path)
        except FileNotFoundError:
            current = None
        same = current is not None and (held.st_dev, held.st_ino) == (
            current.st_dev, current.st_ino)
        content = _read(fd, path, None) if same else b""
    except OSError as error:
        os.close(fd)
        raise _failed("write", path, error) from None
    except BaseException:
        os.close(fd)
        raise
    if current is None or not same or version_of(content) != version:
        os.close(fd)
        if current is None:
            raise ConditionFailed(f"{path} is gone")
        if not same:
            return None
        raise ConditionFailed(f"{path} changed")
    return fd


@contextlib.contextmanager
def _temp_file(path: Path, data: bytes) -> Iterator[Path]:
    """``data`` in a durable temp file beside ``path``; gone on the way out unless renamed."""
    temp = path.parent / f"{PARTIAL_PREFIX}{secrets.token_hex(8)}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise _failed("write", path, error) from None
    try:
        yield temp
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _read(fd: int, path: Path, limit: int | None) -> bytes:
    st = os.fstat(fd)
    if not stat_module.S_ISREG(st.st_mode):
        raise BadInput(f"{path} is not a regular file")
    if limit is not None and st.st_size > limit:
        raise BadInput(f"{path} is larger than {limit} bytes; refusing to read it whole")
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 16, offset):
        chunks.append(chunk)
        offset += len(chunk)
        if limit is not None and offset > limit:
            raise BadInput(f"{path} is larger than {limit} bytes; refusing to read it whole")
    return b"".join(chunks)


def _failed(action: str, path: Path, error: OSError) -> CrdbArchiveError:
    if error.errno == errno.ELOOP:
        return BadInput(f"{path} is a symbolic link; only regular files can be read")
    return StorageError(f"cannot {action} {path}: {error.strerror or error}")

