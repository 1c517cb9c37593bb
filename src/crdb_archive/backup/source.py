"""Where a backup is read from: a local directory, a ``file://`` or ``s3://`` URI, a Storage.

Users paste the URI they gave ``BACKUP INTO``, secrets included; only the storage layer ever
sees those, and every name shown comes from :meth:`Storage.display`.
"""

from __future__ import annotations

import stat
from pathlib import Path

from crdb_archive.backup.layout import LATEST, LATEST_HISTORY, subdir_end_time
from crdb_archive.backup.tree import EXPECTED
from crdb_archive.errors import NotABackup
from crdb_archive.storage.base import Storage, open_location, open_storage
from crdb_archive.storage.uri import Location, parse_location


def open_source(
    source: str | Path | Storage, *, endpoint_url: str | None = None
) -> tuple[Storage, bool]:
    """The storage rooted at ``source``, and whether the caller opened it (and must close it).

    A ``Path`` is a local directory; a ``str`` is a path or URI for :func:`open_storage`; a
    Storage is used as it is. Raises NotABackup for a local path that is a file, BadInput for
    a malformed or unsupported location.
    """
    if isinstance(source, Storage):
        return source, False
    location: Location | None
    if isinstance(source, Path):
        # A Path is never a URI, whatever it looks like ("ab:c").
        location = Location("file", "", str(source), ())
    else:
        try:
            location = parse_location(source)
        except ValueError:
            location = None  # open_storage names what is malformed
    if location is not None and location.scheme == "file":
        try:
            mode = Path(location.path).stat().st_mode
        except OSError:
            mode = None  # missing or unreadable: the inspection says which
        if mode is not None and not stat.S_ISDIR(mode):
            raise NotABackup(f"{location} is not a directory: {EXPECTED}")
    if isinstance(source, Path) and location is not None:
        return open_location(location), True
    return open_storage(str(source), endpoint_url=endpoint_url), True


def root_path(storage: Storage) -> Path | None:
    """The local directory of ``storage``, or None when its objects are not files here."""
    paths = storage.local_paths()
    return paths.local_path if paths is not None else None


def collection_hint(storage: Storage) -> list[str]:
    """A warning when the single backup at ``storage`` is a full backup of a collection.

    Inspecting it alone leaves out the collection's incremental backups and LATEST files.
    """
    root = root_path(storage)
    if root is not None:
        return _local_hint(root)
    parts = storage.location.path.strip("/").split("/")
    subdir = "/".join(parts[-3:])
    if len(parts) < 3 or subdir_end_time(subdir) is None:
        return []
    # Only BACKUP INTO names directories like this; looking for the collection's LATEST files
    # would need a storage above this one.
    collection = storage.display().rsplit("/", 3)[0]
    return [
        f"this is named like the full backup {subdir} of the collection {collection}; if it "
        "is one, inspect the collection to include its incremental backups and LATEST files"
    ]


def _local_hint(root: Path) -> list[str]:
    absolute = root.resolve()
    parents = absolute.parents
    if len(parents) < 3:
        return []
    subdir = "/".join(absolute.parts[-3:])
    collection = parents[2]
    if subdir_end_time(subdir) is None:
        return []
    if (collection / LATEST).exists() or (collection / LATEST_HISTORY).exists():
        return [
            f"this is the full backup {subdir} of the collection {collection}; inspect the "
            "collection to include its incremental backups and LATEST files"
        ]
    return []
