"""File names of changefeed cloud-storage sinks and of ``EXPORT``, parsed from both ends.

Facts, from cockroach ``pkg/ccl/changefeedccl/sink_cloudstorage.go``:

- data files are ``fmt.Sprintf("%s-%s-%d-%d-%08x-%s-%x%s", ts, session, node, sink, fileID,
  topic, schemaID, ext)``; ``ts`` is ``cloudStorageFormatTime`` (33 digits), the session is 8
  random bytes in hex (``generateChangefeedSessionID``), the topic comes from a ``TopicNamer``
  joining table and family with ``+`` and may itself contain ``-`` or ``.``
  (``full_table_name``), so the name is split from both ends;
- ``ext`` is ``.ndjson``, ``.csv`` or ``.parquet``; ``compressionFromString`` appends ``.gz``
  or ``.zst`` to ndjson and csv only (parquet compresses inside the file);
- RESOLVED files are ``<ts>.RESOLVED``; ``-`` sorts before ``.`` so a RESOLVED file follows
  every data file of the same time;
- files sit under ``partitionDateFormats``: ``flat`` ``/``, ``daily`` ``2006-01-02/``,
  ``hourly`` ``2006-01-02/15/`` of the file's own time.

``EXPORT`` (cockroach ``pkg/sql/importer/exportcsv.go`` and ``exportparquet.go``) names its
chunks ``export<hex>-n<node>.<chunk>.csv`` (``.gz`` with ``compression = gzip``) or
``.parquet``.

Parsers return None for a name of another kind and raise :class:`ValueError` for a name of
their kind that is damaged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from crdb_archive.export.hlc import Hlc

DataFormat = Literal["ndjson", "csv", "parquet"]
Compression = Literal["none", "gzip", "zstd"]
Partitioning = Literal["flat", "daily", "hourly"]

_COMPRESSION_SUFFIX: dict[str, Compression] = {".gz": "gzip", ".zst": "zstd"}
_DATA = re.compile(
    r"^(?P<ts>\d{33})-(?P<session>[0-9a-f]+)-(?P<node>\d+)-(?P<sink>\d+)-(?P<fileid>[0-9a-f]{8,})"
    r"-(?P<topic>.+)-(?P<schemaid>[0-9a-f]+)$"
)
_RESOLVED = re.compile(r"^(?P<ts>\d{33})\.RESOLVED$")
_EXPORT = re.compile(
    r"^export(?P<hex>[0-9a-f]+)-n(?P<node>\d+)\.(?P<chunk>\d+)\.(?P<ext>csv|csv\.gz|parquet)$"
)
_DAILY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HOUR = re.compile(r"^\d{2}$")


@dataclass(frozen=True)
class DataFileName:
    """One changefeed data file, as its name describes it."""

    path: str  # relative path, partition included
    time: Hlc  # inclusive lower bound of the rows' timestamps
    session: str
    node: int
    sink: int
    file_id: int
    topic: str
    schema_id: int
    format: DataFormat
    compression: Compression
    partitioning: Partitioning

    @property
    def sink_key(self) -> tuple[str, int, int]:
        """(session, node, sink): the file ids of one sink instance run 0, 1, 2, ..."""
        return (self.session, self.node, self.sink)

    @property
    def table_part(self) -> str:
        """The topic without a ``+family`` suffix."""
        return self.topic.split("+", 1)[0]

    @property
    def family(self) -> str | None:
        """The column family of a ``split_column_families`` topic."""
        return self.topic.split("+", 1)[1] if "+" in self.topic else None


@dataclass(frozen=True)
class ResolvedFileName:
    path: str
    time: Hlc
    partitioning: Partitioning


@dataclass(frozen=True)
class ExportFileName:
    """One chunk of an ``EXPORT INTO CSV|PARQUET``."""

    path: str
    export_id: str
    node: int
    chunk: int
    format: DataFormat
    compression: Compression


def split_compression(name: str) -> tuple[str, Compression]:
    """``x.ndjson.gz`` -> (``x.ndjson``, ``gzip``)."""
    for suffix, compression in _COMPRESSION_SUFFIX.items():
        if name.endswith(suffix):
            return name[: -len(suffix)], compression
    return name, "none"


def partitioning_of(path: str) -> Partitioning:
    """The partition format a relative path shows; raises ValueError for any other folder."""
    parts = path.split("/")[:-1]
    if not parts:
        return "flat"
    if len(parts) == 1 and _DAILY.match(parts[0]):
        return "daily"
    if len(parts) == 2 and _DAILY.match(parts[0]) and _HOUR.match(parts[1]):
        return "hourly"
    raise ValueError(f"{path}: not in a flat, daily (YYYY-MM-DD/) or hourly (YYYY-MM-DD/HH/) "
                     "partition")


def _check_partition(path: str, time: Hlc, partitioning: Partitioning) -> None:
    # The sink derives the folder from the file's own time, so the two must agree; a file in
    # another day's folder was moved or renamed.
    stamp = time.file_time()
    expected = {
        "flat": "",
        "daily": f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}/",
        "hourly": f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}/{stamp[8:10]}/",
    }[partitioning]
    if not path.startswith(expected) or path.count("/") != expected.count("/"):
        raise ValueError(f"{path}: the partition does not match the time in the file name")


def parse_data_file(path: str) -> DataFileName | None:
    """A changefeed data file, None when the name is not one; raises ValueError if damaged."""
    name = path.rsplit("/", 1)[-1]
    stem, compression = split_compression(name)
    base, dot, ext = stem.rpartition(".")
    if not dot or ext not in ("ndjson", "csv", "parquet") or not name[:1].isdigit():
        return None
    match = _DATA.match(base)
    if match is None:
        raise ValueError(f"{path}: not a changefeed data file name "
                         "(<time>-<session>-<node>-<sink>-<fileid>-<topic>-<schemaid>.<ext>)")
    if ext == "parquet" and compression != "none":
        raise ValueError(f"{path}: a parquet changefeed file is never compressed outside")
    time = Hlc.parse_file_time(match.group("ts"))
    partitioning = partitioning_of(path)
    _check_partition(path, time, partitioning)
    return DataFileName(
        path=path,
        time=time,
        session=match.group("session"),
        node=int(match.group("node")),
        sink=int(match.group("sink")),
        file_id=int(match.group("fileid"), 16),
        topic=match.group("topic"),
        schema_id=int(match.group("schemaid"), 16),
        format=ext,  # type: ignore[arg-type]
        compression=compression,
        partitioning=partitioning,
    )


def parse_resolved_file(path: str) -> ResolvedFileName | None:
    """A ``.RESOLVED`` file, None when the name is not one; raises ValueError if damaged."""
    name = path.rsplit("/", 1)[-1]
    if not name.endswith(".RESOLVED"):
        return None
    match = _RESOLVED.match(name)
    if match is None:
        raise ValueError(f"{path}: not a resolved file name (<33-digit time>.RESOLVED)")
    time = Hlc.parse_file_time(match.group("ts"))
    partitioning = partitioning_of(path)
    _check_partition(path, time, partitioning)
    return ResolvedFileName(path=path, time=time, partitioning=partitioning)


def parse_export_file(path: str) -> ExportFileName | None:
    """An ``EXPORT`` chunk, None when the name is not one."""
    name = path.rsplit("/", 1)[-1]
    match = _EXPORT.match(name)
    if match is None:
        return None
    ext = match.group("ext")
    return ExportFileName(
        path=path,
        export_id=match.group("hex"),
        node=int(match.group("node")),
        chunk=int(match.group("chunk")),
        format="parquet" if ext == "parquet" else "csv",
        compression="gzip" if ext.endswith(".gz") else "none",
    )


def looks_like_export(path: str) -> bool:
    """An ``export...`` file name, well formed or not: enough to recognise the kind."""
    return path.rsplit("/", 1)[-1].startswith("export")
