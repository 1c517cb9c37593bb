"""The tag files of a bundle's tar, read from where its writer put them, without the payload.

A tar bundle's tag files follow its payload, to the end of the tar. The writer knows where the
first one starts; from there the tail is read as a tar of its own (one ranged read) and checked
as a quick verification checks tag files: each is one of format 1's, the tag manifest lists
them with their SHA-256, Payload-Oxum counts what the writer wrote, and with allowed signers
the tag manifest is validly signed. That the bytes are the writer's is for the store's
checksum of the whole tar to confirm (jobs/confirm.py); this checks what the writer said.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from crdb_archive.bundle import layout, tagfiles
from crdb_archive.bundle.signature_check import SignatureStatus, check_signature
from crdb_archive.errors import StorageError
from crdb_archive.hashing import same_digest
from crdb_archive.storage.base import Storage

if TYPE_CHECKING:
    from crdb_archive.bundle.signature import AllowedSigners

# Tag files whose content the checks need; the others are only hashed.
_KEPT = (layout.BAG_INFO, layout.TAGMANIFEST_SHA256, layout.SIGNATURE)
_CHUNK = 1 << 20


@dataclass
class TarTags:
    """What the tail of a tar holds: its tag files' SHA-256, the few kept whole, problems."""

    sha256: dict[str, str] = field(default_factory=dict)
    kept: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    bytes_read: int = 0
    signature: SignatureStatus | None = None


def check_tar_tags(storage: Storage, key: str, name: str, tags_at: int, *, files: int,
                   size: int, allowed: AllowedSigners | None) -> TarTags:
    """Read the tar ``key`` from ``tags_at`` to its end and check its tag files against the
    payload the writer wrote (``files`` files, ``size`` bytes).

    Raises StorageError when it cannot be read (also ObjectNotFound and
    NeedsRestoreFromColdStorage, as ``open_read``).
    """
    found = TarTags()
    with storage.open_read(key, start=tags_at) as reader:
        counted = _Counted(reader)
        try:
            with tarfile.open(fileobj=counted, mode="r|") as tail:  # type: ignore[call-overload]
                for member in tail:
                    _read_member(tail, member, name, found)
        except tarfile.TarError as error:
            found.problems.append(f"tag: {key}: its tag files are not a tar from offset "
                                  f"{tags_at}: {error}")
        except OSError as error:
            raise StorageError(f"cannot read {storage.display(key)}: {error}") from error
        found.bytes_read = counted.count
    _check(found, files, size, allowed)
    return found


class _Counted:
    """A reader that counts what was read (what the check downloaded)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        return data


def _read_member(tail: tarfile.TarFile, member: tarfile.TarInfo, name: str,
                 found: TarTags) -> None:
    tag = member.name.removeprefix(f"{name}/")
    if not member.isfile() or tag == member.name or (
            tag not in layout.ALL_TAG_FILES and tag != layout.SIGNATURE):
        found.problems.append(f"unexpected: {member.name}: not a tag file of {name}")
        return
    stream = tail.extractfile(member)
    if stream is None:  # pragma: no cover - a regular file always has a stream
        return
    digest = hashlib.sha256()
    kept = bytearray()
    keep = tag in _KEPT and member.size <= tagfiles.limit_of(tag)
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
        if keep:
            kept += chunk
    found.sha256[tag] = digest.hexdigest()
    if keep:
        found.kept[tag] = bytes(kept)


def _check(found: TarTags, files: int, size: int, allowed: AllowedSigners | None) -> None:
    manifest = found.kept.get(layout.TAGMANIFEST_SHA256)
    if manifest is None:
        found.problems.append(f"missing: {layout.TAGMANIFEST_SHA256}: not among the tag files")
        return
    listed, errors = tagfiles.parse_tag_manifest(manifest)
    found.problems += [f"tag: {layout.TAGMANIFEST_SHA256}: {e}" for e in errors]
    for tag in layout.TAG_FILES:
        actual = found.sha256.get(tag)
        expected = listed.get(tag)
        if actual is None:
            found.problems.append(f"missing: {tag}: not among the tag files")
        elif expected is None:
            found.problems.append(f"tag: {layout.TAGMANIFEST_SHA256}: does not list {tag}")
        elif not same_digest(actual, expected):
            found.problems.append(f"tag: {tag}: SHA-256 differs from "
                                  f"{layout.TAGMANIFEST_SHA256}")
    _check_oxum(found, files, size)
    status = check_signature(manifest, found.kept.get(layout.SIGNATURE),
                             bag_info=found.kept.get(layout.BAG_INFO), allowed=allowed)
    found.signature = status
    found.problems += [f"signature: {layout.SIGNATURE}: {p}" for p in status.problems]


def _check_oxum(found: TarTags, files: int, size: int) -> None:
    try:
        labels = tagfiles.parse_bag_info(found.kept.get(layout.BAG_INFO, b""))
        oxum = tagfiles.parse_oxum((labels.get("Payload-Oxum") or [""])[0])
    except tagfiles.TagFileError as error:
        found.problems.append(f"tag: {layout.BAG_INFO}: {error}")
        return
    if oxum != (size, files):
        found.problems.append(f"size: {layout.BAG_INFO}: Payload-Oxum {oxum[0]}.{oxum[1]} "
                              f"where {size}.{files} were written")
