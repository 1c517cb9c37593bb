"""Azure with Microsoft Entra ID instead of an account key: an app registration
(AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_TENANT_ID in the URI) and AUTH=implicit
(azure-identity's default chain, here from the environment), against a loopback token issuer
and an HTTPS Azurite that takes bearer tokens."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from support.azure import ACCOUNT
from support.azure_identity import CLIENT_ID, CLIENT_SECRET, TENANT, EntraAzurite
from support.bundles import era_with_binaries, run_cli
from support.mirror import MirrorServer


@pytest.fixture(autouse=True)
def trusted(entra_azurite: EntraAzurite, monkeypatch: pytest.MonkeyPatch,
            tmp_path: Path) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(entra_azurite.ca_file))
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", entra_azurite.issuer.url)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))
    for name in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID",
                 "AZURE_MAX_ATTEMPTS", "CRDB_ARCHIVE_MIRROR"):
        monkeypatch.delenv(name, raising=False)


def app_uri(env: EntraAzurite, container: str, prefix: str, secret: str = CLIENT_SECRET) -> str:
    return (f"azure-blob://{container}/{prefix}?AZURE_ACCOUNT_NAME={ACCOUNT}"
            f"&AZURE_CLIENT_ID={CLIENT_ID}&AZURE_CLIENT_SECRET={quote(secret, safe='')}"
            f"&AZURE_TENANT_ID={TENANT}&ENDPOINT={env.endpoint}")


def test_an_app_registration_archives_and_verifies(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    entra_azurite: EntraAzurite,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    container = entra_azurite.container()
    asked = len(entra_azurite.issuer.requests)
    result = run_cli(capsys, "archive", str(era.path), "--dest",
                     app_uri(entra_azurite, container, "p"), "--mirror", mirror.url,
                     "--format", "tar", "--json")
    assert result.code == 0, result.err
    name = str(result.json()["name"])
    verified = run_cli(capsys, "verify", app_uri(entra_azurite, container, f"p/{name}.tar"),
                       "--all-digests")
    assert verified.code == 0, verified.out + verified.err
    tokens = entra_azurite.issuer.requests[asked:]
    assert tokens
    assert {(t.client_id, t.grant_type, t.scope, t.secret_ok) for t in tokens} == {
        (CLIENT_ID, "client_credentials", "https://storage.azure.com/.default", True)}
    assert CLIENT_SECRET not in result.out + result.err + verified.out + verified.err


def test_a_wrong_client_secret_is_named_by_its_code_and_never_shown(
    capsys: pytest.CaptureFixture[str], entra_azurite: EntraAzurite,
) -> None:
    container = entra_azurite.container()
    wrong = "wrong-secret-Xy7~also.hidden"
    result = run_cli(capsys, "inspect", app_uri(entra_azurite, container, "p", wrong))
    assert result.code == 3
    [line] = result.err.strip().splitlines()
    assert "Microsoft Entra ID refused the credentials (AADSTS7000215)" in line
    assert wrong not in result.out + result.err
    assert quote(wrong, safe="") not in result.out + result.err
    assert "Traceback" not in result.err


def test_auth_implicit_uses_the_default_chain(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    entra_azurite: EntraAzurite, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The chain's first link reads the app registration from the environment.
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    container = entra_azurite.container()
    uri = (f"azure://{container}/implicit?AZURE_ACCOUNT_NAME={ACCOUNT}&AUTH=implicit"
           f"&ENDPOINT={entra_azurite.endpoint}")
    result = run_cli(capsys, "archive", str(era.path), "--dest", uri, "--mirror", mirror.url,
                     "--json")
    assert result.code == 0, result.err
    bundle = uri.replace("/implicit?", f"/implicit/{result.json()['name']}?")
    assert run_cli(capsys, "verify", bundle).code == 0


def test_auth_implicit_without_any_credential_is_named(
    capsys: pytest.CaptureFixture[str], entra_azurite: EntraAzurite,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no Azure CLI login, no token cache
    container = entra_azurite.container()
    result = run_cli(capsys, "inspect", f"azure://{container}/x?AZURE_ACCOUNT_NAME={ACCOUNT}"
                     f"&AUTH=implicit&ENDPOINT={entra_azurite.endpoint}")
    assert result.code == 3
    [line] = result.err.strip().splitlines()
    assert "AUTH=implicit found no credential in azure-identity's default chain" in line
