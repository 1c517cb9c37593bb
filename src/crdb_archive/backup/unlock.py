"""Find the data key of an encrypted backup from its ENCRYPTION-INFO files and the user's keys.

As RESTORE does (cockroach ``backupencryption.GetEncryptionFromBase``): a passphrase is turned
into a key with the salt of the newest ENCRYPTION-INFO; each KMS key is looked up by the
SHA-256 of its master key id in the ENCRYPTION-INFO files, newest first, and the first entry
found is unwrapped by that KMS. Unlike RESTORE, which wants every URI given to be known to the
backup, one matching key is enough to read it. Which key opened the backup is recorded in
:class:`Encryption`; the key itself never leaves :class:`DataKey`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from crdb_archive.backup.encryption import KEY_BYTES, passphrase_key
from crdb_archive.backup.encryption_info import (
    MAX_ENCRYPTION_INFO_BYTES,
    EncryptionInfo,
    newest_first,
    parse_encryption_info,
)
from crdb_archive.backup.keys import PASSPHRASE_ENV, EncryptionKeys
from crdb_archive.backup.manifest import ManifestInfo
from crdb_archive.backup.tree import BackupTree, join
from crdb_archive.errors import (
    CrdbArchiveError,
    DamagedEncryptionInfo,
    NeedsRestoreFromColdStorage,
    UnsupportedBackupFile,
    WrongEncryptionKey,
)
from crdb_archive.storage.kms import AwsKmsKey
from crdb_archive.text import count

Mode = Literal["none", "passphrase", "kms", "unknown"]


@dataclass(frozen=True)
class DataKey:
    """The AES-256 key of a backup and how it was found (``opened_by``: a redacted KMS URI)."""

    key: bytes = field(repr=False)
    mode: Literal["passphrase", "kms"]
    info_file: str
    opened_by: str | None = None


@dataclass(frozen=True)
class Encryption:
    """How a backup is encrypted, as far as can be told, and whether a key opened it.

    ``mode`` is ``unknown`` for an encrypted backup whose ENCRYPTION-INFO is absent or cannot
    be read. ``kms`` holds the URI (credentials redacted) of the key that opened it.
    """

    mode: Mode
    info_files: tuple[str, ...] = ()
    decrypted: bool = False
    kms: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "decrypted": self.decrypted,
            "kms": list(self.kms),
            "encryption_info_files": list(self.info_files),
        }


NOT_ENCRYPTED = Encryption("none")


def info_files_in(tree: BackupTree, directory: str) -> list[str]:
    """The keys of the ENCRYPTION-INFO files in ``directory``, newest first."""
    names = [name for name, kind in tree.entries(directory) if kind == "file"]
    return [join(directory, name) for name in newest_first(names)]


def read_encryption_infos(tree: BackupTree, keys: Iterable[str]) -> list[EncryptionInfo]:
    """Decode the ENCRYPTION-INFO files ``keys`` (newest first); raises DamagedEncryptionInfo,
    UnsupportedBackupFile for a link, StorageError or NeedsRestoreFromColdStorage."""
    wanted = list(keys)
    for key in wanted:
        if tree.kind(key) == "link":
            raise UnsupportedBackupFile(f"{tree.display(key)} is a symbolic link: "
                                        "crdb-archive reads and archives regular files only")
    tree.require_readable(wanted, "the backup's encryption key can be found")
    infos = []
    for key in wanted:
        data = tree.read_head(key, MAX_ENCRYPTION_INFO_BYTES + 1)
        if len(data) > MAX_ENCRYPTION_INFO_BYTES:
            raise DamagedEncryptionInfo(f"{key} is larger than {MAX_ENCRYPTION_INFO_BYTES} "
                                        "bytes: not an ENCRYPTION-INFO file")
        infos.append(parse_encryption_info(data, key))
    return infos


def resolve_data_key(infos: list[EncryptionInfo], keys: EncryptionKeys, where: str) -> DataKey:
    """The data key of the encrypted backup at ``where`` whose ENCRYPTION-INFO files (newest
    first) are ``infos``.

    Raises DamagedEncryptionInfo when there is none or KMS returns no 256-bit key,
    WrongEncryptionKey when the keys given are of the other kind or none of the KMS keys has
    an entry, and what KMS raises (KeyServiceError, WrongEncryptionKey).
    """
    if not infos:
        raise DamagedEncryptionInfo(
            f"the backup in {where} is encrypted but holds no ENCRYPTION-INFO file, so its "
            "key cannot be found")
    if keys.passphrase is not None:
        salted = next((info for info in infos if info.salt), None)
        if salted is None or salted.salt is None:
            raise WrongEncryptionKey(
                f"the backup in {where} was encrypted with KMS ({_kms_count(infos)}), not a "
                "passphrase: give --kms with a key used by its BACKUP")
        return DataKey(passphrase_key(keys.passphrase, salted.salt), "passphrase", salted.file)
    if not any(info.wrapped_keys for info in infos):
        raise WrongEncryptionKey(
            f"the backup in {where} was encrypted with a passphrase, not KMS: give "
            f"--encryption-passphrase-file or ${PASSPHRASE_ENV}")
    failure: CrdbArchiveError | None = None
    for uri in keys.kms:
        kms = AwsKmsKey(uri)
        try:
            found, refused = _unwrap_with(kms, infos)
        finally:
            kms.close()
        if found is not None:
            return found
        failure = failure or refused
    if failure is not None:
        raise failure
    given = ", ".join(uri.display for uri in keys.kms)
    noun = "key" if len(keys.kms) == 1 else "keys"
    raise WrongEncryptionKey(
        f"no ENCRYPTION-INFO entry of the backup in {where} matches the KMS {noun} {given} "
        f"({_kms_count(infos)}); the key must be written exactly as in the BACKUP statement, "
        "since an ARN and a bare key id of the same key are different ids")


def _unwrap_with(kms: AwsKmsKey,
                 infos: list[EncryptionInfo]) -> tuple[DataKey | None, CrdbArchiveError | None]:
    """The data key ``kms`` unwraps from the first ENCRYPTION-INFO with an entry for it, or
    the first refusal of KMS; raises DamagedEncryptionInfo for a key of the wrong size, and
    what KMS raises besides WrongEncryptionKey."""
    refused: CrdbArchiveError | None = None
    for info in infos:
        wrapped = info.wrapped_for(kms.master_key_id)
        if wrapped is None:
            continue
        try:
            key = kms.unwrap(wrapped)
        except WrongEncryptionKey as error:
            refused = refused or error
            continue
        if len(key) != KEY_BYTES:
            raise DamagedEncryptionInfo(
                f"{kms.display} unwrapped a {len(key)}-byte data key from {info.file}; "
                f"CockroachDB's data keys are {KEY_BYTES} bytes")
        return DataKey(key, "kms", info.file, kms.display), refused
    return None, refused


def _kms_count(infos: list[EncryptionInfo]) -> str:
    keys = len({k for info in infos for k in info.wrapped_keys})
    files = count(len(infos), "ENCRYPTION-INFO file")
    return f"{count(keys, 'KMS key')} in {files}" if keys else f"no KMS key in {files}"


def unlock_backup(
    tree: BackupTree, directory: str, keys: EncryptionKeys, warnings: list[str]
) -> tuple[Encryption, DataKey | None]:
    """How the backup in ``directory`` is encrypted (its ENCRYPTION-INFO files) and, with
    ``keys``, its data key. Without keys a damaged ENCRYPTION-INFO is only a warning (appended
    to ``warnings``). Raises as :func:`read_encryption_infos` and :func:`resolve_data_key`."""
    files = info_files_in(tree, directory)
    if not files:
        return NOT_ENCRYPTED, None
    try:
        infos = read_encryption_infos(tree, files)
    except DamagedEncryptionInfo as error:
        if keys.given:
            raise
        warnings.append(f"{error}; how the backup was encrypted is unknown")
        return Encryption("unknown", tuple(files)), None
    except NeedsRestoreFromColdStorage:
        if keys.given:
            raise
        return Encryption("unknown", tuple(files)), None  # the cold files are warned about
    mode: Mode = "kms" if any(info.wrapped_keys for info in infos) else "passphrase"
    if not keys.given:
        return Encryption(mode, tuple(files)), None
    data_key = resolve_data_key(infos, keys, tree.display(directory))
    kms = (data_key.opened_by,) if data_key.opened_by else ()
    return Encryption(mode, tuple(files), decrypted=True, kms=kms), data_key


def settle_encryption(
    tree: BackupTree, directory: str, manifest: ManifestInfo, found: Encryption,
    keys: EncryptionKeys, warnings: list[str],
) -> Encryption:
    """The encryption as the manifest confirms it: encrypted without ENCRYPTION-INFO (raises
    DamagedEncryptionInfo when a key was given), or ENCRYPTION-INFO beside a manifest that is
    not encrypted (a warning)."""
    if manifest.encrypted and found.mode == "none":
        if keys.given:
            raise DamagedEncryptionInfo(
                f"{manifest.file} is encrypted, but {tree.display(directory)} holds no "
                "ENCRYPTION-INFO file: the backup's key cannot be found")
        return Encryption("unknown")
    if not manifest.encrypted:
        if found.mode != "none":
            verb = "exists" if len(found.info_files) == 1 else "exist"
            warnings.append(f"{', '.join(found.info_files)} {verb}, yet the manifest "
                            f"{manifest.file} is not encrypted")
        elif keys.given:
            warnings.append("an encryption key was given, but the backup is not encrypted")
        return NOT_ENCRYPTED
    return found
