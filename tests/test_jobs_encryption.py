"""Archive jobs over encrypted backups: the key in the spec (a passphrase file, the
environment, KMS URIs), versions read from the manifests, and nothing secret in the events or
the bundles."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from crdb_archive.backup.keys import PASSPHRASE_ENV
from crdb_archive.errors import ExitCode, InvalidJobSpec
from crdb_archive.jobs import JobEvent, load_spec, run_job
from support.backups import Manifest, full_subdir, write, write_backup, write_latest
from support.bundles import tree
from support.encryption import PASSPHRASE, Encrypting
from support.kms import create_key, with_kms
from support.mirror import MirrorServer
from support.release_archives import publish
from support.s3 import MotoS3

NOW = dt.datetime(2025, 1, 10, tzinfo=dt.UTC)
RELEASE = "v24.3.1"
FULLS = [dt.datetime(2024, 12, day, tzinfo=dt.UTC) for day in (1, 8)]
NAMES = [f"crdb-5f0e3c1a-202412{day}T000000Z-{RELEASE}" for day in ("01", "08")]
KMS_SECRET = "jobKmsS3cret-7f3e"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mirror: MirrorServer) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_MIRROR", mirror.url)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    publish(mirror.root, RELEASE, ["linux-amd64"])


def collection(root: Path, sealing: Encrypting | bool = True) -> Path:
    manifest = Manifest(end_time=FULLS[0], build_tag=RELEASE, cluster_version=(24, 3, 0, 0))
    for when in FULLS:
        subdir = full_subdir(when)
        write_backup(root / subdir, dataclasses.replace(manifest, end_time=when), encrypt=sealing)
        write_latest(root, subdir, at=when, root_file=False, history=True)
    return root


def spec_file(tmp_path: Path, source: Path, extra: str) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(f'[job]\nname = "secret-orders"\n[source]\nuri = "{source}"\n'
                    f'backups = "all"\n{extra}\n[destination]\nuri = "bundles"\n')
    return path


def run(spec: Path) -> tuple[int, list[JobEvent]]:
    events: list[JobEvent] = []
    report = run_job(load_spec(spec), now=NOW, on_event=events.append)
    return int(report.exit_code), events


def test_a_job_reads_versions_with_a_passphrase_file(tmp_path: Path) -> None:
    source = collection(tmp_path / "backups")
    write(tmp_path / "passphrase", PASSPHRASE + b"\n")
    spec = spec_file(tmp_path, source, 'encryption_passphrase_file = "passphrase"')
    code, events = run(spec)
    assert code == ExitCode.OK, [e.fields for e in events if e.event == "error"]
    archived = [e.fields for e in events if e.event == "archive"]
    assert [a["bundle"] for a in archived] == NAMES
    assert {a["version"] for a in archived} == {RELEASE}
    # A second run recognises both bundles: the plan derives the same names with the key.
    code, events = run(spec)
    assert code == ExitCode.OK
    (plan,) = [e.fields for e in events if e.event == "plan"]
    assert (plan["to_archive"], plan["archived"]) == ([], NAMES)
    lines = "".join(e.to_line() for e in events)
    assert PASSPHRASE.decode() not in lines
    for name in NAMES:
        bundle = tmp_path / "bundles" / name
        description = json.loads((bundle / "crdb-archive.json").read_text())
        assert description["backup"]["encryption"]["mode"] == "passphrase"
        assert all(PASSPHRASE not in content for content in tree(bundle).values())
    assert load_spec(spec).to_json()["encryption"] == {
        "passphrase": f"the passphrase in {tmp_path / 'passphrase'}", "kms": []}


def test_a_job_takes_the_passphrase_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE.decode())
    code, events = run(spec_file(tmp_path, collection(tmp_path / "backups"), ""))
    assert code == ExitCode.OK
    assert [e.fields["bundle"] for e in events if e.event == "archive"] == NAMES


def test_a_job_with_a_wrong_passphrase(tmp_path: Path) -> None:
    write(tmp_path / "passphrase", b"not it\n")
    spec = spec_file(tmp_path, collection(tmp_path / "backups"),
                     'encryption_passphrase_file = "passphrase"')
    code, events = run(spec)
    assert code == ExitCode.BAD_INPUT
    errors = [e.fields for e in events if e.event == "error"]
    assert {e["step"] for e in errors} == {"inspect"}
    assert all("wrong passphrase" in str(e["message"]) for e in errors)


def test_a_job_with_kms(tmp_path: Path, s3_env: MotoS3, monkeypatch: pytest.MonkeyPatch) -> None:
    key = create_key(s3_env)
    source = collection(tmp_path / "backups", with_kms(s3_env, key))
    monkeypatch.setenv("ORDERS_KMS_SECRET", KMS_SECRET)
    uri = key.uri(secret="${ORDERS_KMS_SECRET}")
    spec = spec_file(tmp_path, source, f'kms = ["{uri}"]')
    code, events = run(spec)
    assert code == ExitCode.OK, [e.fields for e in events if e.event == "error"]
    assert [e.fields["bundle"] for e in events if e.event == "archive"] == NAMES
    assert KMS_SECRET not in "".join(e.to_line() for e in events)
    assert KMS_SECRET not in json.dumps(load_spec(spec).to_json())
    for name in NAMES:
        assert all(KMS_SECRET.encode() not in content
                   for content in tree(tmp_path / "bundles" / name).values())


@pytest.mark.parametrize(("extra", "problem"), [
    ('encryption_passphrase_file = "missing"',
     "source.encryption_passphrase_file: cannot read encryption passphrase file"),
    ("kms = 7", "source.kms: expected a KMS URI or a list of KMS URIs"),
    ("kms = [7]", "source.kms[0]: expected a KMS URI, got an integer"),
    ('kms = "gs:///projects/p/locations/l/keyRings/r/cryptoKeys/k"',
     "source.kms: gs:///projects/p/locations/l/keyRings/r/cryptoKeys/k: Google Cloud KMS"),
    ('kms = ["aws:///k?AUTH=implicit&REGION=eu-west-1", "aws:///k?COLOUR=red"]',
     "source.kms[1]: aws:///k?COLOUR=redacted: unknown KMS parameter COLOUR"),
    ('kms = "aws:///k?AUTH=implicit&AWS_SECRET_ACCESS_KEY=${UNSET_VARIABLE_X}"',
     "source.kms: environment variable UNSET_VARIABLE_X is not set"),
    ('kms = "aws:///k?AUTH=implicit&REGION=eu-west-1"\nencryption_passphrase_file = "pp"',
     "source.kms: both a passphrase (encryption_passphrase_file) and KMS keys are given"),
])
def test_spec_mistakes(tmp_path: Path, extra: str, problem: str) -> None:
    write(tmp_path / "pp", b"x\n")
    with pytest.raises(InvalidJobSpec) as error:
        load_spec(spec_file(tmp_path, tmp_path, extra))
    assert any(p.startswith(problem) for p in error.value.problems), error.value.problems

