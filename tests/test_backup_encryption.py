"""The decryptor of CockroachDB's encrypted files against files sealed by the tests' own writer
(support.encryption), and ENCRYPTION-INFO decoding against the tests' own encoder."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from crdb_archive.backup.encryption import decrypt
from crdb_archive.backup.encryption import passphrase_key as derive
from crdb_archive.backup.encryption_info import newest_first, parse_encryption_info
from crdb_archive.errors import DamagedEncryptedFile, DamagedEncryptionInfo
from support.encryption import (
    CHUNK,
    SEALED,
    cut_after_chunks,
    encryption_info,
    passphrase_key,
    seal,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def opened(stored: bytes, key: bytes = KEY, size: int = 1 << 16) -> bytes:
    return b"".join(decrypt(pieces(stored, size), key, name="f"))


def failure(stored: bytes, key: bytes = KEY) -> DamagedEncryptedFile:
    with pytest.raises(DamagedEncryptedFile) as info:
        opened(stored, key)
    return info.value


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("length", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 77])
@pytest.mark.parametrize("size", [1 << 16, 4093, SEALED * 2 + 5])
def test_round_trip(version: int, length: int, size: int) -> None:
    plaintext = os.urandom(length)
    assert opened(seal(plaintext, KEY, version=version), size=size) == plaintext


def test_round_trip_byte_by_byte() -> None:
    plaintext = os.urandom(CHUNK + 3)
    assert opened(seal(plaintext, KEY), size=1) == plaintext


def test_nonce_counter_wraps_in_its_last_eight_bytes() -> None:
    # The writer adds one to the IV's last 8 bytes as a uint64: from all ones it wraps to zero
    # without carrying into the first 4 bytes.
    iv = bytes.fromhex("0a0b0c0d") + b"\xff" * 8
    plaintext = os.urandom(2 * CHUNK + 10)
    assert opened(seal(plaintext, KEY, iv=iv)) == plaintext


def test_chunks_are_authenticated_as_they_stream() -> None:
    plaintext = os.urandom(8 * CHUNK)
    stored = seal(plaintext, KEY)
    consumed = 0

    def source() -> Iterator[bytes]:
        nonlocal consumed
        for piece in pieces(stored, 4096):
            consumed += len(piece)
            yield piece

    first = next(decrypt(source(), KEY, name="f"))
    assert first == plaintext[:CHUNK]
    assert consumed < 2 * SEALED + 4096


@pytest.mark.parametrize("keep", [1, 2])
def test_cut_at_a_chunk_boundary_is_detected(keep: int) -> None:
    stored = seal(os.urandom(2 * CHUNK + 100), KEY)  # 3 sealed chunks
    error = failure(cut_after_chunks(stored, keep))
    assert error.reason == "truncated"
    assert not error.key_unproven
    assert "chunk boundary" in str(error)


def test_a_missing_empty_last_chunk_is_detected() -> None:
    stored = seal(os.urandom(2 * CHUNK), KEY)  # two full chunks and an empty one
    assert len(stored) == 20 + 2 * SEALED + 16
    error = failure(stored[:-16])
    assert error.reason == "truncated"


def test_header_only_is_truncated() -> None:
    error = failure(cut_after_chunks(seal(b"x" * 10, KEY), 0))
    assert error.reason == "truncated"


def test_cut_inside_a_chunk_fails_that_chunk() -> None:
    stored = seal(os.urandom(2 * CHUNK + 100), KEY)
    error = failure(stored[:20 + SEALED + 1000])
    assert (error.reason, error.chunk, error.key_unproven) == ("tag", 1, False)


@pytest.mark.parametrize("chunk", [0, 1, 2])
def test_a_flipped_byte_fails_its_chunk(chunk: int) -> None:
    stored = bytearray(seal(os.urandom(2 * CHUNK + 100), KEY))
    stored[20 + chunk * SEALED + 33] ^= 0x01
    error = failure(bytes(stored))
    assert (error.reason, error.chunk) == ("tag", chunk)
    assert error.key_unproven is (chunk == 0)


@pytest.mark.parametrize("version", [1, 2])
def test_a_wrong_key_fails_the_first_message(version: int) -> None:
    error = failure(seal(os.urandom(3 * CHUNK), KEY, version=version), OTHER_KEY)
    assert error.key_unproven


def test_a_flipped_iv_fails_the_first_message() -> None:
    stored = bytearray(seal(b"manifest", KEY))
    stored[10] ^= 0x80
    assert failure(bytes(stored)).key_unproven


def test_version_one_is_authenticated_at_its_end() -> None:
    stored = bytearray(seal(os.urandom(3 * CHUNK), KEY, version=1))
    stored[-1] ^= 0x01
    plaintext = decrypt(pieces(bytes(stored), 4096), KEY, name="f")
    assert next(plaintext)  # streamed...
    with pytest.raises(DamagedEncryptedFile) as info:
        list(plaintext)  # ...and refused as a whole at its end
    assert info.value.reason == "tag"


@pytest.mark.parametrize(("stored", "reason"), [
    (b"encrypt\x03" + bytes(12) + bytes(40), "version"),
    (b"encrypt\x00" + bytes(12) + bytes(40), "version"),
    (b"encrypt\x02" + bytes(5), "header"),
    (b"plain bytes, not encrypted at all", "header"),
])
def test_unknown_forms(stored: bytes, reason: str) -> None:
    assert failure(stored).reason == reason


def test_passphrase_key_is_pbkdf2_sha256_64000_32() -> None:
    salt = os.urandom(16)
    expected = PBKDF2HMAC(hashes.SHA256(), 32, salt, 64000).derive(b"hunter2")
    assert derive(b"hunter2", salt) == expected == passphrase_key(b"hunter2", salt)
    assert opened(seal(b"data", expected), derive(b"hunter2", salt)) == b"data"


# --- ENCRYPTION-INFO ------------------------------------------------------------------------


def test_encryption_info_with_a_salt() -> None:
    info = parse_encryption_info(encryption_info(salt=b"s" * 16), "ENCRYPTION-INFO")
    assert (info.mode, info.salt, info.wrapped_keys) == ("passphrase", b"s" * 16, {})
    assert "s" * 16 not in repr(info)


def test_encryption_info_with_kms_keys() -> None:
    info = parse_encryption_info(
        encryption_info(wrapped={"key-a": b"wrapped-a", "arn:aws:kms:x:1:key/b": b"wrapped-b"}),
        "ENCRYPTION-INFO-2")
    assert info.mode == "kms"
    assert info.wrapped_for("key-a") == b"wrapped-a"
    assert info.wrapped_for("arn:aws:kms:x:1:key/b") == b"wrapped-b"
    assert info.wrapped_for("key-b") is None
    assert set(info.wrapped_keys) == {hashlib.sha256(b"key-a").digest(),
                                      hashlib.sha256(b"arn:aws:kms:x:1:key/b").digest()}


@pytest.mark.parametrize("data", [
    b"",  # neither salt nor keys
    b"\x12\x10" + bytes(5),  # a salt cut short
    b"\x08\x01\x12\x02ab",  # scheme 1 does not exist
    b"\x1a\x04\x0a\x02ab",  # a map entry whose key is not a SHA-256
    b"\x0a\x10" + bytes(16),  # field 1 as bytes: scheme is a varint
])
def test_damaged_encryption_info(data: bytes) -> None:
    with pytest.raises(DamagedEncryptionInfo, match="ENCRYPTION-INFO"):
        parse_encryption_info(data, "ENCRYPTION-INFO")


def test_encryption_info_files_newest_first() -> None:
    names = ["BACKUP_MANIFEST", "ENCRYPTION-INFO", "ENCRYPTION-INFO-10", "ENCRYPTION-INFO-2",
             "ENCRYPTION-INFO-3", "ENCRYPTION-INFO-0", "ENCRYPTION-INFO-x", "ENCRYPTION-INFO-2b"]
    assert newest_first(names) == ["ENCRYPTION-INFO-10", "ENCRYPTION-INFO-3",
                                   "ENCRYPTION-INFO-2", "ENCRYPTION-INFO"]
