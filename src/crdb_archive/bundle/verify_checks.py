"""The checks of a verification, run on what reading the bundle found (bundle-format.md, 5)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from crdb_archive.bundle import layout, payload_table, tagfiles
from crdb_archive.bundle.model import description_problems
from crdb_archive.bundle.signature_check import check_signature
from crdb_archive.hashing import same_digest
from crdb_archive.text import count, exact, size

if TYPE_CHECKING:
    from crdb_archive.bundle.signature import AllowedSigners
    from crdb_archive.bundle.verify import Seen, VerifyReport

_MANIFESTS = {layout.MANIFEST_BLAKE3: "blake3", layout.MANIFEST_SHA256: "sha256"}


def run_checks(seen: Seen, report: VerifyReport, *, full: bool,
               allowed: AllowedSigners | None = None) -> None:
    """Every check of format 1, each problem added to ``report``; with ``allowed``, the
    signature must be valid by a key it lists."""
    _check_signature(seen, report, allowed)
    _check_absent_tags(seen, report)
    _check_bagit_txt(seen, report)
    _check_tag_manifest(seen, report)
    _check_manifests(seen, report)
    _check_payload(seen, report)
    _check_oxum(seen, report)
    report.description = _check_description(seen, report)
    if report.description is None:
        return
    if report.description.get("kind") == "export":
        _check_export_files(seen, report, report.description["export"])
    elif full:
        _check_binaries(seen, report, report.description)


def _check_signature(seen: Seen, report: VerifyReport,
                     allowed: AllowedSigners | None) -> None:
    status = check_signature(
        seen.tags.get(layout.TAGMANIFEST_SHA256), seen.tags.get(layout.SIGNATURE),
        oversized=layout.SIGNATURE in seen.oversized, bag_info=seen.tags.get(layout.BAG_INFO),
        allowed=allowed)
    report.signature = status
    for problem in status.problems:
        report.add(layout.SIGNATURE, "signature", problem)


def _check_absent_tags(seen: Seen, report: VerifyReport) -> None:
    absent = [n for n in layout.ALL_TAG_FILES
              if n not in seen.tag_sha256 and n not in seen.oversized]
    # An oversized signature is the signature check's to judge (only against allowed signers).
    for name in sorted(seen.oversized - {layout.SIGNATURE}):
        report.add(name, "tag", "not read: larger than a tag file of format 1 may be ("
                   f"{size(tagfiles.limit_of(name))})")
    if seen.damage is not None and seen.cut and absent:
        # One line, not one per file: the tar ended before them.
        report.add(seen.damage.where, "missing", "the tar ends before these tag files: "
                   + ", ".join(absent))
        return
    for name in absent:
        report.add(name, "missing", "required tag file is absent")


def _text_of(seen: Seen, name: str) -> bytes | None:
    return seen.tags.get(name)


def _check_bagit_txt(seen: Seen, report: VerifyReport) -> None:
    content = _text_of(seen, layout.BAGIT_TXT)
    if content is not None and content != layout.BAGIT_TXT_CONTENT.encode():
        report.add(layout.BAGIT_TXT, "tag", "must be exactly 'BagIt-Version: 1.0' and "
                   "'Tag-File-Character-Encoding: UTF-8', each line ending in LF")


def _check_tag_manifest(seen: Seen, report: VerifyReport) -> None:
    content = _text_of(seen, layout.TAGMANIFEST_SHA256)
    if content is not None:
        listed, errors = tagfiles.parse_tag_manifest(content)
        for error in errors:
            report.add(layout.TAGMANIFEST_SHA256, "tag", error)
        for name in layout.TAG_FILES:
            if name not in listed:
                report.add(layout.TAGMANIFEST_SHA256, "tag", f"does not list {name}")
        for name, expected in sorted(listed.items()):
            actual = seen.tag_sha256.get(name)
            if actual is not None and not same_digest(actual, expected):
                report.add(name, "tag", f"SHA-256 differs from {layout.TAGMANIFEST_SHA256}")
    for name in seen.others:
        report.add(name, "unexpected", "outside data/ and not a tag file")


def _manifests_read(seen: Seen) -> list[str]:
    return [name for name in _MANIFESTS if name in seen.tag_sha256]


def _check_manifests(seen: Seen, report: VerifyReport) -> None:
    for name in (*_MANIFESTS, layout.PAYLOAD_SIZES):
        for error in seen.manifest_errors.get(name, []):
            report.add(name, "tag", error)
    if len(_manifests_read(seen)) < 2:
        return
    both = payload_table.IN_BLAKE3 | payload_table.IN_SHA256
    listed = seen.table.flags.translate(payload_table.bits(both))
    if not listed.count(payload_table.IN_BLAKE3) and not listed.count(payload_table.IN_SHA256):
        return  # every path in both manifests or in neither: no row to look at
    for path, row in seen.table.items():
        flags = listed[row]
        if flags and flags != both:
            only = (layout.MANIFEST_BLAKE3 if flags & payload_table.IN_BLAKE3
                    else layout.MANIFEST_SHA256)
            report.add(path, "tag", f"listed only in {only}")


def _check_payload(seen: Seen, report: VerifyReport) -> None:
    table = seen.table
    any_manifest = bool(_manifests_read(seen))
    sizes_read = layout.PAYLOAD_SIZES in seen.tag_sha256
    if any_manifest and sizes_read and not seen.cut:
        # The usual case, a sound bundle, checked column by column; any doubt, row by row.
        required = (payload_table.PRESENT | payload_table.IN_SIZES | payload_table.IN_BLAKE3
                    | payload_table.HAS_BLAKE3)
        if layout.MANIFEST_SHA256 in seen.tag_sha256:
            required |= payload_table.IN_SHA256
        if table.all_match(required):
            return
    unreached = 0
    first_unreached = ""
    for path, row in table.items():
        if _check_row(seen, report, path, row, any_manifest=any_manifest,
                      sizes_read=sizes_read):
            unreached += 1
            first_unreached = first_unreached or path
    if unreached and seen.damage is not None:
        report.add(seen.damage.where, "missing", f"the tar ends before {unreached} files the "
                   f"manifests list (the first: {first_unreached})")


def _check_row(seen: Seen, report: VerifyReport, path: str, row: int, *, any_manifest: bool,
               sizes_read: bool) -> bool:
    """The checks of one payload path; True when the tar ended before it was reached."""
    table = seen.table
    flags = table.flags[row]
    listed = bool(flags & (payload_table.IN_BLAKE3 | payload_table.IN_SHA256))
    present = bool(flags & payload_table.PRESENT)
    if sizes_read and flags & payload_table.IN_SIZES and not listed and any_manifest:
        report.add(layout.PAYLOAD_SIZES, "tag", f"lists {path}, which the manifests do not")
    if not listed:
        if present and any_manifest:
            report.add(path, "unexpected", "a payload file no manifest lists")
        return False
    if not present:
        if seen.cut:
            return True
        report.add(path, "missing", "listed in the manifests, absent from the bundle")
        return False
    if sizes_read and not flags & payload_table.IN_SIZES:
        report.add(layout.PAYLOAD_SIZES, "tag", f"does not list {path}")
    elif sizes_read and table.listed_size(row) != table.present_size(row):
        report.add(path, "size", f"{exact(table.present_size(row))}, {layout.PAYLOAD_SIZES} "
                   f"says {table.listed_size(row):,}")
    for algorithm, manifest in (("blake3", layout.MANIFEST_BLAKE3),
                                ("sha256", layout.MANIFEST_SHA256)):
        actual = table.actual(algorithm, row)  # type: ignore[arg-type]
        expected = table.expected(algorithm, row)  # type: ignore[arg-type]
        if actual is not None and expected is not None and actual != expected:
            name = "BLAKE3" if algorithm == "blake3" else "SHA-256"
            report.add(path, "digest", f"{name} differs from {manifest}")
    return False


def _check_oxum(seen: Seen, report: VerifyReport) -> None:
    content = _text_of(seen, layout.BAG_INFO)
    if content is None:
        return
    try:
        values = tagfiles.parse_bag_info(content).get("Payload-Oxum", [])
        octets, number = tagfiles.parse_oxum(values[0] if len(values) == 1 else "")
    except tagfiles.TagFileError as error:
        report.add(layout.BAG_INFO, "tag", str(error))
        return
    if (octets, number) != (report.bytes, report.files):
        report.add(layout.BAG_INFO, "size",
                   f"Payload-Oxum says {_oxum(octets, number)}; the payload holds "
                   f"{_oxum(report.bytes, report.files)}")


def _oxum(octets: int, number: int) -> str:
    return f"{count(number, 'file')} of {exact(octets)}"


def _check_description(seen: Seen, report: VerifyReport) -> dict[str, Any] | None:
    content = _text_of(seen, layout.DESCRIPTION)
    if content is None:
        return None
    try:
        description = tagfiles.load_json(content)
    except tagfiles.TagFileError as error:
        report.add(layout.DESCRIPTION, "tag", str(error))
        return None
    except json.JSONDecodeError as error:
        report.add(layout.DESCRIPTION, "schema", f"not JSON: {error.msg} at line {error.lineno}")
        return None
    problems = description_problems(description)
    for problem in problems:
        report.add(layout.DESCRIPTION, "schema", problem)
    return dict(description) if not problems else None


def _check_binaries(seen: Seen, report: VerifyReport, description: dict[str, Any]) -> None:
    table = seen.table
    for binary in description["binaries"]:
        path = binary["file"]
        row = table.row_of(path)
        actual = table.actual("sha256", row) if row is not None else None
        if row is None or actual is None:
            continue  # missing or unreadable: reported already
        sha256 = actual.hex()
        published = binary["published_sha256"]
        if not same_digest(sha256, binary["sha256"]):
            report.add(path, "binary", "SHA-256 differs from the one recorded at archive time")
        if published is not None and not same_digest(sha256, published):
            report.add(path, "binary", "SHA-256 differs from the published SHA-256")
        if table.present_size(row) != binary["size"]:
            report.add(path, "binary", f"{exact(table.present_size(row))}, recorded "
                       f"{binary['size']:,}")
        checksum_file = binary["published_checksum_file"]
        if checksum_file is None:
            continue
        content = seen.checksum_files.get(checksum_file)
        if content is None:
            continue  # missing or unexpected: reported by the payload checks
        line = content.decode("utf-8", "replace").split()
        if not line or published is None or not same_digest(line[0], published):
            report.add(checksum_file, "binary",
                       "does not hold the published SHA-256 recorded at archive time")


def _check_export_files(seen: Seen, report: VerifyReport, export: dict[str, Any]) -> None:
    """Every file the description of an export bundle names is in the manifests."""
    named = [(export["schema_file"], "the schema file"),
             (export["postgresql_file"], "the PostgreSQL DDL")]
    if export["resolved_file"] is not None:
        named.append((export["resolved_file"], "the resolved file of the snapshot"))
    for table, entry in export["tables"].items():
        named += [(entry["files"]["parquet"], f"the Parquet snapshot of {table}"),
                  (entry["files"]["csv"], f"the CSV snapshot of {table}")]
    listed = payload_table.IN_BLAKE3 | payload_table.IN_SHA256
    for path, what in named:
        row = seen.table.row_of(path)
        if row is None or not seen.table.flags[row] & listed:
            report.add(path, "missing", f"{layout.DESCRIPTION} names it as {what}, and the "
                       "manifests do not list it")
