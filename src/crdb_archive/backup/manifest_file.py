"""Find a backup's manifest file, stream it from storage, and check it against its -CHECKSUM.

The manifest is read once, in chunks: the same bytes feed the SHA-256 that ``<name>-CHECKSUM``
vouches for (its first 4 bytes, v20.2+) and the decoder, which stops early; the rest is still
hashed, because the checksum covers the whole stored file.

An encrypted manifest read with its key is decrypted on the way to the decoder and read to the
end, so that every GCM tag (and, in version 2, the short last chunk) is checked. When its
first message fails authentication, the -CHECKSUM over the stored bytes tells a wrong
passphrase from damage: stored bytes that match it are as CockroachDB wrote them, so the key
is wrong (exit 2); bytes that do not are damaged (exit 1). A failure after the first message,
or of a key that KMS unwrapped (KMS authenticates what it unwraps), is damage.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO

from crdb_archive.backup.encryption import HEADER_BYTES, decrypt, looks_encrypted
from crdb_archive.backup.manifest import (
    CHECKSUM_BYTES,
    CHECKSUM_SUFFIX,
    MANIFEST_NAMES,
    MAX_MANIFEST_BYTES,
    ManifestInfo,
    decode_chunks,
)
from crdb_archive.backup.tree import BackupTree, Kind, join, local_tree
from crdb_archive.backup.unlock import DataKey
from crdb_archive.errors import (
    DamagedEncryptedFile,
    DamagedManifest,
    MalformedManifest,
    NotABackup,
    StorageError,
    UnsupportedBackupFile,
    WrongEncryptionKey,
)
from crdb_archive.progress import ProgressCallback, ProgressEvent, no_progress
from crdb_archive.text import count

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
    data_key: DataKey | None = None,
) -> ManifestInfo:
    """Decode the manifest of the backup in ``directory`` of ``tree``, checking its -CHECKSUM.

    A -CHECKSUM mismatch, or content that cannot be decoded and has no -CHECKSUM to prove it
    intact, raises DamagedManifest (exit 1). Content that matches its -CHECKSUM yet cannot be
    decoded is as CockroachDB wrote it, in a form this decoder does not know: MalformedManifest
    (exit 2). An encrypted manifest is decrypted with ``data_key`` when given (see the module
    docstring): WrongEncryptionKey (exit 2) for a passphrase that does not open it,
    DamagedManifest for one that fails authentication otherwise. Raises NotABackup without a
    manifest, UnsupportedBackupFile for a linked -CHECKSUM, NeedsRestoreFromColdStorage when
    either file waits in an archive storage class, StorageError when they cannot be read.
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
    decrypted = False
    with tree.open_read(key) as stream:
        chunks = _hashed_chunks(stream, hasher.update, key, size, progress)
        outcome: ManifestInfo | MalformedManifest | DamagedEncryptedFile
        if data_key is None:
            outcome = _decode(chunks, key)
        else:
            head = _head(chunks)
            stored = itertools.chain((head,), chunks)
            decrypted = looks_encrypted(head)
            outcome = _decrypt_and_decode(stored, data_key, key) if decrypted else _decode(
                stored, key)
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
    if isinstance(outcome, DamagedEncryptedFile):
        raise _decryption_failure(outcome, data_key, key, checksum=expected is not None)
    if isinstance(outcome, ManifestInfo):
        return replace(outcome, checksum_verified=expected is not None, encrypted=(
            outcome.encrypted or decrypted), decrypted=decrypted)
    if decrypted:
        # Every tag checked: the bytes are what CockroachDB encrypted, in an unknown form.
        raise MalformedManifest(f"{key} decrypts and authenticates but cannot be decoded "
                                f"({outcome}): not a manifest format crdb-archive knows")
    if expected is None:
        raise DamagedManifest(
            f"{key} cannot be decoded ({outcome}); it has no {CHECKSUM_SUFFIX} file "
            "to tell damage from an unknown format, so it is treated as damaged"
        )
    raise MalformedManifest(
        f"{key} matches its {CHECKSUM_SUFFIX} but cannot be decoded ({outcome}): "
        "not a manifest format crdb-archive knows"
    )


def _decode(chunks: Iterable[bytes], key: str) -> ManifestInfo | MalformedManifest:
    try:
        return decode_chunks(chunks, file=key, limit=MAX_MANIFEST_BYTES)
    except MalformedManifest as error:
        return error


def _decrypt_and_decode(
    stored: Iterable[bytes], data_key: DataKey, key: str
) -> ManifestInfo | MalformedManifest | DamagedEncryptedFile:
    plaintext = decrypt(stored, data_key.key, name=key)
    try:
        outcome = _decode(plaintext, key)
        # Nothing decoded counts until every tag is checked (a version 1 file has one, at
        # its end) and the file is known not to be cut short.
        for _ in plaintext:
            pass
    except DamagedEncryptedFile as error:
        return error
    return outcome


def _decryption_failure(
    failure: DamagedEncryptedFile, data_key: DataKey | None, key: str, *, checksum: bool
) -> Exception:
    if failure.reason == "version" and checksum:
        return MalformedManifest(f"{failure}: not a manifest format crdb-archive knows")
    if failure.key_unproven and data_key is not None and data_key.mode == "passphrase":
        if checksum:
            return WrongEncryptionKey(
                f"the passphrase does not decrypt {key} (the file matches its "
                f"{CHECKSUM_SUFFIX}, so it is intact): wrong passphrase")
        return WrongEncryptionKey(
            f"the passphrase does not decrypt {key}: a wrong passphrase (the file has no "
            f"{CHECKSUM_SUFFIX} to rule out damage)")
    if failure.key_unproven and data_key is not None:
        return DamagedManifest(
            f"{failure} with the data key {data_key.opened_by} unwrapped from "
            f"{data_key.info_file}: that ENCRYPTION-INFO does not belong to this manifest, or "
            "the manifest is damaged")
    return DamagedManifest(f"{failure}: the manifest is damaged")


def _head(chunks: Iterator[bytes]) -> bytes:
    head = b""
    while len(head) < HEADER_BYTES:
        chunk = next(chunks, None)
        if chunk is None:
            break
        head += chunk
    return head


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
            f"{name}{CHECKSUM_SUFFIX} holds {count(len(expected), 'byte')}, expected "
            f"{CHECKSUM_BYTES}: the checksum file is damaged"
        )
    return expected
