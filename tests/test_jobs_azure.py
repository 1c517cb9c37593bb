"""Archive jobs with Azure destinations, on Azurite: run twice (the second writes nothing),
retention, the job lock, and a job that reads from S3 (moto) and writes to Azure."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from crdb_archive.errors import ExitCode
from crdb_archive.jobs.lock import lock_file_name
from support.azure import ACCOUNT_KEY, Azurite
from support.backups import upload
from support.bundles import era_with_binaries, run_cli
from support.clouds import events_of, run
from support.mirror import MirrorServer
from support.s3 import MotoS3

V24_3_BUNDLES = [f"crdb-5f0e3c1a-202412{day}T000000Z-v24.3.1" for day in ("01", "08", "15")]


pytestmark = pytest.mark.usefixtures("mirrored")


def write_spec(tmp_path: Path, source: Path | str, dest: str, *, source_extra: str = "",
               destination: str = "", retention: str = "") -> Path:
    spec = tmp_path / "job.toml"
    spec.write_text(
        f'[job]\nname = "orders"\n[source]\nuri = "{source}"\nbackups = "all"\n{source_extra}\n'
        f'[destination]\nuri = "{dest}"\n{destination}\n'
        + (f"[retention]\n{retention}\n" if retention else ""))
    return spec


@pytest.mark.parametrize("fmt", ["tar", "dir"])
def test_a_job_into_azure_run_twice_writes_nothing_the_second_time(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    azure_env: Azurite, fmt: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    container = azure_env.container()
    dest = azure_env.uri(container, "jobs")
    spec = write_spec(tmp_path, era.path, dest, destination=f'format = "{fmt}"',
                      retention="keep_last = 2")
    metrics = tmp_path / "job.prom"
    first = run_cli(capsys, "run", str(spec), "--json", "--metrics-file", str(metrics))
    assert first.code == 0, first.out + first.err
    events = events_of(first.out)
    assert events[-1]["bundles_written"] == 2
    assert [e["mode"] for e in events if e["event"] == "verify"] == ["store-checksums"] * 2
    keys = azure_env.keys(container)
    for name in V24_3_BUNDLES[1:]:
        if fmt == "tar":
            assert f"jobs/{name}.tar" in keys
            assert f"jobs/.crdb-archive-index/{name}.tar.json" in keys
        else:
            assert f"jobs/{name}/tagmanifest-sha256.txt" in keys
    assert not [k for k in keys if V24_3_BUNDLES[0] in k]
    assert f"jobs/{lock_file_name('orders')}" not in keys  # released

    mirror.clear_log()
    second = run_cli(capsys, "run", str(spec), "--json", "--metrics-file", str(metrics))
    assert second.code == 0, second.out + second.err
    again = events_of(second.out)
    assert (again[-1]["bundles_written"], again[-1]["bundles_deleted"]) == (0, 0)
    assert azure_env.keys(container) == keys
    assert mirror.requests() == []
    text = first.out + first.err + second.out + second.err + metrics.read_text()
    for secret in (ACCOUNT_KEY, quote(ACCOUNT_KEY, safe="")):
        assert secret not in text

    # Retention: one bundle fewer to keep, the oldest goes.
    spec = write_spec(tmp_path, era.path, dest, destination=f'format = "{fmt}"',
                      retention="keep_last = 1")
    report, recorder = run(spec)
    assert report.exit_code == ExitCode.OK, report.failures
    assert report.deleted == [V24_3_BUNDLES[1]]
    remaining = azure_env.keys(container)
    assert not [k for k in remaining if V24_3_BUNDLES[1] in k]
    assert [k for k in remaining if V24_3_BUNDLES[2] in k]
    assert [k["bundle"] for k in recorder.of("keep")] == [V24_3_BUNDLES[2]]


def test_a_job_from_s3_into_azure(
    tmp_path: Path, mirror: MirrorServer, azure_env: Azurite, s3_env: MotoS3,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    source = upload(s3_env, era.path, "cluster/orders")
    # Each end names its own endpoint: S3's in the spec, Azure's in its URI.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    container = azure_env.container()
    spec = write_spec(tmp_path, f"{source}?AWS_REGION=us-east-1", azure_env.uri(container, "b"),
                      source_extra=f'endpoint_url = "{s3_env.endpoint_url}"',
                      retention="keep_last = 3")
    report, recorder = run(spec)
    assert report.exit_code == ExitCode.OK, report.failures
    assert report.written == V24_3_BUNDLES
    assert [v["mode"] for v in recorder.of("verify")] == ["store-checksums"] * 3
    report, recorder = run(spec)
    assert report.exit_code == ExitCode.OK, report.failures
    assert (report.written, report.deleted) == ([], [])
    assert sorted(k for k in azure_env.keys(container) if k.endswith(".tar")) == [
        f"b/{name}.tar" for name in V24_3_BUNDLES]
