"""Rewriting a bundle's records as anyone who can write a bundle can: its digests are its own.

A bundle proves that its bytes are the ones it lists, not who made it. These helpers swap a
bundle's release archive and bring every record (manifests, sizes, Payload-Oxum, the
description, the tag manifest) in line, so the forged bundle verifies as sound.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import blake3


def forge_archive(bundle: Path, content: bytes) -> None:
    """Replace the bundle's (first) release archive with ``content``, and every record with
    one that agrees."""
    description = read_description(bundle)
    binary = description["binaries"][0]
    archive = bundle / binary["file"]
    archive.write_bytes(content)
    sha256 = hashlib.sha256(content).hexdigest()
    binary.update(size=len(content), sha256=sha256, blake3=blake3.blake3(content).hexdigest(),
                  published_sha256=sha256)
    if binary["published_checksum_file"]:
        (bundle / binary["published_checksum_file"]).write_text(f"{sha256}  {archive.name}\n")
    write_description(bundle, description)
    rewrite_manifests(bundle)


def read_description(bundle: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((bundle / "crdb-archive.json").read_text())
    return loaded


def write_description(bundle: Path, description: dict[str, Any]) -> None:
    """Write crdb-archive.json and bring the tag manifest in line."""
    (bundle / "crdb-archive.json").write_text(json.dumps(description, indent=2) + "\n")
    rewrite_tag_manifest(bundle)


def rewrite_manifests(bundle: Path) -> None:
    """Recompute both payload manifests, payload-sizes.txt, Payload-Oxum and the tag manifest
    from the payload as it now is."""
    files = sorted(p.relative_to(bundle).as_posix()
                   for p in (bundle / "data").rglob("*") if p.is_file())
    contents = {name: (bundle / name).read_bytes() for name in files}
    (bundle / "manifest-sha256.txt").write_text("".join(
        f"{hashlib.sha256(contents[n]).hexdigest()}  {n}\n" for n in files))
    (bundle / "manifest-blake3.txt").write_text("".join(
        f"{blake3.blake3(contents[n]).hexdigest()}  {n}\n" for n in files))
    (bundle / "payload-sizes.txt").write_text("".join(
        f"{len(contents[n])}  {n}\n" for n in files))
    oxum = f"{sum(len(c) for c in contents.values())}.{len(files)}"
    info = bundle / "bag-info.txt"
    info.write_text(re.sub(r"(?m)^Payload-Oxum: .*$", f"Payload-Oxum: {oxum}", info.read_text()))
    rewrite_tag_manifest(bundle)


def rewrite_tag_manifest(bundle: Path) -> None:
    manifest = bundle / "tagmanifest-sha256.txt"
    names = [line.split("  ", 1)[1] for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(
        f"{hashlib.sha256((bundle / n).read_bytes()).hexdigest()}  {n}\n" for n in names))
