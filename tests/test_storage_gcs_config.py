"""gs:// URIs: CockroachDB's parameters, our ENDPOINT=, the SDK's emulator variable, and the
retention a bucket offers, all decided before any request."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re

import pytest

from crdb_archive.errors import BadInput, ExitCode
from crdb_archive.storage import WriteOptions
from crdb_archive.storage.gcs_config import DEFAULT_ENDPOINT, GcsTarget, gcs_target, max_attempts
from crdb_archive.storage.gcs_errors import scrub
from crdb_archive.storage.gcs_retention import BucketRetention, Placement, placement
from crdb_archive.storage.places import check_options, endpoints_for, overlap
from crdb_archive.storage.uri import parse_location, redact

NOW = dt.datetime.now(dt.UTC)
KEY = {"type": "service_account", "client_email": "a@p.iam.gserviceaccount.com",
       "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
       "-----END PRIVATE KEY-----\n", "private_key_id": "0123456789abcdef",
       "token_uri": "https://oauth2.googleapis.com/token"}
CREDENTIALS = base64.b64encode(json.dumps(KEY).encode()).decode()


@pytest.fixture(autouse=True)
def no_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("CRDB_ARCHIVE_GCS_MAX_ATTEMPTS", raising=False)


def target(uri: str, endpoint_url: str | None = None) -> GcsTarget:
    return gcs_target(parse_location(uri), endpoint_url=endpoint_url)


def test_bucket_prefix_and_the_default_endpoint() -> None:
    found = target("gs://crdb-backups/orders/2024/")
    assert (found.bucket, found.prefix) == ("crdb-backups", "orders/2024")
    assert (found.endpoint, found.custom_endpoint) == (DEFAULT_ENDPOINT, False)
    # Without credential parameters: application default credentials, as CockroachDB's
    # AUTH=implicit.
    assert found.auth == "implicit"


@pytest.mark.parametrize(("uri", "expected"), [
    ("gs://ab/x", "'ab' is not a valid Cloud Storage bucket name"),
    ("gs://-bkt/x", "'-bkt' is not a valid Cloud Storage bucket name"),
    ("gs://localhost:4443/x", "takes a bucket name, not host:port"),
    ("gs://bkt/a/../b", "has an empty, '.' or '..' segment"),
    ("gs://bkt/x?REGION=eu", "unknown parameter REGION"),
    ("gs://bkt/x?ASSUME_ROLE=sa@p.iam.gserviceaccount.com", "impersonation (ASSUME_ROLE) is "
     "not supported"),
    ("gs://bkt/x?AUTH=default", "AUTH must be specified or implicit"),
    ("gs://bkt/x?AUTH=specified", "AUTH=specified needs CREDENTIALS"),
    ("gs://bkt/x?AUTH=implicit&BEARER_TOKEN=tok", "AUTH=implicit uses application default"),
    (f"gs://bkt/x?CREDENTIALS={CREDENTIALS}&BEARER_TOKEN=tok", "not both"),
    ("gs://bkt/x?BEARER_TOKEN=a&BEARER_TOKEN=b", "parameter BEARER_TOKEN given twice"),
    ("gs://bkt/x?ENDPOINT=ftp://files.lan", "is not an http(s) URL"),
])
def test_mistakes_are_bad_input_naming_parameters_only(uri: str, expected: str) -> None:
    with pytest.raises(BadInput, match=re.escape(expected)) as caught:
        target(uri)
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    message = str(caught.value)
    for secret in ("tok", CREDENTIALS, "sa@p"):
        assert f"={secret}" not in message
    assert "\n" not in message


def test_credentials_parameters() -> None:
    key = target(f"gs://bkt/x?AUTH=specified&CREDENTIALS={CREDENTIALS}")
    assert key.auth == "key"
    assert key.key_info == KEY
    # Every form of the key is a secret to scrub from whatever the store or the SDK says.
    assert CREDENTIALS in key.secrets
    assert KEY["private_key"] in key.secrets
    assert CREDENTIALS not in repr(key)
    # A '+' of base64 that arrives as a space (a URI that was not percent-encoded) still works.
    plus = base64.b64encode(b'{"type": "service_account", "client_email": "x>>>"}').decode()
    assert "+" in plus
    with pytest.raises(BadInput, match="lacks private_key, token_uri"):
        target(f"gs://bkt/x?CREDENTIALS={plus.replace('+', ' ')}")
    token = target("gs://bkt/x?AUTH=specified&BEARER_TOKEN=ya29.secret")
    assert (token.auth, token.bearer_token, token.secrets) == ("token", "ya29.secret",
                                                                ("ya29.secret",))
    assert "ya29.secret" not in repr(token)
    assert target("gs://bkt/x?AUTH=implicit").auth == "implicit"
    assert target("gs://bkt/x?GOOGLE_BILLING_PROJECT=payer").billing_project == "payer"


def test_endpoints_in_order_of_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")
    emulator = target("gs://bkt/x")
    # The SDK's convention names an emulator: plain HTTP, and no credentials to present.
    assert (emulator.endpoint, emulator.custom_endpoint, emulator.auth) == (
        "http://127.0.0.1:4443", True, "anonymous")
    # Credentials asked for are used at an emulator too.
    assert target("gs://bkt/x?AUTH=implicit").auth == "implicit"
    assert target("gs://bkt/x", "http://flag:1").endpoint == "http://flag:1"
    assert target("gs://bkt/x?ENDPOINT=storage.private.example/", "http://flag:1").endpoint == (
        "https://storage.private.example")
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    assert target("gs://bkt/x?ENDPOINT=http://127.0.0.1:9").auth == "anonymous"


def test_max_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    assert max_attempts() == 10
    monkeypatch.setenv("CRDB_ARCHIVE_GCS_MAX_ATTEMPTS", "2")
    assert max_attempts() == 2
    monkeypatch.setenv("CRDB_ARCHIVE_GCS_MAX_ATTEMPTS", "0")
    with pytest.raises(BadInput, match="CRDB_ARCHIVE_GCS_MAX_ATTEMPTS"):
        max_attempts()


def test_secret_parameters_are_redacted_and_scrubbed() -> None:
    uri = f"gs://bkt/x?AUTH=specified&CREDENTIALS={CREDENTIALS}&ENDPOINT=http://h:1"
    assert redact(uri) == "gs://bkt/x?AUTH=redacted&CREDENTIALS=redacted&ENDPOINT=redacted"
    assert parse_location(uri).secret_values() == (CREDENTIALS,)
    assert parse_location("gs://b/x?BEARER_TOKEN=t&AUTH=x").secret_values() == ("t",)
    text = f"denied for token t0ken\n at {KEY['private_key']} twice t0ken"
    assert scrub(text, ["t0ken", KEY["private_key"]]) == (
        "denied for token redacted at redacted twice redacted")
    assert scrub("bad\x1b[2Jname\x07", []) == "bad [2Jname "


def test_locations_in_two_clouds_never_overlap_and_take_their_own_endpoints() -> None:
    assert overlap("gs://bkt/backups", "gs://bkt/backups/bundles") == "dest-inside-source"
    assert overlap("gs://bkt/backups", "s3://bkt/backups/bundles") is None
    assert overlap("gs://bkt/b", "gs://bkt/b/x", source_endpoint_url="http://a:1",
                   dest_endpoint_url="http://b:1") is None
    assert endpoints_for("http://e:1", "gs://a/x", "/srv/bundles") == ("http://e:1", None)
    assert endpoints_for("http://e:1", "/srv/b", "gs://a/x") == (None, "http://e:1")
    assert endpoints_for("http://e:1", "s3://a/x", "s3://b/y") == ("http://e:1", "http://e:1")
    assert endpoints_for(None, "s3://a/x", "gs://b/y") == (None, None)
    with pytest.raises(BadInput, match="different clouds"):
        endpoints_for("http://e:1", "s3://a/x", "gs://b/y")


@pytest.mark.parametrize(("storage_class", "expected"), [
    ("STANDARD", None), ("NEARLINE", None), ("COLDLINE", None), ("ARCHIVE", None),
    ("GLACIER", "bucket bkt: Cloud Storage has no storage class 'GLACIER'"),
    ("archive", "bucket bkt: Cloud Storage has no storage class 'archive'"),
])
def test_storage_classes_of_cloud_storage(storage_class: str, expected: str | None) -> None:
    options = WriteOptions(storage_class=storage_class)
    if expected is None:
        check_options(parse_location("gs://bkt/x"), options)
        assert placement(options, "bkt", None, NOW) == Placement(storage_class)
        return
    with pytest.raises(BadInput, match=expected):
        check_options(parse_location("gs://bkt/x"), options)


IN_30_DAYS = NOW + dt.timedelta(days=30)


@pytest.mark.parametrize(("bucket", "mode", "expected"), [
    # Object retention: the lock is written on each object, COMPLIANCE as Locked.
    (BucketRetention(True), "COMPLIANCE", Placement(None, "Locked", IN_30_DAYS)),
    (BucketRetention(True), "GOVERNANCE", Placement(None, "Unlocked", IN_30_DAYS)),
    # A bucket policy that keeps every object long enough does it instead.
    (BucketRetention(False, 40 * 86_400, True), "COMPLIANCE", Placement()),
    (BucketRetention(False, 40 * 86_400, False), "GOVERNANCE", Placement()),
    (BucketRetention(False, 40 * 86_400, False), "COMPLIANCE",
     "COMPLIANCE needs a locked policy"),
    (BucketRetention(False, 10 * 86_400, True), "GOVERNANCE",
     "locked retention policy keeps objects 10 days, short of "),
    (BucketRetention(False), "GOVERNANCE",
     "bucket bkt has no object retention: GOVERNANCE retention needs a bucket created with "
     "object retention enabled \\(or a retention policy of at least 30 days\\)"),
])
def test_retention_is_object_retention_or_a_long_enough_policy(
    bucket: BucketRetention, mode: str, expected: Placement | str,
) -> None:
    options = WriteOptions(None, "COMPLIANCE" if mode == "COMPLIANCE" else "GOVERNANCE",
                           IN_30_DAYS)
    if isinstance(expected, Placement):
        assert placement(options, "bkt", bucket, NOW) == expected
        assert bucket.any
        return
    with pytest.raises(BadInput, match=expected) as caught:
        placement(options, "bkt", bucket, NOW)
    assert "nothing was uploaded" in str(caught.value)
