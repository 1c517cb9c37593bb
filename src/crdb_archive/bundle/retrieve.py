"""At restore time: take the matching CockroachDB binary out of a bundle, checked and unpacked."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from crdb_archive.binaries import (
    PLATFORMS,
    ExtractedBinary,
    VersionCheck,
    archive_name,
    check_binary_version,
    extract_archive,
    host_platform,
    require_directory,
    require_free_target,
    version_not_run,
)
from crdb_archive.bundle import layout, tagfiles
from crdb_archive.bundle.description import (
    BackupDescription,
    BinaryEntry,
    Description,
    from_json,
)
from crdb_archive.bundle.model import schema_problems
from crdb_archive.bundle.reader import BundleReader, open_bundle, require_readable
from crdb_archive.bundle.signature_check import SignatureStatus, check_signature
from crdb_archive.errors import (
    BadInput,
    ChecksumMismatch,
    DamagedBundle,
    NotABundle,
    PlatformMissing,
    StorageError,
    UnknownPlatform,
    UntrustedSignature,
)
from crdb_archive.hashing import Digests, DigestWriter, iter_chunks, same_digest
from crdb_archive.progress import ProgressCallback, ProgressEvent, no_progress

if TYPE_CHECKING:
    from crdb_archive.bundle.signature import AllowedSigners


@dataclass(frozen=True)
class RetrievedBinary:
    bundle: str  # where the bundle is, without secrets
    cockroach: Path
    lib_dir: Path | None
    version: str
    platform: str
    verified: bool
    version_check: VersionCheck
    signature: SignatureStatus | None = None  # checked against allowed signers, when given

    def to_json(self) -> dict[str, Any]:
        """The ``binary --json`` contract."""
        return {
            "bundle": self.bundle,
            **({} if self.signature is None else {"signature": self.signature.to_json()}),
            "cockroach": str(self.cockroach),
            "lib_dir": str(self.lib_dir) if self.lib_dir else None,
            "version": self.version,
            "platform": self.platform,
            "verified": self.verified,
            "version_check": self.version_check.to_json(),
        }


def read_description(reader: BundleReader) -> Description:
    """crdb-archive.json, trusted only after its digest matches the tag manifest.

    Raises DamagedBundle when it or the tag manifest is damaged or invalid.
    """
    tags = trusted_tag_files(reader, (layout.DESCRIPTION,))
    return parse_description(reader, tags.files[layout.DESCRIPTION])


def parse_description(reader: BundleReader, content: bytes) -> Description:
    """Parse and schema-check crdb-archive.json within the format's bounds, into its model;
    raises DamagedBundle."""
    try:
        description = tagfiles.load_json(content)
    except tagfiles.TagFileError as error:
        raise DamagedBundle(f"{layout.DESCRIPTION} in {reader.display}: {error}") from None
    except json.JSONDecodeError as error:
        raise DamagedBundle(f"{layout.DESCRIPTION} in {reader.display} is not JSON: "
                            f"{error.msg} at line {error.lineno}") from None
    problems = schema_problems(description)
    if problems:
        raise DamagedBundle(f"{layout.DESCRIPTION} in {reader.display}: {problems[0]}")
    try:
        return from_json(description)
    except DamagedBundle as error:
        raise DamagedBundle(f"{reader.display}: {error}") from None


@dataclass(frozen=True)
class TrustedTags:
    """Tag files that match the tag manifest, and manifest lines looked up on the way."""

    files: dict[str, bytes]
    # (manifest name, payload path) -> hex digest, for the paths asked for
    digests: dict[tuple[str, str], str]
    # tagmanifest-sha256.txt.sig, when asked for and present within its size limit
    signature: bytes | None = None
    signature_oversized: bool = False


def trusted_tag_files(reader: BundleReader, names: tuple[str, ...], *,
                      lookup: Callable[[str], bool] | None = None,
                      signature: bool = False) -> TrustedTags:
    """Tag files whose SHA-256 matches tagmanifest-sha256.txt, in one pass over the bundle.

    ``names`` are read whole, within their size limits. With ``lookup``, both manifests are
    read line by line too (never whole), checked against the tag manifest, and the digests of
    the payload paths ``lookup`` accepts are kept. With ``signature``, the tag manifest's
    signature is read too, if there is one (the tag manifest cannot list it: it is checked
    against keys, not digests). Raises DamagedBundle for a missing, oversized, malformed or
    mismatching tag file.
    """
    manifests = (layout.MANIFEST_SHA256, layout.MANIFEST_BLAKE3) if lookup else ()
    found = _TagPass(reader.display, manifests, lookup)
    wanted = [layout.TAGMANIFEST_SHA256, *names, *manifests]
    for name, size, stream in reader.tag_streams(
            [*wanted, layout.SIGNATURE] if signature else wanted):
        found.read(name, size, stream)
    found.check((*names, *manifests))
    return TrustedTags(found.files, found.digests, found.armored, found.oversized)


class _TagPass:
    """What one pass over the tag files found: contents, their SHA-256, manifest lines."""

    def __init__(self, display: str, manifests: tuple[str, ...],
                 lookup: Callable[[str], bool] | None) -> None:
        self.display = display
        self.manifests = manifests
        self.lookup = lookup
        self.files: dict[str, bytes] = {}
        self.actual: dict[str, str] = {}
        self.digests: dict[tuple[str, str], str] = {}
        self.armored: bytes | None = None
        self.oversized = False

    def read(self, name: str, size: int, stream: IO[bytes]) -> None:
        if name == layout.SIGNATURE:
            self._signature(size, stream)
        elif name in self.manifests:
            self._manifest(name, stream)
        else:
            self._whole(name, size, stream)

    def _signature(self, size: int, stream: IO[bytes]) -> None:
        limit = tagfiles.limit_of(layout.SIGNATURE)
        armored = stream.read(limit + 1) if size <= limit else b""
        self.oversized = size > limit or len(armored) > limit
        self.armored = None if self.oversized else armored

    def _manifest(self, name: str, stream: IO[bytes]) -> None:
        """Read line by line, never whole; keeps the digests of the paths looked up."""
        lines = tagfiles.LineReader(name)
        for entry in tagfiles.parse_entries(name, lines.lines(stream), lines.errors):
            if self.lookup is not None and self.lookup(entry.path):
                self.digests[(name, entry.path)] = cast(bytes, entry.value).hex()
        if lines.errors:
            raise DamagedBundle(f"{name} in {self.display}: {lines.errors[0]}")
        self.actual[name] = lines.sha256

    def _whole(self, name: str, size: int, stream: IO[bytes]) -> None:
        limit = tagfiles.limit_of(name)
        content = stream.read(limit + 1) if size <= limit else b""
        if size > limit or len(content) > limit:
            raise DamagedBundle(f"{name} in {self.display}: "
                                f"{tagfiles.too_large(name, max(size, len(content)))}")
        self.files[name] = content
        self.actual[name] = hashlib.sha256(content).hexdigest()

    def check(self, names: tuple[str, ...]) -> None:
        """Raises DamagedBundle unless each of ``names`` matches the tag manifest."""
        if layout.TAGMANIFEST_SHA256 not in self.files:
            raise DamagedBundle(f"{self.display} has no {layout.TAGMANIFEST_SHA256}: the "
                                "bundle is incomplete")
        listed, errors = tagfiles.parse_tag_manifest(self.files[layout.TAGMANIFEST_SHA256])
        if errors:
            raise DamagedBundle(f"{layout.TAGMANIFEST_SHA256} in {self.display}: {errors[0]}")
        for name in names:
            if name not in self.actual:
                raise DamagedBundle(f"{self.display} has no {name}")
            expected = listed.get(name)
            if expected is None or not same_digest(self.actual[name], expected):
                raise DamagedBundle(
                    f"{name} in {self.display} does not match {layout.TAGMANIFEST_SHA256}")


def require_signature(reader: BundleReader, tags: TrustedTags,
                      allowed: AllowedSigners) -> SignatureStatus:
    """The signature of ``tags`` (read with ``signature=True``) checked against ``allowed``;
    raises UntrustedSignature (exit 1) when it is not a valid one by a key they list."""
    status = check_signature(tags.files.get(layout.TAGMANIFEST_SHA256), tags.signature,
                             oversized=tags.signature_oversized,
                             bag_info=tags.files.get(layout.BAG_INFO), allowed=allowed)
    if not status.valid:
        raise UntrustedSignature(f"{reader.display} is not signed by a key {allowed.where} "
                                 f"lists: {status.problems[0]}")
    return status


def _is_binary_path(path: str) -> bool:
    return path.startswith(layout.BINARY_DIR + "/")


def retrieve_binary(
    bundle: str | Path,
    dest_dir: Path,
    *,
    platform: str | None = None,
    replace: bool = False,
    endpoint_url: str | None = None,
    progress: ProgressCallback = no_progress,
    allowed: AllowedSigners | None = None,
) -> RetrievedBinary:
    """Check the bundle's archive for ``platform`` (default: this host's) and unpack it into
    ``dest_dir/<its top folder>`` (``replace``: an earlier extraction of it may be replaced).

    Without ``allowed`` the binary is never run: a bundle's digests are its own records, which
    a forged bundle would carry too, so nothing established vouches for its code; the result
    says how to run ``cockroach version`` by hand. With ``allowed`` (an allowed_signers file),
    the bundle must be validly signed by a key it lists, before anything is written: the
    signer then vouches for the digests the archive is checked against, and ``cockroach
    version`` is run (where the platform is this host's) to confirm the release.

    Raises UnknownPlatform (2) or BadInput (2) for a bad ``platform`` or a ``dest_dir`` that
    is not a directory, both before anything is read or created; NotABundle (2);
    PlatformMissing (1) naming the platforms the bundle has and the published checksum
    recorded for the missing one; UntrustedSignature (1) with ``allowed`` and no valid
    signature by a key it lists; ChecksumMismatch/DamagedBundle (1) when the archive does not
    match the bundle; UnsafeArchive/BadReleaseArchive (2); BadInput (2) when the target folder
    exists and may not be replaced; StorageError (3).
    """
    if platform not in (None, "auto") and platform not in PLATFORMS:
        raise UnknownPlatform(
            f"unknown platform {platform!r}; expected auto or one of {', '.join(PLATFORMS)}")
    require_directory(dest_dir)
    reader = open_bundle(bundle, endpoint_url=endpoint_url)
    require_readable(reader, payload=True)
    # One pass for every tag file needed: a tar in object storage is read from its start.
    # The binaries' manifest lines are kept on the way: their paths are in the description,
    # which a tar holds after the manifests.
    tags = trusted_tag_files(
        reader, (layout.DESCRIPTION, layout.BAG_INFO) if allowed else (layout.DESCRIPTION,),
        lookup=_is_binary_path, signature=allowed is not None)
    signed = require_signature(reader, tags, allowed) if allowed is not None else None
    description = _backup_description(reader, tags)
    wanted = platform if platform not in (None, "auto") else host_platform()
    if wanted is None:
        raise BadInput("cannot tell this host's platform: choose one with --platform")
    binary = _official_binary(reader.display, description, wanted)
    release = description.cockroachdb.version
    if not replace:
        require_free_target(dest_dir / binary.file_name.removesuffix(".tgz").removesuffix(".zip"),
                            binary.file_name)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StorageError(f"cannot create {dest_dir}: {error.strerror}") from error
    with _scratch_copy(reader, binary.file, dest_dir, binary.file_name,
                       progress) as (archive, digests):
        _check_copy(reader.display, binary, tags, digests)
        extracted: ExtractedBinary = extract_archive(archive, dest_dir, replace=replace,
                                                     sha256=digests.sha256)
    return RetrievedBinary(
        bundle=reader.display,
        cockroach=extracted.cockroach,
        lib_dir=extracted.lib_dir,
        version=release,
        platform=wanted,
        verified=binary.published_sha256 is not None,
        version_check=_version_check(extracted, release, wanted, signed=signed is not None),
        signature=signed,
    )


def _backup_description(reader: BundleReader, tags: TrustedTags) -> BackupDescription:
    """The trusted description, of a backup bundle; raises NotABundle for an export one."""
    description = parse_description(reader, tags.files[layout.DESCRIPTION])
    if not isinstance(description, BackupDescription):
        raise NotABundle(f"{reader.display} is an export bundle: it holds no CockroachDB "
                         "binary (see its RESTORE.md, or load it with `crdb-archive load`)")
    return description


def _official_binary(display: str, description: BackupDescription,
                     wanted: str) -> BinaryEntry:
    """The archive for ``wanted``; raises PlatformMissing, or DamagedBundle for one that is
    not named as the official archive (the name decides the folder it unpacks into)."""
    binary = description.binary(wanted)
    if binary is None:
        raise PlatformMissing(_missing_message(display, description, wanted))
    release = description.cockroachdb.version
    if binary.file_name != archive_name(release, wanted):
        raise DamagedBundle(f"{display} holds {binary.file} for {wanted}, not the official "
                            f"{archive_name(release, wanted)} of {release}")
    return binary


def _check_copy(display: str, binary: BinaryEntry, tags: TrustedTags,
                digests: Digests) -> None:
    """The copied archive against both manifests, the description and the published
    SHA-256; raises DamagedBundle, or ChecksumMismatch for the published one."""
    path = binary.file
    expected = [
        ("the bundle's manifest-sha256.txt",
         tags.digests.get((layout.MANIFEST_SHA256, path)), digests.sha256),
        ("the bundle's manifest-blake3.txt",
         tags.digests.get((layout.MANIFEST_BLAKE3, path)), digests.blake3),
        ("crdb-archive.json", binary.sha256, digests.sha256),
    ]
    for where, recorded, actual in expected:
        if recorded is None or not same_digest(recorded, actual):
            raise DamagedBundle(f"{path} in {display} does not match {where}")
    published = binary.published_sha256
    if published is not None and not same_digest(published, digests.sha256):
        raise ChecksumMismatch(
            f"{path} in {display} differs from the published SHA-256 {published}")


def _version_check(extracted: ExtractedBinary, release: str, platform: str, *,
                   signed: bool) -> VersionCheck:
    if signed:
        # The signer vouches for the digests the archive matched: its source is established.
        return check_binary_version(extracted.cockroach, release, platform=platform)
    return version_not_run(
        extracted.cockroach,
        "a bundle's digests are its own records, which a forged bundle would carry too, "
        "so nothing established vouches for this binary's code (a bundle signed by a key "
        "given with --allowed-signers would)")


def _missing_message(bundle: str, description: BackupDescription, wanted: str) -> str:
    have = ", ".join(description.platforms)
    other = description.other_platform(wanted)
    message = f"{bundle} holds no {wanted} binary; it has: {have}."
    if other is not None and other.published_sha256:
        message += (f" The published SHA-256 of {other.file_name} recorded at archive "
                    f"time is {other.published_sha256}: check a later download against it.")
    elif other is not None:
        message += f" No published SHA-256 was recorded for {other.file_name}."
    return message


@contextlib.contextmanager
def _scratch_copy(
    reader: BundleReader,
    path: str,
    dest_dir: Path,
    file_name: str,
    progress: ProgressCallback,
) -> Iterator[tuple[Path, Digests]]:
    """Copy one bundle member next to ``dest_dir`` under a hidden name, digesting it; the copy
    is removed on the way out whatever happens."""
    scratch_dir = dest_dir / f".crdb-archive-{secrets.token_hex(4)}.partial"
    scratch = scratch_dir / file_name
    try:
        writer = DigestWriter()
        with reader.open_member(path) as source:
            try:
                scratch_dir.mkdir()
                with scratch.open("xb") as sink:
                    for chunk in iter_chunks(source):
                        writer.update(chunk)
                        sink.write(chunk)
                        progress(ProgressEvent(f"unpack {file_name}", writer.size))
            except OSError as error:
                raise StorageError(f"cannot write {scratch}: {error.strerror}") from error
        progress(ProgressEvent(f"unpack {file_name}", writer.size, finished=True))
        yield scratch, writer.digests()
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)
