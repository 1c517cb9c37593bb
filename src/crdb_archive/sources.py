"""What a source location holds: a CockroachDB backup, or changefeed or EXPORT output.

Judged from one listing of the location, by names alone: a backup by its manifest (or a
collection's LATEST pointers), an export by the names changefeed sinks and ``EXPORT`` give
their files. Nothing is read but the listing, which stops as soon as both kinds have shown.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from crdb_archive.backup import MANIFEST_NAMES
from crdb_archive.backup.layout import LATEST, LATEST_HISTORY
from crdb_archive.errors import UnrecognisedSource
from crdb_archive.export.names import parse_data_file, parse_export_file, parse_resolved_file
from crdb_archive.storage.base import open_storage
from crdb_archive.storage.uri import parse_location, redact
from crdb_archive.text import count

SourceKind = Literal["backup", "export"]
KindChoice = Literal["auto", "backup", "export"]
KIND_CHOICES: tuple[KindChoice, ...] = ("auto", "backup", "export")

_SAMPLES = 3


def recorded_source(location: str) -> str:
    """A source as a bundle records it: ``file://<host>/<absolute path>`` for a local path,
    so that an auditor knows whose disk it was; the URI without its secrets otherwise."""
    parsed = parse_location(location)
    if parsed.scheme != "file":
        return parsed.redacted
    absolute = os.path.normpath(Path(parsed.path).absolute())
    return f"file://{socket.gethostname()}{quote(absolute)}"


def source_key(recorded: str) -> str:
    """What makes two recorded sources one: the absolute path of a local source, whichever
    host recorded it (a job run from a new container must know its bundles), and earlier
    versions' records (a bare path) alike; the URI without its secrets otherwise."""
    if recorded.startswith("file://"):
        return os.path.normpath(unquote(urlsplit(recorded).path))
    if recorded.startswith("/"):
        return os.path.normpath(recorded)
    return redact(recorded)


@dataclass
class SourceEvidence:
    """What the listing showed: the first few names of each kind, and how many files."""

    display: str
    files: int = 0
    backup: list[str] = field(default_factory=list)
    export: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    @property
    def kind(self) -> SourceKind | None:
        """The one kind that showed; None when neither did. Raises UnrecognisedSource when
        both did."""
        if self.backup and self.export:
            raise UnrecognisedSource(
                f"{self.display} holds both a CockroachDB backup ({self.backup[0]}) and "
                f"changefeed or EXPORT output ({self.export[0]}): give --kind backup or "
                "--kind export, or keep them apart")
        if self.backup:
            return "backup"
        if self.export:
            return "export"
        return None

    def unrecognised(self) -> UnrecognisedSource:
        """The error for a location that shows neither kind, naming what it holds."""
        if not self.files:
            return UnrecognisedSource(
                f"{self.display} holds no files: expected a CockroachDB backup or "
                "changefeed or EXPORT output")
        return UnrecognisedSource(
            f"{self.display} holds neither a CockroachDB backup (no {', '.join(MANIFEST_NAMES)} "
            f"or {LATEST}) nor changefeed or EXPORT output: {count(self.files, 'file')}, such "
            "as "
            + ", ".join(self.other[:_SAMPLES]))


def _is_backup_name(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    base = name.removesuffix("-CHECKSUM")
    return (base in MANIFEST_NAMES or name == LATEST or key.startswith(LATEST_HISTORY + "/")
            or f"/{LATEST_HISTORY}/" in key)


def _is_export_name(key: str) -> bool:
    if key.endswith(".sst"):
        return False  # what a backup holds, 100k times over; no export file is named so
    try:
        return (parse_data_file(key) is not None or parse_resolved_file(key) is not None
                or parse_export_file(key.rsplit("/", 1)[-1]) is not None)
    except ValueError:  # a name of that kind, damaged: the scan says how
        return True


def survey_source(source: str, *, endpoint_url: str | None = None) -> SourceEvidence:
    """List ``source`` and note what it holds; raises StorageError (3), BadInput (2) for a
    malformed location or a link in a local tree, UnrecognisedSource for a local path that
    does not exist or is not a directory."""
    location = parse_location(source)
    if location.scheme == "file":
        path = Path(location.path)
        if not path.is_dir():
            what = "is not a directory" if path.exists() else "does not exist"
            raise UnrecognisedSource(f"{location} {what}: expected a directory holding a "
                                     "CockroachDB backup or changefeed or EXPORT output")
    with open_storage(source, endpoint_url=endpoint_url) as storage:
        evidence = SourceEvidence(storage.display())
        for key in storage.list_keys():
            evidence.files += 1
            if _is_backup_name(key):
                found = evidence.backup
            elif _is_export_name(key):
                found = evidence.export
            else:
                found = evidence.other
            if len(found) < _SAMPLES:
                found.append(key)
            if evidence.backup and evidence.export:
                break
    return evidence


def recognise_source(source: str, wanted: KindChoice = "auto", *,
                     endpoint_url: str | None = None) -> SourceKind:
    """The kind of source to archive: ``wanted`` itself unless it is ``auto``.

    Raises UnrecognisedSource (exit 2) for a location that holds both kinds, neither, or
    nothing, naming what it found; StorageError when it cannot be listed.
    """
    if wanted != "auto":
        return wanted
    evidence = survey_source(source, endpoint_url=endpoint_url)
    kind = evidence.kind
    if kind is None:
        raise evidence.unrecognised()
    return kind


def shows_export(source: str, *, endpoint_url: str | None = None) -> bool:
    """Whether ``source`` shows changefeed or EXPORT output and no backup. A location that
    shows neither, or a local path that is not a directory, is not (the backup inspection
    says what it expected there). Raises UnrecognisedSource when it shows both, StorageError.
    """
    location = parse_location(source)
    if location.scheme == "file" and not Path(location.path).is_dir():
        return False
    return survey_source(source, endpoint_url=endpoint_url).kind == "export"
