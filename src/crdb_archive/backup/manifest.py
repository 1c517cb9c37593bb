"""Decode the version facts of a CockroachDB backup manifest; pure, no I/O.

A manifest is stored as protobuf -> gzip (v20.2+) -> encryption (encrypted backups), with a
``<name>-CHECKSUM`` file beside it (v20.2+) holding the first 4 bytes of the SHA-256 of the
stored file (checked by :mod:`crdb_archive.backup.manifest_file`). Of the ``BackupManifest``
message only a few small fields are read (DESIGN 2.3): 1 start_time and 2 end_time
(hlc.Timestamp: 1 wall_time ns, 2 logical), 9 cluster_id (UUID bytes), 10 node_id, 11
build_info (1 go_version, 2 tag, 3 time, 4 revision) and 25 cluster_version (roachpb.Version:
1 major, 2 minor, 3 patch, 4 internal). Everything else, including the large repeated
``files`` and ``descriptors``, is skipped while streaming, so memory stays flat whatever the
manifest's size.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from crdb_archive.backup import wire
from crdb_archive.errors import MalformedManifest
from crdb_archive.text import size

# In the order CockroachDB itself prefers them: BACKUP_MANIFEST (v20.2+), BACKUP_METADATA
# (v23.1+, same version fields), BACKUP (v20.1 and older).
MANIFEST_NAMES = ("BACKUP_MANIFEST", "BACKUP_METADATA", "BACKUP")
CHECKSUM_SUFFIX = "-CHECKSUM"

GZIP_MAGIC = b"\x1f\x8b\x08"
ENCRYPTION_MAGIC = b"encrypt"
# "encrypt", a version byte, a 12-byte nonce.
_ENCRYPTION_HEADER = len(ENCRYPTION_MAGIC) + 1 + 12
CHECKSUM_BYTES = 4

# Large backups have manifests of tens of MB; a gzip stream that inflates past this is garbage
# (or a bomb), and refusing it bounds the time spent on it.
MAX_MANIFEST_BYTES = 1 << 30
_INFLATE_CHUNK = 1 << 20

# Development builds add this to the major of their cluster versions (clusterversion.DevOffset).
DEV_OFFSET = 1_000_000

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# Field numbers of BackupManifest and the most bytes each kept field may hold.
_START_TIME, _END_TIME, _CLUSTER_ID, _NODE_ID, _BUILD_INFO, _CLUSTER_VERSION = 1, 2, 9, 10, 11, 25
_TOP_FIELDS = {
    _START_TIME: 1 << 10,
    _END_TIME: 1 << 10,
    _CLUSTER_ID: 1 << 10,
    _NODE_ID: 0,
    _BUILD_INFO: 1 << 20,
    _CLUSTER_VERSION: 1 << 10,
}
_TIMESTAMP_FIELDS = {1: 0, 2: 0}
_BUILD_FIELDS = {1: 1 << 16, 2: 1 << 16, 3: 1 << 16, 4: 1 << 16}
_BUILD_NAMES = {1: "go_version", 2: "tag", 3: "time", 4: "revision"}
_VERSION_FIELDS = {1: 0, 2: 0, 3: 0, 4: 0}


@dataclass(frozen=True)
class ManifestInfo:
    """What a backup manifest says about the version and moment that produced it.

    ``cluster_version`` is ``major.minor`` with the development offset removed;
    ``cluster_version_parts`` keeps (major, minor, patch, internal), the same offset removed.
    ``end_wall_time`` is the exact HLC wall time in nanoseconds; ``end_time`` is that instant
    at microsecond precision. ``gzip`` tells whether the readable manifest was gzip-compressed
    (False when encrypted and not decrypted: compression then hides inside the encryption).
    ``checksum_verified`` is True when a ``-CHECKSUM`` file was present and matched.
    ``decrypted`` is True for an encrypted manifest read with its key (every GCM tag checked).
    """

    file: str
    build_tag: str | None
    build_time: str | None
    revision: str | None
    go_version: str | None
    cluster_version: str | None
    cluster_version_parts: tuple[int, int, int, int] | None
    development_build: bool
    start_time: dt.datetime | None
    end_time: dt.datetime | None
    end_wall_time: int | None
    cluster_id: str | None
    node_id: int | None
    encrypted: bool
    gzip: bool
    checksum_verified: bool = False
    decrypted: bool = False

    @property
    def readable(self) -> bool:
        """Whether the version fields could be read: not encrypted, or decrypted."""
        return not self.encrypted or self.decrypted


def decode_manifest(
    data: bytes, *, file: str = "", limit: int = MAX_MANIFEST_BYTES
) -> ManifestInfo:
    """Decode a stored manifest (raw, gzip or encrypted); pure, no I/O.

    ``limit`` bounds what gzip may inflate to. Raises MalformedManifest for anything that is
    not a manifest this decoder can read.
    """
    return decode_chunks((data,), file=file, limit=limit)


def decode_chunks(
    chunks: Iterable[bytes], *, file: str = "", limit: int = MAX_MANIFEST_BYTES
) -> ManifestInfo:
    """Decode a stored manifest arriving in chunks, reading only as far as it must.

    Raises MalformedManifest as :func:`decode_manifest`.
    """
    source = iter(chunks)
    head = b""
    # Enough bytes to recognise the framing, however the input is chunked.
    while len(head) < _ENCRYPTION_HEADER:
        chunk = next(source, None)
        if chunk is None:
            break
        head += chunk
    if not head:
        raise MalformedManifest("the manifest is empty")
    if head.startswith(ENCRYPTION_MAGIC):
        if len(head) < _ENCRYPTION_HEADER:
            raise MalformedManifest(
                f"encrypted manifest of {len(head)} bytes is shorter than its "
                f"{_ENCRYPTION_HEADER}-byte header"
            )
        return _empty(file, encrypted=True)
    payload = itertools.chain((head,), source)
    if head.startswith(GZIP_MAGIC):
        return _parse(_gunzip(payload, limit), file, gzip=True)
    return _parse(payload, file, gzip=False)


# --- framing ---------------------------------------------------------------------------------


def _gunzip(compressed: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """Inflate gzip members in bounded pieces, refusing more than ``limit`` bytes in all."""
    inflater = zlib.decompressobj(wbits=31)
    total = 0
    try:
        for chunk in compressed:
            data = chunk
            pending = False
            while data or pending:
                if inflater.eof:
                    # Another gzip member follows, as Go's reader accepts (multistream);
                    # anything else fails the next member's header check.
                    inflater = zlib.decompressobj(wbits=31)
                out = inflater.decompress(data, _INFLATE_CHUNK)
                data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
                # A full piece may leave output pending in the inflater: ask again for it.
                pending = len(out) == _INFLATE_CHUNK and not inflater.eof
                total += len(out)
                if total > limit:
                    raise MalformedManifest(f"the manifest inflates to more than {size(limit)}")
                if out:
                    yield out
    except zlib.error as error:
        raise MalformedManifest(f"the gzip data is corrupt: {error}") from None
    if not inflater.eof:
        raise MalformedManifest("the gzip data is truncated")


# --- the message -------------------------------------------------------------------------------


def _parse(payload: Iterable[bytes], file: str, *, gzip: bool) -> ManifestInfo:
    source = wire.ByteSource(payload)
    start: tuple[int, int] | None = None
    end: tuple[int, int] | None = None
    cluster_id: bytes | None = None
    node_id: int | None = None
    build: dict[int, str] = {}
    version: dict[int, int] | None = None
    seen_build = False
    # Protobuf merges repeated occurrences of a message field and keeps the last scalar.
    for field in wire.fields(source, _TOP_FIELDS):
        if field.number == _START_TIME:
            start = _timestamp(field.as_bytes("start_time"), start)
        elif field.number == _END_TIME:
            end = _timestamp(field.as_bytes("end_time"), end)
        elif field.number == _CLUSTER_ID:
            cluster_id = field.as_bytes("cluster_id")
        elif field.number == _NODE_ID:
            node_id = wire.signed32(field.as_int("node_id"))
        elif field.number == _BUILD_INFO:
            seen_build = True
            _merge_build_info(field.as_bytes("build_info"), build)
        elif field.number == _CLUSTER_VERSION:
            version = _merge_version(field.as_bytes("cluster_version"), version or {})
    if end is None and not seen_build:
        raise MalformedManifest(
            "neither an end time nor build information: not a CockroachDB backup manifest"
        )
    parts, development = _cluster_version(version)
    return ManifestInfo(
        file=file,
        build_tag=build.get(2) or None,
        build_time=build.get(3) or None,
        revision=build.get(4) or None,
        go_version=build.get(1) or None,
        cluster_version=f"{parts[0]}.{parts[1]}" if parts else None,
        cluster_version_parts=parts,
        development_build=development,
        start_time=_datetime(start),
        end_time=_datetime(end),
        end_wall_time=end[0] if end and end != (0, 0) else None,
        cluster_id=_cluster_id(cluster_id),
        node_id=node_id or None,
        encrypted=False,
        gzip=gzip,
    )


def _timestamp(data: bytes, previous: tuple[int, int] | None) -> tuple[int, int]:
    wall, logical = previous or (0, 0)
    for field in wire.fields(wire.ByteSource.of(data), _TIMESTAMP_FIELDS):
        if field.number == 1:
            wall = wire.signed64(field.as_int("wall_time"))
        else:
            logical = wire.signed32(field.as_int("logical"))
    return wall, logical


def _merge_build_info(data: bytes, build: dict[int, str]) -> None:
    for field in wire.fields(wire.ByteSource.of(data), _BUILD_FIELDS):
        name = _BUILD_NAMES[field.number]
        try:
            build[field.number] = field.as_bytes(f"build_info.{name}").decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedManifest(f"build_info.{name} is not UTF-8 text") from None


def _merge_version(data: bytes, version: dict[int, int]) -> dict[int, int]:
    for field in wire.fields(wire.ByteSource.of(data), _VERSION_FIELDS):
        version[field.number] = wire.signed32(field.as_int(f"cluster_version.{field.number}"))
    return version


def _cluster_version(
    version: dict[int, int] | None,
) -> tuple[tuple[int, int, int, int] | None, bool]:
    if not version or not any(version.values()):
        return None, False
    major, minor, patch, internal = (version.get(n, 0) for n in (1, 2, 3, 4))
    if min(major, minor, patch, internal) < 0:
        raise MalformedManifest(
            f"cluster version {major}.{minor}.{patch}-{internal} has a negative component"
        )
    development = major >= DEV_OFFSET
    if development:
        major -= DEV_OFFSET
    return (major, minor, patch, internal), development


def _datetime(timestamp: tuple[int, int] | None) -> dt.datetime | None:
    # A zero timestamp is protobuf's "unset": a full backup has no start time.
    if timestamp is None or timestamp == (0, 0):
        return None
    return _EPOCH + dt.timedelta(microseconds=timestamp[0] // 1000)


def _cluster_id(data: bytes | None) -> str | None:
    if not data or not any(data):
        return None
    if len(data) != 16:
        raise MalformedManifest(f"cluster_id has {len(data)} bytes, expected 16 (a UUID)")
    return str(uuid.UUID(bytes=data))


def _empty(file: str, *, encrypted: bool) -> ManifestInfo:
    return ManifestInfo(
        file=file,
        build_tag=None,
        build_time=None,
        revision=None,
        go_version=None,
        cluster_version=None,
        cluster_version_parts=None,
        development_build=False,
        start_time=None,
        end_time=None,
        end_wall_time=None,
        cluster_id=None,
        node_id=None,
        encrypted=encrypted,
        gzip=False,
    )
