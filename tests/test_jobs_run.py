"""Job runs against real backups, a loopback mirror and a local destination directory."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from crdb_archive.archive import ArchiveRequest, archive_backup
from crdb_archive.errors import ExitCode
from crdb_archive.jobs import (
    Destination,
    Failure,
    JobEvent,
    JobReport,
    JobSpec,
    StoredBundle,
    load_spec,
    run_job,
)
from crdb_archive.jobs.lock import lock_file_name
from crdb_archive.jobs.plan import advisories
from crdb_archive.storage import open_storage
from support.backups import ERAS
from support.bundles import era_with_binaries, tree, xor_byte
from support.mirror import MirrorServer

# The clock retention and the warnings count from: after the v24.3 fixtures' backups.
NOW = dt.datetime(2025, 1, 10, tzinfo=dt.UTC)
V24_3_BUNDLES = [f"crdb-5f0e3c1a-202412{day}T000000Z-v24.3.1" for day in ("01", "08", "15")]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                 mirror: MirrorServer) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_MIRROR", mirror.url)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))


def write_spec(tmp_path: Path, source: Path, *, backups: str = "all", retention: str = "",
               extra: str = "", name: str = "job.toml") -> Path:
    spec = tmp_path / name
    spec.write_text(
        f'[job]\nname = "orders"\n[source]\nuri = "{source}"\nbackups = "{backups}"\n'
        f'[destination]\nuri = "bundles"\n{extra}\n'
        + (f"[retention]\n{retention}\n" if retention else "")
    )
    return spec


class Recorder:
    """Collects a run's events."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []

    def __call__(self, event: JobEvent) -> None:
        json.dumps(event.to_json())  # every event must be serialisable
        self.events.append(event)

    def of(self, kind: str) -> list[dict[str, object]]:
        return [e.fields for e in self.events if e.event == kind]

    def one(self, kind: str) -> dict[str, object]:
        found = self.of(kind)
        assert len(found) == 1, found
        return found[0]


def run(spec: JobSpec | Path, *, dry_run: bool = False, now: dt.datetime = NOW,
        destination: Destination | None = None) -> tuple[JobReport, Recorder]:
    recorder = Recorder()
    job = spec if isinstance(spec, JobSpec) else load_spec(spec)
    report = run_job(job, dry_run=dry_run, now=now, on_event=recorder, destination=destination)
    assert recorder.events[-1].event == "done"
    assert recorder.events[-1].fields["exit_code"] == int(report.exit_code)
    return report, recorder


def bundles_in(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir() if not p.name.startswith("."))


def hidden_in(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir() if p.name.startswith("."))


def test_second_run_is_a_no_op(tmp_path: Path, mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    spec = write_spec(tmp_path, era.path)
    dest = tmp_path / "bundles"

    first, events = run(spec)
    assert first.exit_code == ExitCode.OK
    assert first.written == V24_3_BUNDLES
    assert bundles_in(dest) == V24_3_BUNDLES
    assert [(v["bundle"], v["ok"], v["mode"]) for v in events.of("verify")] == [
        (name, True, "blake3") for name in V24_3_BUNDLES]
    assert events.one("retention")["applied"] is False  # no [retention]: keep everything
    # The lock, and the fixity records of the run's own verification of what it wrote.
    assert hidden_in(dest) == [".crdb-archive", lock_file_name("orders")]
    assert sorted(p.name for p in (dest / ".crdb-archive" / "fixity").iterdir()) == \
        V24_3_BUNDLES
    assert (dest / lock_file_name("orders")).read_bytes() == b""  # released cleanly

    before = tree(dest)
    # Only the lock file is touched by a run that has nothing to do.
    mtimes = {p: p.stat().st_mtime_ns for p in dest.rglob("*") if not p.name.startswith(".")}
    mirror.clear_log()
    second, events = run(spec)
    assert second.exit_code == ExitCode.OK
    assert second.written == []
    plan = events.one("plan")
    assert plan["to_archive"] == []
    assert plan["archived"] == V24_3_BUNDLES
    assert [v["created"] for v in events.of("archive")] == [False, False, False]
    assert {v["mode"] for v in events.of("verify")} == {"fast"}
    assert tree(dest) == before
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")
            if not p.name.startswith(".")} == mtimes
    assert mirror.requests() == []


def test_latest_and_a_named_subdir(tmp_path: Path, mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    report, _ = run(write_spec(tmp_path, era.path, backups="latest"))
    assert report.written == [V24_3_BUNDLES[2]]
    report, _ = run(write_spec(tmp_path, era.path, backups="2024/12/08-000000.00"))
    assert report.written == [V24_3_BUNDLES[1]]
    report, events = run(write_spec(tmp_path, era.path, backups="2024/12/09-000000.00"))
    assert report.exit_code == ExitCode.BAD_INPUT
    assert "not a full backup" in str(events.one("error")["message"])


def test_dry_run_changes_nothing(tmp_path: Path, mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    dest = tmp_path / "bundles"
    report, events = run(write_spec(tmp_path, era.path), dry_run=True)
    assert report.exit_code == ExitCode.OK
    assert events.one("plan")["to_archive"] == V24_3_BUNDLES
    assert events.of("archive") == []
    assert not dest.exists()

    run(write_spec(tmp_path, era.path))
    before = tree(dest)
    spec = write_spec(tmp_path, era.path, retention="keep_last = 1")
    report, events = run(spec, dry_run=True)
    assert report.deleted == []
    assert events.one("plan")["to_delete"] == [V24_3_BUNDLES[1], V24_3_BUNDLES[0]]
    assert [(d["bundle"], d["dry_run"]) for d in events.of("delete")] == [
        (V24_3_BUNDLES[1], True), (V24_3_BUNDLES[0], True)]
    assert events.one("retention")["applied"] is False
    assert tree(dest) == before


def test_retention_deletes_and_does_not_rearchive(
    tmp_path: Path, mirror: MirrorServer
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    dest = tmp_path / "bundles"
    run(write_spec(tmp_path, era.path))
    spec = write_spec(tmp_path, era.path, retention="keep_last = 1")

    report, events = run(spec)
    assert report.exit_code == ExitCode.OK
    assert sorted(report.deleted) == V24_3_BUNDLES[:2]
    assert bundles_in(dest) == [V24_3_BUNDLES[2]]
    assert events.of("keep") == [{
        "bundle": V24_3_BUNDLES[2], "location": str(dest / V24_3_BUNDLES[2]),
        "time": "2024-12-15T00:00:00Z", "reasons": ["keep_last"]}]
    assert hidden_in(dest) == [".crdb-archive", lock_file_name("orders")]
    # The fixity records of the deleted bundles went with them.
    assert [p.name for p in (dest / ".crdb-archive" / "fixity").iterdir()] == \
        [V24_3_BUNDLES[2]]

    # The two older backups are still in the collection: archiving them again only to
    # delete them would repeat on every run, so they are skipped.
    mirror.clear_log()
    report, events = run(spec)
    assert report.exit_code == ExitCode.OK
    assert report.written == []
    assert report.deleted == []
    assert events.one("plan")["skipped"] == V24_3_BUNDLES[:2]
    assert [s["backup"] for s in events.of("skip")] == ["2024/12/01-000000.00",
                                                        "2024/12/08-000000.00"]
    assert mirror.requests() == []


class ObjectLockedDirectory(Destination):
    """A local destination whose named bundles report Object Lock retention, as S3 would."""

    def __init__(self, root: Path, locked: dict[str, dt.datetime]) -> None:
        super().__init__(open_storage(str(root)), str(root))
        self.locked = locked

    def bundles(self) -> list[StoredBundle]:
        found = super().bundles()
        return [dataclasses.replace(b, retain_until=self.locked.get(b.name)) for b in found]


def test_locked_bundles_are_never_deleted(
    tmp_path: Path, mirror: MirrorServer
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    dest = tmp_path / "bundles"
    run(write_spec(tmp_path, era.path))
    spec = load_spec(write_spec(tmp_path, era.path, retention="keep_last = 1"))
    until = dt.datetime(2035, 1, 1, tzinfo=dt.UTC)
    destination = ObjectLockedDirectory(dest, {
        V24_3_BUNDLES[0]: until,
        V24_3_BUNDLES[1]: NOW - dt.timedelta(seconds=1),  # expired: no protection left
    })
    report, events = run(spec, destination=destination)
    assert report.exit_code == ExitCode.OK
    assert report.deleted == [V24_3_BUNDLES[1]]
    assert bundles_in(dest) == [V24_3_BUNDLES[0], V24_3_BUNDLES[2]]
    kept = {k["bundle"]: k["reasons"] for k in events.of("keep")}
    assert kept[V24_3_BUNDLES[0]] == ["object lock until 2035-01-01T00:00:00Z"]


def test_only_this_jobs_bundles_are_subject_to_retention(
    tmp_path: Path, mirror: MirrorServer
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    other = era_with_binaries(tmp_path / "other", mirror, "v23.1")
    dest = tmp_path / "bundles"
    foreign = Path(archive_backup(ArchiveRequest(source=str(other.path), dest=dest)).bundle)
    (dest / "not-a-bundle.tar").write_bytes(b"garbage" * 100)
    (dest / "notes").mkdir()
    report, events = run(write_spec(tmp_path, era.path, retention="keep_last = 1"))
    assert report.exit_code == ExitCode.OK
    assert sorted(report.deleted) == []  # the job's two older backups were never archived
    assert foreign.exists()
    assert (dest / "not-a-bundle.tar").exists()
    warning = events.one("warning")
    assert warning["code"] == "unreadable_bundle"
    assert "not-a-bundle.tar" in str(warning["message"])
    assert events.one("retention")["considered"] == 1


def test_a_failing_backup_does_not_stop_the_others_and_nothing_is_deleted(
    tmp_path: Path, mirror: MirrorServer
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    dest = tmp_path / "bundles"
    run(write_spec(tmp_path, era.path, backups="2024/12/01-000000.00"))
    xor_byte(era.path / "2024/12/08-000000.00" / "BACKUP_MANIFEST", 5)
    report, events = run(write_spec(tmp_path, era.path, retention="keep_last = 1"))
    assert report.exit_code == ExitCode.NO  # a damaged manifest is a "no" answer
    error = events.one("error")
    assert error["step"] == "inspect"
    assert error["backup"] == "2024/12/08-000000.00"
    assert report.written == [V24_3_BUNDLES[2]]
    assert report.deleted == []
    assert "nothing is deleted" in str(events.one("retention")["reason"])
    assert bundles_in(dest) == [V24_3_BUNDLES[0], V24_3_BUNDLES[2]]


def test_damaged_existing_bundle_is_reported_and_kept(
    tmp_path: Path, mirror: MirrorServer
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    dest = tmp_path / "bundles"
    spec = write_spec(tmp_path, era.path, backups="latest", retention="keep_last = 1")
    run(spec)
    victim = next((dest / V24_3_BUNDLES[2] / "data" / "backup").rglob("*.sst"))
    victim.write_bytes(victim.read_bytes()[:-1])
    damaged = tree(dest)
    report, events = run(spec)
    assert report.exit_code == ExitCode.NO
    verify = events.one("verify")
    assert verify["ok"] is False
    assert "size" in str(verify["problems"])
    assert events.one("error")["step"] == "verify"
    assert tree(dest) == damaged


def test_exit_code_is_the_most_severe() -> None:
    def code(*codes: ExitCode) -> ExitCode:
        report = JobReport("j", False)
        report.failures = [Failure("step", "message", c) for c in codes]
        return report.exit_code

    assert code() == ExitCode.OK
    assert code(ExitCode.BAD_INPUT, ExitCode.WORLD) == ExitCode.WORLD
    assert code(ExitCode.WORLD, ExitCode.NO, ExitCode.BAD_INPUT) == ExitCode.NO


def test_warnings_that_save_archives(tmp_path: Path, mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")  # v23.1.11
    spec = write_spec(tmp_path, era.path, backups="latest")
    # v23.1: support ended 2025-11-13, binaries leave the site on 2027-05-15.
    report, events = run(spec, now=dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
    assert report.exit_code == ExitCode.OK
    warnings = {w["code"]: str(w["message"]) for w in events.of("warning")}
    assert set(warnings) == {"binary_removal", "end_of_support"}
    assert "2027-05-15, in 134 days" in warnings["binary_removal"]
    assert "2025-11-13" in warnings["end_of_support"]
    assert report.warnings == 2
    _, events = run(spec, now=dt.datetime(2025, 6, 1, tzinfo=dt.UTC))
    assert [w["code"] for w in events.of("warning")] == []
    _, events = run(spec, now=dt.datetime(2027, 6, 1, tzinfo=dt.UTC))
    warnings = {w["code"]: str(w["message"]) for w in events.of("warning")}
    assert "were scheduled for removal from the download site on 2027-05-15" in warnings[
        "binary_removal"]


def test_withdrawn_release_and_removed_binaries_are_flagged() -> None:
    codes = [a.code for a in advisories(["v23.1.0", "v23.1.0"], removal_days=180,
                                        today=dt.date(2024, 1, 1))]
    assert codes == ["withdrawn"]
    assert [a.code for a in advisories(["v22.1.3"], removal_days=0,
                                       today=dt.date(2026, 6, 1))] == [
        "binary_removal", "end_of_support"]


def test_unusable_source_fails_the_run(tmp_path: Path) -> None:
    report, events = run(write_spec(tmp_path, tmp_path / "nothing-here"))
    assert report.exit_code == ExitCode.BAD_INPUT
    assert events.one("error")["step"] == "run"


def test_encrypted_backup_needs_a_pinned_release(
    tmp_path: Path, mirror: MirrorServer
) -> None:
    era = ERAS["encrypted"](tmp_path / "backups")
    report, events = run(write_spec(tmp_path, era.path, backups="latest"))
    assert report.exit_code == ExitCode.BAD_INPUT
    assert events.one("plan")["to_archive"] == [str(era.path)]
    error = events.one("error")
    assert error["step"] == "archive"
    assert "encrypted" in str(error["message"])


@pytest.mark.parametrize(("where", "expected"), [
    ('[source]\nuri = "s3://bucket/backups?AWS_SECRET_ACCESS_KEY=hush"',
     "s3://bucket/backups?AWS_SECRET_ACCESS_KEY=redacted: AUTH=specified needs both "
     "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
])
def test_s3_source_mistake_is_reported_without_its_secret(
    tmp_path: Path, where: str, expected: str
) -> None:
    section = where.split("\n", 1)[0]
    base = {"[job]": 'name = "orders"', "[source]": 'uri = "backups"',
            "[destination]": 'uri = "bundles"'}
    base[section] = where.split("\n", 1)[1]
    spec = tmp_path / "job.toml"
    spec.write_text("\n".join(f"{k}\n{v}" for k, v in base.items()) + "\n")
    report, events = run(spec)
    assert report.exit_code == ExitCode.BAD_INPUT
    assert events.one("error")["message"] == expected
    assert "hush" not in json.dumps([e.to_json() for e in events.events])


def test_interrupted_delete_is_finished(tmp_path: Path, mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    dest = tmp_path / "bundles"
    spec = write_spec(tmp_path, era.path, backups="latest")
    run(spec)
    half = dest / ".deleting-crdb-old-bundle"
    (half / "data").mkdir(parents=True)
    (half / "data" / "x").write_bytes(b"x")
    report, events = run(spec)
    assert report.exit_code == ExitCode.OK
    assert events.of("delete") == [{"bundle": "crdb-old-bundle", "resumed": True,
                                     "dry_run": False}]
    assert not half.exists()


def test_a_named_backup_outside_retention_is_skipped_with_a_warning(
    tmp_path: Path, mirror: MirrorServer
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    report, events = run(write_spec(tmp_path, era.path, backups="latest",
                                    retention="keep_days = 7"))
    assert report.exit_code == ExitCode.OK
    assert report.written == []
    assert events.one("skip")["bundle"] == V24_3_BUNDLES[2]
    warning = events.one("warning")
    assert warning["code"] == "skipped"
    assert "2024/12/15-000000.00 is not archived" in str(warning["message"])
    # Within the window, the same spec archives it.
    report, _ = run(write_spec(tmp_path, era.path, backups="latest", retention="keep_days = 7"),
                    now=dt.datetime(2024, 12, 20, tzinfo=dt.UTC))
    assert report.written == [V24_3_BUNDLES[2]]
