"""``--json`` of the commands that need a service or a schedule, against the published schemas:
``run`` (each JSON Lines event), ``load`` (a real PostgreSQL) and ``restore-request`` (moto's
S3 server, objects in GLACIER)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from crdb_archive.storage import WriteOptions, open_storage
from support.backups import ERAS, add_random_sst
from support.bundles import era_with_binaries, make_bundle, run_cli
from support.catalog import make_destination
from support.cli import signal_while_archiving
from support.json_contracts import check, check_error, check_lines, check_output
from support.mirror import MirrorServer
from support.postgres import PostgresDatabase
from support.s3 import MotoS3

EXAMPLES = Path(__file__).resolve().parents[1] / "archive-specs" / "examples"


@pytest.fixture
def job_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mirror: MirrorServer) -> None:
    """The example nightly job pointed at this test's directories and mirror."""
    for key, value in {
        "CRDB_ARCHIVE_MIRROR": mirror.url,
        "CRDB_ARCHIVE_CACHE": str(tmp_path / "cache"),
        "CRDB_BACKUPS": str(tmp_path / "backups" / "v24.3"),
        "CRDB_BUNDLES": str(tmp_path / "archive"),
    }.items():
        monkeypatch.setenv(key, value)


def test_run_events(capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
                    job_env: None) -> None:
    era_with_binaries(tmp_path, mirror, "v24.3", platforms=("linux-amd64", "linux-arm64"))
    spec = str(EXAMPLES / "nightly-local.toml")
    dry = run_cli(capsys, "run", spec, "--dry-run", "--json")
    assert dry.code == 0, dry.err
    planned = check_lines(dry.out)
    assert planned[0]["event"] == "plan"
    assert planned[-1]["event"] == "done"
    first = run_cli(capsys, "run", spec, "--json")
    assert first.code == 0, first.err
    events = check_lines(first.out)
    assert [e["event"] for e in events] == [
        "plan", "archive", "verify", "retention", "keep", "audit", "audited", "done"]
    second = run_cli(capsys, "run", spec, "--json")
    assert second.code == 0, second.err
    again = check_lines(second.out)
    archived = next(e for e in again if e["event"] == "archive")
    assert archived["created"] is False


def write_spec(tmp_path: Path, source: Path, *, backups: str, retention: str = "") -> Path:
    spec = tmp_path / "job.toml"
    spec.write_text(
        f'[job]\nname = "orders"\n[source]\nuri = "{source}"\nbackups = "{backups}"\n'
        '[destination]\nuri = "bundles"\n' + (f"[retention]\n{retention}\n" if retention else ""))
    return spec


def test_run_events_of_retention_skips_and_warnings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer, job_env: None,
) -> None:
    seen: set[str] = set()
    collection = era_with_binaries(tmp_path / "a", mirror, "v24.3")
    # The same destination twice (archive all, then keep one), then a new one where the
    # latest backup is older than the rules keep.
    for where, backups, retention in (("kept", "all", ""), ("kept", "all", "keep_last = 1"),
                                      ("skipped", "latest", "keep_days = 7")):
        (tmp_path / where).mkdir(exist_ok=True)
        spec = write_spec(tmp_path / where, collection.path, backups=backups,
                          retention=retention)
        done = run_cli(capsys, "run", str(spec), "--json")
        assert done.code == 0, done.err
        seen |= {e["event"] for e in check_lines(done.out)}
    # v23.1 is past its end of support, and its binaries leave the site within 180 days of
    # this writing; a warning of either kind is an event of the schema's.
    old = era_with_binaries(tmp_path / "b", mirror, "v23.1")
    done = run_cli(capsys, "run", str(write_spec(tmp_path, old.path, backups="latest")),
                   "--json")
    assert done.code == 0, done.err
    events = check_lines(done.out)
    assert any(e["event"] == "warning" and e["code"] == "end_of_support" for e in events)
    seen |= {e["event"] for e in events}
    assert {"plan", "archive", "verify", "retention", "keep", "delete", "skip", "warning",
            "done"} <= seen


def test_an_interrupted_run_ends_with_the_error_object(
    tmp_path: Path, mirror: MirrorServer, job_env: None,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3", platforms=("linux-amd64", "linux-arm64"))
    # Enough data that the copy is still running when its first progress line arrives.
    add_random_sst(era.path / "2024/12/15-000000.00", 64)
    stopped = signal_while_archiving(["run", str(EXAMPLES / "nightly-local.toml"), "--json"],
                                     signal.SIGTERM, env=dict(os.environ))
    assert stopped.returncode == 130, stopped.err
    *events, last = stopped.out.splitlines()
    for line in events:
        check_lines(line)
    interrupted = json.loads(last)
    check("error", interrupted)
    assert interrupted == {"error": "interrupted by SIGTERM", "exit_code": 130}


def test_run_failures(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "job.toml"
    spec.write_text('[job]\nname = "j"\n[source]\nuri = "/nowhere"\n[destination]\n'
                    'uri = "/elsewhere"\n[retention]\nkeep_dayz = 3\n')
    invalid = run_cli(capsys, "run", str(spec), "--json")
    assert invalid.code == 2
    errors = check_lines(invalid.out)
    assert any("keep_dayz" in e["message"] for e in errors)
    assert {(e["event"], e["step"], e["exit_code"]) for e in errors} == {("error", "spec", 2)}
    usage = run_cli(capsys, "run", str(spec), "--json", "--no-such-option")
    assert usage.code == 2
    assert len(usage.out.splitlines()) == 1  # JSON Lines, as the run's events
    check_error(usage, 2)


def test_run_with_a_failing_step(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                 mirror: MirrorServer, job_env: None) -> None:
    # No release archives on the mirror: the archive step fails, the run goes on and ends.
    ERAS["v24.3"](tmp_path / "backups")
    failed = run_cli(capsys, "run", str(EXAMPLES / "nightly-local.toml"), "--json")
    assert failed.code == 3, failed.err
    events = check_lines(failed.out)
    kinds = [e["event"] for e in events]
    assert "error" in kinds
    assert kinds[-1] == "done"
    assert events[-1]["exit_code"] == 3


def test_load(capsys: pytest.CaptureFixture[str], tmp_path: Path,
              postgres_db: PostgresDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_destination(tmp_path / "made", with_export=True)
    export = next(b for b in made.bundles if b.kind == "export")
    bundle = str(made.root / export.key)
    monkeypatch.setenv("PGPASSWORD", postgres_db.server.password)
    loaded = check_output(run_cli(capsys, "load", bundle, "--into", postgres_db.dsn, "--json"),
                          "load")
    assert loaded["bundle"] == bundle
    assert set(loaded["tables"]) == {"public.customers", "public.orders"}
    assert postgres_db.server.password not in str(loaded)
    check_error(run_cli(capsys, "load", bundle, "--into", postgres_db.dsn, "--json"), 2)
    check_error(run_cli(capsys, "load", bundle, "--into", postgres_db.url, "--json"), 2)
    backup = next(b for b in made.bundles if b.kind == "backup")
    check_error(run_cli(capsys, "load", str(made.root / backup.key), "--into",
                        postgres_db.dsn, "--json"), 2)
    assert os.environ["PGPASSWORD"] == postgres_db.server.password


def test_restore_request(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                         s3_env: MotoS3) -> None:
    local = make_bundle(tmp_path / "made", era="v23.1")
    uri = f"s3://{s3_env.bucket()}/cold/{local.name}"
    with open_storage(uri) as storage:
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            key = path.relative_to(local).as_posix()
            cold = WriteOptions(storage_class="GLACIER") if key.startswith("data/") else None
            storage.put_bytes(key, path.read_bytes(), options=cold)
    with s3_env.restores_take(2):
        pending = check_output(run_cli(capsys, "restore-request", uri, "--days", "2",
                                       "--tier", "Bulk", "--json"), "restore-request", code=1)
        assert pending["requested"] > 0
        assert pending["complete"] is False
        assert pending["pending"]
        waiting = check_output(run_cli(capsys, "restore-request", uri, "--days", "2",
                                       "--tier", "Bulk", "--json"), "restore-request", code=1)
        assert waiting["in_progress"] == pending["requested"]
    done = check_output(run_cli(capsys, "restore-request", uri, "--days", "2", "--tier", "Bulk",
                                "--json"), "restore-request")
    assert (done["complete"], done["pending"]) == (True, [])
    check_error(run_cli(capsys, "restore-request", uri, "--days", "2", "--tier", "Fast",
                        "--json"), 2)
    check_error(run_cli(capsys, "restore-request", uri, "--json"), 2)  # usage: no --days
    verified = check_output(run_cli(capsys, "verify", uri, "--json"), "verify")
    assert verified["ok"] is True
