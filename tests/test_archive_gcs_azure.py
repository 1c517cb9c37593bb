"""From Cloud Storage to Azure and back, against fake-gcs-server and Azurite on 127.0.0.1.

The backup is read from one cloud and the bundle written to the other, as a tar in the cold
class of the destination (Cloud Storage ARCHIVE, Azure's Archive tier), then verified and its
binary retrieved where it lies; a job between the two clouds run twice writes nothing the
second time, and no secret of either end is shown or stored.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from support.azure import ACCOUNT_KEY, Azurite
from support.bundles import era_with_binaries, run_cli
from support.clouds import archive_to, events_of
from support.gcs import FakeGcs
from support.mirror import MirrorServer

V24_3_BUNDLES = [f"crdb-5f0e3c1a-202412{day}T000000Z-v24.3.1" for day in ("01", "08", "15")]


pytestmark = pytest.mark.usefixtures("isolated")


def readable_here(capsys: pytest.CaptureFixture[str], bundle: str, tmp_path: Path) -> None:
    """The bundle verifies in full where it lies and its binary runs from there."""
    verified = run_cli(capsys, "verify", bundle, "--all-digests", "--json")
    assert verified.code == 0, verified.out + verified.err
    assert verified.json()["ok"] is True
    out = tmp_path / f"restore-{len(list(tmp_path.iterdir()))}"
    retrieved = run_cli(capsys, "binary", bundle, "--to", str(out), "--json")
    assert retrieved.code == 0, retrieved.err
    cockroach = Path(str(retrieved.json()["cockroach"]))
    assert "v24.3.1" in subprocess.run([str(cockroach), "version"], capture_output=True,
                                       text=True, check=True).stdout


def test_gs_to_azure_tar_in_the_archive_tier(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs, azure_env: Azurite,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    source = gcs_env.upload_tree(era.path, gcs_env.bucket(), "backups/orders")
    container = azure_env.container()
    dest = azure_env.uri(container, "archive")
    written = archive_to(capsys, source, dest, mirror.url, "--format", "tar",
                         "--storage-class", "Archive")
    name = str(written["name"])
    # What was printed names no credential; the user's URI of the bundle carries them.
    assert str(written["bundle"]).startswith(f"azure-blob://{container}/archive/{name}")
    bundle = azure_env.uri(container, f"archive/{name}.tar")
    assert azure_env.keys(container) == [f"archive/{name}.tar"]
    with azure_env.service() as service:
        blob = service.get_container_client(container).get_blob_client(f"archive/{name}.tar")
        assert blob.get_blob_properties().blob_tier == "Archive"

    # Archived in Azure: unreadable until rehydrated (Azurite rehydrates at once).
    refused = run_cli(capsys, "verify", bundle)
    assert refused.code == 3
    assert "restore-request" in refused.err
    requested = run_cli(capsys, "restore-request", bundle, "--days", "1", "--json")
    assert requested.code == 0, requested.out + requested.err
    readable_here(capsys, bundle, tmp_path)

    again = archive_to(capsys, source, dest, mirror.url, "--format", "tar",
                       "--storage-class", "Archive")
    assert again["created"] is False


def test_azure_to_gs_tar_in_the_archive_class(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs, azure_env: Azurite,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    source = azure_env.upload_tree(era.path, "backups/orders")
    bucket = gcs_env.bucket()
    dest = f"gs://{bucket}/archive"
    written = archive_to(capsys, source, dest, mirror.url, "--format", "tar",
                         "--storage-class", "ARCHIVE")
    bundle = str(written["bundle"])
    key = f"archive/{written['name']}.tar"
    assert gcs_env.keys(bucket) == [key]
    assert gcs_env.blob(bucket, key).storage_class == "ARCHIVE"
    # Cloud Storage reads its ARCHIVE class as it is.
    readable_here(capsys, bundle, tmp_path)


@pytest.mark.parametrize("direction", ["gs-to-azure", "azure-to-gs"])
def test_job_between_gs_and_azure_run_twice(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs, azure_env: Azurite, monkeypatch: pytest.MonkeyPatch, direction: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    monkeypatch.setenv("CRDB_ARCHIVE_MIRROR", mirror.url)
    token = "ya29.token-9e1d2c3b"
    bucket = gcs_env.bucket()
    container = azure_env.container()
    if direction == "gs-to-azure":
        gcs_env.upload_tree(era.path, bucket, "cluster/orders")
        source = f"gs://{bucket}/cluster/orders?AUTH=specified&BEARER_TOKEN={token}"
        dest = azure_env.uri(container, "bundles")
    else:
        source = azure_env.upload_tree(era.path, "cluster/orders")
        dest = f"gs://{bucket}/bundles?AUTH=specified&BEARER_TOKEN={token}"
    # Each end's endpoint from the spec or its URI, none from the environment.
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    spec = tmp_path / "job.toml"
    spec.write_text(
        '[job]\nname = "orders"\n'
        f'[source]\nuri = "{source}"\nbackups = "all"\n'
        + (f'endpoint_url = "{gcs_env.endpoint_url}"\n' if direction == "gs-to-azure" else "")
        + f'[destination]\nuri = "{dest}"\n'
        + (f'endpoint_url = "{gcs_env.endpoint_url}"\n' if direction == "azure-to-gs" else "")
        + '[retention]\nkeep_last = 2\n')

    first = run_cli(capsys, "run", str(spec), "--json")
    assert first.code == 0, first.out + first.err
    events = events_of(first.out)
    assert [e["bundle"] for e in events if e["event"] == "archive"] == V24_3_BUNDLES[1:]
    stored = (sorted(azure_env.keys(container)) if direction == "gs-to-azure"
              else sorted(gcs_env.keys(bucket)))
    assert stored, "the run wrote nothing"

    mirror.clear_log()
    second = run_cli(capsys, "run", str(spec), "--json")
    assert second.code == 0, second.out + second.err
    assert events_of(second.out)[-1]["bundles_written"] == 0
    assert mirror.requests() == []
    after = (sorted(azure_env.keys(container)) if direction == "gs-to-azure"
             else sorted(gcs_env.keys(bucket)))
    assert after == stored

    shown = first.out + first.err + second.out + second.err
    for secret in (token, ACCOUNT_KEY, quote(ACCOUNT_KEY, safe="")):
        assert secret not in shown
        for _, data in (azure_env.object_bytes(container) if direction == "gs-to-azure"
                        else gcs_env.object_bytes(bucket)):
            assert secret.encode() not in data
