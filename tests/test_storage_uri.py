"""Locations: which backend a URI opens, CockroachDB's S3 parameters, and redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from crdb_archive.errors import BadInput
from crdb_archive.storage import open_object, open_storage
from crdb_archive.storage.local import LocalStorage
from crdb_archive.storage.s3 import S3Storage
from crdb_archive.storage.s3_config import S3Target, max_attempts, s3_target
from crdb_archive.storage.uri import Location, parse_location, redact

SECRET = "abc%2Fdef%2Bghi"  # URL-encoded, as CockroachDB's docs ask for


@pytest.fixture(autouse=True)
def _no_endpoint_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)


def target(uri: str, endpoint_url: str | None = None) -> S3Target:
    return s3_target(parse_location(uri), endpoint_url=endpoint_url)


def test_keys_in_the_uri_mean_auth_specified() -> None:
    t = target(f"s3://bucket/a/b/?AWS_ACCESS_KEY_ID=AKIA1&AWS_SECRET_ACCESS_KEY={SECRET}")
    assert (t.bucket, t.prefix) == ("bucket", "a/b")
    assert t.access_key_id == "AKIA1"
    assert t.secret_access_key == "abc/def+ghi"
    assert t.session_token is None
    assert "abc" not in repr(t)
    assert "AKIA1" not in repr(t)


def test_auth_specified_with_session_token_and_region() -> None:
    t = target("s3://bucket?AUTH=specified&AWS_ACCESS_KEY_ID=AKIA1&AWS_SECRET_ACCESS_KEY=s"
               "&AWS_SESSION_TOKEN=tok&AWS_REGION=eu-west-3")
    assert (t.prefix, t.session_token, t.region) == ("", "tok", "eu-west-3")
    assert t.secrets == ("AKIA1", "s", "tok")


def test_implicit_auth_uses_the_default_chain() -> None:
    for uri in ("s3://bucket/p?AUTH=implicit", "s3://bucket/p", "s3://bucket/p?AUTH=IMPLICIT"):
        t = target(uri)
        assert (t.access_key_id, t.secret_access_key) == (None, None)


@pytest.mark.parametrize(("uri", "message"), [
    ("s3://bucket?AUTH=specified", "needs both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    ("s3://bucket?AWS_ACCESS_KEY_ID=AKIA1", "needs both"),
    (f"s3://bucket?AWS_SECRET_ACCESS_KEY={SECRET}", "needs both"),
    (f"s3://bucket?AUTH=implicit&AWS_ACCESS_KEY_ID=k&AWS_SECRET_ACCESS_KEY={SECRET}",
     "AUTH=implicit uses the default credential chain"),
    ("s3://bucket?AUTH=magic", "AUTH must be specified or implicit"),
    ("s3://bucket?AWS_SESSION_TOKEN=tok", "AWS_SESSION_TOKEN needs"),
    (f"s3://bucket?AWS_SECRET_ACESS_KEY={SECRET}", "unknown parameter AWS_SECRET_ACESS_KEY"),
    ("s3://bucket?ASSUME_ROLE=arn:aws:iam::1:role/x", "ASSUME_ROLE is not supported"),
    ("s3://bucket?AWS_REGION=a&AWS_REGION=b", "AWS_REGION given twice"),
    ("s3://bucket?AWS_USE_PATH_STYLE=maybe", "AWS_USE_PATH_STYLE must be true or false"),
    ("s3://bucket?AWS_ENDPOINT=ftp://host", r"not an http\(s\) URL"),
    ("s3://bucket:9000/p", "not host:port"),
    ("s3://b/p", "not a valid S3 bucket name"),
    ("s3://bad!bucket/p", "not a valid S3 bucket name"),
    ("s3://bucket/a/../b", "'..' segment"),
    ("s3://bucket/a//b", "empty"),
])
def test_malformed_s3_uris_are_bad_input(uri: str, message: str) -> None:
    with pytest.raises(BadInput, match=message) as caught:
        target(uri)
    assert "abc" not in str(caught.value)  # parameter names only, never values
    assert "AKIA1" not in str(caught.value)


def test_parameters_cockroachdb_uses_for_writing_are_accepted() -> None:
    t = target("s3://bucket/p?AUTH=implicit&S3_STORAGE_CLASS=STANDARD_IA"
               "&AWS_SERVER_ENC_MODE=aws:kms&AWS_SERVER_KMS_ID=k&COCKROACH_LOCALITY=default")
    assert t.prefix == "p"


def test_endpoint_precedence_and_path_style(monkeypatch: pytest.MonkeyPatch) -> None:
    assert target("s3://bucket").endpoint_url is None
    assert not target("s3://bucket").path_style
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://env:1")
    assert target("s3://bucket").endpoint_url == "http://env:1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://env-s3:2")
    assert target("s3://bucket").endpoint_url == "http://env-s3:2"
    assert target("s3://bucket", "http://flag:3").endpoint_url == "http://flag:3"
    t = target("s3://bucket?AWS_ENDPOINT=minio.example:9000", "http://flag:3")
    assert t.endpoint_url == "https://minio.example:9000"
    assert t.path_style
    assert not target("s3://bucket?AWS_USE_PATH_STYLE=false", "http://flag:3").path_style
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    assert target("s3://bucket?AWS_USE_PATH_STYLE=true").path_style


def test_max_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    assert max_attempts() == 10
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    assert max_attempts() == 3
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "zero")
    with pytest.raises(BadInput, match="AWS_MAX_ATTEMPTS"):
        max_attempts()


def test_open_storage_chooses_the_backend(tmp_path: Path) -> None:
    with open_storage(str(tmp_path)) as local:
        assert isinstance(local, LocalStorage)
        assert local.local_path == tmp_path
    with open_storage(f"file://{tmp_path}") as local_uri:
        assert isinstance(local_uri, LocalStorage)
        assert local_uri.local_path == tmp_path
    with open_storage("s3://bucket/prefix?AUTH=implicit", endpoint_url="http://127.0.0.1:9") as s3:
        assert isinstance(s3, S3Storage)
        assert (s3.bucket, s3.prefix, s3.is_local) == ("bucket", "prefix", False)
        assert s3.display("k/x") == "s3://bucket/prefix/k/x"


@pytest.mark.parametrize(("uri", "name"), [
    ("userfile://defaultdb.public.userfiles_root/x?CREDENTIALS=c2VjcmV0", "userfile"),
    ("nodelocal://1/backups", "nodelocal"),
    ("ftp://host/x", "the scheme ftp://"),
])
def test_unsupported_schemes_are_named(uri: str, name: str) -> None:
    with pytest.raises(BadInput, match=name) as caught:
        open_storage(uri)
    assert "not supported" in str(caught.value)
    assert "secret" not in str(caught.value)
    assert "c2VjcmV0" not in str(caught.value)


def test_credentials_before_the_host_are_refused() -> None:
    with pytest.raises(BadInput, match="credentials before the host name") as caught:
        open_storage("s3://AKIA1:TopSecret@bucket/p")
    assert "TopSecret" not in str(caught.value)


def test_local_path_with_parameters_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="takes no parameters"):
        open_storage(f"file://{tmp_path}?AWS_SECRET_ACCESS_KEY=x")


def test_local_root_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(Exception, match="is not a directory"):
        open_storage(str(tmp_path / "file"))


def test_open_object_splits_the_last_segment(tmp_path: Path) -> None:
    storage, key = open_object(f"s3://bucket/a/b/name.tar?AWS_ACCESS_KEY_ID=k"
                               f"&AWS_SECRET_ACCESS_KEY={SECRET}", endpoint_url="http://h:1")
    with storage:
        assert key == "name.tar"
        assert isinstance(storage, S3Storage)
        assert storage.prefix == "a/b"
    storage, key = open_object(str(tmp_path / "x.tar"))
    with storage:
        assert key == "x.tar"
        assert isinstance(storage, LocalStorage)
        assert storage.local_path == tmp_path
    with pytest.raises(BadInput, match="names no object"):
        open_object("s3://bucket")


def test_location_child_and_parent() -> None:
    location = parse_location(f"s3://bucket/pre?AWS_SECRET_ACCESS_KEY={SECRET}")
    child = location.child("x/y")
    assert child.path == "/pre/x/y"
    assert str(child) == "s3://bucket/pre/x/y?AWS_SECRET_ACCESS_KEY=redacted"
    assert child.parent() == (location.child("x"), "y")
    assert parse_location("s3://bucket").child("k").path == "/k"
    assert parse_location("rel").child("k") == Location("file", "", "rel/k", ())
    assert parse_location("rel").parent() == (Location("file", "", ".", ()), "rel")


def test_redaction_keeps_names_only() -> None:
    uri = ("s3://bucket/prefix?AUTH=specified&AWS_ACCESS_KEY_ID=AKIA1"
           f"&AWS_SECRET_ACCESS_KEY={SECRET}&AWS_SESSION_TOKEN=tok")
    expected = ("s3://bucket/prefix?AUTH=redacted&AWS_ACCESS_KEY_ID=redacted"
                "&AWS_SECRET_ACCESS_KEY=redacted&AWS_SESSION_TOKEN=redacted")
    assert redact(uri) == expected
    assert str(parse_location(uri)) == expected
    assert "abc" not in repr(parse_location(uri))
