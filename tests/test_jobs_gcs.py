"""Archive jobs with Cloud Storage destinations, and across clouds, against fake-gcs-server and
moto on 127.0.0.1: a re-run writes nothing, retention deletes what its rules say, and no secret
of either URI reaches the events, the metrics or the stored objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from crdb_archive.bundle.verify import verify_bundle
from support.backups import upload
from support.bundles import era_with_binaries, run_cli
from support.clouds import events_of
from support.gcs import FakeGcs
from support.mirror import MirrorServer
from support.s3 import MotoS3

V24_3_BUNDLES = [f"crdb-5f0e3c1a-202412{day}T000000Z-v24.3.1" for day in ("01", "08", "15")]


pytestmark = pytest.mark.usefixtures("mirrored")




@pytest.mark.parametrize("fmt", ["tar", "dir"])
def test_job_into_gs_run_twice_writes_nothing_the_second_time(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs, fmt: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    bucket = gcs_env.bucket()
    spec = tmp_path / "job.toml"
    spec.write_text(
        f'[job]\nname = "orders"\n[source]\nuri = "{era.path}"\nbackups = "all"\n'
        f'[destination]\nuri = "gs://{bucket}/jobs"\nformat = "{fmt}"\n'
        'storage_class = "NEARLINE"\n[retention]\nkeep_last = 2\n')
    metrics = tmp_path / "job.prom"

    first = run_cli(capsys, "run", str(spec), "--json", "--metrics-file", str(metrics))
    assert first.code == 0, first.out + first.err
    events = events_of(first.out)
    plan = next(e for e in events if e["event"] == "plan")
    assert plan["skipped"] == V24_3_BUNDLES[:1]
    written = [e for e in events if e["event"] == "archive" and e["created"]]
    assert [e["bundle"] for e in written] == V24_3_BUNDLES[1:]
    assert [e["mode"] for e in events if e["event"] == "verify"] == ["store-checksums"] * 2
    for name in V24_3_BUNDLES[1:]:
        bundle = f"gs://{bucket}/jobs/{name}" + (".tar" if fmt == "tar" else "")
        assert verify_bundle(bundle).ok
        if fmt == "tar":
            # The job's record of a tar stays in the default class; the tar takes the spec's.
            assert gcs_env.blob(bucket, f"jobs/{name}.tar").storage_class == "NEARLINE"
            record = gcs_env.blob(bucket, f"jobs/.crdb-archive-index/{name}.tar.json")
            assert record.storage_class == "STANDARD"
    stored = gcs_env.generations(bucket)
    # The job lock is released, not left in the bucket.
    assert not [k for k in stored if "lock" in k.split("/")[-1]]

    mirror.clear_log()
    second = run_cli(capsys, "run", str(spec), "--json")
    assert second.code == 0, second.out + second.err
    again = events_of(second.out)
    assert (again[-1]["bundles_written"], again[-1]["bundles_deleted"]) == (0, 0)
    assert [e["bundle"] for e in again if e["event"] == "keep"] == V24_3_BUNDLES[:0:-1]
    assert mirror.requests() == []
    assert gcs_env.generations(bucket) == stored  # not one object written again


def test_job_across_clouds_with_an_endpoint_each(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    gcs_env: FakeGcs, s3_env: MotoS3, monkeypatch: pytest.MonkeyPatch,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    source = upload(s3_env, era.path, "cluster/orders")
    bucket = gcs_env.bucket()
    # Each end's endpoint from the spec, none from the environment: one run, two stores.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    aws_secret = "aws-secret-7d1f0c2b9e"
    token = "ya29.token-4c0ffee1"
    spec = tmp_path / "job.toml"
    spec.write_text(
        '[job]\nname = "orders"\n'
        f'[source]\nuri = "{source}?AWS_ACCESS_KEY_ID=testing&AWS_SECRET_ACCESS_KEY='
        f'{aws_secret}&AWS_REGION=us-east-1"\n'
        f'endpoint_url = "{s3_env.endpoint_url}"\nbackups = "all"\n'
        f'[destination]\nuri = "gs://{bucket}/bundles?AUTH=specified&BEARER_TOKEN={token}"\n'
        f'endpoint_url = "{gcs_env.endpoint_url}"\n[retention]\nkeep_last = 2\n')
    metrics = tmp_path / "job.prom"
    first = run_cli(capsys, "run", str(spec), "--json", "--metrics-file", str(metrics))
    assert first.code == 0, first.out + first.err
    events = events_of(first.out)
    assert [e["bundle"] for e in events if e["event"] == "archive"] == V24_3_BUNDLES[1:]
    stored = gcs_env.generations(bucket)

    mirror.clear_log()
    second = run_cli(capsys, "run", str(spec), "--json", "--metrics-file", str(metrics))
    assert second.code == 0, second.out + second.err
    assert events_of(second.out)[-1]["bundles_written"] == 0
    assert gcs_env.generations(bucket) == stored
    assert mirror.requests() == []

    shown = first.out + first.err + second.out + second.err + metrics.read_text()
    dry = run_cli(capsys, "run", str(spec), "--dry-run", "--json")
    shown += dry.out + dry.err
    for secret in (aws_secret, token):
        assert secret not in shown
        for name, data in gcs_env.object_bytes(bucket):
            assert secret.encode() not in data, name
    assert "AWS_SECRET_ACCESS_KEY=redacted" in shown
