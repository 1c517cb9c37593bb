"""Archiving any source: a backup, or changefeed or EXPORT output, into one verified bundle.

The request and its checks are in :mod:`crdb_archive.archive_request`, the backup job in
:mod:`crdb_archive.archive_backup`, the export job in :mod:`crdb_archive.export.archive`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crdb_archive.archive_backup import archive_backup, existing_signature_warnings
from crdb_archive.archive_request import ArchiveRequest, ArchiveResult, check_destination
from crdb_archive.bundle.writer import Guard
from crdb_archive.errors import BadInput
from crdb_archive.progress import ProgressCallback, no_progress
from crdb_archive.sources import KindChoice, recognise_source
from crdb_archive.storage.uri import redact

if TYPE_CHECKING:
    from crdb_archive.export.archive import ExportArchiveResult
    from crdb_archive.export.options import ExportOptions

__all__ = [
    "ArchiveRequest", "ArchiveResult", "archive_backup", "archive_source", "check_destination",
    "existing_signature_warnings",
]


def archive_source(
    request: ArchiveRequest,
    *,
    kind: KindChoice = "auto",
    export: ExportOptions | None = None,
    progress: ProgressCallback = no_progress,
    guard: Guard | None = None,
) -> ArchiveResult | ExportArchiveResult:
    """Archive the backup, changefeed output or EXPORT output at ``request.source``.

    ``kind`` ``auto`` tells them apart by their file names (:mod:`crdb_archive.sources`).
    Raises UnrecognisedSource (exit 2) for a source that holds neither or both, BadInput for
    export options given for a backup, and what :func:`archive_backup` or
    :func:`crdb_archive.export.archive.archive_export` raise.
    """
    chosen = recognise_source(request.source, kind,
                              endpoint_url=request.source_endpoint_url)
    if chosen == "export":
        from crdb_archive.export.archive import archive_export  # noqa: PLC0415
        from crdb_archive.export.options import ExportOptions  # noqa: PLC0415

        return archive_export(request, export or ExportOptions(), progress=progress,
                              guard=guard)
    if export is not None and export.given:
        raise BadInput(f"{export.given[0]} applies to changefeed and EXPORT output, and "
                       f"{redact(request.source)} holds a backup")
    return archive_backup(request, progress=progress, guard=guard)
