"""Where a CockroachDB backup's files are: collections, LATEST pointers, incrementals.

Layout facts (DESIGN 2.3): ``BACKUP INTO`` writes full backups into dated subdirectories
``YYYY/MM/DD-HHMMSS.ss`` of a collection, named after their end time, and names the newest in a
root ``LATEST`` file and, from v22.1, in ``metadata/latest/LATEST-<suffix>`` files whose names
sort newest first. Incremental backups live in
``incrementals/<full subdir>/<YYYYMMDD>/<HHMMSS.ss>[-...]`` (v22.1+) or, before, nested in the
full backup's own directory as ``<full subdir>/<YYYYMMDD>/<HHMMSS.ss>``.
"""

from __future__ import annotations

import datetime as dt
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from crdb_archive.backup.manifest_file import manifest_name
from crdb_archive.backup.tree import EXPECTED, BackupTree, Kind, join, local_tree
from crdb_archive.errors import NotABackup, UnsupportedBackupFile
from crdb_archive.progress import ProgressCallback, ProgressEvent, no_progress

LATEST = "LATEST"
LATEST_HISTORY = "metadata/latest"
INCREMENTALS = "incrementals"

_DATED = re.compile(r"^(\d{4})/(\d{2})/(\d{2})-(\d{2})(\d{2})(\d{2})\.(\d{2})$")
_YEAR = re.compile(r"^\d{4}$")
_MONTH = re.compile(r"^\d{2}$")
_DAY_TIME = re.compile(r"^\d{2}-\d{6}\.\d{2}$")
_INCREMENTAL_DAY = re.compile(r"^\d{8}$")
_INCREMENTAL_TIME = re.compile(r"^\d{6}\.\d{2}(?:-.+)?$")
# A LATEST file holds one short path; anything longer is not one.
_MAX_POINTER_BYTES = 4096
# LATEST files read at once from an object store (its default connection pool is as large).
_POINTER_READERS = 8


@dataclass(frozen=True, slots=True)  # one per file of the backup: 100k of them
class BackupFile:
    """One regular file of a backup: its key relative to the source's storage, its size."""

    path: str
    size: int


@dataclass(frozen=True)
class FullBackup:
    """A full backup of a collection; ``end_time`` comes from its directory name."""

    subdir: str
    end_time: dt.datetime | None
    manifest: str


@dataclass(frozen=True)
class LatestPointer:
    """A LATEST file of a collection and the full backup it names."""

    path: str
    subdir: str


@dataclass(frozen=True)
class Collection:
    """The full backups of a collection and what its LATEST files say."""

    full_backups: list[FullBackup]
    pointers: list[LatestPointer]
    latest: str | None
    warnings: list[str]

    def find(self, subdir: str) -> FullBackup | None:
        return next((b for b in self.full_backups if b.subdir == subdir), None)


def classify(root: Path | BackupTree) -> str:
    """``backup`` for a backup directory, ``collection`` for anything else that may be one.

    Raises NotABackup for a path that does not exist or is not a directory, or a prefix that
    holds no object.
    """
    tree = as_tree(root)
    tree.check_root()
    return "backup" if manifest_name(tree, "") is not None else "collection"


def read_collection(root: Path | BackupTree) -> Collection:
    """The full backups and LATEST pointers of the collection at ``root``.

    Raises NotABackup when ``root`` holds neither, NeedsRestoreFromColdStorage when LATEST
    files wait in an archive storage class, StorageError when it cannot be listed or read.
    """
    tree = as_tree(root)
    warnings: list[str] = []
    backups = _dated_full_backups(tree, warnings)
    history = _latest_history(tree, warnings)
    has_root = tree.kind(LATEST) == "file"
    raw = _read_pointers(tree, [*history, *([LATEST] if has_root else [])])
    pointers: list[LatestPointer] = []
    for rel in history:
        pointer = _pointer(rel, raw[rel], warnings)
        if pointer is not None:
            pointers.append(pointer)
    newest = pointers[0] if pointers and pointers[0].path == history[0] else None
    root_pointer = _pointer(LATEST, raw[LATEST], warnings) if has_root else None
    if root_pointer is not None:
        pointers.append(root_pointer)
    latest = _latest(newest, root_pointer, history, warnings)
    if not backups and latest is None and not history:
        raise NotABackup(f"{tree.display()} holds no CockroachDB backup: {EXPECTED}")
    if latest is not None and not any(b.subdir == latest for b in backups):
        extra = full_backup(tree, latest)
        if extra is not None:
            backups.append(extra)
            backups.sort(key=lambda b: b.subdir)
    return Collection(backups, pointers, latest, warnings)


def _latest_history(tree: BackupTree, warnings: list[str]) -> list[str]:
    """The files of metadata/latest, newest first: CockroachDB lists the directory and takes
    the first name."""
    history: list[str] = []
    for name, kind in tree.entries(LATEST_HISTORY):
        if not name.startswith(LATEST):
            continue
        if kind == "file":
            history.append(f"{LATEST_HISTORY}/{name}")
        else:
            warnings.append(f"{LATEST_HISTORY}/{name} is not a regular file; ignored")
    return sorted(history)


def _latest(newest: LatestPointer | None, root_pointer: LatestPointer | None,
            history: list[str], warnings: list[str]) -> str | None:
    """The subdirectory LATEST names. CockroachDB reads metadata/latest first and the root
    LATEST only when that finds nothing."""
    if newest is not None:
        if root_pointer is not None and root_pointer.subdir != newest.subdir:
            warnings.append(
                f"the root LATEST names {root_pointer.subdir} but the newest "
                f"{newest.path} names {newest.subdir}; CockroachDB, and this report, "
                "follow metadata/latest"
            )
        return newest.subdir
    if history:
        warnings.append(f"{history[0]} names no backup; falling back to the root LATEST")
    return root_pointer.subdir if root_pointer is not None else None


def as_tree(root: Path | BackupTree) -> BackupTree:
    """``root`` itself, or the tree of the local directory it names."""
    return local_tree(root) if isinstance(root, Path) else root


def normalize_subdir(text: str) -> str:
    """A collection subdirectory as CockroachDB writes it in LATEST, without slashes around.

    Raises NotABackup for a path that would leave the collection.
    """
    cleaned = text.strip().strip("/")
    parts = PurePosixPath(cleaned).parts if cleaned else ()
    if not parts or any(p in {".", ".."} for p in cleaned.split("/")) or "\\" in cleaned:
        raise NotABackup(
            f"{text!r} is not a subdirectory of a collection: expected a relative path like "
            "2023/06/02-093257.93"
        )
    return "/".join(parts)


def find_incrementals(tree: BackupTree, base: str, warnings: list[str]) -> list[str]:
    """The complete incremental backups under ``base`` (``<YYYYMMDD>/<HHMMSS.ss>[-...]``).

    Directories of that shape without a manifest (unfinished) are left out, with a warning.
    Raises StorageError when a directory cannot be listed.
    """
    found: list[str] = []
    for day, day_kind in tree.entries(base):
        if day_kind != "dir" or not _INCREMENTAL_DAY.match(day):
            continue
        day_rel = join(base, day)
        for name, kind in tree.entries(day_rel):
            rel = join(day_rel, name)
            if kind == "dir" and _INCREMENTAL_TIME.match(name) and manifest_name(tree, rel):
                found.append(rel)
            else:
                warnings.append(
                    f"{rel} is not a complete incremental backup (no manifest); left out"
                )
    return sorted(found)


def list_files(
    tree: BackupTree,
    base: str,
    *,
    skip_incremental_days: bool = False,
    progress: ProgressCallback = no_progress,
) -> list[BackupFile]:
    """Every regular file under ``base``, sorted, with keys relative to the tree's root.

    ``skip_incremental_days`` leaves out ``<YYYYMMDD>`` directories at the top of ``base``:
    there, they hold the nested incremental backups of the older layout. Raises
    UnsupportedBackupFile for a symbolic link or special file (never followed) or an object key
    no file could have, StorageError when a directory cannot be listed.
    """
    files: list[BackupFile] = []
    task = f"list {base or '.'}"
    skip = _INCREMENTAL_DAY.match if skip_incremental_days else None
    for key, kind, size in tree.walk(base, skip_top=skip):
        if kind != "file":
            raise _unsupported(tree, key, kind)
        files.append(BackupFile(key, size))
        if len(files) % 1000 == 0:
            progress(ProgressEvent(task, len(files)))
    progress(ProgressEvent(task, len(files), len(files), finished=True))
    files.sort(key=lambda f: f.path)
    return files


def file_of(tree: BackupTree, rel: str) -> BackupFile:
    """The one regular file ``rel``; raises StorageError when it cannot be examined."""
    return BackupFile(rel, tree.size(rel))


def subdir_end_time(subdir: str) -> dt.datetime | None:
    """The end time a dated subdirectory is named after (to the hundredth of a second)."""
    match = _DATED.match(subdir)
    if match is None:
        return None
    year, month, day, hour, minute, second, hundredths = (int(g) for g in match.groups())
    try:
        return dt.datetime(year, month, day, hour, minute, second, hundredths * 10_000,
                           tzinfo=dt.UTC)
    except ValueError:
        return None


# --- helpers ------------------------------------------------------------------------------------


def _dated_full_backups(tree: BackupTree, warnings: list[str]) -> list[FullBackup]:
    backups: list[FullBackup] = []
    for year, year_kind in tree.entries(""):
        if year_kind != "dir" or not _YEAR.match(year):
            continue
        for month, month_kind in tree.entries(year):
            if month_kind != "dir" or not _MONTH.match(month):
                continue
            for day, day_kind in tree.entries(f"{year}/{month}"):
                subdir = f"{year}/{month}/{day}"
                if (day_kind != "dir" or not _DAY_TIME.match(day)
                        or subdir_end_time(subdir) is None):
                    continue
                found = full_backup(tree, subdir)
                if found is None:
                    warnings.append(
                        f"{subdir} holds no manifest (an unfinished or failed backup); "
                        "not a full backup"
                    )
                else:
                    backups.append(found)
    return sorted(backups, key=lambda b: b.subdir)


def full_backup(tree: BackupTree, subdir: str) -> FullBackup | None:
    """The full backup in ``subdir`` when that directory holds a manifest.

    Raises UnsupportedBackupFile when a component of the path is a symbolic link.
    """
    current = ""
    for part in subdir.split("/"):
        current = join(current, part)
        kind = tree.kind(current)
        if kind == "link":
            raise UnsupportedBackupFile(
                f"{subdir} passes through the symbolic link {current}: "
                "crdb-archive archives regular files only"
            )
        if kind != "dir":
            return None
    name = manifest_name(tree, subdir)
    if name is None:
        return None
    return FullBackup(subdir, subdir_end_time(subdir), f"{subdir}/{name}")


def _read_pointers(tree: BackupTree, rels: list[str]) -> dict[str, bytes]:
    """The first bytes of each LATEST file, read side by side from object storage."""
    tree.require_readable(rels, "the collection's LATEST files can be read")

    def head(rel: str) -> bytes:
        return tree.read_head(rel, _MAX_POINTER_BYTES + 1)

    # One LATEST file per full backup: a year of daily backups is hundreds of small reads,
    # each a round trip to an object store.
    if tree.local_reads or len(rels) < 2:
        return {rel: head(rel) for rel in rels}
    with ThreadPoolExecutor(max_workers=min(len(rels), _POINTER_READERS)) as pool:
        return dict(zip(rels, pool.map(head, rels), strict=True))


def _pointer(rel: str, raw: bytes, warnings: list[str]) -> LatestPointer | None:
    try:
        if len(raw) <= _MAX_POINTER_BYTES:
            return LatestPointer(rel, normalize_subdir(raw.decode("utf-8")))
    except (UnicodeDecodeError, NotABackup):
        pass
    warnings.append(f"{rel} does not hold a backup subdirectory; ignored")
    return None


def _unsupported(tree: BackupTree, key: str, kind: Kind) -> UnsupportedBackupFile:
    if kind == "link":
        return UnsupportedBackupFile(
            f"{key} is a symbolic link: crdb-archive archives regular files only; copy "
            "the backup with links resolved (e.g. cp -rL) and archive the copy"
        )
    if kind == "invalid":
        return UnsupportedBackupFile(
            f"{tree.display()} holds the object {key!r}, whose key has an empty, '.' or '..' "
            "segment: no file system path can hold it, so it cannot be archived"
        )
    return UnsupportedBackupFile(
        f"{key} is not a regular file (a socket, pipe or device): not part of a "
        "CockroachDB backup"
    )
