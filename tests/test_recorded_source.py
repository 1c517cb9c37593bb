"""Where a bundle says its backup came from: an absolute location, with the host for a local
path, no secret; and a job still knows its bundles whatever host or version recorded them."""

from __future__ import annotations

import datetime as dt
import json
import socket
from pathlib import Path

import pytest

from crdb_archive.jobs import load_spec, run_job
from crdb_archive.sources import recorded_source, source_key
from support.bundles import era_with_binaries, retag
from support.cli import run_cli
from support.mirror import MirrorServer

HOST = socket.gethostname()


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                 mirror: MirrorServer) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_MIRROR", mirror.url)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))


def bag_info(bundle: Path) -> dict[str, str]:
    lines = (bundle / "bag-info.txt").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines)


def test_a_relative_source_is_recorded_absolute_with_its_host(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    monkeypatch.chdir(era.path.parent)
    done = run_cli(capsys, "archive", era.path.name, "--dest", "bundles", "--json")
    assert done.code == 0, done.err
    bundle = Path(str(done.json()["bundle"])).resolve()
    expected = f"file://{HOST}{era.path.resolve()}"
    assert json.loads((bundle / "crdb-archive.json").read_text())["backup"]["source"] == expected
    assert bag_info(bundle)["Backup-Source"] == expected
    inspected = run_cli(capsys, "inspect", str(bundle), "--json")
    assert expected in inspected.out


@pytest.mark.parametrize(("recorded", "key"), [
    ("file://db-node-1/var/backups/orders", "/var/backups/orders"),
    ("file://pod-7f9c/var/backups/orders/", "/var/backups/orders"),
    ("/var/backups/orders", "/var/backups/orders"),  # as earlier versions recorded it
    ("file://host/with%20space", "/with space"),
    ("s3://bucket/prefix?AWS_SECRET_ACCESS_KEY=redacted", "s3://bucket/prefix"
     "?AWS_SECRET_ACCESS_KEY=redacted"),
])
def test_source_keys(recorded: str, key: str) -> None:
    assert source_key(recorded) == key


def test_secrets_never_reach_the_record() -> None:
    recorded = recorded_source("s3://bucket/p?AWS_ACCESS_KEY_ID=AKIA&AWS_SECRET_ACCESS_KEY=s3cr3t")
    assert "s3cr3t" not in recorded
    assert "AKIA" not in recorded


def test_retention_applies_to_bundles_another_host_or_version_recorded(
    tmp_path: Path, mirror: MirrorServer
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    spec = tmp_path / "job.toml"
    spec.write_text(f'[job]\nname = "orders"\n[source]\nuri = "{era.path}"\nbackups = "all"\n'
                    '[destination]\nuri = "bundles"\n')
    dest = tmp_path / "bundles"
    first = run_job(load_spec(spec))
    assert len(first.written) == 3
    # Two of the three as another host and as an earlier version would have recorded them.
    oldest, middle, newest = sorted(p for p in dest.iterdir() if not p.name.startswith("."))
    for bundle, source in ((oldest, f"file://another-host{era.path}"), (middle, str(era.path))):
        description = json.loads((bundle / "crdb-archive.json").read_text())
        description["backup"]["source"] = source
        (bundle / "crdb-archive.json").write_text(json.dumps(description, indent=2) + "\n")
        retag(bundle)
    with spec.open("a") as stream:
        stream.write("[retention]\nkeep_last = 1\n")
    second = run_job(load_spec(spec), now=dt.datetime(2025, 1, 10, tzinfo=dt.UTC))
    assert int(second.exit_code) == 0, second.failures
    assert sorted(second.deleted) == sorted([oldest.name, middle.name])
    assert not oldest.exists()
    assert not middle.exists()
    assert newest.exists()
