"""archive, verify, inspect, binary and restore-request with Azure Blob Storage, on Azurite.

The real azure-storage-blob client talks HTTP to the emulator; nothing in the SDK is patched.
Sources and destinations may be in different clouds (S3 on moto, Azure on Azurite).
"""

from __future__ import annotations

import os
import signal
import tarfile
from pathlib import Path
from urllib.parse import quote

import pytest

from support.azure import ACCOUNT, ACCOUNT_KEY, Azurite
from support.backups import add_random_sst, upload
from support.bundles import era_with_binaries, run_cli
from support.cli import CliResult, signal_while_archiving
from support.clouds import (
    archive_to,
    assert_read_like_local,
    assert_restorable,
    assert_stopped_cleanly,
)
from support.mirror import MirrorServer
from support.s3 import MotoS3

pytestmark = pytest.mark.usefixtures("isolated")

SECRETS = (ACCOUNT_KEY, quote(ACCOUNT_KEY, safe=""))


@pytest.fixture(autouse=True)
def default_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_MAX_ATTEMPTS", raising=False)


def bundle_uri(env: Azurite, container: str, prefix: str, result: dict[str, object],
               fmt: str) -> str:
    """The bundle's URI with the credentials, as a user would give it to verify."""
    name = f"{result['name']}.tar" if fmt == "tar" else str(result["name"])
    return env.uri(container, f"{prefix}/{name}")


@pytest.mark.parametrize("fmt", ["dir", "tar"])
def test_local_to_azure_verify_binary_inspect_and_rerun(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    azure_env: Azurite, fmt: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    container = azure_env.container()
    result = archive_to(capsys, str(era.path), azure_env.uri(container, "archive"), mirror.url,
                        "--format", fmt, "--with-incrementals")
    shown = str(result["bundle"])
    assert shown.startswith(f"azure-blob://{container}/archive/crdb-")
    assert "?" not in shown  # no parameter, not even a redacted one
    assert shown.endswith(".tar") == (fmt == "tar")
    keys = azure_env.keys(container)
    if fmt == "tar":
        assert keys == [f"archive/{result['name']}.tar"]
    else:
        assert f"archive/{result['name']}/tagmanifest-sha256.txt" in keys
    assert azure_env.uncommitted(container) == {}

    bundle = bundle_uri(azure_env, container, "archive", result, fmt)
    assert_restorable(capsys, bundle, tmp_path, result["files"])

    mirror.clear_log()
    again = archive_to(capsys, str(era.path), azure_env.uri(container, "archive"), mirror.url,
                       "--format", fmt, "--with-incrementals")
    assert again["created"] is False
    assert azure_env.keys(container) == keys
    assert mirror.requests() == []


def test_a_tar_in_the_archive_tier_needs_rehydration(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    azure_env: Azurite,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    container = azure_env.container()
    result = archive_to(capsys, str(era.path), azure_env.uri(container, "cold"), mirror.url,
                        "--format", "tar", "--storage-class", "Archive")
    with azure_env.service() as service:
        properties = service.get_container_client(container).get_blob_client(
            f"cold/{result['name']}.tar").get_blob_properties()
    assert properties.blob_tier == "Archive"
    bundle = bundle_uri(azure_env, container, "cold", result, "tar")
    refused = run_cli(capsys, "verify", bundle)
    assert refused.code == 3
    assert "Archive" in refused.err
    assert "restore-request" in refused.err
    assert refused.err.count("\n") == 1
    assert all(secret not in refused.err for secret in SECRETS)
    binary = run_cli(capsys, "binary", bundle, "--to", str(tmp_path / "out"))
    assert binary.code == 3
    assert "restore-request" in binary.err
    # Azurite rehydrates at once (Azure takes hours and says the rehydration is pending).
    requested = run_cli(capsys, "restore-request", bundle, "--days", "2", "--tier",
                        "Expedited", "--json")
    assert requested.code == 0, requested.out + requested.err
    report = requested.json()
    assert (report["available"], report["pending"], report["complete"]) == (1, [], True)
    assert run_cli(capsys, "verify", bundle, "--all-digests").code == 0
    again = run_cli(capsys, "restore-request", bundle, "--days", "2", "--json")
    assert again.json()["not_needed"] == 1


def test_a_directory_in_the_archive_tier_keeps_its_tag_files_readable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    azure_env: Azurite,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    container = azure_env.container()
    result = archive_to(capsys, str(era.path), azure_env.uri(container, "cold"), mirror.url,
                        "--storage-class", "Archive")
    bundle = bundle_uri(azure_env, container, "cold", result, "dir")
    assert run_cli(capsys, "verify", bundle, "--fast").code == 0
    assert run_cli(capsys, "inspect", bundle, "--json").code == 0
    full = run_cli(capsys, "verify", bundle)
    assert full.code == 3
    assert "Archive" in full.err
    assert "restore-request" in full.err
    requested = run_cli(capsys, "restore-request", bundle, "--days", "1", "--json")
    assert requested.code == 0, requested.out
    assert requested.json()["available"] == result["files"]
    assert run_cli(capsys, "verify", bundle).code == 0


@pytest.mark.parametrize("fmt", ["dir", "tar"])
def test_a_backup_in_azure_archived_to_a_local_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    azure_env: Azurite, fmt: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    source = azure_env.upload_tree(era.path, "backups/orders")
    result = archive_to(capsys, source, str(tmp_path / "out"), mirror.url, "--format", fmt,
                        "--with-incrementals")
    local = archive_to(capsys, str(era.path), str(tmp_path / "from-local"), mirror.url,
                       "--format", fmt, "--with-incrementals")
    assert_read_like_local(capsys, result, local, "azure-blob")
    inspected = run_cli(capsys, "inspect", source, "--json")
    assert inspected.code == 0, inspected.err
    assert inspected.json()["cluster_version"] is not None


@pytest.mark.parametrize("direction", ["s3-to-azure", "azure-to-s3"])
def test_source_and_destination_in_different_clouds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    azure_env: Azurite, s3_env: MotoS3, direction: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    if direction == "s3-to-azure":
        source = upload(s3_env, era.path, "backups/orders")
        container = azure_env.container()
        dest = azure_env.uri(container, "bundles")
    else:
        source = azure_env.upload_tree(era.path, "backups/orders")
        bucket = s3_env.bucket()
        dest = f"s3://{bucket}/bundles"
    result = archive_to(capsys, source, dest, mirror.url, "--format", "tar")
    if direction == "s3-to-azure":
        bundle = bundle_uri(azure_env, container, "bundles", result, "tar")
        assert azure_env.keys(container) == [f"bundles/{result['name']}.tar"]
    else:
        bundle = str(result["bundle"])
        assert s3_env.all_keys(bucket) == [f"bundles/{result['name']}.tar"]
    report = run_cli(capsys, "verify", bundle, "--all-digests", "--json")
    assert report.code == 0, report.out
    assert run_cli(capsys, "binary", bundle, "--to", str(tmp_path / "bin")).code == 0
    again = archive_to(capsys, source, dest, mirror.url, "--format", "tar")
    assert again["created"] is False
    # One --endpoint-url cannot name the endpoints of two clouds.
    refused = run_cli(capsys, "archive", source, "--dest", dest, "--mirror", mirror.url,
                      "--endpoint-url", "http://127.0.0.1:9")
    assert refused.code == 2
    assert "different clouds" in refused.err


def test_the_endpoint_option_serves_an_azure_uri_without_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    azure_env: Azurite,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    container = azure_env.container()
    uri = azure_env.uri(container, "p").split("&ENDPOINT=")[0]
    result = archive_to(capsys, str(era.path), uri, mirror.url, "--endpoint-url",
                        azure_env.endpoint_url)
    bundle = uri.replace("/p?", f"/p/{result['name']}?")
    verified = run_cli(capsys, "verify", bundle, "--endpoint-url", azure_env.endpoint_url)
    assert verified.code == 0, verified.out


@pytest.mark.parametrize("fmt", ["dir", "tar"])
def test_damage_in_place_is_detected(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    azure_env: Azurite, fmt: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    container = azure_env.container()
    result = archive_to(capsys, str(era.path), azure_env.uri(container, "c"), mirror.url,
                        "--format", fmt)
    if fmt == "tar":
        name = f"c/{result['name']}.tar"
        copy = tmp_path / "copy.tar"
        with azure_env.service() as service:
            copy.write_bytes(service.get_container_client(container).get_blob_client(name)
                             .download_blob().readall())
        with tarfile.open(copy) as archive:
            first = next(m for m in archive.getmembers() if m.name.endswith(".sst"))
        azure_env.xor_byte(container, name, first.offset_data)
        damaged = first.name.split("/", 1)[1]
    else:
        name = next(k for k in azure_env.keys(container) if k.endswith(".sst"))
        azure_env.xor_byte(container, name, 0)
        damaged = name.split("/", 2)[2]
    report = run_cli(capsys, "verify", bundle_uri(azure_env, container, "c", result, fmt),
                     "--json")
    assert report.code == 1, report.out
    problems = report.json()["problems"]
    assert isinstance(problems, list)
    assert damaged in {str(p["path"]) for p in problems}


def test_no_secret_in_any_output_or_stored_blob(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    azure_env: Azurite,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    source = azure_env.upload_tree(era.path, "backups")
    container = azure_env.container()
    outputs: list[CliResult] = []
    for fmt in ("dir", "tar"):
        dest = azure_env.uri(container, fmt)
        outputs.append(run_cli(capsys, "archive", source, "--dest", dest, "--mirror",
                               mirror.url, "--format", fmt, "--json"))
        name = str(outputs[-1].json()["name"])
        bundle = azure_env.uri(container, f"{fmt}/{name}{'.tar' if fmt == 'tar' else ''}")
        outputs += [run_cli(capsys, "verify", bundle, "--json"),
                    run_cli(capsys, "inspect", bundle, "--json"),
                    run_cli(capsys, "inspect", bundle),
                    run_cli(capsys, "binary", bundle, "--to", str(tmp_path / fmt)),
                    run_cli(capsys, "restore-request", bundle, "--days", "1")]
    outputs.append(run_cli(capsys, "inspect", source))
    # Failures too: a missing blob, a missing container, a wrong key.
    outputs.append(run_cli(capsys, "verify", azure_env.uri(container, "dir/missing")))
    outputs.append(run_cli(capsys, "inspect", azure_env.uri("no-such-container", "x")))
    outputs.append(run_cli(capsys, "inspect", source.replace(
        quote(ACCOUNT_KEY, safe=""), quote("A" + ACCOUNT_KEY[1:], safe=""))))
    assert [r.code for r in outputs[:13]] == [0] * 13, [r.err for r in outputs]
    assert [r.code for r in outputs[13:]] == [2, 3, 3], [r.err for r in outputs[13:]]
    text = "".join(r.out + r.err for r in outputs)
    assert "Traceback" not in text
    for secret in (*SECRETS, "A" + ACCOUNT_KEY[1:]):
        assert secret not in text
    for name, data in azure_env.object_bytes(container):
        for secret in SECRETS:
            assert secret.encode() not in data, name
    assert ACCOUNT.encode() not in b"".join(data for _, data in
                                            azure_env.object_bytes(container))


def test_what_azure_cannot_do_is_refused_before_any_byte(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    azure_env: Azurite,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    container = azure_env.container()
    mirror.clear_log()
    for extra, says in [
        (["--object-lock-mode", "GOVERNANCE", "--object-lock-days", "10"],
         f"container {container} has no version-level immutability"),
        (["--storage-class", "DEEP_ARCHIVE"], "unknown Azure access tier 'DEEP_ARCHIVE'"),
    ]:
        result = run_cli(capsys, "archive", str(era.path), "--dest",
                         azure_env.uri(container, "x"), "--mirror", mirror.url, *extra)
        assert result.code == 2, result.err
        [line] = result.err.strip().splitlines()
        assert says in line
    assert azure_env.keys(container) == []
    assert azure_env.uncommitted(container) == {}
    assert mirror.requests() == []


@pytest.mark.parametrize("fmt", ["tar", "dir"])
def test_an_interrupted_upload_leaves_no_complete_looking_bundle(
    tmp_path: Path, mirror: MirrorServer, azure_env: Azurite, fmt: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    add_random_sst(era.path, 40)
    container = azure_env.container()
    stopped = signal_while_archiving(
        ["archive", str(era.path), "--dest", azure_env.uri(container, "t"), "--mirror",
         mirror.url, "--format", fmt], signal.SIGTERM, env=dict(os.environ))
    assert_stopped_cleanly(stopped, azure_env.keys(container), fmt)
