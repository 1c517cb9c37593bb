"""Find a backup's manifest file, stream it from storage, and check it against its -CHECKSUM.

The manifest is read once, in chunks: the same bytes feed the SHA-256 that ``<name>-CHECKSUM``
vouches for (its first 4 bytes, v20.2+) and the decoder, which stops early; the rest is still
hashed, because the checksum covers the whole stored file.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO

from crdb_archive.backup.manifest import (
    CHECKSUM_BYTES,
    CHECKSUM_SUFFIX,
    MANIFEST_NAMES,
    MAX_MANIFEST_BYTES,
    ManifestInfo,
    decode_chunks,
)
from crdb_archive.backup.tree import BackupTree, Kind, join, local_tree
from crdb_archive.errors import (
    DamagedManifest,
    MalformedManifest,
    NotABackup,
    StorageError,
    UnsupportedBackupFile,
)
from crdb_archive.progress import ProgressCallback, ProgressEvent, no_progress

_READ_CHUNK = 1 << 16
# A -CHECKSUM file holds 4 bytes; reading a little more tells a damaged one from a good one.
_CHECKSUM_READ = 64


def manifest_name(tree: BackupTree, directory: str) -> str | None:
    """The name of the manifest file CockroachDB would read in ``directory``, if any.

    Raises UnsupportedBackupFile for a manifest that is a symbolic link, StorageError when the
    directory cannot be examined.
    """
    for name in MANIFEST_NAMES:
        key = join(directory, name)
        kind = tree.kind(key)
        if kind == "link":
            raise UnsupportedBackupFile(
                f"{tree.display(key)} is a symbolic link: crdb-archive reads and archives "
                "regular files only"
            )
        if kind == "file":
            return name
    return None


def read_manifest(
    directory: Path,
    *,
    root: Path,
    progress: ProgressCallback = no_progress,
) -> ManifestInfo:
    """Decode the manifest of the backup in the local ``directory`` below ``root``.

    Raises as :func:`read_manifest_in`.
    """
    relative = directory.relative_to(root).as_posix()
    return read_manifest_in(local_tree(root), "" if relative == "." else relative,
                            progress=progress)


def read_manifest_in(
    tree: BackupTree,
    directory: str,
    *,
    progress: ProgressCallback = no_progress,
) -> ManifestInfo:
    """Decode the manifest of the backup in ``directory`` of ``tree``, checking its -CHECKSUM.

    A -CHECKSUM mismatch, or content that cannot be decoded and has no -CHECKSUM to prove it
    intact, raises DamagedManifest (exit 1). Content that matches its -CHECKSUM yet cannot be
    decoded is as CockroachDB wrote it, in a form this decoder does not know: MalformedManifest
    (exit 2). Raises NotABackup without a manifest, UnsupportedBackupFile for a linked
    -CHECKSUM, NeedsRestoreFromColdStorage when either file waits in an archive storage class,
    StorageError when they cannot be read.
    """
    name = manifest_name(tree, directory)
    if name is None:
        raise NotABackup(
            f"{tree.display(directory)} holds no backup manifest (one of "
            f"{', '.join(MANIFEST_NAMES)})"
        )
    key = join(directory, name)
    checksum_key = key + CHECKSUM_SUFFIX
    checksum_kind = tree.kind(checksum_key)
    if checksum_kind == "link":
        raise UnsupportedBackupFile(f"{tree.display(checksum_key)} is a symbolic link: "
                                    "crdb-archive reads and archives regular files only")
    needed = [key, checksum_key] if checksum_kind == "file" else [key]
    tree.require_readable(needed, "the backup's manifest can be read")
    size = tree.size(key)
    hasher = hashlib.sha256()
    with tree.open_read(key) as stream:
        chunks = _hashed_chunks(stream, hasher.update, key, size, progress)
        outcome: ManifestInfo | MalformedManifest
        try:
            outcome = decode_chunks(chunks, file=key, limit=MAX_MANIFEST_BYTES)
        except MalformedManifest as error:
            outcome = error
        # The checksum covers the whole stored file, however far decoding got.
        for _ in chunks:
            pass
    expected = _read_checksum(tree, checksum_key, checksum_kind, key)
    progress(ProgressEvent(f"read {key}", size, size, finished=True))
    if expected is not None and not hmac.compare_digest(hasher.digest()[:CHECKSUM_BYTES],
                                                        expected):
        raise DamagedManifest(
            f"{key} does not match {key}{CHECKSUM_SUFFIX}: the manifest is damaged "
            f"(SHA-256 starts {hasher.hexdigest()[:8]}, the checksum file says {expected.hex()})"
        )
    if isinstance(outcome, ManifestInfo):
        return replace(outcome, checksum_verified=expected is not None)
    if expected is None:
        raise DamagedManifest(
            f"{key} cannot be decoded ({outcome}); it has no {CHECKSUM_SUFFIX} file "
            "to tell damage from an unknown format, so it is treated as damaged"
        )
    raise MalformedManifest(
        f"{key} matches its {CHECKSUM_SUFFIX} but cannot be decoded ({outcome}): "
        "not a manifest format crdb-archive knows"
    )


def _hashed_chunks(
    stream: IO[bytes],
    update: Callable[[bytes], object],
    name: str,
    size: int,
    progress: ProgressCallback,
) -> Iterator[bytes]:
    done = 0
    while chunk := stream.read(_READ_CHUNK):
        update(chunk)
        done += len(chunk)
        progress(ProgressEvent(f"read {name}", done, size))
        yield chunk


def _read_checksum(tree: BackupTree, key: str, kind: Kind | None, name: str) -> bytes | None:
    if kind is None:
        return None
    if kind != "file":
        raise StorageError(f"cannot read {tree.display(key)}: it is not a regular file")
    expected = tree.read_head(key, _CHECKSUM_READ)
    if len(expected) != CHECKSUM_BYTES:
        raise DamagedManifest(
            f"{name}{CHECKSUM_SUFFIX} holds {len(expected)} byte(s), expected "
            f"{CHECKSUM_BYTES}: the checksum file is damaged"
        )
    return expected
