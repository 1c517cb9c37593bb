"""ENCRYPTION-INFO: how an encrypted backup's key is found; pure decoding, no I/O.

CockroachDB writes ``ENCRYPTION-INFO`` (not encrypted) into the directory of a full backup:
the protobuf ``jobspb.EncryptionInfo`` with field 1 scheme (0: AES-256-GCM), field 2 the
passphrase salt (16 bytes) and field 3 a map from the SHA-256 of each KMS master key id (raw
bytes, as a map key of 32 bytes) to the data key that KMS key wrapped. ``ALTER BACKUP ...
ADD NEW_KMS`` never rewrites it: it adds ``ENCRYPTION-INFO-2``, ``-3``... beside it
(``backupencryption.WriteNewEncryptionInfoToBackup`` names file n+1 after n existing ones).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from crdb_archive.backup import wire
from crdb_archive.errors import DamagedEncryptionInfo, MalformedManifest

ENCRYPTION_INFO = "ENCRYPTION-INFO"
# Far beyond one salt and a few wrapped keys; anything larger is not an ENCRYPTION-INFO.
MAX_ENCRYPTION_INFO_BYTES = 1 << 20
SCHEME_AES256GCM = 0

_NAME = re.compile(r"^ENCRYPTION-INFO(?:-([1-9][0-9]{0,8}))?$")
_FIELDS = {1: 0, 2: 1 << 10, 3: 1 << 16}
_ENTRY_FIELDS = {1: 1 << 10, 2: 1 << 15}

Mode = Literal["passphrase", "kms"]


@dataclass(frozen=True)
class EncryptionInfo:
    """One decoded ENCRYPTION-INFO file; ``wrapped_keys`` maps SHA-256(master key id) to the
    data key wrapped by that KMS key. Key material is kept out of ``repr``."""

    file: str
    scheme: int
    salt: bytes | None = field(repr=False)
    wrapped_keys: dict[bytes, bytes] = field(repr=False)

    @property
    def mode(self) -> Mode | None:
        if self.wrapped_keys:
            return "kms"
        return "passphrase" if self.salt else None

    def wrapped_for(self, master_key_id: str) -> bytes | None:
        """The data key wrapped by the KMS key ``master_key_id``, if this file holds one."""
        return self.wrapped_keys.get(master_key_id_hash(master_key_id))


def master_key_id_hash(master_key_id: str) -> bytes:
    """The map key CockroachDB files a KMS key's wrapped data key under."""
    return hashlib.sha256(master_key_id.encode("utf-8")).digest()


def info_number(name: str) -> int | None:
    """1 for ``ENCRYPTION-INFO``, n for ``ENCRYPTION-INFO-n``, None for any other name."""
    match = _NAME.match(name)
    if match is None:
        return None
    return int(match.group(1)) if match.group(1) else 1


def newest_first(names: Iterable[str]) -> list[str]:
    """The ENCRYPTION-INFO files among ``names``, newest (highest number) first.

    CockroachDB tries them from the last in its listing order, which is the same order until
    a tenth file (``-10`` sorts before ``-2``); any file that holds the key gives the same key.
    """
    numbered = [(n, name) for name in names if (n := info_number(name)) is not None]
    return [name for _, name in sorted(numbered, reverse=True)]


def parse_encryption_info(data: bytes, file: str) -> EncryptionInfo:
    """Decode one ENCRYPTION-INFO file; raises DamagedEncryptionInfo."""
    scheme = SCHEME_AES256GCM
    salt: bytes | None = None
    wrapped: dict[bytes, bytes] = {}
    try:
        for item in wire.fields(wire.ByteSource.of(data), _FIELDS):
            if item.number == 1:
                scheme = item.as_int("scheme")
            elif item.number == 2:
                salt = item.as_bytes("salt")
            else:
                key, value = _map_entry(item.as_bytes("encrypted data key entry"))
                wrapped[key] = value
    except MalformedManifest as error:
        raise DamagedEncryptionInfo(f"{file} cannot be decoded: {error}") from None
    if scheme != SCHEME_AES256GCM:
        raise DamagedEncryptionInfo(
            f"{file} names encryption scheme {scheme}; CockroachDB defines only 0 (AES-256-GCM)")
    if not salt and not wrapped:
        raise DamagedEncryptionInfo(f"{file} holds neither a passphrase salt nor a KMS key")
    return EncryptionInfo(file, scheme, salt or None, wrapped)


def _map_entry(data: bytes) -> tuple[bytes, bytes]:
    key = value = b""
    for item in wire.fields(wire.ByteSource.of(data), _ENTRY_FIELDS):
        if item.number == 1:
            key = item.as_bytes("master key id hash")
        else:
            value = item.as_bytes("wrapped data key")
    if len(key) != hashlib.sha256().digest_size or not value:
        raise MalformedManifest(
            f"an entry of the KMS key map has a {len(key)}-byte key and a {len(value)}-byte "
            "wrapped data key; expected a SHA-256 and a wrapped key")
    return key, value
