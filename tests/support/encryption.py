"""CockroachDB's encrypted backup files, made by the tests from the format facts (DESIGN 2.5).

Written from the facts alone and sharing nothing with the decryptor under test: this writer
keeps one nonce and adds one to its last 8 bytes after each chunk, as CockroachDB's writer
does, where the reader computes the nonce of chunk i from the IV. ENCRYPTION-INFO is encoded
here with its own few lines of protobuf.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PASSPHRASE = b"tr0ub4dor & 3 horse staple"
SALT = bytes.fromhex("6a1f0c93d4e25b7788a9c0b1d2e3f405")
CHUNK = 64 * 1024
SEALED = CHUNK + 16
HEADER = 7 + 1 + 12


def passphrase_key(passphrase: bytes = PASSPHRASE, salt: bytes = SALT) -> bytes:
    """storageccl.GenerateKey: PBKDF2-HMAC-SHA256, 64000 iterations, 32 bytes."""
    return hashlib.pbkdf2_hmac("sha256", passphrase, salt, 64000, 32)


def seal(plaintext: bytes, key: bytes, *, version: int = 2, iv: bytes | None = None) -> bytes:
    """``plaintext`` as CockroachDB's EncryptingWriter stores it (version 1 or 2)."""
    iv = os.urandom(12) if iv is None else iv
    out = bytearray(b"encrypt" + bytes([version]) + iv)
    aead = AESGCM(key)
    if version == 1:
        return bytes(out + aead.encrypt(iv, plaintext, None))
    pieces = [plaintext[i:i + CHUNK] for i in range(0, len(plaintext), CHUNK)]
    if not pieces or len(pieces[-1]) == CHUNK:
        pieces.append(b"")  # the writer always seals a last, short chunk
    nonce = bytearray(iv)
    for piece in pieces:
        out += aead.encrypt(bytes(nonce), piece, None)
        low = (int.from_bytes(nonce[4:], "big") + 1) & ((1 << 64) - 1)
        nonce[4:] = low.to_bytes(8, "big")
    return bytes(out)


def cut_after_chunks(stored: bytes, chunks: int) -> bytes:
    """A version 2 file cut exactly after ``chunks`` sealed chunks."""
    return stored[:HEADER + chunks * SEALED]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encryption_info(salt: bytes | None = None, wrapped: Mapping[str, bytes] | None = None
                    ) -> bytes:
    """jobspb.EncryptionInfo: 2 salt, 3 map<SHA-256 of master key id, wrapped data key>."""
    out = bytearray()
    if salt is not None:
        out += _len_field(2, salt)
    for master_key_id, blob in sorted((wrapped or {}).items()):
        entry = (_len_field(1, hashlib.sha256(master_key_id.encode()).digest())
                 + _len_field(2, blob))
        out += _len_field(3, entry)
    return bytes(out)


@dataclass(frozen=True)
class Encrypting:
    """How a fixture backup is encrypted: the key, the format version and its ENCRYPTION-INFO
    files (name -> content), written into each full backup's directory."""

    key: bytes = field(repr=False)
    version: int = 2
    infos: Mapping[str, bytes] = field(default_factory=dict)

    def seal(self, plaintext: bytes) -> bytes:
        return seal(plaintext, self.key, version=self.version)


def with_passphrase(passphrase: bytes = PASSPHRASE, *, version: int = 2,
                    salt: bytes = SALT) -> Encrypting:
    return Encrypting(passphrase_key(passphrase, salt), version,
                      {"ENCRYPTION-INFO": encryption_info(salt=salt)})
