"""The names of backup bundles: the same backup always gets the same name.

``crdb-<cluster>-<end time>-<release>[-inc<N>-<newest incremental's end time>]``, every time in
ISO 8601 basic format, UTC (``20241215T000000Z``, with ``.ff`` when the hundredths of a second
are not zero). ``<cluster>`` is the first 8 hex digits of the cluster ID, or, for an encrypted
backup read without its key, ``enc`` and 8 hex digits of its manifest file's SHA-256; the end
time then comes from the full backup's subdirectory.

Bundles written before the names used ISO 8601 basic throughout are still recognised by
:attr:`BundleNames.legacy`, so a job never archives a backup twice because its name changed.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from crdb_archive.backup import BackupInfo
from crdb_archive.backup.layout import subdir_end_time
from crdb_archive.hashing import digest_stream
from crdb_archive.times import basic

# An incremental is named after its end: "<YYYYMMDD>/<HHMMSS.ss>[-...]" below its full backup.
_INCREMENTAL = re.compile(r"(\d{8})/(\d{6})\.(\d{2})(?:-[^/]*)?$")


@dataclass(frozen=True)
class BundleNames:
    """The name a backup's bundle gets, and the one earlier versions gave it."""

    current: str
    legacy: str

    @property
    def all(self) -> tuple[str, ...]:
        return (self.current,) if self.legacy == self.current else (self.current, self.legacy)


def backup_bundle_names(backup: BackupInfo, release: str,
                        with_incrementals: bool = False) -> BundleNames:
    """The bundle names of ``backup`` archived as ``release`` (with its incremental chain
    when ``with_incrementals``). Raises StorageError when an encrypted manifest must be read to
    name it and cannot be."""
    who = _cluster_part(backup)
    current = f"crdb-{who}-{_time_part(backup)}-{release}"
    legacy = f"crdb-{who}-{_legacy_time_part(backup)}-{release}"
    if with_incrementals and backup.incrementals:
        newest = backup.incrementals[-1]
        count = len(backup.incrementals)
        current += f"-inc{count}-{_incremental_time(newest)}"
        legacy += f"-inc{count}-{_legacy_incremental_time(newest)}"
    return BundleNames(current, legacy)


def _cluster_part(backup: BackupInfo) -> str:
    manifest = backup.manifest
    if manifest.cluster_id:
        return manifest.cluster_id.replace("-", "")[:8]
    with backup.storage.open_read(manifest.file) as stream:
        return f"enc{digest_stream(stream, task='name').sha256[:8]}"


def _time_part(backup: BackupInfo) -> str:
    end = backup.manifest.end_time
    if end is None and backup.subdir:
        end = subdir_end_time(backup.subdir)
    return basic(end) if end is not None else "undated"


def _incremental_time(path: str) -> str:
    match = _INCREMENTAL.search(path)
    if match is None:  # not named as CockroachDB names incrementals: keep what it says
        return re.sub(r"[^0-9A-Za-z]+", "", path.rsplit("/", 1)[-1]) or "undated"
    day, clock, hundredths = match.groups()
    try:
        when = dt.datetime(int(day[:4]), int(day[4:6]), int(day[6:]), int(clock[:2]),
                           int(clock[2:4]), int(clock[4:]), int(hundredths) * 10_000,
                           tzinfo=dt.UTC)
    except ValueError:  # digits that are no date
        return day + clock + hundredths
    return basic(when)


# --- the names of earlier versions ------------------------------------------------------------


def _legacy_time_part(backup: BackupInfo) -> str:
    # HHMMSS and the hundredths ran together: 20241215T00000000Z.
    end = backup.manifest.end_time
    if end is not None:
        end = end.astimezone(dt.UTC)
        return f"{end:%Y%m%dT%H%M%S}{end.microsecond // 10_000:02d}Z"
    if backup.subdir:
        return re.sub(r"[^0-9A-Za-z.]+", "", backup.subdir).replace(".", "")
    return "undated"


def _legacy_incremental_time(path: str) -> str:
    # "<YYYYMMDD>/<HHMMSS.ss>[-...]" -> "YYYYMMDDHHMMSS", without a T, a zone or hundredths.
    *_, day, leaf = ["", *path.split("/")]
    return re.sub(r"[^0-9]+", "", day + leaf.split("-", 1)[0])[:14]
