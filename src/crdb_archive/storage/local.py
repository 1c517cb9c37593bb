"""Storage in a local directory: atomic writes by temp file, fsync and rename.

A local directory has the :class:`~crdb_archive.storage.base.LocalPaths` capability: callers may
read its files by path (memory maps, seeks, directory walks that see symbolic links). It has
no archive storage classes and no retention lock.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import stat as stat_module
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from crdb_archive.errors import BadInput, StorageError
from crdb_archive.storage import local_conditional
from crdb_archive.storage.base import (
    PARTIAL_PREFIX,
    SMALL_OBJECT_LIMIT,
    ObjectInfo,
    Prefix,
    Storage,
    Versioned,
    WriteOptions,
    empty_reader,
    file_read_error,
    level_order,
    validate_key,
    validate_prefix,
)
from crdb_archive.storage.local_staging import LocalStaging, fsync_directory, local_staging
from crdb_archive.storage.streams import file_window
from crdb_archive.storage.uri import Location


class _FileWriter:
    def __init__(self, raw: IO[bytes], path: Path) -> None:
        self._raw = raw
        self._path = path
        self._written = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._raw.write(data)
        except OSError as error:
            raise StorageError(f"cannot write {self._path}: {error.strerror or error}") from error
        self._written += len(data)

    @property
    def bytes_written(self) -> int:
        return self._written

    @property
    def receipt(self) -> None:
        return None  # a local file: read back cheaply, nothing to confirm


# Without following a link, and without waiting for a writer: a FIFO put in a file's place
# after the listing is refused (not a regular file), never waited on.
_READ_FLAGS = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_NONBLOCK", 0))


class LocalStorage(Storage):
    """A directory tree; keys are paths below ``root``. Symbolic links are refused."""

    publishes_atomically = True

    def __init__(self, root: Path, location: Location | None = None) -> None:
        self._root = root
        # Keys joined as text where a path is built per file of 100k: no Path object each.
        self._root_prefix = str(root).rstrip("/") + "/"
        self.location = location or Location("file", "", str(root), ())

    @classmethod
    def open(cls, location: Location, *, for_write: bool = False) -> LocalStorage:
        """The directory at ``location``; ``for_write`` creates it.

        Raises StorageError when it cannot be created or is not a directory.
        """
        root = Path(location.path)
        if for_write:
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StorageError(f"cannot create directory {location}: "
                                   f"{error.strerror or error}") from error
        if root.exists() and not root.is_dir():
            raise StorageError(f"{location} is not a directory")
        return cls(root, location)

    def local_paths(self) -> LocalStorage:
        return self

    @property
    def local_path(self) -> Path:
        return self._root

    def path(self, key: str = "") -> Path:
        """The file that holds ``key`` (the root for ``""``); raises BadInput for an invalid
        key."""
        return self._root / validate_key(key) if key else self._root

    def _file(self, key: str) -> Path:
        return self._root / validate_key(key)

    def display(self, key: str = "") -> str:
        # As the path is spelt everywhere else (messages, bundle locations): one spelling.
        return str(self.path(key))

    def child(self, key: str) -> LocalStorage:
        return LocalStorage(self._file(key), self.location.child(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        entries = self._entries(prefix)  # a bad prefix is refused here, not when iterated
        return (self._info(key, entry.stat(follow_symlinks=False)) for key, entry in entries)

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        # The directory entries' types suffice: no stat per file.
        return (key for key, _ in self._entries(prefix))

    def _entries(self, prefix: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        prefix = validate_prefix(prefix)
        start = self._root / prefix if prefix else self._root
        return self._walk(start, f"{prefix}/" if prefix else "")

    def _walk(self, directory: Path, base: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        try:
            with os.scandir(directory) as scan:
                entries = list(scan)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as error:
            raise StorageError(f"cannot list {directory}: {error.strerror or error}") from error
        # A directory sorts as "name/", so the walk yields keys in plain string order, which is
        # the order S3 lists them in ("a-b" before "a/b").
        kinds = {entry.name: _kind(entry) for entry in entries}
        order = sorted(entries, key=lambda e: e.name + ("/" if kinds[e.name] == "dir" else ""))
        for entry in order:
            key = base + entry.name
            kind = kinds[entry.name]
            if kind == "dir":
                yield from self._walk(Path(entry.path), key + "/")
            elif kind == "file":
                if entry.name.startswith(PARTIAL_PREFIX):
                    continue
                yield key, entry
            else:
                raise BadInput(f"{entry.path} is a symbolic link or special file; only regular "
                               "files and directories can be read")

    def list_level(self, prefix: str = "") -> Iterator[ObjectInfo | Prefix]:
        prefix = validate_prefix(prefix)
        directory = self._root / prefix if prefix else self._root
        base = f"{prefix}/" if prefix else ""
        try:
            with os.scandir(directory) as scan:
                entries = list(scan)
        except (FileNotFoundError, NotADirectoryError):
            return iter(())
        except OSError as error:
            raise StorageError(f"cannot list {directory}: {error.strerror or error}") from error
        found: list[ObjectInfo | Prefix] = []
        for entry in entries:
            kind = _kind(entry)
            if kind == "dir":
                found.append(Prefix(base + entry.name))
            elif kind == "file" and not entry.name.startswith(PARTIAL_PREFIX):
                try:
                    found.append(self._info(base + entry.name, entry.stat(follow_symlinks=False)))
                except FileNotFoundError:  # deleted since the directory was read
                    continue
        return iter(sorted(found, key=level_order))

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(key=key, size=st.st_size,
                          mtime=datetime.fromtimestamp(st.st_mtime, UTC))

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._file(key)
        try:
            st = path.lstat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            raise StorageError(f"cannot read {path}: {error.strerror or error}") from error
        if stat_module.S_ISDIR(st.st_mode):
            return None
        if not stat_module.S_ISREG(st.st_mode):
            raise BadInput(f"{path} is a symbolic link or special file; only regular files and "
                           "directories can be read")
        return self._info(key, st)

    def open_read(
        self, key: str, *, start: int = 0, length: int | None = None
    ) -> AbstractContextManager[IO[bytes]]:
        return self._read(self._file(key), start, length)

    def local_file(self, key: str) -> str:
        return self._root_prefix + validate_key(key)

    def read_whole(self, key: str, limit: int) -> bytes:
        path = self.local_file(key)
        try:
            fd = os.open(path, _READ_FLAGS)
        except OSError as error:
            raise file_read_error(path, error) from None
        try:
            if not stat_module.S_ISREG(os.fstat(fd).st_mode):
                raise file_read_error(path, None)
            # One read: a regular file gives fewer bytes than asked only at its end.
            data = os.read(fd, limit)
        except OSError as error:
            raise file_read_error(path, error) from error
        finally:
            os.close(fd)
        return data

    @contextmanager
    def _read(self, path: Path, start: int, length: int | None) -> Iterator[IO[bytes]]:
        if start < 0 or (length is not None and length < 0):
            raise BadInput(f"invalid range of {path}: start {start}, length {length}")
        where = str(path)
        try:
            raw = io.FileIO(os.open(path, _READ_FLAGS), "rb")
        except OSError as error:
            raise file_read_error(where, error) from None
        try:
            regular = stat_module.S_ISREG(os.fstat(raw.fileno()).st_mode)
            raw.seek(start)
        except OSError as error:
            raw.close()
            raise file_read_error(where, error) from error
        if not regular:
            raw.close()
            raise file_read_error(where, None)
        if length == 0:
            raw.close()
            yield empty_reader()
            return
        def failed(error: OSError) -> StorageError:
            return StorageError(f"cannot read {path}: {error.strerror or error}")

        with file_window(raw, length, failed) as reader:
            yield reader

    def open_write(
        self, key: str, *, size_hint: int | None = None, options: WriteOptions | None = None
    ) -> AbstractContextManager[_FileWriter]:
        if options is not None:
            self.check_write_options(options)
        return self._write(self._file(key))

    @contextmanager
    def _write(self, path: Path) -> Iterator[_FileWriter]:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.parent / f"{PARTIAL_PREFIX}{secrets.token_hex(8)}"
            # os.open with 0o666 lets the umask decide, as for any file the user creates.
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as error:
            raise StorageError(f"cannot write {path}: {error.strerror or error}") from error
        raw = os.fdopen(fd, "wb", buffering=1 << 20)
        try:
            yield _FileWriter(raw, path)
        except BaseException:
            _discard(raw, temp)
            raise
        try:
            raw.flush()
            os.fsync(raw.fileno())
            raw.close()
            temp.replace(path)
        except OSError as error:
            _discard(raw, temp)
            raise StorageError(f"cannot write {path}: {error.strerror or error}") from error
        fsync_directory(path.parent)

    def delete(self, key: str) -> None:
        path = self._file(key)
        try:
            if path.is_dir() and not path.is_symlink():
                return
            path.unlink(missing_ok=True)
        except OSError as error:
            raise StorageError(f"cannot delete {path}: {error.strerror or error}") from error
        self._prune(path.parent)

    def delete_tree(self, prefix: str) -> None:
        prefix = validate_prefix(prefix)
        targets = [self._root / prefix] if prefix else _children(self._root)
        for target in targets:
            try:
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
            except OSError as error:
                raise StorageError(f"cannot delete {target}: {error.strerror or error}") from error
        if prefix:
            self._prune((self._root / prefix).parent)

    def _prune(self, directory: Path) -> None:
        # Directories are implicit, as in S3: one emptied by a delete goes too (never the root).
        while directory != self._root and self._root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def check_write_options(self, options: WriteOptions) -> None:
        if options.storage_class is not None:
            raise BadInput(f"{self.location} is a local directory: it has no storage class "
                           f"({options.storage_class} requested)")
        if options.lock_mode is not None or options.retain_until is not None:
            raise BadInput(f"{self.location} is a local directory: it has no Object Lock")

    def read_versioned(self, key: str, *, limit: int = SMALL_OBJECT_LIMIT) -> Versioned | None:
        return local_conditional.read_versioned(self._file(key), limit)

    def put_if_absent(self, key: str, data: bytes) -> str:
        return local_conditional.put_if_absent(self._file(key), data)

    def put_if_version(self, key: str, data: bytes, version: str) -> str:
        return local_conditional.put_if_version(self._file(key), data, version)

    def delete_if_version(self, key: str, version: str) -> None:
        path = self._file(key)
        local_conditional.delete_if_version(path, version)
        self._prune(path.parent)

    def staging(self, name: str) -> AbstractContextManager[LocalStaging]:
        return local_staging(self._root, name)


def _kind(entry: os.DirEntry[str]) -> str:
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    if entry.is_file(follow_symlinks=False):
        return "file"
    return "other"


def _children(directory: Path) -> list[Path]:
    try:
        return sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as error:
        raise StorageError(f"cannot list {directory}: {error.strerror or error}") from error


def _discard(raw: IO[bytes], temp: Path) -> None:
    # Closing flushes the buffer, which may fail again (a full disk): the file goes anyway.
    with contextlib.suppress(OSError):
        raw.close()
    with contextlib.suppress(OSError):
        temp.unlink(missing_ok=True)
