"""SSHSIG signatures against OpenSSH itself: ssh-keygen accepts ours, we accept ssh-keygen's."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from crdb_archive.bundle.signature import (
    NAMESPACE,
    AllowedSigners,
    SignatureProblem,
    load_signing_key,
    parse_signature,
    sign,
    verify_signature,
)
from crdb_archive.errors import BadInput
from support.ssh import allowed_file, make_key, ssh_sign, ssh_verify

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None,
                                reason="ssh-keygen is the independent checker")

MESSAGE = b"0123abcd  bagit.txt\n4567ef01  bag-info.txt\n"


def test_ssh_keygen_accepts_our_signature(tmp_path: Path) -> None:
    key = make_key(tmp_path, "archiver")
    signature = tmp_path / "m.sig"
    signature.write_bytes(sign(MESSAGE, load_signing_key(key.private)))
    allowed = allowed_file(tmp_path, f"archive@example.com {key.public_line}")
    answer = ssh_verify(allowed, "archive@example.com", signature, MESSAGE)
    assert answer.returncode == 0, answer.stderr
    assert b"Good" in answer.stdout + answer.stderr
    # And it refuses the same signature over a changed file.
    assert ssh_verify(allowed, "archive@example.com", signature,
                      MESSAGE + b"x").returncode != 0


def test_we_accept_ssh_keygen_signature(tmp_path: Path) -> None:
    key = make_key(tmp_path, "archiver")
    message = tmp_path / "tagmanifest-sha256.txt"
    message.write_bytes(MESSAGE)
    signature = ssh_sign(key, message)
    allowed = AllowedSigners.load(allowed_file(
        tmp_path, f'ops@example.com,audit@example.com namespaces="crdb-archive" '
        f"{key.public_line}"))
    result = verify_signature(MESSAGE, signature.read_bytes(), allowed)
    assert result.fingerprint == key.fingerprint
    assert result.principals == ("ops@example.com", "audit@example.com")


def test_fingerprint_and_key_match_ssh_keygen(tmp_path: Path) -> None:
    key = make_key(tmp_path, "archiver")
    loaded = load_signing_key(key.private)
    assert loaded.fingerprint == key.fingerprint
    parsed = parse_signature(sign(MESSAGE, loaded))
    assert parsed.fingerprint == key.fingerprint
    assert parsed.namespace == NAMESPACE


def test_changed_message_is_refused_by_both(tmp_path: Path) -> None:
    key = make_key(tmp_path, "archiver")
    armored = sign(MESSAGE, load_signing_key(key.private))
    allowed = AllowedSigners.parse(f"a {key.public_line}\n", "allowed")
    changed = bytearray(MESSAGE)
    changed[3] ^= 0x01
    with pytest.raises(SignatureProblem, match="changed after signing"):
        verify_signature(bytes(changed), armored, allowed)


def test_a_key_not_allowed_is_refused_by_both(tmp_path: Path) -> None:
    signer = make_key(tmp_path, "intruder")
    trusted = make_key(tmp_path, "archiver")
    signature = tmp_path / "m.sig"
    signature.write_bytes(sign(MESSAGE, load_signing_key(signer.private)))
    path = allowed_file(tmp_path, f"a {trusted.public_line}")
    with pytest.raises(SignatureProblem, match="does not allow"):
        verify_signature(MESSAGE, signature.read_bytes(), AllowedSigners.load(path))
    assert ssh_verify(path, "a", signature, MESSAGE).returncode != 0


def test_namespace_restrictions_are_honoured(tmp_path: Path) -> None:
    key = make_key(tmp_path, "archiver")
    signature = tmp_path / "m.sig"
    signature.write_bytes(sign(MESSAGE, load_signing_key(key.private)))
    path = allowed_file(tmp_path, f'a namespaces="git,file" {key.public_line}')
    with pytest.raises(SignatureProblem):
        verify_signature(MESSAGE, signature.read_bytes(), AllowedSigners.load(path))
    assert ssh_verify(path, "a", signature, MESSAGE).returncode != 0
    # A signature made for another namespace is not one for bundles.
    other = tmp_path / "other.txt"
    other.write_bytes(MESSAGE)
    foreign = ssh_sign(key, other, namespace="file")
    with pytest.raises(SignatureProblem, match="namespace 'file'"):
        verify_signature(MESSAGE, foreign.read_bytes(),
                         AllowedSigners.parse(f"a {key.public_line}", "allowed"))


def test_validity_window(tmp_path: Path) -> None:
    key = make_key(tmp_path, "archiver")
    signature = tmp_path / "m.sig"
    signature.write_bytes(sign(MESSAGE, load_signing_key(key.private)))
    path = allowed_file(tmp_path, f'a valid-before="20200101Z" {key.public_line}')
    with pytest.raises(SignatureProblem):
        verify_signature(MESSAGE, signature.read_bytes(), AllowedSigners.load(path))
    assert ssh_verify(path, "a", signature, MESSAGE).returncode != 0
    later = AllowedSigners.parse(f'a valid-after="20200101Z" {key.public_line}', "allowed")
    assert verify_signature(MESSAGE, signature.read_bytes(), later,
                            now=dt.datetime(2021, 1, 1, tzinfo=dt.UTC)).principals == ("a",)


@pytest.mark.parametrize("armored", [
    b"",
    b"not a signature",
    b"-----BEGIN SSH SIGNATURE-----\n!!!!\n-----END SSH SIGNATURE-----\n",
    b"-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n",
    b"-----BEGIN SSH SIGNATURE-----\nQUFBQUFB\n-----END SSH SIGNATURE-----\n",
    b"x" * (1 << 20),
    "-----BEGIN SSH SIGNATURE-----\n\u00e9\n-----END SSH SIGNATURE-----\n".encode(),
])
def test_malformed_signatures_are_problems(armored: bytes) -> None:
    with pytest.raises(SignatureProblem):
        verify_signature(MESSAGE, armored, AllowedSigners((), "allowed"))


def test_truncated_signature_is_a_problem(tmp_path: Path) -> None:
    key = make_key(tmp_path, "archiver")
    armored = sign(MESSAGE, load_signing_key(key.private)).decode().splitlines()
    cut = "\n".join([armored[0], armored[1][:40], armored[-1]]) + "\n"
    with pytest.raises(SignatureProblem):
        verify_signature(MESSAGE, cut.encode(),
                         AllowedSigners.parse(f"a {key.public_line}", "allowed"))


def test_unusable_signing_keys_are_bad_input(tmp_path: Path) -> None:
    encrypted = make_key(tmp_path, "locked", passphrase="correct horse")
    with pytest.raises(BadInput, match="passphrase") as error:
        load_signing_key(encrypted.private)
    assert "correct horse" not in str(error.value)
    ecdsa = make_key(tmp_path, "ecdsa", kind="ecdsa")
    with pytest.raises(BadInput, match="not an Ed25519 key"):
        load_signing_key(ecdsa.private)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n")
    with pytest.raises(BadInput, match="not an OpenSSH private key") as refused:
        load_signing_key(garbage)
    assert "AAAA" not in str(refused.value)
    with pytest.raises(BadInput, match="cannot read"):
        load_signing_key(tmp_path / "absent")


@pytest.mark.parametrize("line", [
    "alice",
    'alice namespaces="crdb-archive ssh-ed25519 AAAA',
    "alice bogus=1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==",
    "alice ssh-ed25519 not-base64!",
    'alice valid-after="yesterday" ssh-ed25519 AAAA',
])
def test_malformed_allowed_signers_lines_are_bad_input(line: str) -> None:
    with pytest.raises(BadInput, match="line 2"):
        AllowedSigners.parse("# keys of the archive team\n" + line + "\n", "allowed")


def test_other_key_types_and_authorities_are_skipped(tmp_path: Path) -> None:
    rsa = make_key(tmp_path, "rsa", kind="rsa")
    key = make_key(tmp_path, "archiver")
    allowed = AllowedSigners.parse(
        f"bob {rsa.public_line}\nca@example.com cert-authority {key.public_line}\n", "allowed")
    assert allowed.signers == ()
