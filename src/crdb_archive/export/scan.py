"""Recognise changefeed or EXPORT output in a listing and check that it is complete.

Works from a listing of ``(relative path, size)`` and a way to open a file, so it runs over any
storage: nothing here knows where the files are.

    scan = scan_export(listing, schema, open_file, allow_gaps=False)

checks every name (:mod:`names`), recognises the kind (changefeed or EXPORT; a tree with both,
neither, or several formats is refused), checks that the file ids of each (session, node,
sink) run 0, 1, 2 ... without a gap, reads every RESOLVED file's body, and maps every topic to
a table of the schema (by name, ``schema.name``, ``db.schema.name``, each with an optional
``+family``). :func:`crdb_archive.export.plan.plan_snapshot` then chooses the snapshot time.

Raises :class:`~crdb_archive.errors.UnrecognisedExportSource` (exit 2) for a tree that is not
one kind of output, :class:`~crdb_archive.errors.MalformedExportData` (exit 1) for a damaged
name or RESOLVED body, :class:`~crdb_archive.errors.IncompleteExport` (exit 1) for a gap unless
``allow_gaps`` (then the gap is recorded), :class:`~crdb_archive.errors.UnsupportedExport`
(exit 2) for a topic the schema does not know.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO, Literal

from crdb_archive.errors import (
    IncompleteExport,
    MalformedExportData,
    UnrecognisedExportSource,
    UnsupportedExport,
)
from crdb_archive.export.hlc import Hlc
from crdb_archive.export.model import QualifiedName, Schema, Table
from crdb_archive.export.names import (
    DataFileName,
    DataFormat,
    ExportFileName,
    Partitioning,
    ResolvedFileName,
    looks_like_export,
    parse_data_file,
    parse_export_file,
    parse_resolved_file,
)
from crdb_archive.text import count

SourceKind = Literal["changefeed", "export"]
OpenFile = Callable[[str], BinaryIO]
_MAX_RESOLVED_BODY = 4096


@dataclass(frozen=True)
class ListedFile:
    """One file of a source tree: its path relative to the tree's root, and its size."""

    path: str
    size: int


@dataclass(frozen=True)
class Gap:
    """File ids missing from one sink: ``first``..``last`` inclusive, before ``next_path``."""

    session: str
    node: int
    sink: int
    first: int
    last: int
    next_path: str

    def describe(self) -> str:
        ids = f"file id {self.first:08x}" if self.first == self.last else (
            f"file ids {self.first:08x}..{self.last:08x}")
        return (f"{ids} of session {self.session} node {self.node} sink {self.sink} "
                f"missing before {self.next_path}")


@dataclass(frozen=True)
class ResolvedTime:
    file: ResolvedFileName
    time: Hlc


@dataclass(frozen=True)
class ExportScan:
    """What a source tree holds, checked for completeness by name."""

    kind: SourceKind
    format: DataFormat
    partitioning: Partitioning | None  # changefeeds only
    data_files: tuple[DataFileName, ...]  # changefeed, in path order
    export_files: tuple[ExportFileName, ...]  # EXPORT, in path order
    resolved: tuple[ResolvedTime, ...]  # in path order
    gaps: tuple[Gap, ...]  # recorded when allow_gaps
    topics: tuple[tuple[str, QualifiedName], ...]  # changefeed topic -> table
    sizes: tuple[tuple[str, int], ...]  # every listed file

    @property
    def table_names(self) -> tuple[QualifiedName, ...]:
        """The tables the output holds rows for, each once."""
        seen: dict[QualifiedName, None] = {}
        for _, name in self.topics:
            seen.setdefault(name)
        return tuple(seen)

    @property
    def feed_topics(self) -> tuple[str, ...]:
        """The changefeed's topics as its file names give them, each once, sorted."""
        return tuple(sorted({f.topic for f in self.data_files}))

    def files_of(self, table: QualifiedName) -> tuple[DataFileName, ...]:
        """The changefeed data files of one table, in path order."""
        topics = {topic for topic, name in self.topics if name == table}
        return tuple(f for f in self.data_files if f.topic in topics)


def recognise(paths: Iterable[str]) -> SourceKind | None:
    """Changefeed or EXPORT output, judged by file names alone; None when neither shows.

    Raises UnrecognisedExportSource when both kinds show.
    """
    has_export = has_feed = False
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        if looks_like_export(name):
            has_export = True
        elif name.endswith(".RESOLVED") or (name[:1].isdigit() and "-" in name):
            has_feed = True
    if has_export and has_feed:
        raise UnrecognisedExportSource(
            "the source holds both EXPORT files (export*) and changefeed files: archive one "
            "at a time")
    if has_export:
        return "export"
    if has_feed:
        return "changefeed"
    return None


def scan_export(
    listing: Iterable[ListedFile],
    schema: Schema | None,
    open_file: OpenFile,
    *,
    allow_gaps: bool = False,
) -> ExportScan:
    """Recognise and check a listing; see the module docstring for what it raises.

    Without a ``schema`` (a look at a source, not an archive) topics are not mapped to tables:
    ``topics`` is empty, and the feed's own topic names are in :attr:`ExportScan.feed_topics`.
    """
    files = sorted(listing, key=lambda f: f.path)
    if not files:
        raise UnrecognisedExportSource("the source is empty: no changefeed or EXPORT files")
    kind = recognise(f.path for f in files)
    if kind is None:
        sample = ", ".join(f.path for f in files[:3])
        raise UnrecognisedExportSource(
            f"no changefeed or EXPORT output found ({count(len(files), 'file')}, e.g. {sample})")
    sizes = tuple((f.path, f.size) for f in files)
    if kind == "export":
        return _scan_export_files(files, sizes)
    return _scan_changefeed(files, sizes, schema, open_file, allow_gaps)


def _scan_export_files(files: list[ListedFile], sizes: tuple[tuple[str, int], ...]) -> ExportScan:
    chunks: list[ExportFileName] = []
    for listed in files:
        # EXPORT writes its chunks flat into the destination: a folder is not its output
        # (and "../" must never reach a path on disk).
        parsed = None if "/" in listed.path else parse_export_file(listed.path)
        if parsed is None:
            raise MalformedExportData(
                f"{listed.path}: not an EXPORT file name (export<hex>-n<node>.<chunk>.csv[.gz] "
                "or .parquet)")
        chunks.append(parsed)
    formats = {c.format for c in chunks}
    if len(formats) > 1:
        raise UnrecognisedExportSource(
            f"the EXPORT output mixes formats ({', '.join(sorted(formats))}): one at a time")
    return ExportScan(
        kind="export", format=chunks[0].format, partitioning=None, data_files=(),
        export_files=tuple(chunks), resolved=(), gaps=(), topics=(), sizes=sizes)


def _scan_changefeed(
    files: list[ListedFile],
    sizes: tuple[tuple[str, int], ...],
    schema: Schema | None,
    open_file: OpenFile,
    allow_gaps: bool,
) -> ExportScan:
    data: list[DataFileName] = []
    resolved: list[ResolvedTime] = []
    for listed in files:
        try:
            parsed_resolved = parse_resolved_file(listed.path)
            parsed_data = None if parsed_resolved else parse_data_file(listed.path)
        except ValueError as exc:
            raise MalformedExportData(str(exc)) from None
        if parsed_resolved is not None:
            resolved.append(ResolvedTime(parsed_resolved, _resolved_body(parsed_resolved,
                                                                         open_file)))
        elif parsed_data is not None:
            data.append(parsed_data)
        else:
            raise MalformedExportData(
                f"{listed.path}: neither a changefeed data file nor a RESOLVED file")
    if not data:
        raise UnrecognisedExportSource(
            f"only RESOLVED files ({len(resolved)}), no changefeed data files")
    formats = {f.format for f in data}
    if len(formats) > 1:
        raise UnrecognisedExportSource(
            f"the changefeed output mixes formats ({', '.join(sorted(formats))}): one at a time")
    partitionings = {f.partitioning for f in data} | {r.file.partitioning for r in resolved}
    if len(partitionings) > 1:
        raise UnrecognisedExportSource(
            f"the changefeed output mixes partition formats ({', '.join(sorted(partitionings))})")
    gaps = _gaps(data)
    if gaps and not allow_gaps:
        raise IncompleteExport(f"lost changefeed file: {gaps[0].describe()}"
                               + (f" (and {count(len(gaps) - 1, 'more gap')})"
                                  if len(gaps) > 1 else ""))
    topics = () if schema is None else tuple(
        (topic, topic_table(topic, schema).name) for topic in sorted({f.topic for f in data}))
    return ExportScan(
        kind="changefeed", format=data[0].format, partitioning=partitionings.pop(),
        data_files=tuple(data), export_files=(), resolved=tuple(resolved), gaps=tuple(gaps),
        topics=topics, sizes=sizes)


def _resolved_body(name: ResolvedFileName, open_file: OpenFile) -> Hlc:
    # Body: {"resolved": "<decimal>"} (wrapped) or {"__crdb__": {"resolved": ...}} (bare), see
    # encoder_json.go EncodeResolvedTimestamp. It must agree with the name, which is what
    # ordering relies on.
    with open_file(name.path) as stream:
        raw = stream.read(_MAX_RESOLVED_BODY + 1)
    time = _parse_resolved(raw) if len(raw) <= _MAX_RESOLVED_BODY else None
    if time is None:
        raise MalformedExportData(
            f"{name.path}: not a RESOLVED body ({{\"resolved\": \"<wall>.<logical>\"}})")
    if time != name.time:
        raise MalformedExportData(
            f"{name.path}: the body says {time.decimal()}, the name {name.time.decimal()}")
    return time


def _parse_resolved(raw: bytes) -> Hlc | None:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(body, dict) and isinstance(body.get("__crdb__"), dict):
        body = body["__crdb__"]
    if not isinstance(body, dict) or not isinstance(body.get("resolved"), str):
        return None
    try:
        return Hlc.parse_decimal(body["resolved"])
    except ValueError:
        return None


def _gaps(data: list[DataFileName]) -> list[Gap]:
    # A sink numbers its files 0, 1, 2 ... (fileID, sink_cloudstorage.go flushFile), over all
    # topics: any hole, including one before the first file we have, is a lost file.
    by_sink: dict[tuple[str, int, int], list[DataFileName]] = {}
    for f in data:
        by_sink.setdefault(f.sink_key, []).append(f)
    gaps: list[Gap] = []
    for (session, node, sink), sink_files in sorted(by_sink.items()):
        expected = 0
        for f in sorted(sink_files, key=lambda f: f.file_id):
            if f.file_id < expected:
                raise MalformedExportData(
                    f"{f.path}: file id {f.file_id:08x} appears twice in session {session} "
                    f"node {node} sink {sink}")
            if f.file_id > expected:
                gaps.append(Gap(session, node, sink, expected, f.file_id - 1, f.path))
            expected = f.file_id + 1
    return gaps


def topic_table(topic: str, schema: Schema) -> Table:
    """The table a topic names; raises UnsupportedExport for a topic the schema lacks."""
    base, _, family = topic.partition("+")
    try:
        table = schema.table(base)
    except KeyError:
        raise UnsupportedExport(
            f"changefeed topic {topic!r} names no table of the schema file (or more than one)"
        ) from None
    if family and table.families and family not in {name for name, _ in table.families}:
        raise UnsupportedExport(
            f"changefeed topic {topic!r}: table {table.name} has no column family {family!r}")
    return table
