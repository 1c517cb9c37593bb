"""Where keys come from: passphrase files and the environment, KMS URIs in CockroachDB's form,
and what is refused (literal secrets, both kinds at once, other clouds' KMS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crdb_archive.backup.keys import PASSPHRASE_ENV, load_keys, read_passphrase_file
from crdb_archive.errors import BadInput
from crdb_archive.storage.kms import parse_kms_uri

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
URI = (f"aws:///1234abcd-12ab-34cd-56ef-1234567890ab?AUTH=specified&AWS_ACCESS_KEY_ID=AKIAEXAMPLE"
       f"&AWS_SECRET_ACCESS_KEY={SECRET}&REGION=eu-west-1")


@pytest.mark.parametrize(("content", "expected"), [
    (b"hunter2\n", b"hunter2"),
    (b"hunter2\r\n", b"hunter2"),
    (b"hunter2", b"hunter2"),
    (b"hunter2\n\n", b"hunter2\n"),  # only one newline: the rest is the passphrase
    (b" spaces kept \n", b" spaces kept "),
    ("pässwörd\n".encode(), "pässwörd".encode()),
])
def test_passphrase_file(tmp_path: Path, content: bytes, expected: bytes) -> None:
    path = tmp_path / "passphrase"
    path.write_bytes(content)
    assert read_passphrase_file(path) == expected


@pytest.mark.parametrize("content", [b"", b"\n", b"\r\n"])
def test_empty_passphrase_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "passphrase"
    path.write_bytes(content)
    with pytest.raises(BadInput, match="is empty"):
        read_passphrase_file(path)


def test_unreadable_passphrase_file(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="cannot read encryption passphrase file"):
        read_passphrase_file(tmp_path / "missing")
    big = tmp_path / "big"
    big.write_bytes(b"x" * (1 << 17))
    with pytest.raises(BadInput, match="larger than"):
        read_passphrase_file(big)


def test_environment_and_file(tmp_path: Path) -> None:
    path = tmp_path / "passphrase"
    path.write_bytes(b"from the file\n")
    environ = {PASSPHRASE_ENV: "from the environment"}
    assert load_keys(environ=environ).passphrase == b"from the environment"
    # An explicit file wins over the environment.
    keys = load_keys(passphrase_file=path, environ=environ)
    assert keys.passphrase == b"from the file"
    assert keys.mode == "passphrase"
    assert "from the file" not in repr(keys)
    assert load_keys(environ={}).mode is None
    assert load_keys(environ={PASSPHRASE_ENV: ""}).mode is None


def test_a_passphrase_and_kms_keys_are_refused(tmp_path: Path) -> None:
    uri = "aws:///key?AUTH=implicit&REGION=us-east-1"
    with pytest.raises(BadInput, match="both a passphrase"):
        load_keys(kms=[uri], environ={PASSPHRASE_ENV: "x"})
    assert load_keys(kms=[uri], environ={}).mode == "kms"


def test_a_secret_on_the_command_line_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="process list") as error:
        load_keys(kms=[URI], environ={})
    assert SECRET not in str(error.value)
    # The same URI from a file, or from a job spec, is fine.
    listed = tmp_path / "kms-uris"
    listed.write_text(f"# the production key\n{URI}\n\n", encoding="utf-8")
    (from_file,) = load_keys(kms=[f"@{listed}"], environ={}).kms
    assert from_file.secret_access_key == SECRET
    (from_spec,) = load_keys(kms=[URI], environ={}, command_line=False).kms
    assert from_spec == from_file


def test_kms_uri_file_problems(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(BadInput, match="holds no URI"):
        load_keys(kms=[f"@{empty}"], environ={})
    with pytest.raises(BadInput, match="cannot read KMS URI file"):
        load_keys(kms=[f"@{tmp_path / 'missing'}"], environ={})


def test_kms_uri_display_hides_credentials() -> None:
    uri = parse_kms_uri(URI + "&AWS_SESSION_TOKEN=tok3n&AWS_ENDPOINT=http://user:pw@kms.local:4566")
    assert uri.key_id == "1234abcd-12ab-34cd-56ef-1234567890ab"
    assert uri.region == "eu-west-1"
    assert uri.display == (
        "aws:///1234abcd-12ab-34cd-56ef-1234567890ab?AUTH=specified&AWS_ACCESS_KEY_ID=redacted"
        "&AWS_SECRET_ACCESS_KEY=redacted&AWS_SESSION_TOKEN=redacted&REGION=eu-west-1"
        "&AWS_ENDPOINT=http://kms.local:4566")
    for secret in (SECRET, "tok3n", "AKIAEXAMPLE", ":pw@"):
        assert secret not in uri.display
        assert secret not in repr(uri)


def test_kms_secret_plus_signs_survive() -> None:
    # As in CockroachDB: '+' in a query reads as a space, and a secret never holds one.
    assert "+" in SECRET
    assert parse_kms_uri(URI).secret_access_key == SECRET
    assert parse_kms_uri(URI.replace("+", "%2B")).secret_access_key == SECRET


def test_kms_arn_and_alias() -> None:
    arn = "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert parse_kms_uri(f"aws:///{arn}?AUTH=implicit").key_id == arn
    assert parse_kms_uri("aws-kms:///alias%2Fbackups?AUTH=implicit&REGION=us-east-1"
                         ).key_id == "alias/backups"


@pytest.mark.parametrize(("uri", "words"), [
    ("gs:///projects/p/locations/l/keyRings/r/cryptoKeys/k?AUTH=implicit",
     "Google Cloud KMS keys (gs://) are recognised but not supported yet"),
    ("azure-kms:///key/version?AZURE_TENANT_ID=t", "Azure Key Vault keys (azure-kms://)"),
    ("s3://bucket/key", "was given a s3:// URI, not a KMS key"),
    ("hunter2 my passphrase", "was given text that is not a URI, not a KMS key"),
    ("aws://key-id?AUTH=implicit", "after three slashes"),
    ("aws:///?AUTH=implicit", "names no key"),
    ("aws:///k?AUTH=implicit&COLOUR=blue", "unknown KMS parameter COLOUR"),
    ("aws:///k?REGION=a&REGION=b", "given twice"),
    ("aws:///k?AUTH=sometimes", "AUTH must be specified or implicit"),
    ("aws:///k?AUTH=specified&AWS_ACCESS_KEY_ID=a", "needs both"),
    (f"aws:///k?AUTH=implicit&AWS_SECRET_ACCESS_KEY={SECRET}&AWS_ACCESS_KEY_ID=a",
     "AUTH=implicit"),
    ("aws:///k?ASSUME_ROLE=arn:aws:iam::1:role/r", "ASSUME_ROLE is not supported"),
    ("aws:///k?AUTH=implicit&AWS_ENDPOINT=ftp://x", "not an http(s) URL"),
])
def test_kms_uri_mistakes(uri: str, words: str) -> None:
    with pytest.raises(BadInput, match=words.replace("(", r"\(").replace(")", r"\)")) as error:
        parse_kms_uri(uri)
    assert SECRET not in str(error.value)


def test_text_that_is_not_a_kms_uri_is_never_echoed(tmp_path: Path) -> None:
    # A passphrase put in the KMS URI file by mistake must not end up in an error message.
    listed = tmp_path / "kms-uris"
    listed.write_text("hunter2 is my passphrase\n", encoding="utf-8")
    with pytest.raises(BadInput) as error:
        load_keys(kms=[f"@{listed}"], environ={})
    assert "hunter2" not in str(error.value)
    with pytest.raises(BadInput) as error:
        parse_kms_uri("user:hunter2@host")
    assert "hunter2" not in str(error.value)
