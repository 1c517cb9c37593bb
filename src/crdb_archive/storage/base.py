"""The storage interface: a few verbs over a tree of objects, on a local disk or in a cloud.

Keys are relative POSIX paths under a storage's root (``data/backup/BACKUP_MANIFEST``);
directories are implicit, as they are in object stores. :func:`open_storage` is the one place
that picks a backend from a location.

Every backend has every verb of :class:`Storage`. What only some backends can do is an optional
capability (storage/capabilities.py), a small protocol that a backend returns from its accessor
and every other backend answers None to: ``LocalPaths`` (objects are files of this host),
``ColdStorage`` (archive storage classes and their restores), ``RetentionLock`` (objects written
under a retention lock). Code above this package asks for a capability; it never tests a
backend's type.
"""

from __future__ import annotations

import abc
import errno
import io
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import IO, TYPE_CHECKING, Literal, Protocol, Self
from urllib.parse import urlsplit

from crdb_archive.errors import BadInput, ObjectNotFound, StorageError
from crdb_archive.storage.uri import Location, parse_location, redact

if TYPE_CHECKING:
    from crdb_archive.storage.capabilities import ColdStorage, LocalPaths, RetentionLock, Staging
    from crdb_archive.storage.receipts import Confirmation, Receipt, Reported

RestoreState = Literal["not-needed", "needed", "in-progress", "available"]
RestoreRequestState = Literal["requested", "in-progress", "available", "not-needed"]
LockMode = Literal["GOVERNANCE", "COMPLIANCE"]

DEFAULT_PARALLELISM = 8
DEFAULT_READ_LIMIT = 64 << 20
# Conditional writes are for small records (locks, job records), read and written whole.
SMALL_OBJECT_LIMIT = 1 << 20

# Temp files of writes in progress (or of a crashed run) are never objects.
PARTIAL_PREFIX = ".crdb-archive-partial-"
# A staging area is hidden (a leading dot) so that listings of bundles pass it by.
STAGING_SUFFIX = ".partial"


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object, as a listing or a stat sees it.

    Object Lock fields come from ``stat`` only: S3 listings do not carry them, so objects from
    ``list`` report ``lock_mode``/``retain_until`` as None whatever their lock.
    """

    key: str
    size: int
    mtime: datetime | None = None
    storage_class: str | None = None
    restore: RestoreState = "not-needed"
    retain_until: datetime | None = None
    lock_mode: str | None = None
    legal_hold: bool = False

    @property
    def readable(self) -> bool:
        """Whether the bytes can be read now (not waiting in an archive storage class)."""
        return self.restore in ("not-needed", "available")


@dataclass(frozen=True)
class WriteOptions:
    """How objects are stored: storage class and Object Lock retention (S3 only)."""

    storage_class: str | None = None
    lock_mode: LockMode | None = None
    retain_until: datetime | None = None

    @property
    def is_default(self) -> bool:
        return self.storage_class is None and self.lock_mode is None and self.retain_until is None


@dataclass(frozen=True)
class Prefix:
    """A level of keys below a listing's prefix: the implicit directory ``key/``."""

    key: str

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Versioned:
    """A small object's content and the token of that version, for a conditional write.

    The token changes whenever the content does (S3's ETag, a digest of a local file); two
    writes of the same bytes may share one.
    """

    content: bytes
    version: str


class ObjectWriter(Protocol):
    """Where the bytes of one object being written go; committed when its block ends cleanly."""

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    @property
    def bytes_written(self) -> int: ...

    @property
    def receipt(self) -> Receipt | None:
        """What was computed of the object while writing it, for :meth:`Storage.confirm`,
        once the block ended cleanly; None where the store keeps no checksum to confirm
        (a local file, read back cheaply)."""


# A key none of whose segments is empty, "." or "..", and without NUL.
_SOUND_KEY = re.compile(r"(?!\.\.?(?:/|$))[^/\x00]+(?:/(?!\.\.?(?:/|$))[^/\x00]+)*")


def validate_key(key: str) -> str:
    """Return ``key`` if it is a relative POSIX path with no empty, ``.`` or ``..`` segment.

    Raises BadInput naming the key.
    """
    if _SOUND_KEY.fullmatch(key):
        return key  # the common case in one step: 100k backup files are checked more than once
    if not key:
        raise BadInput("empty object key")
    if key.startswith("/"):
        raise BadInput(f"object key {key!r} is absolute: keys are relative to the storage root")
    if "\x00" in key:
        raise BadInput(f"object key {key!r} contains a NUL character")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise BadInput(f"object key {key!r} has an empty, '.' or '..' segment")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: ``""`` for everything, else a key (a trailing slash is allowed).

    Raises BadInput as :func:`validate_key`.
    """
    trimmed = prefix[:-1] if prefix.endswith("/") else prefix
    return validate_key(trimmed) if trimmed else ""


class Storage(abc.ABC):
    """A tree of objects under one root: local directory or S3 bucket prefix.

    Implementations are safe to use from several threads at once. Use as a context manager (or
    call :meth:`close`) to release network connections.
    """

    location: Location

    # Whether a staged tree appears whole when published (a rename on disk). Where it does not,
    # its members are written in place and the member written last marks it complete: a tree
    # without that member is one being written, or one whose writing was cut short.
    publishes_atomically: bool = False

    # --- capabilities --------------------------------------------------------------------

    def local_paths(self) -> LocalPaths | None:
        """The :class:`LocalPaths` capability, or None when objects are not files here."""
        return None

    def cold_storage(self) -> ColdStorage | None:
        """The :class:`ColdStorage` capability, or None when nothing is ever archived."""
        return None

    def retention_lock(self) -> RetentionLock | None:
        """The :class:`RetentionLock` capability, or None when objects cannot be locked."""
        return None

    @property
    def is_local(self) -> bool:
        """Whether objects are files of this host (the :class:`LocalPaths` capability)."""
        return self.local_paths() is not None

    def display(self, key: str = "") -> str:
        """A name for ``key`` in messages: never carries a secret."""
        return str(self.location.child(key) if key else self.location)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.display()!r})"

    def __str__(self) -> str:
        return self.display()

    @abc.abstractmethod
    def child(self, key: str) -> Storage:
        """A storage rooted at ``key`` below this one (sharing its connections).

        Raises BadInput for an invalid key.
        """

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object below ``prefix`` (recursive), sorted by key; keys are root-relative.

        Raises BadInput for an invalid prefix, StorageError when the storage cannot be read.
        """

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """The keys :meth:`list` gives, for when sizes and times do not matter (a backend
        may then spare a system call per object). Raises as :meth:`list`."""
        return (info.key for info in self.list(prefix))

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """The object at ``key``, or None when there is none.

        Raises BadInput for an invalid key, StorageError when the storage cannot be read.
        """

    @abc.abstractmethod
    def list_level(self, prefix: str = "") -> Iterator[ObjectInfo | Prefix]:
        """What lies directly below ``prefix``: its objects and the deeper levels, sorted by
        key (a level sorts as ``key/``); keys are root-relative.

        A level holds at least one object in an object store; on disk it is a directory, which
        may be empty. Entries that are neither (a symbolic link or special file on disk) are
        not objects and are left out. Raises BadInput for an invalid prefix, StorageError.
        """

    def exists(self, key: str) -> bool:
        """Whether an object is stored at ``key``; raises as :meth:`stat`."""
        return self.stat(key) is not None

    @abc.abstractmethod
    def open_read(
        self, key: str, *, start: int = 0, length: int | None = None
    ) -> AbstractContextManager[IO[bytes]]:
        """A streaming reader of ``length`` bytes (default: to the end) from offset ``start``.

        A range past the end yields what is there (possibly nothing). Raises ObjectNotFound,
        NeedsRestoreFromColdStorage when the object waits in an archive storage class, and
        StorageError when reading fails (also from the reader's ``read``).
        """

    def read_bytes(self, key: str, *, limit: int = DEFAULT_READ_LIMIT) -> bytes:
        """The whole object, for small files (tag files, manifests).

        Raises BadInput when it is larger than ``limit``, and as :meth:`open_read`.
        """
        with self.open_read(key, length=limit + 1) as reader:
            data = reader.read()
        if len(data) > limit:
            raise BadInput(f"{self.display(key)} is larger than {limit} bytes; refusing to "
                           "read it whole")
        return data

    @abc.abstractmethod
    def open_write(
        self, key: str, *, size_hint: int | None = None, options: WriteOptions | None = None
    ) -> AbstractContextManager[ObjectWriter]:
        """Write ``key`` atomically: visible, complete, when the block ends without error.

        Any exception in the block (including Interrupted) leaves no object and no partial
        upload. Raises BadInput for an invalid key or options, StorageError on failure.
        """

    def put_bytes(self, key: str, data: bytes, *, options: WriteOptions | None = None) -> None:
        """Store ``data`` at ``key`` atomically; raises as :meth:`open_write`."""
        with self.open_write(key, size_hint=len(data), options=options) as writer:
            writer.write(data)

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object at ``key``; nothing happens when there is none.

        Raises StorageError naming the key when it cannot be deleted (on S3: Object Lock
        retention or a legal hold).
        """

    @abc.abstractmethod
    def delete_tree(self, prefix: str) -> None:
        """Remove every object below ``prefix`` (``""``: the whole root).

        Raises StorageError naming a key that cannot be deleted; on S3 nothing is deleted when
        any object below the prefix is under Object Lock retention.
        """

    @abc.abstractmethod
    def check_write_options(self, options: WriteOptions) -> None:
        """Check, before anything is written, that the storage can honour ``options``.

        Raises BadInput (an unknown storage class, a lock on a bucket without Object Lock, a
        local directory asked for either), StorageError when the check itself fails.
        """

    # --- confirming uploads ----------------------------------------------------------------

    def confirm(self, receipt: Receipt) -> Confirmation:
        """Whether the object at ``receipt.key`` holds what its writer uploaded, by the
        checksums the store reports (no bytes read); where it reports none of the receipt's,
        by reading the object back whole (see storage/receipts.py).

        Raises ObjectNotFound when there is no object, NeedsRestoreFromColdStorage when it
        must be read and waits in an archive storage class, StorageError.
        """
        from crdb_archive.storage.receipts import compare, read_back  # noqa: PLC0415

        reported = self.reported(receipt)
        if reported is None:
            raise ObjectNotFound(f"{self.display(receipt.key)} does not exist")
        return compare(receipt, reported) or read_back(self, receipt)

    def reported(self, receipt: Receipt) -> Reported | None:
        """The size and checksums the store reports of ``receipt.key`` (in the receipt's
        forms, where the store keeps them), or None when there is no object; raises
        StorageError. Here: the size alone."""
        from crdb_archive.storage.receipts import Reported  # noqa: PLC0415

        info = self.stat(receipt.key)
        return None if info is None else Reported(info.size)

    # --- conditional writes of small objects ------------------------------------------------

    @abc.abstractmethod
    def read_versioned(self, key: str, *, limit: int = SMALL_OBJECT_LIMIT) -> Versioned | None:
        """The whole object at ``key`` with its version token, or None when there is none.

        Raises BadInput when it is larger than ``limit`` or the key is invalid,
        NeedsRestoreFromColdStorage, StorageError.
        """

    @abc.abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> str:
        """Create ``key`` holding ``data`` only if no object is there; returns its version.

        Of several writers racing to create it, exactly one succeeds. Raises ConditionFailed
        when an object exists, StorageError.
        """

    @abc.abstractmethod
    def put_if_version(self, key: str, data: bytes, version: str) -> str:
        """Replace ``key`` with ``data`` only if its current version is ``version``; returns
        the new version.

        Of several writers replacing the same version, at most one succeeds. Raises
        ConditionFailed when the object changed or is gone, StorageError.
        """

    @abc.abstractmethod
    def delete_if_version(self, key: str, version: str) -> None:
        """Delete ``key`` only if its current version is ``version``.

        Raises ConditionFailed when the object changed or is gone, StorageError.
        """

    # --- publishing -------------------------------------------------------------------------

    @abc.abstractmethod
    def staging(self, name: str) -> AbstractContextManager[Staging]:
        """A staging area for what one writer publishes under the name ``name`` below the root:
        a tree ``name/...``, or a single object (such as ``name.tar``).

        On disk it is the hidden directory :func:`staging_name` of ``name``, locked for one
        writer: a second writer of the same name is refused with StorageError, and what a
        writer that died left in it is removed; a tree is published by one rename after one
        flush of the file system. In an object store, members are written in place and the
        tree's last member marks it complete; when the block ends with an exception, the trees
        written are removed again (unless a publication check raised). Either way nothing is
        visible under the final name before it is whole, and the scratch directory is gone on
        exit. Raises BadInput for an invalid name, StorageError.
        """

    def close(self) -> None:  # noqa: B027 - a local directory holds nothing to release
        """Release connections; a closed storage must not be used again."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def level_order(entry: ObjectInfo | Prefix) -> str:
    """The sort key of a listing entry: a level sorts as ``key/``, as object stores list it."""
    return entry.key + "/" if isinstance(entry, Prefix) else entry.key


def staging_name(name: str) -> str:
    """The hidden name of the staging area of ``name`` on disk."""
    return f".{name}{STAGING_SUFFIX}"


@contextmanager
def storage_errors(where: object) -> Iterator[None]:
    """Turn an OSError in the block into a StorageError with one line naming ``where``."""
    try:
        yield
    except OSError as error:
        raise storage_error(where, error) from error


def storage_error(where: object, error: OSError) -> StorageError:
    """The StorageError, one line naming ``where``, for an OSError while writing there."""
    if error.errno == errno.ENOSPC:
        return StorageError(f"no space left on the device while writing {where}")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"cannot write {where}: {error.strerror}")
    return StorageError(f"{where}: {error.strerror or error}")


def file_read_error(path: str, error: OSError | None) -> StorageError:
    """The error, one line naming ``path``, for a file of this host that cannot be read:
    ObjectNotFound when it is absent or (``error`` None) not a regular file."""
    if error is None:
        return ObjectNotFound(f"{path} is not a regular file")
    if error.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
        return ObjectNotFound(f"{path} does not exist")
    return StorageError(f"cannot read {path}: {error.strerror or error}")


def empty_reader() -> IO[bytes]:
    """A reader with nothing in it, for ranges past the end."""
    return io.BytesIO(b"")


_UNSUPPORTED = {
    "nodelocal": "a node's local storage (nodelocal)",
    "userfile": "CockroachDB userfile storage",
}


def open_storage(
    uri: str,
    *,
    endpoint_url: str | None = None,
    for_write: bool = False,
    parallelism: int = DEFAULT_PARALLELISM,
) -> Storage:
    """The storage rooted at ``uri``: a local path or ``file://`` URI, ``s3://bucket/prefix``,
    ``gs://bucket/prefix`` or ``azure-blob://container/prefix`` (also ``azure://``,
    ``azure-storage://``).

    ``for_write`` creates a local root directory. ``parallelism`` sizes the connection pool.
    Raises BadInput for an unsupported scheme or a malformed URI, StorageError when a local
    root cannot be created.
    """
    _refuse_userinfo(uri)
    return open_location(_parse(uri), endpoint_url=endpoint_url, for_write=for_write,
                         parallelism=parallelism)


def open_location(
    location: Location,
    *,
    endpoint_url: str | None = None,
    for_write: bool = False,
    parallelism: int = DEFAULT_PARALLELISM,
) -> Storage:
    """As :func:`open_storage`, from a parsed location."""
    # Imported here: every backend imports this module for the interface, and a command
    # imports the SDK of the one cloud it talks to.
    if location.scheme == "file":
        from crdb_archive.storage.local import LocalStorage  # noqa: PLC0415

        if location.params:
            raise BadInput(f"{location}: a local path takes no parameters")
        return LocalStorage.open(location, for_write=for_write)
    if location.scheme == "s3":
        from crdb_archive.storage.s3 import S3Storage  # noqa: PLC0415

        return S3Storage.open(location, endpoint_url=endpoint_url, parallelism=parallelism)
    if location.scheme == "gs":
        from crdb_archive.storage.gcs import GcsStorage  # noqa: PLC0415

        return GcsStorage.open(location, endpoint_url=endpoint_url, parallelism=parallelism)
    if location.scheme in ("azure", "azure-blob", "azure-storage"):
        from crdb_archive.storage.azure import AzureStorage  # noqa: PLC0415

        return AzureStorage.open(location, endpoint_url=endpoint_url, parallelism=parallelism)
    raise BadInput(unsupported(location))


# The schemes open_location opens; "file" is a local path.
SCHEMES = ("file", "s3", "gs", "azure", "azure-blob", "azure-storage")


def unsupported(location: Location) -> str:
    """Why ``location`` cannot be opened, when its scheme is not one of SCHEMES."""
    known = _UNSUPPORTED.get(location.scheme)
    what = f"{known} ({location.scheme}://)" if known else f"the scheme {location.scheme}://"
    return (f"{location}: {what} is not supported; use a local directory, file://, s3:// "
            "(S3 and S3-compatible stores), gs:// (Google Cloud Storage) or azure-blob:// "
            "(Azure Blob Storage)")


def open_object(
    uri: str,
    *,
    endpoint_url: str | None = None,
    for_write: bool = False,
    parallelism: int = DEFAULT_PARALLELISM,
) -> tuple[Storage, str]:
    """The storage holding the object ``uri`` names (such as a bundle's .tar), and its key.

    Raises as :func:`open_storage`, and BadInput when ``uri`` names no object.
    """
    _refuse_userinfo(uri)
    parent, name = _parse(uri).parent()
    storage = open_location(parent, endpoint_url=endpoint_url, for_write=for_write,
                            parallelism=parallelism)
    return storage, name


def _parse(uri: str) -> Location:
    try:
        return parse_location(uri)
    except ValueError:  # a port that is not a number, an unbalanced IPv6 bracket
        raise BadInput(f"malformed location {redact(uri)!r}") from None


def _refuse_userinfo(uri: str) -> None:
    # "s3://KEY:SECRET@bucket" would put a secret where redaction does not look for one.
    if "://" not in uri:
        return
    try:
        netloc = urlsplit(uri).netloc
    except ValueError:
        raise BadInput("malformed location: expected a path or scheme://host/path") from None
    if "@" in netloc:
        raise BadInput(f"{_parse(uri)}: credentials before the host name are not "
                       "supported; give them as parameters of the URI, as for BACKUP INTO "
                       "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, CREDENTIALS, "
                       "AZURE_ACCOUNT_NAME and AZURE_ACCOUNT_KEY)")
