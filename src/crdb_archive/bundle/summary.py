"""A short description of a bundle, for ``inspect BUNDLE``: what it holds, without re-hashing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crdb_archive.bundle import layout, tagfiles
from crdb_archive.bundle.description import BackupDescription, ExportDescription
from crdb_archive.bundle.reader import open_bundle, require_readable
from crdb_archive.bundle.retrieve import parse_description, trusted_tag_files
from crdb_archive.errors import BadInput, DamagedBundle
from crdb_archive.storage.base import open_object
from crdb_archive.storage.uri import parse_location


def looks_like_bundle(where: str, *, endpoint_url: str | None = None) -> bool:
    """A directory or prefix holding bagit.txt, or a .tar: what ``inspect`` treats as a bundle.

    Raises StorageError when the location cannot be read.
    """
    location = parse_location(where)
    if location.path.rstrip("/").endswith(".tar"):
        return True
    try:
        storage, name = open_object(where, endpoint_url=endpoint_url)
    except BadInput:  # the root of a file system or bucket: never a bundle
        return False
    with storage:
        return storage.exists(f"{name}/{layout.BAGIT_TXT}")


def summarize_bundle(where: str | Path, *, endpoint_url: str | None = None) -> dict[str, Any]:
    """What the bundle at ``where`` says about itself, its description checked against the tag
    manifest. Raises NotABundle (2), DamagedBundle (1), StorageError (3)."""
    reader = open_bundle(where, endpoint_url=endpoint_url)
    require_readable(reader, payload=False)
    tags = trusted_tag_files(reader, (layout.DESCRIPTION, layout.BAG_INFO)).files
    description = parse_description(reader, tags[layout.DESCRIPTION])
    try:
        bag_info = tagfiles.parse_bag_info(tags[layout.BAG_INFO])
        for oxum in bag_info.get("Payload-Oxum", []):
            tagfiles.parse_oxum(oxum)
    except tagfiles.TagFileError as error:
        raise DamagedBundle(f"{layout.BAG_INFO} in {reader.display}: {error}") from None
    payload_oxum = next(iter(bag_info.get("Payload-Oxum", [])), None)
    bagging_date = next(iter(bag_info.get("Bagging-Date", [])), None)
    common = {"kind": "bundle", "bundle_kind": description.kind, "bundle": reader.display,
              "form": reader.form, "name": description.name, "created": description.created}
    tail = {"payload_oxum": payload_oxum, "bagging_date": bagging_date,
            "warnings": list(description.warnings)}
    if isinstance(description, ExportDescription):
        return {**common, **_export_summary(description), **tail}
    return {**common, **_backup_summary(description), **tail}


def _export_summary(description: ExportDescription) -> dict[str, object]:
    as_of = description.as_of
    return {
        "source": description.source,
        "source_kind": description.source_kind,
        "format": description.format,
        "as_of": None if as_of is None else {"hlc": as_of.decimal(), "time": as_of.iso()},
        "gaps": list(description.gaps),
        "files": description.files,
        "bytes": description.bytes,
        "tables": {t.name: t.rows for t in description.tables},
        "notes": [*description.notes, *(f"{t.name}: {note}" for t in description.tables
                                        for note in t.notes)],
    }


def _backup_summary(description: BackupDescription) -> dict[str, object]:
    crdb = description.cockroachdb
    backup = description.backup
    return {
        "version": crdb.version,
        "major_version": crdb.major_version,
        "restorable_into": list(crdb.restorable_into),
        "platforms": description.platforms,
        "verified_binaries": all(b.verified for b in description.binaries),
        "backup": {
            "kind": backup.kind,
            "subdir": backup.subdir,
            "source": backup.source,
            "end_time": backup.end_time,
            "cluster_id": backup.cluster_id,
            "encrypted": backup.encrypted,
            "encryption": backup.encryption_mode,
            "incrementals": list(backup.incrementals),
            "files": backup.files,
            "bytes": backup.bytes,
        },
    }
