"""Which backups a job archives, what their bundles will be called, and what to warn about.

A candidate's bundle name is derived exactly as ``archive`` derives it, so a job recognises
the bundle of a backup it archived before (in either form) and a re-run does nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from crdb_archive.backup import BackupInfo, inspect_backup
from crdb_archive.backup.layout import classify, read_collection, subdir_end_time
from crdb_archive.backup.source import open_source
from crdb_archive.backup.tree import open_tree
from crdb_archive.bundle.naming import backup_bundle_names
from crdb_archive.errors import BadInput, CrdbArchiveError
from crdb_archive.jobs.spec import JobSpec
from crdb_archive.sources import SourceKind, recorded_source, shows_export
from crdb_archive.storage.base import Storage
from crdb_archive.versions import release_index


@dataclass(frozen=True)
class Candidate:
    """A backup the job selected. ``name`` is None when it cannot be derived before archiving
    (an encrypted backup without its key or a pinned release): the archive step then says
    why."""

    label: str  # the full backup's subdirectory, or the source of a single backup
    subdir: str | None
    name: str | None
    time: dt.datetime | None
    release: str | None
    # The name earlier versions gave this backup's bundle: a bundle under it is this one.
    legacy_name: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Every name under which this backup's bundle may already exist."""
        return tuple(n for n in (self.name, self.legacy_name) if n is not None)


@dataclass(frozen=True)
class Unreadable:
    """A selected backup that could not be inspected."""

    label: str
    error: CrdbArchiveError


@dataclass
class Selection:
    candidates: list[Candidate] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    # The source as archive records it in each bundle (``backup.source`` or
    # ``export.source``), once it could be read: how the job recognises its own bundles.
    source: str | None = None
    kind: SourceKind = "backup"
    # Full backups left for a later run: their incremental chain is still open (the newest
    # full backup of a collection, under incrementals = "closed").
    open_chains: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Advisory:
    """A warning that may save archives: act before the binaries or the support are gone."""

    code: str  # binary_removal, withdrawn, end_of_support
    release: str
    message: str


def select_backups(spec: JobSpec) -> Selection:
    """The backups ``spec`` selects, in the collection's order (oldest first).

    Raises what inspect_backup raises when the source itself is unusable; a damaged full
    backup among ``all`` is returned as Unreadable so the others still get archived. Changefeed
    or EXPORT output (``source.kind``, or seen by its file names) gives one candidate: its
    snapshot at ``source.as_of``. UnrecognisedSource when the source shows both kinds.
    """
    if spec.kind == "export" or (spec.kind == "auto" and shows_export(
            spec.source, endpoint_url=spec.source_endpoint_url)):
        return _select_export(spec)
    storage, owned = open_source(spec.source, endpoint_url=spec.source_endpoint_url)
    try:
        return _select(spec, storage)
    finally:
        if owned:
            storage.close()


def _select(spec: JobSpec, storage: Storage) -> Selection:
    selection = Selection()
    if spec.incrementals == "closed":
        subdirs, selection.open_chains = _closed_chains(spec, storage)
    elif spec.backups == "all":
        # One listing of the source to find the full backups; each is then inspected alone,
        # so that a damaged one does not hide the others.
        tree = open_tree(storage)
        if classify(tree) == "collection":
            subdirs = [b.subdir for b in read_collection(tree).full_backups]
            if not subdirs:
                raise BadInput(f"{spec.source_display} is a collection without any full "
                               "backup")
        else:
            subdirs = [None]
    elif spec.backups == "latest":
        subdirs = [None]
    else:
        subdirs = [spec.backups]
    for subdir in subdirs:
        try:
            with inspect_backup(storage, subdir=subdir, keys=spec.keys) as info:
                selection.candidates.append(_candidate(spec, info))
                selection.source = selection.source or recorded_source(info.location)
        except CrdbArchiveError as error:
            selection.unreadable.append(Unreadable(subdir or spec.source_display, error))
    return selection


def _closed_chains(spec: JobSpec, storage: Storage) -> tuple[list[str | None], list[str]]:
    """The full backups whose incremental chain is closed, and those still open.

    BACKUP INTO LATEST adds incrementals to the newest full backup only, so a chain is closed
    once a newer full backup exists: archived then, its bundle never needs replacing (what a
    destination under Object Lock needs). Raises BadInput for a source that is not a
    collection, which has no next full backup to close a chain.
    """
    tree = open_tree(storage)
    if classify(tree) != "collection":
        raise BadInput(f"{spec.source_display} is a single backup: incrementals = \"closed\" "
                       "needs a collection (BACKUP INTO), where the next full backup closes "
                       "a chain")
    fulls = [b.subdir for b in read_collection(tree).full_backups]
    if not fulls:
        raise BadInput(f"{spec.source_display} is a collection without any full backup")
    closed, open_ = fulls[:-1], fulls[-1:]
    if spec.backups == "all":
        chosen = closed
    elif spec.backups == "latest":
        chosen = closed[-1:]
    elif spec.backups in open_:
        chosen = []
    else:  # a closed chain, or a subdirectory that inspecting it will say is not there
        chosen, open_ = [spec.backups], []
    return list[str | None](chosen), open_


def _select_export(spec: JobSpec) -> Selection:
    selection = Selection(kind="export")
    try:
        if spec.export is None:
            raise BadInput(f"{spec.source_display} holds changefeed or EXPORT output: give its "
                           "schema file as source.schema")
        # Imported here: DuckDB and sqlglot are for jobs that archive exports.
        from crdb_archive.export.archive import plan_export_bundle  # noqa: PLC0415

        planned = plan_export_bundle(spec.source, as_of=spec.export.as_of,
                                     allow_gaps=spec.export.allow_gaps,
                                     endpoint_url=spec.source_endpoint_url)
    except CrdbArchiveError as error:
        selection.unreadable.append(Unreadable(spec.source_display, error))
        return selection
    selection.candidates.append(Candidate(label=spec.source_display, subdir=None,
                                          name=planned.name, time=planned.time, release=None))
    selection.source = planned.source
    return selection


def _candidate(spec: JobSpec, info: BackupInfo) -> Candidate:
    release = spec.release
    if release is None and info.manifest.readable and info.manifest.build_tag:
        try:
            release = release_index().parse(info.manifest.build_tag).release_name
        except CrdbArchiveError:
            release = None  # archive_backup says what is wrong with it
    names = backup_bundle_names(info, release, spec.with_incrementals) if release else None
    time = info.manifest.end_time
    if time is None and info.subdir:
        time = subdir_end_time(info.subdir)
    return Candidate(
        label=info.subdir or spec.source_display,
        subdir=info.subdir if info.kind == "collection" else None,
        name=names.current if names else None,
        legacy_name=names.legacy if names else None,
        time=time.astimezone(dt.UTC) if time else None,
        release=release,
    )


def advisories(releases: list[str], *, removal_days: int, today: dt.date) -> list[Advisory]:
    """Warnings about the releases that took the backups, once per release."""
    index = release_index()
    out: list[Advisory] = []
    for name in dict.fromkeys(releases):
        try:
            spec = index.parse(name)
        except CrdbArchiveError:
            continue
        major = spec.major
        if spec.release is not None and spec.release.withdrawn:
            out.append(Advisory(
                "withdrawn", name,
                f"{name} is a withdrawn release (Cockroach Labs withdrew it for a serious "
                f"defect): plan to restore these backups into a later {major} release"))
        removal = major.binary_removal_date
        if removal is not None:
            days = (removal - today).days
            if days < 0:
                out.append(Advisory(
                    "binary_removal", name,
                    f"official {major} binaries were scheduled for removal from the download "
                    f"site on {removal}: the bundles of {name} backups may hold the last "
                    "copies you can get; keep them"))
            elif days <= removal_days:
                out.append(Advisory(
                    "binary_removal", name,
                    f"official {major} binaries leave the download site on {removal}, in "
                    f"{days} days: archive every {major} backup you must keep before then"))
        end = major.support_end
        if end is not None and end < today:
            out.append(Advisory(
                "end_of_support", name,
                f"{major} reached the end of support on {end}: upgrade the cluster, and keep "
                f"the bundles with their {name} binaries to restore its backups"))
    return out
