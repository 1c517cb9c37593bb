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
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from crdb_archive.backup.manifest import manifest_name
from crdb_archive.errors import NotABackup, StorageError, UnsupportedBackupFile
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

EXPECTED = (
    "expected a CockroachDB backup directory (holding BACKUP_MANIFEST, BACKUP_METADATA or "
    "BACKUP) or a backup collection (holding LATEST, metadata/latest/ or dated "
    "YYYY/MM/DD-HHMMSS.ss full backups)"
)


@dataclass(frozen=True)
class BackupFile:
    """One regular file of a backup: its POSIX path relative to the source root, its size."""

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


def classify(root: Path) -> str:
    """``backup`` for a backup directory, ``collection`` for anything else that may be one.

    Raises NotABackup for a path that does not exist or is not a directory.
    """
    try:
        mode = root.stat().st_mode
    except FileNotFoundError:
        raise NotABackup(f"{root} does not exist: {EXPECTED}") from None
    except OSError as error:
        raise StorageError(f"cannot examine {root}: {error.strerror or error}") from None
    if not stat.S_ISDIR(mode):
        raise NotABackup(f"{root} is not a directory: {EXPECTED}")
    return "backup" if manifest_name(root) is not None else "collection"


def read_collection(root: Path) -> Collection:
    """The full backups and LATEST pointers of the collection at ``root``.

    Raises NotABackup when ``root`` holds neither, StorageError when it cannot be listed.
    """
    warnings: list[str] = []
    backups = _dated_full_backups(root, warnings)
    # Names sort newest first: CockroachDB lists the directory and takes the first name.
    history = sorted(
        f"{LATEST_HISTORY}/{name}"
        for name, is_file in _entries(root / LATEST_HISTORY)
        if is_file and name.startswith(LATEST)
    )
    pointers: list[LatestPointer] = []
    for rel in history:
        pointer = _read_pointer(root, rel, warnings)
        if pointer is not None:
            pointers.append(pointer)
    newest = pointers[0] if pointers and pointers[0].path == history[0] else None
    root_pointer = None
    if _is_regular(root / LATEST):
        root_pointer = _read_pointer(root, LATEST, warnings)
    if root_pointer is not None:
        pointers.append(root_pointer)
    # CockroachDB reads metadata/latest first and the root LATEST only when that finds nothing.
    if newest is not None:
        latest: str | None = newest.subdir
        if root_pointer is not None and root_pointer.subdir != newest.subdir:
            warnings.append(
                f"the root LATEST names {root_pointer.subdir} but the newest "
                f"{newest.path} names {newest.subdir}; CockroachDB, and this report, "
                "follow metadata/latest"
            )
    else:
        if history:
            warnings.append(f"{history[0]} names no backup; falling back to the root LATEST")
        latest = root_pointer.subdir if root_pointer is not None else None
    if not backups and latest is None and not history:
        raise NotABackup(f"{root} holds no CockroachDB backup: {EXPECTED}")
    if latest is not None and not any(b.subdir == latest for b in backups):
        extra = full_backup(root, latest)
        if extra is not None:
            backups.append(extra)
            backups.sort(key=lambda b: b.subdir)
    return Collection(backups, pointers, latest, warnings)


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


def find_incrementals(root: Path, base: str, warnings: list[str]) -> list[str]:
    """The complete incremental backups under ``base`` (``<YYYYMMDD>/<HHMMSS.ss>[-...]``).

    Directories of that shape without a manifest (unfinished) are left out, with a warning.
    Raises StorageError when a directory cannot be listed.
    """
    found: list[str] = []
    for day, day_is_file in _entries(root / base if base else root):
        if day_is_file or not _INCREMENTAL_DAY.match(day):
            continue
        day_rel = _join(base, day)
        for name, is_file in _entries(root / day_rel):
            rel = _join(day_rel, name)
            if not is_file and _INCREMENTAL_TIME.match(name) and manifest_name(root / rel):
                found.append(rel)
            else:
                warnings.append(
                    f"{rel} is not a complete incremental backup (no manifest); left out"
                )
    return sorted(found)


def list_files(
    root: Path,
    base: str,
    *,
    skip_incremental_days: bool = False,
    progress: ProgressCallback = no_progress,
) -> list[BackupFile]:
    """Every regular file under ``root/base``, sorted, with paths relative to ``root``.

    ``skip_incremental_days`` leaves out ``<YYYYMMDD>`` directories at the top of ``base``:
    there, they hold the nested incremental backups of the older layout. Raises
    UnsupportedBackupFile for a symbolic link or special file (never followed), StorageError
    when a directory cannot be listed.
    """
    files: list[BackupFile] = []
    pending = [base]
    task = f"list {base or '.'}"
    while pending:
        current = pending.pop()
        for entry in _scan(root / current if current else root):
            rel = _join(current, entry.name)
            if entry.is_symlink():
                raise UnsupportedBackupFile(
                    f"{rel} is a symbolic link: crdb-archive archives regular files only; copy "
                    "the backup with links resolved (e.g. cp -rL) and archive the copy"
                )
            if entry.is_dir(follow_symlinks=False):
                if not (skip_incremental_days and current == base
                        and _INCREMENTAL_DAY.match(entry.name)):
                    pending.append(rel)
            elif entry.is_file(follow_symlinks=False):
                files.append(BackupFile(rel, _size(entry, rel)))
                if len(files) % 1000 == 0:
                    progress(ProgressEvent(task, len(files)))
            else:
                raise UnsupportedBackupFile(
                    f"{rel} is not a regular file (a socket, pipe or device): not part of a "
                    "CockroachDB backup"
                )
    progress(ProgressEvent(task, len(files), len(files), finished=True))
    return sorted(files, key=lambda f: f.path)


def file_of(root: Path, rel: str) -> BackupFile:
    """The one regular file ``rel``; raises StorageError when it cannot be examined."""
    try:
        return BackupFile(rel, os.lstat(root / rel).st_size)
    except OSError as error:
        raise StorageError(f"cannot examine {root / rel}: {error.strerror or error}") from None


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


def _dated_full_backups(root: Path, warnings: list[str]) -> list[FullBackup]:
    backups: list[FullBackup] = []
    for year, year_is_file in _entries(root):
        if year_is_file or not _YEAR.match(year):
            continue
        for month, month_is_file in _entries(root / year):
            if month_is_file or not _MONTH.match(month):
                continue
            for day, day_is_file in _entries(root / year / month):
                subdir = f"{year}/{month}/{day}"
                if day_is_file or not _DAY_TIME.match(day) or subdir_end_time(subdir) is None:
                    continue
                found = full_backup(root, subdir)
                if found is None:
                    warnings.append(
                        f"{subdir} holds no manifest (an unfinished or failed backup); "
                        "not a full backup"
                    )
                else:
                    backups.append(found)
    return sorted(backups, key=lambda b: b.subdir)


def full_backup(root: Path, subdir: str) -> FullBackup | None:
    """The full backup in ``root/subdir`` when that directory holds a manifest.

    Raises UnsupportedBackupFile when a component of the path is a symbolic link.
    """
    current = root
    for part in subdir.split("/"):
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            raise StorageError(f"cannot examine {current}: {error.strerror or error}") from None
        if stat.S_ISLNK(mode):
            raise UnsupportedBackupFile(
                f"{subdir} passes through the symbolic link {current.relative_to(root)}: "
                "crdb-archive archives regular files only"
            )
        if not stat.S_ISDIR(mode):
            return None
    name = manifest_name(current)
    if name is None:
        return None
    return FullBackup(subdir, subdir_end_time(subdir), f"{subdir}/{name}")


def _read_pointer(root: Path, rel: str, warnings: list[str]) -> LatestPointer | None:
    try:
        with (root / rel).open("rb") as stream:
            raw = stream.read(_MAX_POINTER_BYTES + 1)
    except OSError as error:
        raise StorageError(f"cannot read {root / rel}: {error.strerror or error}") from None
    try:
        if len(raw) <= _MAX_POINTER_BYTES:
            return LatestPointer(rel, normalize_subdir(raw.decode("utf-8")))
    except (UnicodeDecodeError, NotABackup):
        pass
    warnings.append(f"{rel} does not hold a backup subdirectory; ignored")
    return None


def _scan(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda e: e.name)
    except OSError as error:
        raise StorageError(f"cannot list {directory}: {error.strerror or error}") from None


def _entries(directory: Path) -> list[tuple[str, bool]]:
    """(name, is not a directory) of each entry; nothing when ``directory`` is absent.

    Links count as files here: they are never descended into.
    """
    try:
        if not stat.S_ISDIR(os.lstat(directory).st_mode):
            return []
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as error:
        raise StorageError(f"cannot examine {directory}: {error.strerror or error}") from None
    return [(e.name, not e.is_dir(follow_symlinks=False)) for e in _scan(directory)]


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as error:
        raise StorageError(f"cannot examine {path}: {error.strerror or error}") from None


def _size(entry: os.DirEntry[str], rel: str) -> int:
    try:
        return entry.stat(follow_symlinks=False).st_size
    except OSError as error:
        raise StorageError(f"cannot examine {rel}: {error.strerror or error}") from None


def _join(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name
