"""Who the gs:// backend talks to Cloud Storage as: CockroachDB's credential parameters, end to end.

A service account key made by the test names a loopback token endpoint; google-auth signs a JWT
with it, the endpoint verifies the signature and answers an access token, and a proxy in front
of fake-gcs-server sees that token on every request. No secret (the key, its base64 form, a
bearer token, an access token) may show in any output or stored object.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crdb_archive.storage import open_storage
from support.bundles import era_with_binaries, run_cli
from support.faultproxy import FaultProxy
from support.gcs import FakeGcs, upload_id
from support.google_token import ServiceAccount, TokenServer
from support.mirror import MirrorServer

pytestmark = pytest.mark.usefixtures("isolated")


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CRDB_ARCHIVE_MIRROR", raising=False)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))


def secrets_of(account: ServiceAccount) -> list[str]:
    """What must never be shown or stored: the key in every form, and pieces of it."""
    pem_lines = [line for line in account.pem.splitlines() if not line.startswith("-----")]
    return [account.credentials_param(), account.pem, pem_lines[5], pem_lines[-2],
            json.dumps(account.info())]


def archive_and_read(capsys: pytest.CaptureFixture[str], source: str, dest: str,
                     mirror_url: str, query: str) -> str:
    """Archive into ``dest`` (a gs:// prefix, ``query`` its parameters), then verify and
    inspect the bundle with the same parameters; every output, joined."""
    result = run_cli(capsys, "archive", source, "--dest", f"{dest}?{query}", "--mirror",
                     mirror_url, "--json")
    assert result.code == 0, result.err
    outputs = result.out + result.err
    bundle = f"{dest}/{result.json()['name']}?{query}"
    for command in (["verify", bundle, "--json"], ["inspect", bundle, "--json"], ["verify",
                                                                                  bundle]):
        done = run_cli(capsys, *command)
        assert done.code == 0, done.err
        outputs += done.out + done.err
    return outputs


def assert_nothing_secret(outputs: str, env: FakeGcs, bucket: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in outputs
        for name, data in env.object_bytes(bucket):
            assert secret.encode() not in data, name


def test_service_account_key_end_to_end(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs, gcs_proxy: FaultProxy, token_server: TokenServer,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    account = token_server.account()
    bucket = gcs_env.bucket()
    outputs = archive_and_read(capsys, str(era.path), f"gs://{bucket}/sa", mirror.url,
                               f"AUTH=specified&CREDENTIALS={account.credentials_param()}")
    assert token_server.grants
    assert all(grant.verified for grant in token_server.grants), token_server.grants
    assert {grant.claims["iss"] for grant in token_server.grants} == {account.email}
    requests = gcs_proxy.requests()
    assert requests
    issued = {f"Bearer {token}" for token in token_server.tokens}
    assert {r.authorization for r in requests} <= issued
    assert_nothing_secret(outputs, gcs_env, bucket,
                          [*secrets_of(account), *token_server.tokens])


def test_a_key_the_token_endpoint_refuses(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs, gcs_proxy: FaultProxy, token_server: TokenServer,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    stranger = ServiceAccount.make(token_server.token_uri, "stranger")  # not trusted there
    bucket = gcs_env.bucket()
    result = run_cli(capsys, "archive", str(era.path), "--dest",
                     f"gs://{bucket}/x?AUTH=specified&CREDENTIALS={stranger.credentials_param()}",
                     "--mirror", mirror.url)
    assert result.code == 3
    assert "no access token could be obtained for the credentials (invalid_grant)" in result.err
    assert result.err.count("\n") == 1
    assert [grant.reason for grant in token_server.grants][:1] == ["unknown key"]
    assert gcs_proxy.requests() == []  # nothing reached the store without a token
    assert gcs_env.keys(bucket) == []
    for secret in secrets_of(stranger):
        assert secret not in result.out + result.err


def test_bearer_token(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs, gcs_proxy: FaultProxy,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    token = "ya29.a0AfB_byC-handed-out-by-gcloud-auth-print-access-token"
    bucket = gcs_env.bucket()
    outputs = archive_and_read(capsys, str(era.path), f"gs://{bucket}/t", mirror.url,
                               f"AUTH=specified&BEARER_TOKEN={token}")
    assert {r.authorization for r in gcs_proxy.requests()} == {f"Bearer {token}"}
    assert_nothing_secret(outputs, gcs_env, bucket, [token])


def test_application_default_credentials(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs, gcs_proxy: FaultProxy, token_server: TokenServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    account = token_server.account("implicit")
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(account.info()))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    bucket = gcs_env.bucket()
    outputs = archive_and_read(capsys, str(era.path), f"gs://{bucket}/adc", mirror.url,
                               "AUTH=implicit")
    assert token_server.grants
    assert all(grant.verified for grant in token_server.grants)
    issued = {f"Bearer {token}" for token in token_server.tokens}
    assert {r.authorization for r in gcs_proxy.requests()} <= issued
    assert_nothing_secret(outputs, gcs_env, bucket, secrets_of(account))


def test_no_credentials_at_an_emulator_are_anonymous(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs, gcs_proxy: FaultProxy,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    bucket = gcs_env.bucket()
    result = run_cli(capsys, "archive", str(era.path), "--dest", f"gs://{bucket}/a",
                     "--mirror", mirror.url)
    assert result.code == 0, result.err
    assert {r.authorization for r in gcs_proxy.requests()} == {None}


def test_missing_application_default_credentials(
    capsys: pytest.CaptureFixture[str], gcs_env: FakeGcs, tmp_path: Path,
) -> None:
    result = run_cli(capsys, "verify", f"gs://{gcs_env.bucket()}/b?AUTH=implicit")
    assert result.code == 3
    assert "no application default credentials found" in result.err
    assert result.err.count("\n") == 1


@pytest.mark.parametrize(("credentials", "expected"), [
    ("not base64 at all!", "CREDENTIALS is not base64"),
    ("bm90IGpzb24=", "CREDENTIALS does not decode to JSON"),  # "not json"
    ("eyJ0eXBlIjogImF1dGhvcml6ZWRfdXNlciJ9", "CREDENTIALS is not a service account key"),
    ("eyJ0eXBlIjogInNlcnZpY2VfYWNjb3VudCJ9",  # {"type": "service_account"}
     "lacks client_email, private_key, token_uri"),
])
def test_credentials_that_cannot_be_used_are_bad_input(
    capsys: pytest.CaptureFixture[str], gcs_env: FakeGcs, credentials: str, expected: str,
) -> None:
    result = run_cli(capsys, "verify",
                     f"gs://{gcs_env.bucket()}/b?AUTH=specified&CREDENTIALS={credentials}")
    assert result.code == 2
    assert expected in result.err
    assert result.err.count("\n") == 1
    assert credentials not in result.err
    assert "CREDENTIALS=redacted" in result.err


def test_billing_project_goes_with_every_request_of_the_bucket(
    gcs_env: FakeGcs, gcs_proxy: FaultProxy,
) -> None:
    bucket = gcs_env.bucket()
    with open_storage(f"gs://{bucket}/p?GOOGLE_BILLING_PROJECT=payer-1") as storage:
        storage.put_bytes("small", b"x")
        storage.put_bytes("large", b"y" * (9 << 20))
        assert storage.read_bytes("small") == b"x"
        assert [info.key for info in storage.list()] == ["large", "small"]
        storage.delete("small")
    # Requester-pays buckets bill the project named; an upload session, once started, is the
    # store's own URL.
    requests = [r for r in gcs_proxy.requests() if not upload_id(r)]
    assert requests
    assert all("userProject=payer-1" in r.query for r in requests), [
        (r.method, r.path, r.query) for r in requests]
