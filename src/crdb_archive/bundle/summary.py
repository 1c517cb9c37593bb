"""A short description of a bundle, for ``inspect BUNDLE``: what it holds, without re-hashing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crdb_archive.bundle import layout
from crdb_archive.bundle.reader import open_bundle
from crdb_archive.bundle.retrieve import read_description, trusted_tag_files


def looks_like_bundle(path: str) -> bool:
    """A directory holding bagit.txt, or a .tar file: what ``inspect`` treats as a bundle."""
    candidate = Path(path)
    if candidate.is_dir():
        return (candidate / layout.BAGIT_TXT).is_file()
    return candidate.suffix == ".tar" and candidate.is_file()


def summarize_bundle(path: Path) -> dict[str, Any]:
    """What the bundle at ``path`` says about itself, its description checked against the tag
    manifest. Raises NotABundle (2) or DamagedBundle (1)."""
    reader = open_bundle(path)
    description = read_description(reader)
    bag_info = layout.parse_tag_file(
        trusted_tag_files(reader, (layout.BAG_INFO,))[layout.BAG_INFO].decode("utf-8", "replace")
    )
    crdb = description["cockroachdb"]
    backup = description["backup"]
    return {
        "kind": "bundle",
        "bundle": str(path),
        "form": reader.form,
        "name": description["name"],
        "created": description["created"],
        "version": crdb["version"],
        "major_version": crdb["major_version"],
        "restorable_into": crdb["restorable_into"],
        "platforms": [b["platform"] for b in description["binaries"]],
        "verified_binaries": all(b["verified"] for b in description["binaries"]),
        "backup": {
            "kind": backup["kind"],
            "subdir": backup["subdir"],
            "source": backup["source"],
            "end_time": backup["end_time"],
            "cluster_id": backup["cluster_id"],
            "encrypted": backup["encrypted"],
            "incrementals": backup["incrementals"],
            "files": backup["files"],
            "bytes": backup["bytes"],
        },
        "payload_oxum": next(iter(bag_info.get("Payload-Oxum", [])), None),
        "bagging_date": next(iter(bag_info.get("Bagging-Date", [])), None),
        "warnings": description["warnings"],
    }
