"""The snapshot time T of a scanned output, and the files that can hold its rows.

    plan = plan_snapshot(scan, as_of="latest")

- ``latest`` (the default) is the newest RESOLVED timestamp; an explicit HLC (``wall.logical``
  or the 33-digit file form) must be one of the RESOLVED timestamps;
- with no RESOLVED file at all (EXPORT, ``initial_scan='only'``) the snapshot is the output as
  a whole (``plan.as_of is None``);
- the files that may hold rows of T are those whose relative path sorts before
  ``T.RESOLVED``'s. The sink guarantees ordering of file names (``sink_cloudstorage.go``: "if
  the files are iterated in lexicographic filename order, then encountering any filename
  containing RESOLVED means that everything before it is finalized"); partition folders are
  derived from the same time that starts each name, so comparing whole relative paths (byte
  order, as object stores list them) keeps that order across folders. Such files may still
  hold rows newer than T: the snapshot drops them by timestamp.

Raises :class:`~crdb_archive.errors.InvalidAsOf` (exit 2) for an --as-of that does not parse
or is not a RESOLVED timestamp of the output.
"""

from __future__ import annotations

from dataclasses import dataclass

from crdb_archive.errors import InvalidAsOf
from crdb_archive.export.hlc import Hlc
from crdb_archive.export.names import DataFileName
from crdb_archive.export.scan import ExportScan, ResolvedTime


@dataclass(frozen=True)
class SnapshotPlan:
    """Which time the snapshot is taken at, and from which files."""

    as_of: Hlc | None  # None: the output as a whole
    resolved_file: str | None  # the T.RESOLVED file, relative path
    data_files: tuple[DataFileName, ...]  # changefeed files before T.RESOLVED, in path order
    excluded_files: int  # changefeed files at or after T.RESOLVED


def plan_snapshot(scan: ExportScan, as_of: str = "latest") -> SnapshotPlan:
    """Choose T and the files before ``T.RESOLVED``; see the module docstring."""
    if scan.kind == "export" or not scan.resolved:
        if as_of != "latest":
            raise InvalidAsOf(
                f"--as-of {as_of}: this {scan.kind} output has no RESOLVED timestamps; it can "
                "only be taken as a whole (leave --as-of at latest)")
        return SnapshotPlan(as_of=None, resolved_file=None, data_files=scan.data_files,
                            excluded_files=0)
    chosen = _choose(scan.resolved, as_of)
    bound = chosen.file.path.encode("utf-8")
    before = tuple(f for f in scan.data_files if f.path.encode("utf-8") < bound)
    return SnapshotPlan(as_of=chosen.time, resolved_file=chosen.file.path, data_files=before,
                        excluded_files=len(scan.data_files) - len(before))


def _choose(resolved: tuple[ResolvedTime, ...], as_of: str) -> ResolvedTime:
    if as_of == "latest":
        return max(resolved, key=lambda r: (r.time, r.file.path))
    try:
        wanted = Hlc.parse_user(as_of)
    except ValueError:
        raise InvalidAsOf(
            f"--as-of {as_of}: not 'latest' nor an HLC timestamp (<wall nanos>.<logical> or "
            "the 33 digits of a RESOLVED file name)") from None
    for candidate in resolved:
        if candidate.time == wanted:
            return candidate
    newest = max(r.time for r in resolved)
    raise InvalidAsOf(
        f"--as-of {as_of}: not one of the {len(resolved)} RESOLVED timestamps of the feed "
        f"(newest {newest.decimal()})")
