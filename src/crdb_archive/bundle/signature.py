"""SSHSIG signatures of a bundle's tag manifest, checkable with ``ssh-keygen -Y verify``.

A signed bundle carries ``tagmanifest-sha256.txt.sig``: an OpenSSH signature (the SSHSIG format
of OpenSSH's PROTOCOL.sshsig, namespace ``crdb-archive``) of ``tagmanifest-sha256.txt``. The
tag manifest pins every other tag file, and the manifests pin every payload file, so one
signature over it vouches for the whole bundle, and anyone with OpenSSH 8.1 or later can check
it without this tool::

    ssh-keygen -Y verify -f allowed_signers -I <principal> -n crdb-archive \\
        -s tagmanifest-sha256.txt.sig < tagmanifest-sha256.txt

Keys are Ed25519 (``ssh-keygen -t ed25519``): small, fast, deterministic, and the only kind
this module signs or accepts.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import fnmatch
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from crdb_archive.bundle.layout import SIGNATURE
from crdb_archive.errors import BadInput

NAMESPACE = "crdb-archive"
SIGNATURE_FILE = SIGNATURE

_MAGIC = b"SSHSIG"
_VERSION = 1
_KEY_TYPE = "ssh-ed25519"
_HASHES = {"sha512": hashlib.sha512, "sha256": hashlib.sha256}
_SIGN_HASH = "sha512"  # what ssh-keygen uses by default
_BEGIN = "-----BEGIN SSH SIGNATURE-----"
_END = "-----END SSH SIGNATURE-----"
# An armored Ed25519 signature is about 300 bytes; an allowed_signers file lists people.
MAX_SIGNATURE_FILE = 16 << 10
MAX_ALLOWED_SIGNERS = 1 << 20
MAX_KEY_FILE = 64 << 10


class SignatureProblem(Exception):
    """Why a signature does not vouch for what it came with (a bundle problem, not an error)."""


# --- the SSH wire format (RFC 4251 §5) -----------------------------------------------------------


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def fixed(self, count: int) -> bytes:
        if self._at + count > len(self._data):
            raise SignatureProblem("the signature is truncated")
        piece = self._data[self._at:self._at + count]
        self._at += count
        return piece

    def uint32(self) -> int:
        return int.from_bytes(self.fixed(4), "big")

    def string(self) -> bytes:
        return self.fixed(self.uint32())

    def text(self) -> str:
        try:
            return self.string().decode("ascii")
        except UnicodeDecodeError:
            raise SignatureProblem("the signature holds a name that is not ASCII") from None

    def end(self) -> None:
        if self._at != len(self._data):
            raise SignatureProblem("the signature has bytes after its end")


def public_key_blob(key: Ed25519PublicKey) -> bytes:
    """The key as SSH writes it: ``string "ssh-ed25519" || string key``."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _string(_KEY_TYPE.encode()) + _string(raw)


def fingerprint(blob: bytes) -> str:
    """The key's fingerprint as ``ssh-keygen -l`` prints it: ``SHA256:<base64, unpadded>``."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _ed25519_from_blob(blob: bytes) -> Ed25519PublicKey:
    reader = _Reader(blob)
    kind = reader.text()
    if kind != _KEY_TYPE:
        raise SignatureProblem(f"the signing key is {kind}; only {_KEY_TYPE} keys are accepted")
    raw = reader.string()
    reader.end()
    if len(raw) != 32:
        raise SignatureProblem("the signing key is not a valid Ed25519 key")
    return Ed25519PublicKey.from_public_bytes(raw)


# --- signing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key ready to sign, with its public blob and fingerprint."""

    private: Ed25519PrivateKey
    public_blob: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_blob)


def load_signing_key(path: Path) -> SigningKey:
    """The unencrypted OpenSSH Ed25519 private key in ``path``.

    Raises BadInput when the file cannot be read, is not an OpenSSH private key, is protected
    by a passphrase, or holds another kind of key. The message never quotes the file.
    """
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_KEY_FILE + 1)
    except OSError as error:
        raise BadInput(f"cannot read the signing key {path}: {error.strerror}") from None
    if len(data) > MAX_KEY_FILE:
        raise BadInput(f"{path} is too large to be an OpenSSH private key")
    return signing_key_from_bytes(data, str(path))


def signing_key_from_bytes(data: bytes, where: str) -> SigningKey:
    """As :func:`load_signing_key`, from the key file's bytes; ``where`` names it in messages."""
    try:
        key = serialization.load_ssh_private_key(data, password=None)
    except TypeError:
        raise BadInput(f"the signing key {where} is protected by a passphrase; give an "
                       "unencrypted key (keep it readable by the archive job only)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise BadInput(f"{where} is not an OpenSSH private key (make one with "
                       "`ssh-keygen -t ed25519 -N '' -f FILE`)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BadInput(f"the signing key {where} is not an Ed25519 key; make one with "
                       "`ssh-keygen -t ed25519`")
    return SigningKey(key, public_key_blob(key.public_key()))


def _signed_data(namespace: str, hash_name: str, message_digest: bytes) -> bytes:
    return (_MAGIC + _string(namespace.encode()) + _string(b"") + _string(hash_name.encode())
            + _string(message_digest))


def sign(message: bytes, key: SigningKey, *, namespace: str = NAMESPACE) -> bytes:
    """The armored SSHSIG signature of ``message`` (the content of a ``.sig`` file)."""
    digest = _HASHES[_SIGN_HASH](message).digest()
    raw = key.private.sign(_signed_data(namespace, _SIGN_HASH, digest))
    blob = (_MAGIC + _VERSION.to_bytes(4, "big") + _string(key.public_blob)
            + _string(namespace.encode()) + _string(b"") + _string(_SIGN_HASH.encode())
            + _string(_string(_KEY_TYPE.encode()) + _string(raw)))
    text = base64.b64encode(blob).decode()
    lines = [text[i:i + 70] for i in range(0, len(text), 70)]
    return ("\n".join([_BEGIN, *lines, _END]) + "\n").encode()


# --- verifying -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedSignature:
    public_blob: bytes
    namespace: str
    hash_name: str
    signature: bytes  # the raw Ed25519 signature

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_blob)


def parse_signature(armored: bytes) -> ParsedSignature:
    """Decode an armored SSHSIG; raises SignatureProblem for anything malformed."""
    if len(armored) > MAX_SIGNATURE_FILE:
        raise SignatureProblem("the signature file is too large to be an SSH signature")
    try:
        text = armored.decode("ascii")
    except UnicodeDecodeError:
        raise SignatureProblem("the signature file is not ASCII text") from None
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 3 or lines[0] != _BEGIN or lines[-1] != _END:
        raise SignatureProblem("not an armored SSH signature (BEGIN/END SSH SIGNATURE)")
    try:
        blob = base64.b64decode("".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureProblem("the signature is not valid base64") from None
    reader = _Reader(blob)
    if reader.fixed(6) != _MAGIC:
        raise SignatureProblem("not an SSHSIG signature")
    version = reader.uint32()
    if version != _VERSION:
        raise SignatureProblem(f"SSHSIG version {version} is not supported")
    public_blob = reader.string()
    namespace = reader.text()
    reader.string()  # reserved
    hash_name = reader.text()
    signature_blob = reader.string()
    reader.end()
    inner = _Reader(signature_blob)
    kind = inner.text()
    if kind != _KEY_TYPE:
        raise SignatureProblem(f"the signature is {kind}; only {_KEY_TYPE} is accepted")
    raw = inner.string()
    inner.end()
    return ParsedSignature(public_blob, namespace, hash_name, raw)


@dataclass(frozen=True)
class Signer:
    """One line of an OpenSSH allowed_signers file."""

    principals: tuple[str, ...]
    public_blob: bytes
    namespaces: tuple[str, ...] | None  # None: every namespace
    valid_after: dt.datetime | None
    valid_before: dt.datetime | None

    def allows(self, namespace: str, now: dt.datetime) -> bool:
        if self.namespaces is not None and not any(
                fnmatch.fnmatchcase(namespace, pattern) for pattern in self.namespaces):
            return False
        if self.valid_after is not None and now < self.valid_after:
            return False
        return self.valid_before is None or now < self.valid_before


@dataclass(frozen=True)
class AllowedSigners:
    """The keys an auditor trusts, read from an OpenSSH allowed_signers file (ssh-keygen(1))."""

    signers: tuple[Signer, ...]
    where: str

    @classmethod
    def load(cls, path: Path) -> AllowedSigners:
        """Read ``path``; raises BadInput when it cannot be read or a line is malformed."""
        try:
            with path.open("rb") as stream:
                data = stream.read(MAX_ALLOWED_SIGNERS + 1)
        except OSError as error:
            raise BadInput(f"cannot read {path}: {error.strerror}") from None
        if len(data) > MAX_ALLOWED_SIGNERS:
            raise BadInput(f"{path} is too large for an allowed_signers file")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput(f"{path} is not UTF-8 text") from None
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, where: str) -> AllowedSigners:
        """Parse allowed_signers text; raises BadInput naming the line of a malformed entry."""
        signers = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                signer = _parse_signer(line)
            except ValueError as error:
                raise BadInput(f"{where}, line {number}: {error}") from None
            if signer is not None:
                signers.append(signer)
        return cls(tuple(signers), where)

    def matching(self, public_blob: bytes, namespace: str,
                 now: dt.datetime) -> tuple[str, ...]:
        """The principals under which this key may sign in ``namespace`` at ``now``."""
        principals: list[str] = []
        for signer in self.signers:
            if hmac.compare_digest(signer.public_blob, public_blob) and signer.allows(
                    namespace, now):
                principals += signer.principals
        return tuple(dict.fromkeys(principals))


def _split_fields(line: str) -> list[str]:
    """Whitespace-separated fields; double quotes keep spaces and commas inside one field."""
    fields: list[str] = []
    current: list[str] = []
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
            current.append(char)
        elif char in " \t" and not quoted:
            if current:
                fields.append("".join(current))
                current = []
        else:
            current.append(char)
    if quoted:
        raise ValueError("an unterminated quote")
    if current:
        fields.append("".join(current))
    return fields


def _split_options(text: str) -> list[str]:
    options: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            options.append("".join(current))
            current = []
        else:
            current.append(char)
    options.append("".join(current))
    return options


def _parse_time(value: str) -> dt.datetime:
    # ssh-keygen accepts YYYYMMDD[HHMM[SS]], local time unless it ends in Z.
    utc = value.endswith("Z")
    digits = value.removesuffix("Z")
    formats = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
    if not digits.isascii() or not digits.isdigit() or len(digits) not in formats:
        raise ValueError(f"{value!r} is not a time as YYYYMMDD[HHMM[SS]][Z]")
    when = dt.datetime.strptime(digits, formats[len(digits)])  # the zone is set below
    return when.replace(tzinfo=dt.UTC) if utc else when.astimezone(dt.UTC)


@dataclass
class _SignerOptions:
    """The options of an allowed_signers line that bundle signatures use."""

    namespaces: tuple[str, ...] | None = None
    valid_after: dt.datetime | None = None
    valid_before: dt.datetime | None = None
    cert_authority: bool = False


def _parse_options(text: str) -> _SignerOptions:
    """``namespaces=...,valid-after=...``; raises ValueError for an unknown option."""
    options = _SignerOptions()
    for option in _split_options(text):
        name, _, value = option.partition("=")
        name = name.strip().lower()
        value = value.strip().strip('"')
        if name == "cert-authority":  # the rest does not matter: the line is passed by
            options.cert_authority = True
            return options
        if name == "namespaces":
            options.namespaces = tuple(v for v in value.split(",") if v)
        elif name == "valid-after":
            options.valid_after = _parse_time(value)
        elif name == "valid-before":
            options.valid_before = _parse_time(value)
        else:
            raise ValueError(f"unknown option {name!r}")
    return options


def _parse_signer(line: str) -> Signer | None:
    fields = _split_fields(line)
    if len(fields) < 3:
        raise ValueError("expected 'principals [options] keytype base64-key'")
    principals = tuple(p for p in fields[0].strip('"').split(",") if p)
    rest = fields[1:]
    options = _SignerOptions()
    if not rest[0].startswith(("ssh-", "ecdsa-", "sk-")):
        options = _parse_options(rest[0])
        if options.cert_authority:
            return None  # certificates are not used for bundle signatures
        rest = rest[1:]
    if len(rest) < 2:
        raise ValueError("expected a key type and a base64 key after the principals")
    kind, encoded = rest[0], rest[1]
    if kind != _KEY_TYPE:
        return None  # keys of other types cannot have made a bundle signature
    try:
        blob = base64.b64decode(encoded, validate=True)
        _ed25519_from_blob(blob)
    except (binascii.Error, ValueError, SignatureProblem):
        raise ValueError("the key is not a valid ssh-ed25519 public key") from None
    return Signer(principals, blob, options.namespaces, options.valid_after,
                  options.valid_before)


@dataclass(frozen=True)
class VerifiedSignature:
    fingerprint: str
    principals: tuple[str, ...]


def verify_signature(
    message: bytes,
    armored: bytes,
    allowed: AllowedSigners,
    *,
    namespace: str = NAMESPACE,
    now: dt.datetime | None = None,
) -> VerifiedSignature:
    """Check that ``armored`` is a valid signature of ``message`` by an allowed key.

    Raises SignatureProblem saying why not: malformed, another namespace, a key the allowed
    signers do not list (for this namespace, at this time), or a signature that does not match
    the message.
    """
    parsed = parse_signature(armored)
    if parsed.namespace != namespace:
        raise SignatureProblem(f"signed for namespace {parsed.namespace!r}, not {namespace!r}")
    hash_function = _HASHES.get(parsed.hash_name)
    if hash_function is None:
        raise SignatureProblem(f"hash {parsed.hash_name!r} is not sha256 or sha512")
    key = _ed25519_from_blob(parsed.public_blob)
    principals = allowed.matching(parsed.public_blob, namespace,
                                  now or dt.datetime.now(dt.UTC))
    if not principals:
        raise SignatureProblem(f"signed by key {parsed.fingerprint}, which {allowed.where} does "
                               f"not allow to sign in namespace {namespace}")
    data = _signed_data(namespace, parsed.hash_name, hash_function(message).digest())
    try:
        key.verify(parsed.signature, data)
    except InvalidSignature:
        raise SignatureProblem(f"the signature by {parsed.fingerprint} does not match the "
                               "signed file: it was changed after signing") from None
    return VerifiedSignature(parsed.fingerprint, principals)
