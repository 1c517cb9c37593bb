"""crdb-archive.json as a typed model: a backup bundle's description or an export bundle's.

``kind`` tells them apart (bundle-format.md 4.5 and 8); a description without it is a backup
bundle's, written before export bundles existed. :func:`from_json` reads either kind,
checking every key's type, and each model's ``to_json`` writes it back as the format defines
it: a description read from a bundle is written back byte for byte by
:func:`crdb_archive.bundle.model.render`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from crdb_archive.bundle import layout
from crdb_archive.bundle.description_export import (
    ColumnDescription,
    ExportDescription,
    TableDescription,
    read_export,
)
from crdb_archive.bundle.description_fields import FORMAT, SOFTWARE, Fields, damaged

__all__ = [
    "BackupDescription", "BackupFacts", "BinaryEntry", "ColumnDescription", "Description",
    "EncryptionFacts", "ExportDescription", "OtherPlatform", "ReleaseFacts", "TableDescription",
    "from_json",
]

PLATFORMS = ("linux-amd64", "linux-arm64", "linux-amd64-fips", "darwin-amd64", "darwin-arm64",
             "windows-amd64")
ENCRYPTION_MODES = ("none", "passphrase", "kms", "unknown")


@dataclass(frozen=True)
class EncryptionFacts:
    """``backup.encryption``: how the backup is encrypted; never a key."""

    mode: Literal["none", "passphrase", "kms", "unknown"]
    decrypted: bool
    kms: tuple[str, ...]  # redacted KMS URIs
    encryption_info_files: tuple[str, ...]

    @classmethod
    def read(cls, f: Fields) -> EncryptionFacts:
        mode: Any = f.choice("mode", ENCRYPTION_MODES)
        return cls(mode, f.flag("decrypted"), f.texts("kms"), f.texts("encryption_info_files"))

    def to_json(self) -> dict[str, object]:
        return {"mode": self.mode, "decrypted": self.decrypted, "kms": list(self.kms),
                "encryption_info_files": list(self.encryption_info_files)}


@dataclass(frozen=True)
class BackupFacts:
    """``backup``: the backup archived, as its manifest and listing showed it."""

    source: str  # secrets removed
    kind: Literal["collection", "backup"]
    subdir: str | None
    incrementals: tuple[str, ...]
    manifest_file: str | None
    encrypted: bool
    encryption: EncryptionFacts | None  # None: a bundle written before it was recorded
    build_tag: str | None
    cluster_version: str | None
    start_time: str | None  # as recorded (crdb_archive.times.utc_iso)
    end_time: str | None
    cluster_id: str | None
    node_id: int | None
    files: int
    bytes: int

    @property
    def encryption_mode(self) -> str:
        """The recorded mode; for an older bundle, what ``encrypted`` allows one to say."""
        if self.encryption is not None:
            return self.encryption.mode
        return "unknown" if self.encrypted else "none"

    @classmethod
    def read(cls, f: Fields) -> BackupFacts:
        kind: Any = f.choice("kind", ("collection", "backup"))
        if f.text("payload_dir") != layout.BACKUP_DIR:
            raise damaged(f.where("payload_dir"), f"expected {layout.BACKUP_DIR}")
        return cls(
            source=f.text("source"), kind=kind, subdir=f.text_or_none("subdir"),
            incrementals=f.texts("incrementals"), manifest_file=f.text_or_none("manifest_file"),
            encrypted=f.flag("encrypted"),
            encryption=(f.object("encryption", EncryptionFacts.read) if f.has("encryption")
                        else None),
            build_tag=f.text_or_none("build_tag"),
            cluster_version=f.text_or_none("cluster_version"),
            start_time=f.text_or_none("start_time"), end_time=f.text_or_none("end_time"),
            cluster_id=f.text_or_none("cluster_id"), node_id=f.integer_or_none("node_id"),
            files=f.count("files"), bytes=f.count("bytes"))

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "source": self.source, "kind": self.kind, "subdir": self.subdir,
            "incrementals": list(self.incrementals), "payload_dir": layout.BACKUP_DIR,
            "manifest_file": self.manifest_file, "encrypted": self.encrypted,
        }
        if self.encryption is not None:
            out["encryption"] = self.encryption.to_json()
        out.update({
            "build_tag": self.build_tag, "cluster_version": self.cluster_version,
            "start_time": self.start_time, "end_time": self.end_time,
            "cluster_id": self.cluster_id, "node_id": self.node_id, "files": self.files,
            "bytes": self.bytes,
        })
        return out


@dataclass(frozen=True)
class ReleaseFacts:
    """``cockroachdb``: the release archived and the majors it restores into."""

    version: str
    major_version: str
    major_type: Literal["regular", "innovation"]
    version_source: Literal["manifest", "user"]
    restorable_into: tuple[str, ...]
    restorable_into_may_grow: bool
    withdrawn: bool
    binary_removal_date: str | None  # YYYY-MM-DD

    @classmethod
    def read(cls, f: Fields) -> ReleaseFacts:
        major_type: Any = f.choice("major_type", ("regular", "innovation"))
        source: Any = f.choice("version_source", ("manifest", "user"))
        return cls(f.text("version"), f.text("major_version"), major_type, source,
                   f.texts("restorable_into"), f.flag("restorable_into_may_grow"),
                   f.flag("withdrawn"), f.text_or_none("binary_removal_date"))

    def to_json(self) -> dict[str, object]:
        return {"version": self.version, "major_version": self.major_version,
                "major_type": self.major_type, "version_source": self.version_source,
                "restorable_into": list(self.restorable_into),
                "restorable_into_may_grow": self.restorable_into_may_grow,
                "withdrawn": self.withdrawn, "binary_removal_date": self.binary_removal_date}


@dataclass(frozen=True)
class BinaryEntry:
    """One archived release archive (``binaries[]``) and where its bytes came from.

    ``provenance`` is False for bundles written before the provenance fields existed; they
    then lack ``published_checksum_url``, ``from_cache``, ``published_checksum_from_cache``
    and ``official``, and make no claim that the archive is official.
    """

    platform: str
    file: str  # data/cockroach/<archive>
    url: str
    size: int
    sha256: str
    blake3: str
    published_sha256: str | None
    published_checksum_file: str | None
    verified: bool
    provenance: bool = True
    published_checksum_url: str | None = None
    from_cache: bool = False
    published_checksum_from_cache: bool | None = None
    official: bool = False

    @property
    def file_name(self) -> str:
        return self.file.rsplit("/", 1)[-1]

    @classmethod
    def read(cls, f: Fields) -> BinaryEntry:
        provenance = any(f.has(key) for key in _BINARY_PROVENANCE)
        return cls(
            platform=str(f.choice("platform", PLATFORMS)),
            file=f.matching("file", _BINARY_FILE, "a file directly under data/cockroach/"),
            url=f.text("url"), size=f.count("size"),
            sha256=f.matching("sha256", _HEX64, "64 hex digits"),
            blake3=f.matching("blake3", _HEX64, "64 hex digits"),
            published_sha256=f.text_or_none("published_sha256"),
            published_checksum_file=f.text_or_none("published_checksum_file"),
            verified=f.flag("verified"), provenance=provenance,
            published_checksum_url=(f.text_or_none("published_checksum_url")
                                    if f.has("published_checksum_url") else None),
            from_cache=f.flag("from_cache") if f.has("from_cache") else False,
            published_checksum_from_cache=(f.flag_or_none("published_checksum_from_cache")
                                           if f.has("published_checksum_from_cache") else None),
            official=f.flag("official") if f.has("official") else False)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "platform": self.platform, "file": self.file, "url": self.url, "size": self.size,
            "sha256": self.sha256, "blake3": self.blake3,
            "published_sha256": self.published_sha256,
            "published_checksum_file": self.published_checksum_file, "verified": self.verified,
        }
        if self.provenance:
            # Where the bytes really came from, not where they should have.
            out.update({"published_checksum_url": self.published_checksum_url,
                        "from_cache": self.from_cache,
                        "published_checksum_from_cache": self.published_checksum_from_cache,
                        "official": self.official})
        return out


# The schema's forms of a binary's file and digests: a path the bundle reader and extraction
# may rely on, whichever checked the description.
_BINARY_FILE = re.compile(r"data/cockroach/[^/]+")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_BINARY_PROVENANCE = ("published_checksum_url", "from_cache", "published_checksum_from_cache",
                      "official")


@dataclass(frozen=True)
class OtherPlatform:
    """A platform of the release not archived (``other_platforms[]``): what to check a later
    download against. ``provenance`` as in :class:`BinaryEntry`."""

    platform: str
    file_name: str
    url: str
    published_sha256: str | None
    provenance: bool = True
    published_checksum_url: str | None = None
    published_checksum_from_cache: bool | None = None

    @classmethod
    def read(cls, f: Fields) -> OtherPlatform:
        has_url = f.has("published_checksum_url")
        has_cache = f.has("published_checksum_from_cache")
        return cls(
            platform=str(f.choice("platform", PLATFORMS)), file_name=f.text("file_name"),
            url=f.text("url"), published_sha256=f.text_or_none("published_sha256"),
            provenance=has_url or has_cache,
            published_checksum_url=f.text_or_none("published_checksum_url") if has_url else None,
            published_checksum_from_cache=(f.flag_or_none("published_checksum_from_cache")
                                           if has_cache else None))

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"platform": self.platform, "file_name": self.file_name,
                                  "url": self.url, "published_sha256": self.published_sha256}
        if self.provenance:
            out.update({"published_checksum_url": self.published_checksum_url,
                        "published_checksum_from_cache": self.published_checksum_from_cache})
        return out


@dataclass(frozen=True)
class BackupDescription:
    """crdb-archive.json of a backup bundle.

    ``kind_recorded`` is False for a bundle written before export bundles existed, whose
    description has no ``kind``.
    """

    name: str
    created: str  # crdb_archive.times.utc_iso
    backup: BackupFacts
    cockroachdb: ReleaseFacts
    binaries: tuple[BinaryEntry, ...]
    other_platforms: tuple[OtherPlatform, ...]
    warnings: tuple[str, ...]
    software: str = SOFTWARE
    kind_recorded: bool = True

    kind: ClassVar[Literal["backup"]] = "backup"

    @property
    def platforms(self) -> list[str]:
        return [b.platform for b in self.binaries]

    def binary(self, platform: str) -> BinaryEntry | None:
        return next((b for b in self.binaries if b.platform == platform), None)

    def other_platform(self, platform: str) -> OtherPlatform | None:
        return next((p for p in self.other_platforms if p.platform == platform), None)

    @classmethod
    def read(cls, f: Fields) -> BackupDescription:
        kind_recorded = f.has("kind")
        if kind_recorded:
            f.choice("kind", ("backup",))
        return cls(
            name=f.text("name"), created=f.text("created"),
            backup=f.object("backup", BackupFacts.read),
            cockroachdb=f.object("cockroachdb", ReleaseFacts.read),
            binaries=f.objects("binaries", BinaryEntry.read),
            other_platforms=f.objects("other_platforms", OtherPlatform.read),
            warnings=f.texts("warnings"), software=f.text("software"),
            kind_recorded=kind_recorded)

    def to_json(self) -> dict[str, object]:
        """The description as crdb-archive.json holds it, in the format's key order."""
        head: dict[str, object] = {"format": FORMAT, "format_version": layout.FORMAT_VERSION}
        if self.kind_recorded:
            head["kind"] = "backup"
        return {
            **head, "name": self.name, "created": self.created, "software": self.software,
            "backup": self.backup.to_json(), "cockroachdb": self.cockroachdb.to_json(),
            "binaries": [b.to_json() for b in self.binaries],
            "other_platforms": [p.to_json() for p in self.other_platforms],
            "warnings": list(self.warnings),
        }


Description = BackupDescription | ExportDescription


def from_json(data: object) -> Description:
    """The description that parsed crdb-archive.json ``data`` holds, of either kind.

    Raises DamagedBundle with one line naming the key for a missing key, a value of the wrong
    type, a key the format does not define, or a ``format_version`` this crdb-archive does
    not know (the format says to refuse it rather than guess).
    """
    f = Fields(data)
    if f.text("format") != FORMAT:
        raise damaged("format", f"expected {FORMAT}, found {f.data['format']!r}")
    if not f.has("format_version"):
        raise damaged("format_version", "missing")
    version = f.data["format_version"]
    if version != layout.FORMAT_VERSION or isinstance(version, bool):
        raise damaged("format_version", f"{version!r} is not a format version this "
                                        f"crdb-archive reads (it reads {layout.FORMAT_VERSION})")
    kind = f.choice("kind", ("backup", "export")) if f.has("kind") else "backup"
    described: Description = (read_export(f, software=f.text("software")) if kind == "export"
                              else BackupDescription.read(f))
    f.done()
    return described
