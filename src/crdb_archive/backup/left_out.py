"""What a bundle of one backup leaves out of its source: every other file, and why.

A bundle holds the chosen full backup, the LATEST files that name it and, with
``--with-incrementals``, its incremental backups. A collection holds more: other full backups
and their incrementals, LATEST files naming those, unfinished backups, and files no backup
wrote. Listing them tells an operator what a restore from the bundle will not have.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from crdb_archive.backup.layout import INCREMENTALS, LATEST, LATEST_HISTORY
from crdb_archive.backup.tree import BackupTree, Entry

# At most this many paths are named: a collection of a year of daily backups leaves out
# hundreds of thousands of files, and the reasons' counts already say what they are.
SHOWN = 100

OTHER_FULL = "another full backup"
OTHER_INCREMENTAL = "an incremental backup of another full backup"
OTHER_LATEST = "a LATEST file that does not name the chosen full backup"
UNFINISHED_FULL = "an unfinished full backup (no manifest)"
UNFINISHED_INCREMENTAL = "an unfinished incremental backup (no manifest)"
STRAY = "not part of any backup"

_DATED = re.compile(r"^\d{4}/\d{2}/\d{2}-\d{6}\.\d{2}/")
_INCREMENTAL_DAY = re.compile(r"^\d{8}/")


@dataclass(frozen=True)
class LeftOutFile:
    """One file of the source that the bundle does not hold, and why."""

    path: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class LeftOut:
    """The files a bundle leaves out: the first :data:`SHOWN` by path, every one counted."""

    files: list[LeftOutFile]
    count: int
    bytes: int
    by_reason: dict[str, int]


@dataclass(frozen=True)
class Selection:
    """What a bundle of the chosen backup may hold, against which the source is read."""

    chosen: str  # the full backup's subdirectory; "" for a single backup
    taken: frozenset[str]  # its files, its LATEST files, its complete incrementals' files
    full_backups: frozenset[str]  # every full backup's subdirectory in the collection


def left_out_of(tree: BackupTree, selection: Selection) -> LeftOut:
    """Every file below the tree's root that ``selection`` does not take, with its reason.

    Memory stays bounded by :data:`SHOWN` however large the source. Raises StorageError when
    a directory cannot be listed.
    """
    by_reason: Counter[str] = Counter()
    octets = 0

    def counted(entries: Iterable[Entry]) -> Iterator[LeftOutFile]:
        nonlocal octets
        for entry in entries:
            if entry.key in selection.taken:
                continue
            reason = _reason(entry.key, selection)
            by_reason[reason] += 1
            octets += entry.size
            yield LeftOutFile(entry.key, reason)

    shown = heapq.nsmallest(SHOWN, counted(tree.walk("")), key=lambda f: f.path)
    return LeftOut(shown, sum(by_reason.values()), octets,
                   dict(sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))))


def _reason(key: str, selection: Selection) -> str:
    chosen = selection.chosen
    if chosen == "" or key.startswith(chosen + "/"):
        # The chosen full backup's own directory is taken whole but for its nested
        # incrementals (<YYYYMMDD>/...), and every complete one of those is taken too.
        inside = key[len(chosen) + 1:] if chosen else key
        return UNFINISHED_INCREMENTAL if _INCREMENTAL_DAY.match(inside) else STRAY
    if key.startswith(INCREMENTALS + "/"):
        rest = key[len(INCREMENTALS) + 1:]
        if rest.startswith(chosen + "/"):
            return UNFINISHED_INCREMENTAL
        return OTHER_INCREMENTAL if _owner(rest, selection) is not None else STRAY
    if key == LATEST or key.startswith(LATEST_HISTORY + "/" + LATEST):
        return OTHER_LATEST
    owner = _owner(key, selection)
    if owner is not None:
        inside = key[len(owner) + 1:]
        return OTHER_INCREMENTAL if _INCREMENTAL_DAY.match(inside) else OTHER_FULL
    return UNFINISHED_FULL if _DATED.match(key) else STRAY


def _owner(key: str, selection: Selection) -> str | None:
    """The full backup whose directory holds ``key``, if any."""
    parts = key.split("/")
    for depth in range(1, len(parts)):
        candidate = "/".join(parts[:depth])
        if candidate in selection.full_backups:
            return candidate
    return None
