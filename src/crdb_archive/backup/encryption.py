"""Decrypt CockroachDB's encrypted backup files, streaming; pure, no I/O.

The format (cockroach ``pkg/ccl/storageccl/encryption.go``): the 7 bytes ``encrypt``, a
version byte and a 12-byte IV, then

* version 1: one AES-256-GCM message (IV as nonce, no additional data) over the whole file;
* version 2: AES-256-GCM messages over 64 KiB chunks of the plaintext, each followed by its
  16-byte tag; chunk ``i`` is sealed with the IV whose last 8 bytes, read as a big-endian
  uint64, are increased by ``i`` (modulo 2**64, as Go's uint64 addition). The writer always
  seals a last chunk shorter than 64 KiB, empty when the plaintext fills its chunks exactly,
  so a file cut at a chunk boundary ends in a full chunk and is detected.

The key is 32 bytes: derived from a passphrase by PBKDF2-HMAC-SHA256 with the salt of
ENCRYPTION-INFO and 64,000 iterations (``storageccl.GenerateKey``), or a KMS data key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crdb_archive.errors import DamagedEncryptedFile
from crdb_archive.text import count

PREAMBLE = b"encrypt"
VERSION_SINGLE = 1
VERSION_CHUNKED = 2
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = len(PREAMBLE) + 1 + NONCE_BYTES
CHUNK_BYTES = 64 << 10
SEALED_CHUNK_BYTES = CHUNK_BYTES + TAG_BYTES
KEY_BYTES = 32
PBKDF2_ITERATIONS = 64_000

_COUNTER = 1 << 64


def looks_encrypted(head: bytes) -> bool:
    """Whether a file starting with ``head`` is in CockroachDB's encrypted form."""
    return head.startswith(PREAMBLE)


def passphrase_key(passphrase: bytes, salt: bytes) -> bytes:
    """The AES-256 key CockroachDB derives from a passphrase and ENCRYPTION-INFO's salt."""
    return hashlib.pbkdf2_hmac("sha256", passphrase, salt, PBKDF2_ITERATIONS, KEY_BYTES)


def chunk_nonce(iv: bytes, index: int) -> bytes:
    """The nonce of chunk ``index`` of a version 2 file whose header holds ``iv``."""
    counter = (int.from_bytes(iv[4:], "big") + index) % _COUNTER
    return iv[:4] + counter.to_bytes(8, "big")


def parse_header(head: bytes, name: str) -> tuple[int, bytes]:
    """The version and IV of an encrypted file from its first bytes.

    Raises DamagedEncryptedFile (reason ``header`` or ``version``).
    """
    if not looks_encrypted(head):
        raise DamagedEncryptedFile(f"{name} does not start with the encryption preamble "
                                   f"{PREAMBLE.decode()!r}", reason="header")
    if len(head) < HEADER_BYTES:
        raise DamagedEncryptedFile(
            f"{name} holds {len(head)} bytes, fewer than the {HEADER_BYTES}-byte header of "
            "an encrypted file", reason="header")
    version = head[len(PREAMBLE)]
    if version not in (VERSION_SINGLE, VERSION_CHUNKED):
        raise DamagedEncryptedFile(
            f"{name} is encrypted in version {version} of the format; crdb-archive reads "
            f"versions {VERSION_SINGLE} and {VERSION_CHUNKED}", reason="version")
    return version, head[len(PREAMBLE) + 1:HEADER_BYTES]


def decrypt(chunks: Iterable[bytes], key: bytes, *, name: str) -> Iterator[bytes]:
    """The plaintext of an encrypted file arriving in ``chunks`` (any sizes), in pieces.

    Memory stays within one sealed chunk plus one input piece. A version 2 chunk is
    authenticated before its plaintext is yielded; a version 1 file is a single GCM message,
    so its plaintext is authenticated only when the iterator is exhausted: a caller must read
    to the end before trusting anything it yielded. Raises DamagedEncryptedFile: ``tag`` for
    a message that fails authentication (chunk 0: possibly a wrong key), ``truncated`` for a
    file cut short, ``header``/``version`` for a file not in a known encrypted form.
    """
    source = iter(chunks)
    buffer = bytearray()
    for piece in source:
        buffer += piece
        if len(buffer) >= HEADER_BYTES:
            break
    version, iv = parse_header(bytes(buffer[:HEADER_BYTES]), name)
    del buffer[:HEADER_BYTES]
    if version == VERSION_SINGLE:
        yield from _single(source, buffer, key, iv, name)
    else:
        yield from _chunked(source, buffer, AESGCM(key), iv, name)


def _chunked(
    source: Iterator[bytes], buffer: bytearray, cipher: AESGCM, iv: bytes, name: str
) -> Iterator[bytes]:
    index = 0
    while True:
        # A sealed chunk followed by more bytes is a full one; the last is decided at the end.
        while len(buffer) > SEALED_CHUNK_BYTES:
            yield _open(cipher, iv, index, buffer[:SEALED_CHUNK_BYTES], name)
            del buffer[:SEALED_CHUNK_BYTES]
            index += 1
        piece = next(source, None)
        if piece is None:
            break
        buffer += piece
    if len(buffer) < TAG_BYTES:
        where = "at a chunk boundary" if not buffer else "inside a tag"
        raise DamagedEncryptedFile(
            f"{name} is cut short {where} after {count(index, 'chunk')}: its last chunk is missing",
            reason="truncated", chunk=index)
    plaintext = _open(cipher, iv, index, buffer, name)
    if len(plaintext) == CHUNK_BYTES:
        # CockroachDB always ends with a chunk shorter than 64 KiB, empty if need be.
        raise DamagedEncryptedFile(
            f"{name} ends with a full {CHUNK_BYTES}-byte chunk ({count(index + 1, 'chunk')}): "
            "it was cut at a chunk boundary", reason="truncated", chunk=index + 1)
    if plaintext:
        yield plaintext


def _open(cipher: AESGCM, iv: bytes, index: int, sealed: bytearray, name: str) -> bytes:
    try:
        return cipher.decrypt(chunk_nonce(iv, index), bytes(sealed), None)
    except InvalidTag:
        raise DamagedEncryptedFile(
            f"{name}: chunk {index} fails AES-GCM authentication", reason="tag", chunk=index
        ) from None


def _single(
    source: Iterator[bytes], buffer: bytearray, key: bytes, iv: bytes, name: str
) -> Iterator[bytes]:
    # One GCM message of any length: decrypt as it streams, keep back what may be the tag.
    decryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).decryptor()
    while True:
        if len(buffer) > TAG_BYTES:
            out = decryptor.update(bytes(buffer[:-TAG_BYTES]))
            del buffer[:-TAG_BYTES]
            if out:
                yield out
        piece = next(source, None)
        if piece is None:
            break
        buffer += piece
    if len(buffer) < TAG_BYTES:
        raise DamagedEncryptedFile(f"{name} is cut short inside its tag", reason="truncated")
    try:
        last = decryptor.finalize_with_tag(bytes(buffer))
    except InvalidTag:
        raise DamagedEncryptedFile(f"{name} fails AES-GCM authentication", reason="tag",
                                   chunk=0) from None
    if last:
        yield last
