"""Azure locations: CockroachDB's schemes and parameters, endpoints, redaction; no request sent."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from crdb_archive.errors import BadInput
from crdb_archive.storage import open_storage
from crdb_archive.storage.azure import AzureStorage
from crdb_archive.storage.azure_config import AzureTarget, azure_target, max_attempts
from crdb_archive.storage.azure_options import restore_state, tier_problem
from crdb_archive.storage.places import endpoints_for, overlap, storage_classes
from crdb_archive.storage.uri import parse_location, redact

# A key whose base64 holds every character a URI must encode: '+', '/' and '='.
RAW_KEY = bytes([0xFB, 0xEF, 0xFF, 0x3E, 0x01]) * 12 + b"\x00"
KEY = base64.b64encode(RAW_KEY).decode()
ENCODED = quote(KEY, safe="")
SECRET = "client-secret-never-shown"


@pytest.fixture(autouse=True)
def _no_azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_MAX_ATTEMPTS", "AZURE_AUTHORITY_HOST"):
        monkeypatch.delenv(name, raising=False)


def target(uri: str, endpoint_url: str | None = None) -> AzureTarget:
    return azure_target(parse_location(uri), endpoint_url=endpoint_url)


def test_the_three_schemes_of_cockroachdb_open_azure() -> None:
    assert "+" in KEY
    assert "/" in KEY
    assert KEY.endswith("=")
    for scheme in ("azure", "azure-blob", "azure-storage"):
        uri = f"{scheme}://backups/a/b/?AZURE_ACCOUNT_NAME=acct&AZURE_ACCOUNT_KEY={ENCODED}"
        with open_storage(uri) as storage:
            assert isinstance(storage, AzureStorage)
            assert (storage.container, storage.prefix) == ("backups", "a/b")
            assert storage.display("k") == f"{scheme}://backups/a/b/k"
            assert storage.cold_storage() is storage
            assert storage.retention_lock() is storage
        t = target(uri)
        assert t.account_url == "https://acct.blob.core.windows.net"
        assert (t.auth, t.account_key) == ("key", KEY)
        assert base64.b64decode(KEY) == RAW_KEY


def test_an_account_key_pasted_without_url_encoding_still_decodes() -> None:
    # parse_qsl turns a bare '+' into a space, as Go's url.ParseQuery does for CockroachDB.
    t = target(f"azure://backups?AZURE_ACCOUNT_NAME=acct&AZURE_ACCOUNT_KEY={KEY}")
    assert t.account_key == KEY


def test_secrets_are_known_in_both_spellings() -> None:
    t = target(f"azure://backups?AZURE_ACCOUNT_NAME=acct&AZURE_ACCOUNT_KEY={ENCODED}")
    assert set(t.secrets) == {KEY, ENCODED}
    assert KEY not in repr(t)
    client = target(f"azure://backups?AZURE_ACCOUNT_NAME=acct&AZURE_CLIENT_ID=app"
                    f"&AZURE_CLIENT_SECRET={SECRET}&AZURE_TENANT_ID=tenant")
    assert client.auth == "client-secret"
    assert (client.client_id, client.tenant_id) == ("app", "tenant")
    assert client.secrets == (SECRET,)
    assert SECRET not in repr(client)


def test_every_parameter_value_is_redacted() -> None:
    uri = (f"azure-blob://backups/p?AZURE_ACCOUNT_NAME=acct&AZURE_ACCOUNT_KEY={ENCODED}"
           f"&AZURE_CLIENT_SECRET={SECRET}&ENDPOINT=http://127.0.0.1:1/acct")
    shown = redact(uri)
    assert shown == ("azure-blob://backups/p?AZURE_ACCOUNT_NAME=redacted&AZURE_ACCOUNT_KEY="
                     "redacted&AZURE_CLIENT_SECRET=redacted&ENDPOINT=redacted")


@pytest.mark.parametrize(("environment", "suffix", "authority"), [
    ("AzurePublicCloud", "core.windows.net", "login.microsoftonline.com"),
    ("azureusgovernmentcloud", "core.usgovcloudapi.net", "login.microsoftonline.us"),
    ("AzureChinaCloud", "core.chinacloudapi.cn", "login.chinacloudapi.cn"),
])
def test_environments_choose_the_endpoint_and_the_token_issuer(
    environment: str, suffix: str, authority: str,
) -> None:
    t = target(f"azure://c0c/x?AZURE_ACCOUNT_NAME=acct&AUTH=implicit"
               f"&AZURE_ENVIRONMENT={environment}")
    assert t.account_url == f"https://acct.blob.{suffix}"
    assert t.authority_host == authority
    # Without a named cloud, azure-identity's own choice stands ($AZURE_AUTHORITY_HOST).
    assert target("azure://c0c/x?AZURE_ACCOUNT_NAME=acct&AUTH=implicit").authority_host is None


def test_endpoint_parameter_then_option() -> None:
    base = f"azure://c0c/x?AZURE_ACCOUNT_NAME=acct&AZURE_ACCOUNT_KEY={ENCODED}"
    assert target(base, "http://127.0.0.1:10000/acct/").account_url == (
        "http://127.0.0.1:10000/acct")
    t = target(base + "&ENDPOINT=https://private.example/acct", "http://127.0.0.1:10000/acct")
    assert t.account_url == "https://private.example/acct"
    assert t.custom_endpoint
    assert target(base + "&ENDPOINT=blob.example").account_url == "https://blob.example"


@pytest.mark.parametrize(("uri", "message"), [
    ("azure://backups/p", "AZURE_ACCOUNT_NAME is missing"),
    ("azure://backups/p?AZURE_ACCOUNT_NAME=Bad_Name&AUTH=implicit", "not a valid storage account"),
    ("azure://backups/p?AZURE_ACCOUNT_NAME=acct", "give exactly one way to authenticate"),
    (f"azure://backups/p?AZURE_ACCOUNT_NAME=acct&AZURE_ACCOUNT_KEY={ENCODED}"
     f"&AZURE_CLIENT_ID=a&AZURE_CLIENT_SECRET={SECRET}&AZURE_TENANT_ID=t",
     "give exactly one way to authenticate"),
    (f"azure://backups/p?AZURE_ACCOUNT_NAME=acct&AZURE_CLIENT_ID=a&AZURE_CLIENT_SECRET={SECRET}",
     "give exactly one way to authenticate"),
    (f"azure://backups/p?AZURE_ACCOUNT_NAME=acct&AUTH=implicit&AZURE_ACCOUNT_KEY={ENCODED}",
     "AUTH=implicit uses azure-identity's default credential chain, yet the URI also carries "
     "AZURE_ACCOUNT_KEY"),
    ("azure://backups/p?AZURE_ACCOUNT_NAME=acct&AUTH=magic", "AUTH must be specified or"),
    ("azure://backups/p?AZURE_ACCOUNT_NAME=acct&AZURE_ACCOUNT_KEY=not-base64!",
     "AZURE_ACCOUNT_KEY is not a base64 account key"),
    ("azure://backups/p?AZURE_ACCOUNT_NAME=acct&AUTH=implicit&AZURE_ENVIRONMENT=Mars",
     "AZURE_ENVIRONMENT 'Mars' is not one of AzurePublicCloud"),
    (f"azure://backups/p?AZURE_ACCOUNT_NAME=acct&AZURE_ACCOUNT_KEY={ENCODED}&SAS=sv%3D1",
     "unknown parameter SAS"),
    ("azure://backups/p?AZURE_ACCOUNT_NAME=a1c&AZURE_ACCOUNT_NAME=a2c&AUTH=implicit",
     "AZURE_ACCOUNT_NAME given twice"),
    ("azure://backups/p?AZURE_ACCOUNT_NAME=acct&AUTH=implicit&ENDPOINT=ftp://host",
     r"not an http\(s\) URL"),
    ("azure://backups/p?AZURE_ACCOUNT_NAME=acct&AUTH=implicit"
     "&ENDPOINT=https://host/acct%3Fsig%3Dabc", "a SAS token is not supported"),
    ("azure://Backups_1/p?AZURE_ACCOUNT_NAME=acct&AUTH=implicit", "not a valid Azure container"),
    ("azure://backups/p?AZURE_ACCOUNT_NAME=acct&AUTH=implicit&ENDPOINT=http://127.0.0.1:1/a",
     "only sent over HTTPS"),
    ("azure://ab/p?AZURE_ACCOUNT_NAME=acct&AUTH=implicit", "not a valid Azure container"),
    ("azure://a--b/p?AZURE_ACCOUNT_NAME=acct&AUTH=implicit", "not a valid Azure container"),
    ("azure://backups:9000/p?AZURE_ACCOUNT_NAME=acct&AUTH=implicit", "not host:port"),
    ("azure://backups/a/../b?AZURE_ACCOUNT_NAME=acct&AUTH=implicit", "'..' segment"),
])
def test_malformed_azure_uris_are_bad_input(uri: str, message: str) -> None:
    with pytest.raises(BadInput, match=message) as caught:
        target(uri)
    text = str(caught.value)
    for secret in (KEY, ENCODED, SECRET, "not-base64!", "sig=abc"):
        assert secret not in text


def test_max_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    assert max_attempts() == 10
    monkeypatch.setenv("AZURE_MAX_ATTEMPTS", "2")
    assert max_attempts() == 2
    monkeypatch.setenv("AZURE_MAX_ATTEMPTS", "-1")
    with pytest.raises(BadInput, match="AZURE_MAX_ATTEMPTS"):
        max_attempts()


def test_accounts_without_a_tier_are_named() -> None:
    assert tier_problem("Archive", "acct", "Standard_RAGRS", "StorageV2") is None
    assert tier_problem("Cold", "acct", "Standard_ZRS", "StorageV2") is None
    assert tier_problem("Cool", "acct", None, None) is None  # the account would not say
    archive_zrs = tier_problem("Archive", "acct", "Standard_GZRS", "StorageV2")
    assert archive_zrs == ("storage account acct is zone-redundant (Standard_GZRS), which has "
                           "no Archive tier")
    premium = tier_problem("Hot", "acct", "Premium_LRS", "BlockBlobStorage")
    assert premium is not None
    assert "premium" in premium
    assert "no access tiers" in premium
    v1 = tier_problem("Cool", "acct", "Standard_LRS", "Storage")
    assert v1 is not None
    assert "general-purpose v1" in v1


def test_restore_states_of_tiers() -> None:
    assert restore_state("Hot", None) == "not-needed"
    assert restore_state(None, None) == "not-needed"
    assert restore_state("Archive", None) == "needed"
    assert restore_state("Archive", "rehydrate-pending-to-hot") == "in-progress"


def test_storage_classes_per_location() -> None:
    assert storage_classes(parse_location("azure-blob://c0c/p")) == ("Hot", "Cool", "Cold",
                                                                      "Archive")
    assert "DEEP_ARCHIVE" in storage_classes(parse_location("s3://b/p"))
    assert storage_classes(parse_location("/tmp/x")) == ()


def test_endpoint_option_applies_to_the_one_remote_location() -> None:
    assert endpoints_for(None, "s3://b/x", "azure://c0c/y") == (None, None)
    assert endpoints_for("http://e", "/backups", "azure://c0c/y") == (None, "http://e")
    assert endpoints_for("http://e", "azure://c0c/x", "/bundles") == ("http://e", None)
    # Both ends in one kind of store: both get it, as before.
    assert endpoints_for("http://e", "s3://b/x", "s3://b/y") == ("http://e", "http://e")
    assert endpoints_for("http://e", "azure://c0c/x", "azure-blob://c0c/y") == ("http://e",
                                                                                "http://e")
    with pytest.raises(BadInput, match="different clouds"):
        endpoints_for("http://e", "s3://b/x", "azure://c0c/y")


def test_overlap_of_azure_locations() -> None:
    account = f"AZURE_ACCOUNT_NAME=acct&AZURE_ACCOUNT_KEY={ENCODED}"
    inside = "dest-inside-source"
    # The three schemes name one service.
    assert overlap(f"azure://c0c/p?{account}", f"azure-blob://c0c/p/q?{account}") == inside
    assert overlap(f"azure://c0c/p?{account}", f"azure://c0c/pq?{account}") is None
    assert overlap(f"azure://c0c/p?{account}", f"azure://c1c/p/q?{account}") is None
    other = "AZURE_ACCOUNT_NAME=other&AUTH=implicit"
    assert overlap(f"azure://c0c/p?{account}", f"azure://c0c/p/q?{other}") is None
    assert overlap(f"azure://c0c/p?{account}", f"azure://c0c/p/q?{account}",
                   source_endpoint_url="http://127.0.0.1:1/acct",
                   dest_endpoint_url="HTTP://127.0.0.1:1/acct/") == inside
    assert overlap(f"azure://c0c/p?{account}", "s3://c0c/p/q") is None
