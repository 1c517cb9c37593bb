"""Verify a bundle: BagIt complete and valid, plus what format 1 adds.

Every problem is collected and reported, not only the first. Problem kinds:

========== =================================================================================
missing    a file a manifest lists is absent
unexpected a file no manifest lists (or a symlink, device, stray tar member)
size       a file's size differs from payload-sizes.txt, or Payload-Oxum does not add up
digest     a payload file's digest differs from manifest-blake3.txt (or manifest-sha256.txt)
tag        a tag file is malformed or differs from tagmanifest-sha256.txt
schema     crdb-archive.json is not valid against its JSON schema
binary     a CockroachDB archive does not match the published SHA-256 recorded at archive time
decrypt    an encrypted backup file fails AES-GCM authentication (``--decrypt-check``)
========== =================================================================================
"""

from __future__ import annotations

import contextlib
import json
import os
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from crdb_archive.bundle import layout
from crdb_archive.bundle.model import schema_problems
from crdb_archive.bundle.reader import BundleReader, Member, open_bundle, require_readable
from crdb_archive.errors import BadInput, CrdbArchiveError, NotABundle, StorageError
from crdb_archive.hashing import (
    Digests,
    DigestWriter,
    blake3_of_file,
    iter_chunks,
    parallel_in_batches,
    same_digest,
)
from crdb_archive.progress import ProgressCallback, ProgressEvent, no_progress

if TYPE_CHECKING:
    from crdb_archive.backup.keys import EncryptionKeys

Mode = Literal["fast", "blake3", "all"]
ProblemKind = Literal[
    "missing", "unexpected", "size", "digest", "tag", "schema", "binary", "decrypt"
]

# Tag files are read whole; anything larger is not a tag file this tool wrote.
_MAX_TAG_FILE = 512 << 20

# One hashing thread per core: more only contend for the interpreter lock on small files.
_HASH_THREADS = max(2, min(8, os.cpu_count() or 2))
# Reads from object storage wait on the network, not the processor: more of them at once.
_REMOTE_READS = 8


@dataclass(frozen=True)
class Problem:
    path: str
    kind: ProblemKind
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "kind": self.kind, "detail": self.detail}

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}"


@dataclass
class VerifyReport:
    bundle: str
    form: Literal["dir", "tar"]
    mode: Mode
    problems: list[Problem] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    description: dict[str, Any] | None = None
    decrypted: int | None = None  # encrypted files authenticated by --decrypt-check

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, path: str, kind: ProblemKind, detail: str) -> None:
        self.problems.append(Problem(path, kind, detail))

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle": str(self.bundle),
            "ok": self.ok,
            "mode": self.mode,
            "problems": [p.to_json() for p in self.problems],
            "files": self.files,
            "bytes": self.bytes,
            **({} if self.decrypted is None else {"decrypt_checked": self.decrypted}),
        }


@dataclass
class _Seen:
    """What reading the bundle found: tag files' bytes, payload sizes and digests."""

    tags: dict[str, bytes] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    digests: dict[str, Digests] = field(default_factory=dict)
    others: list[str] = field(default_factory=list)
    checksum_files: dict[str, bytes] = field(default_factory=dict)


def verify_bundle(
    path: str | Path,
    *,
    fast: bool = False,
    all_digests: bool = False,
    endpoint_url: str | None = None,
    progress: ProgressCallback = no_progress,
    decrypt_check: bool = False,
    keys: EncryptionKeys | None = None,
) -> VerifyReport:
    """Verify the bundle at ``path`` (directory or .tar, local or s3://) and report every
    problem found; with ``decrypt_check``, also authenticate every encrypted backup file
    with ``keys`` (WrongEncryptionKey when they open none, KeyServiceError when KMS fails).

    Raises NotABundle when ``path`` is not a bundle at all, NeedsRestoreFromColdStorage when
    objects it must read wait in an archive storage class, StorageError when it cannot be read.
    """
    reader = open_bundle(path, endpoint_url=endpoint_url)
    return verify_reader(reader, fast=fast, all_digests=all_digests, progress=progress,
                         decrypt_check=decrypt_check, keys=keys)


def verify_reader(
    reader: BundleReader,
    *,
    fast: bool = False,
    all_digests: bool = False,
    progress: ProgressCallback = no_progress,
    decrypt_check: bool = False,
    keys: EncryptionKeys | None = None,
) -> VerifyReport:
    """Verify an opened bundle; raises as :func:`verify_bundle`."""
    mode: Mode = "fast" if fast else ("all" if all_digests else "blake3")
    if decrypt_check and fast:
        raise BadInput("--decrypt-check reads every encrypted file; it cannot go with --fast")
    require_readable(reader, payload=mode != "fast")
    report = VerifyReport(reader.display, reader.form, mode)
    seen = _read(reader, report, mode, progress)
    if not seen.tags.keys() & set(layout.ALL_TAG_FILES) and not seen.sizes:
        # Nothing of a bag at all; a damaged bundle (a tar cut short) still shows some of it.
        raise NotABundle(f"{reader.display} is not a bundle: it has no {layout.BAGIT_TXT}")
    _check_bagit_txt(seen, report)
    _check_tag_manifest(seen, report)
    manifests = _check_manifests(seen, report, mode)
    _check_payload(seen, report, manifests, mode)
    _check_oxum(seen, report)
    report.description = _check_description(seen, report)
    if report.description is not None and mode != "fast":
        _check_binaries(seen, report, report.description)
    if decrypt_check and report.description is not None:
        _check_decryption(reader, report, report.description, keys, progress)
    report.files = len(seen.sizes)
    report.bytes = sum(seen.sizes.values())
    return report


# --- reading ------------------------------------------------------------------------------------


def _is_payload(path: str) -> bool:
    return path.startswith(layout.PAYLOAD_DIR + "/")


def _needs_sha256(path: str, mode: str) -> bool:
    # The binaries are checked against their published SHA-256 in every full verification.
    return mode == "all" or path.startswith(layout.BINARY_DIR + "/")


def _digest_member(member: Member, mode: str, progress: _Counter) -> Digests:
    if member.local_path is not None and not _needs_sha256(member.path, mode):
        digests = blake3_of_file(member.local_path)
    else:
        writer = DigestWriter(sha256=_needs_sha256(member.path, mode), size_hint=member.size)
        with member.open() as stream:
            for chunk in iter_chunks(stream):
                writer.update(chunk)
        digests = writer.digests()
    progress.add(digests.size)
    return digests


def _is_checksum_file(member: Member) -> bool:
    return (member.path.startswith(layout.BINARY_DIR + "/")
            and member.path.endswith(".sha256sum") and member.size <= 4096)


def _digest_bytes(content: bytes) -> Digests:
    writer = DigestWriter(size_hint=len(content))
    writer.update(content)
    return writer.digests()


class _Counter:
    def __init__(self, task: str, progress: ProgressCallback) -> None:
        self._task = task
        self._progress = progress
        self._done = 0
        self.total: int | None = None

    def add(self, count: int) -> None:
        self._done += count  # approximate under threads; progress only
        self._progress(ProgressEvent(self._task, self._done, self.total))

    def finish(self) -> None:
        self._progress(ProgressEvent(self._task, self._done, self.total, finished=True))


def _read(
    reader: BundleReader, report: VerifyReport, mode: str, progress: ProgressCallback
) -> _Seen:
    seen = _Seen()
    counter = _Counter(f"verify {reader.name}", progress)
    to_hash: list[Member] = []
    with _read_errors(reader, report):
        for member in reader.members():
            if _is_payload(member.path):
                seen.sizes[member.path] = member.size
                if mode == "fast":
                    continue
                if _is_checksum_file(member):
                    with member.open() as stream:
                        content = stream.read()
                    seen.checksum_files[member.path] = content
                    seen.digests[member.path] = _digest_bytes(content)
                elif reader.random_access:
                    to_hash.append(member)
                else:
                    seen.digests[member.path] = _digest_member(member, mode, counter)
            elif "/" not in member.path and member.size <= _MAX_TAG_FILE:
                with member.open() as stream:
                    seen.tags[member.path] = stream.read()
            else:
                seen.others.append(member.path)
        if to_hash:
            counter.total = sum(m.size for m in to_hash)
            for member, digests in parallel_in_batches(
                lambda m: _digest_member(m, mode, counter), to_hash, lambda m: m.size,
                threads=_HASH_THREADS if to_hash[0].local_path else _REMOTE_READS,
            ):
                seen.digests[member.path] = digests
    counter.finish()
    for oddity in reader.oddities:
        report.add(oddity.path, "unexpected", oddity.detail)
    return seen


@contextlib.contextmanager
def _read_errors(reader: BundleReader, report: VerifyReport) -> Iterator[None]:
    """A tar cut short is damage to report; other read failures are the world failing."""
    try:
        yield
    except (tarfile.TarError, EOFError) as error:
        report.add(reader.display, "size", f"the tar ends early or is damaged: {error}")
    except CrdbArchiveError:
        raise
    except OSError as error:
        raise StorageError(f"cannot read {reader.display}: {error.strerror}") from error


# --- checks -------------------------------------------------------------------------------------


def _text(seen: _Seen, report: VerifyReport, name: str) -> str | None:
    content = seen.tags.get(name)
    if content is None:
        report.add(name, "missing", "required tag file is absent")
        return None
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        report.add(name, "tag", "not UTF-8 text")
        return None


def _check_bagit_txt(seen: _Seen, report: VerifyReport) -> None:
    text = _text(seen, report, layout.BAGIT_TXT)
    if text is None:
        return
    tags = layout.parse_tag_file(text)
    if tags.get("BagIt-Version") != ["1.0"] or tags.get("Tag-File-Character-Encoding") != [
        "UTF-8"
    ]:
        report.add(layout.BAGIT_TXT, "tag", "must declare BagIt-Version 1.0 and UTF-8")


def _check_tag_manifest(seen: _Seen, report: VerifyReport) -> None:
    text = _text(seen, report, layout.TAGMANIFEST_SHA256)
    if text is None:
        return
    listed, errors = layout.parse_manifest(text)
    for error in errors:
        report.add(layout.TAGMANIFEST_SHA256, "tag", error.detail)
    for name in layout.TAG_FILES:
        if name not in listed:
            report.add(layout.TAGMANIFEST_SHA256, "tag", f"does not list {name}")
    for name, expected in sorted(listed.items()):
        content = seen.tags.get(name)
        if content is None:
            report.add(name, "missing", f"listed in {layout.TAGMANIFEST_SHA256}, absent")
            continue
        if not same_digest(_digest_bytes(content).sha256, expected):
            report.add(name, "tag", f"SHA-256 differs from {layout.TAGMANIFEST_SHA256}")
    for name in sorted(seen.tags):
        if name not in listed and name != layout.TAGMANIFEST_SHA256:
            report.add(name, "unexpected", "a file no manifest lists")
    for name in seen.others:
        report.add(name, "unexpected", "outside data/ and not a tag file")


def _parsed(seen: _Seen, report: VerifyReport, name: str) -> dict[str, str]:
    text = _text(seen, report, name)
    if text is None:
        return {}
    entries, errors = layout.parse_manifest(text)
    for error in errors:
        report.add(name, "tag", error.detail)
    for path in entries:
        if not _is_payload(path) or not layout.is_safe_relative(path):
            report.add(name, "tag", f"lists {path!r}, which is not a payload path")
    return entries


def _check_manifests(
    seen: _Seen, report: VerifyReport, mode: str
) -> dict[str, dict[str, str]]:
    blake3 = _parsed(seen, report, layout.MANIFEST_BLAKE3)
    sha256 = _parsed(seen, report, layout.MANIFEST_SHA256)
    for path in sorted(set(blake3) ^ set(sha256)):
        only = layout.MANIFEST_BLAKE3 if path in blake3 else layout.MANIFEST_SHA256
        report.add(path, "tag", f"listed only in {only}")
    return {"blake3": blake3, "sha256": sha256}


def _check_payload(
    seen: _Seen, report: VerifyReport, manifests: Mapping[str, dict[str, str]], mode: str
) -> None:
    listed = set(manifests["blake3"]) | set(manifests["sha256"])
    sizes_text = _text(seen, report, layout.PAYLOAD_SIZES)
    sizes: dict[str, int] = {}
    if sizes_text is not None:
        sizes, errors = layout.parse_sizes(sizes_text)
        for error in errors:
            report.add(layout.PAYLOAD_SIZES, "tag", error.detail)
    for path in sorted(listed):
        if path not in seen.sizes:
            report.add(path, "missing", "listed in the manifests, absent from the bundle")
            continue
        expected_size = sizes.get(path)
        if expected_size is not None and expected_size != seen.sizes[path]:
            report.add(path, "size",
                       f"{seen.sizes[path]} bytes, {layout.PAYLOAD_SIZES} says {expected_size}")
        digests = seen.digests.get(path)
        if digests is None:
            continue
        if path in manifests["blake3"] and not same_digest(digests.blake3,
                                                           manifests["blake3"][path]):
            report.add(path, "digest", f"BLAKE3 differs from {layout.MANIFEST_BLAKE3}")
        if (digests.sha256 and path in manifests["sha256"]
                and not same_digest(digests.sha256, manifests["sha256"][path])):
            report.add(path, "digest", f"SHA-256 differs from {layout.MANIFEST_SHA256}")
    for path in sorted(set(seen.sizes) - listed):
        report.add(path, "unexpected", "a payload file no manifest lists")


def _check_oxum(seen: _Seen, report: VerifyReport) -> None:
    text = _text(seen, report, layout.BAG_INFO)
    if text is None:
        return
    values = layout.parse_tag_file(text).get("Payload-Oxum", [])
    octets, _, count = values[0].partition(".") if len(values) == 1 else ("", "", "")
    if not (octets.isdigit() and count.isdigit()):
        report.add(layout.BAG_INFO, "tag", "Payload-Oxum is missing or malformed")
        return
    actual_bytes, actual_files = sum(seen.sizes.values()), len(seen.sizes)
    if (int(octets), int(count)) != (actual_bytes, actual_files):
        report.add(layout.BAG_INFO, "size",
                   f"Payload-Oxum {octets}.{count}, payload is {actual_bytes}.{actual_files}")


def _check_description(seen: _Seen, report: VerifyReport) -> dict[str, Any] | None:
    text = _text(seen, report, layout.DESCRIPTION)
    if text is None:
        return None
    try:
        description = json.loads(text)
    except json.JSONDecodeError as error:
        report.add(layout.DESCRIPTION, "schema", f"not JSON: {error.msg} at line {error.lineno}")
        return None
    problems = schema_problems(description)
    for problem in problems:
        report.add(layout.DESCRIPTION, "schema", problem)
    return description if not problems else None


def _check_decryption(
    reader: BundleReader, report: VerifyReport, description: dict[str, Any],
    keys: EncryptionKeys | None, progress: ProgressCallback,
) -> None:
    # Imported here: a plain verify starts without the backup and crypto machinery.
    from crdb_archive.bundle.decrypt_check import check_decryption  # noqa: PLC0415

    damaged = frozenset(p.path for p in report.problems)
    result = check_decryption(
        reader, description, keys, lambda path, detail: report.add(path, "decrypt", detail),
        damaged=damaged, progress=progress)
    report.decrypted = result.checked


def _check_binaries(seen: _Seen, report: VerifyReport, description: dict[str, Any]) -> None:
    for binary in description["binaries"]:
        path = binary["file"]
        digests = seen.digests.get(path)
        if digests is None:
            continue  # reported as missing already
        published = binary["published_sha256"]
        if not same_digest(digests.sha256, binary["sha256"]):
            report.add(path, "binary", "SHA-256 differs from the one recorded at archive time")
        if published is not None and not same_digest(digests.sha256, published):
            report.add(path, "binary", "SHA-256 differs from the published SHA-256")
        if digests.size != binary["size"]:
            report.add(path, "binary", f"{digests.size} bytes, recorded {binary['size']}")
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
