"""Scheduled jobs that archive, retain and audit: [audit] in the spec, signed bundles from
destination.sign_key, the run's own verification recorded as fixity, and the audit's events and
metrics beside the run's."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from crdb_archive.bundle.signature import AllowedSigners
from crdb_archive.bundle.verify import verify_bundle
from crdb_archive.errors import ExitCode, InvalidJobSpec
from crdb_archive.jobs import JobReport, load_spec, run_job
from crdb_archive.storage import open_storage
from support.bundles import era_with_binaries, make_bundle, run_cli, xor_byte
from support.clouds import Recorder
from support.mirror import MirrorServer
from support.s3 import MotoS3
from support.ssh import Key, allowed_file, make_key

NOW = dt.datetime(2025, 1, 10, tzinfo=dt.UTC)
V24_3_BUNDLES = [f"crdb-5f0e3c1a-202412{day}T000000Z-v24.3.1" for day in ("01", "08", "15")]
FIXITY = ".crdb-archive/fixity"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                 mirror: MirrorServer) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_MIRROR", mirror.url)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CRDB_ARCHIVE_SIGN_KEY", raising=False)


@pytest.fixture
def key(tmp_path: Path) -> Key:
    (tmp_path / "keys").mkdir()
    return make_key(tmp_path / "keys", "archiver")


def write_spec(tmp_path: Path, source: Path, *, dest: str = "bundles", destination: str = "",
               audit: str | None = "max_bundles = 1") -> Path:
    spec = tmp_path / "job.toml"
    spec.write_text(
        f'[job]\nname = "orders"\n[source]\nuri = "{source}"\nbackups = "all"\n'
        f'[destination]\nuri = "{dest}"\n{destination}\n'
        + (f"[audit]\n{audit}\n" if audit is not None else ""))
    return spec


def run(spec: Path, metrics: Path | None = None) -> tuple[JobReport, Recorder]:
    recorder = Recorder()
    report = run_job(load_spec(spec), now=NOW, on_event=recorder, metrics_file=metrics)
    assert recorder.events[-1].event == "done"
    return report, recorder


def records_of(dest: Path, name: str) -> list[dict[str, Any]]:
    folder = dest / FIXITY / name
    return [json.loads(p.read_text()) for p in sorted(folder.iterdir())] if folder.exists() \
        else []


def test_a_run_archives_retains_and_audits_a_budgeted_share(
    tmp_path: Path, mirror: MirrorServer, key: Key,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    dest = tmp_path / "bundles"
    # Bundles of another source already there, never verified: the audit's first work.
    older = [make_bundle(tmp_path / e, era=e, dest=dest).name for e in ("v22.2", "v23.1")]
    spec = write_spec(tmp_path, era.path, destination='sign_key = "keys/archiver"')
    metrics = tmp_path / "job.prom"

    report, events = run(spec, metrics)
    assert report.exit_code == ExitCode.OK, report.failures
    assert report.written == V24_3_BUNDLES
    for name in V24_3_BUNDLES:
        # The run's own full verification is the bundle's first fixity record.
        (record,) = records_of(dest, name)
        assert (record["origin"], record["result"], record["mode"]) == ("run", "ok", "blake3")
        assert record["signature"]["valid"] is True
        assert key.fingerprint in (dest / name / "bag-info.txt").read_text()
    (audited,) = events.of("audit")
    assert (audited["bundle"], audited["ok"]) == (older[0], True)
    summary = events.of("audited")[0]
    assert (summary["checked"], summary["remaining"], summary["never_verified"]) == (1, 4, 1)
    order = [e.event for e in events.events]
    assert order.index("retention") < order.index("audit") < order.index("audited")
    assert events.of("done")[0]["bundles_audited"] == 1

    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    assert families["crdb_archive_job_bundles_written"].samples[0].value == 3
    audit_sample = families["crdb_archive_audit_bundles_audited"].samples[0]
    assert (audit_sample.labels, audit_sample.value) == ({"job": "orders"}, 1)
    assert families["crdb_archive_audit_oldest_verification_age_seconds"].samples[0].value \
        == float("inf")

    # The next runs archive nothing and go on with the walk: the other never-verified
    # bundle, then the least recently verified one.
    _, second = run(spec, metrics)
    assert [a["bundle"] for a in second.of("audit")] == [older[1]]
    _, third = run(spec, metrics)
    assert [a["bundle"] for a in third.of("audit")] == [V24_3_BUNDLES[0]]
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    assert families["crdb_archive_audit_bundles_never_verified"].samples[0].value == 0

    allowed = AllowedSigners.load(allowed_file(tmp_path, f"archive {key.public_key}"))
    for name in V24_3_BUNDLES:
        checked = verify_bundle(dest / name, allowed=allowed)
        assert checked.ok, checked.problems


def test_damage_found_by_the_audit_fails_the_run(tmp_path: Path, mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    dest = tmp_path / "bundles"
    other = make_bundle(tmp_path / "other", era="v22.2", dest=dest)
    xor_byte(next(p for p in sorted((other / "data" / "backup").rglob("*.sst"))))
    spec = write_spec(tmp_path, era.path, audit="")
    report, events = run(spec)
    assert report.exit_code == ExitCode.NO
    damaged = [a for a in events.of("audit") if not a["ok"]]
    assert [a["bundle"] for a in damaged] == [other.name]
    errors = [e for e in events.of("error") if e["step"] == "audit"]
    assert [e["bundle"] for e in errors] == [other.name]
    assert records_of(dest, other.name)[-1]["result"] == "damaged"
    # The job's own bundles were written and verified all the same.
    assert report.written == V24_3_BUNDLES


def test_without_audit_a_run_audits_nothing(tmp_path: Path, mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    for audit in (None, "enabled = false\nmax_bundles = 3"):
        spec = write_spec(tmp_path, era.path, audit=audit)
        report, events = run(spec)
        assert report.exit_code == ExitCode.OK
        assert events.of("audit") == []
        assert events.of("audited") == []
        assert "bundles_audited" not in events.of("done")[0]


@pytest.mark.parametrize(("audit", "destination", "problem"), [
    ("max_bundles = 0", "", "audit.max_bundles: must be > 0"),
    ('max_bytes = "lots"', "", "audit.max_bytes: 'lots' is not a size"),
    ("max_bytes = 0", "", "audit.max_bytes: must be > 0"),
    ("max_bundle = 3", "", "audit.max_bundle: unknown key (did you mean max_bundles?)"),
    ('allowed_signers = "absent"', "", "audit.allowed_signers: cannot read"),
    ('allowed_signers = "empty"', "", "audit.allowed_signers: "),
    ("", 'sign_key = "keys/locked"', "destination.sign_key: the signing key"),
    ("", 'sign_key = "keys/absent"', "destination.sign_key: cannot read the signing key"),
])
def test_spec_mistakes(tmp_path: Path, audit: str, destination: str, problem: str) -> None:
    (tmp_path / "keys").mkdir()
    make_key(tmp_path / "keys", "locked", passphrase="correct horse battery")
    (tmp_path / "empty").write_text("# nobody yet\n")
    (tmp_path / "src").mkdir()
    spec = write_spec(tmp_path, tmp_path / "src", destination=destination, audit=audit)
    with pytest.raises(InvalidJobSpec) as error:
        load_spec(spec)
    assert any(p.startswith(problem) for p in error.value.problems), error.value.problems
    assert "correct horse" not in str(error.value.problems)


def test_spec_reads_sizes_and_the_key_from_the_environment(
    tmp_path: Path, key: Key, monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "src").mkdir()
    allowed_file(tmp_path, f"archive {key.public_key}")
    monkeypatch.setenv("CRDB_ARCHIVE_SIGN_KEY", str(key.private))
    spec = load_spec(write_spec(tmp_path, tmp_path / "src", audit=(
        'max_bytes = "50GiB"\nmax_bundles = 10\nallowed_signers = "allowed_signers"')))
    assert spec.audit is not None
    assert (spec.audit.budget.max_bytes, spec.audit.budget.max_bundles) == (50 << 30, 10)
    assert spec.sign_key is not None
    assert spec.sign_key.fingerprint == key.fingerprint
    shown = spec.to_json()
    assert shown["sign_key"] == key.fingerprint
    assert shown["audit"]["max_bytes"] == 50 << 30
    assert "PRIVATE" not in repr(spec)


def test_signed_tars_in_object_storage_are_listed_from_their_job_records(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    s3_env: MotoS3, key: Key,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    uri = f"s3://{s3_env.bucket()}/archive"
    spec = write_spec(tmp_path, era.path, dest=uri,
                      destination='format = "tar"\nsign_key = "keys/archiver"', audit=None)
    report, _ = run(spec)
    assert report.exit_code == ExitCode.OK, report.failures
    listed = run_cli(capsys, "list", uri, "--json")
    assert listed.code == 0, listed.err
    bundles = json.loads(listed.out)["bundles"]
    assert [b["key"] for b in bundles] == [f"{n}.tar" for n in V24_3_BUNDLES]
    for entry in bundles:
        assert (entry["kind"], entry["version"], entry["signature"]) == (
            "backup", "v24.3.1", key.fingerprint)
        assert entry["last_result"] == "ok"  # the run's own verification
    with open_storage(uri) as storage:
        origins = {json.loads(storage.read_bytes(i.key))["origin"]
                   for i in storage.list(FIXITY + "/")}
    assert origins == {"run"}
