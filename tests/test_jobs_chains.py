"""Incremental chains under a job: archived once, when the next full backup closes them.

With incrementals = "growing", a weekly job writes a new bundle of the same full backup each
time its chain grows; under a ten-year Object Lock every one of them stays. With "closed", a
chain is archived once, complete, after BACKUP INTO has moved on to a newer full backup.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from pathlib import Path

import pytest

from crdb_archive.errors import InvalidJobSpec
from crdb_archive.jobs import JobEvent, load_spec, run_job
from support.backups import Manifest, full_subdir, incremental_name, write_backup, write_latest
from support.bundles import era_with_binaries
from support.cli import run_subprocess
from support.mirror import MirrorServer
from support.s3 import MotoS3

NOW = dt.datetime(2025, 1, 10, tzinfo=dt.UTC)


def chain(day: int) -> str:
    """The bundle of the v24.3 fixture's full backup of 2024-12-<day> with its three
    incrementals (6, 12 and 18 hours after it)."""
    return f"crdb-5f0e3c1a-202412{day:02d}T000000Z-v24.3.1-inc3-202412{day:02d}T180000Z"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                 mirror: MirrorServer) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_MIRROR", mirror.url)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))


def spec_file(tmp_path: Path, source: Path, *, incrementals: str, backups: str = "all",
              destination: str = "bundles", extra: str = "") -> Path:
    spec = tmp_path / "job.toml"
    spec.write_text(f'[job]\nname = "orders"\n[source]\nuri = "{source}"\n'
                    f'backups = "{backups}"\nincrementals = "{incrementals}"\n'
                    f'[destination]\nuri = "{destination}"\n{extra}')
    return spec


def events_of(spec: Path, **options: object) -> tuple[int, list[JobEvent], list[str]]:
    events: list[JobEvent] = []
    report = run_job(load_spec(spec), now=NOW, on_event=events.append, **options)  # type: ignore[arg-type]
    return int(report.exit_code), events, report.written


def close_the_chain(collection: Path, day: int) -> None:
    """BACKUP INTO the collection again: a new full backup, now the one LATEST names."""
    when = dt.datetime(2024, 12, day, tzinfo=dt.UTC)
    manifest = Manifest(end_time=when, build_tag="v24.3.1", cluster_version=(24, 3, 0, 0))
    write_backup(collection / full_subdir(when), manifest)
    write_latest(collection, full_subdir(when), at=when, root_file=False, history=True)


def test_closed_chains_are_archived_once(tmp_path: Path, mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    spec = spec_file(tmp_path, era.path, incrementals="closed")
    dest = tmp_path / "bundles"

    code, events, written = events_of(spec)
    assert code == 0
    assert written == [chain(1), chain(8)]
    plan = next(e.fields for e in events if e.event == "plan")
    assert plan["open_chains"] == ["2024/12/15-000000.00"]
    skip = next(e.fields for e in events if e.event == "skip")
    assert skip["backup"] == "2024/12/15-000000.00"
    assert "still open" in skip["reason"]
    assert not [e for e in events if e.event == "warning"]

    assert events_of(spec)[2] == []  # nothing new: the open chain stays open

    # A new full backup closes the chain of 12-15: archived once, with all three incrementals.
    close_the_chain(era.path, 22)
    assert events_of(spec)[2] == [chain(15)]
    assert events_of(spec)[2] == []
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == [
        chain(1), chain(8), chain(15)]
    description = json.loads((dest / chain(15) / "crdb-archive.json").read_text())
    assert len(description["backup"]["incrementals"]) == 3


def test_latest_closed_chain(tmp_path: Path, mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    spec = spec_file(tmp_path, era.path, incrementals="closed", backups="latest")
    assert events_of(spec)[2] == [chain(8)]
    close_the_chain(era.path, 22)
    assert events_of(spec)[2] == [chain(15)]


def test_naming_an_open_chain_warns(tmp_path: Path, mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    spec = spec_file(tmp_path, era.path, incrementals="closed",
                     backups="2024/12/15-000000.00")
    code, events, written = events_of(spec)
    assert (code, written) == (0, [])
    [warning] = [e.fields for e in events if e.event == "warning"]
    assert warning["code"] == "skipped"
    assert "2024/12/15-000000.00" in str(warning["message"])


def test_growing_chains_make_a_new_bundle_as_they_grow(tmp_path: Path,
                                                        mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    spec = spec_file(tmp_path, era.path, incrementals="growing", backups="latest")
    assert events_of(spec)[2] == [chain(15)]
    # BACKUP INTO LATEST once more: the chain of 12-15 grows to four.
    when = dt.datetime(2024, 12, 15, 23, tzinfo=dt.UTC)
    rel = (f"incrementals/{full_subdir(dt.datetime(2024, 12, 15, tzinfo=dt.UTC))}/"
           f"{incremental_name(when)}-20241215-180000.00")
    write_backup(era.path / rel, Manifest(end_time=when, build_tag="v24.3.1",
                                          cluster_version=(24, 3, 0, 0)), ssts=1)
    assert events_of(spec)[2] == [
        "crdb-5f0e3c1a-20241215T000000Z-v24.3.1-inc4-20241215T230000Z"]


@pytest.mark.parametrize(("source", "problem"), [
    ('incrementals = "sometimes"', "source.incrementals: 'sometimes' is not one of"),
    ('incrementals = "closed"\nwith_incrementals = true', "source.with_incrementals: give "
     "incrementals alone"),
])
def test_bad_chain_policies(tmp_path: Path, source: str, problem: str) -> None:
    spec = tmp_path / "job.toml"
    spec.write_text(f'[job]\nname = "j"\n[source]\nuri = "b"\n{source}\n'
                    '[destination]\nuri = "d"\n')
    with pytest.raises(InvalidJobSpec) as error:
        load_spec(spec)
    assert any(problem in p for p in error.value.problems), error.value.problems


def test_with_incrementals_true_still_means_growing(tmp_path: Path) -> None:
    spec = tmp_path / "job.toml"
    spec.write_text('[job]\nname = "j"\n[source]\nuri = "b"\nwith_incrementals = true\n'
                    '[destination]\nuri = "d"\n')
    loaded = load_spec(spec)
    assert loaded.incrementals == "growing"
    assert dataclasses.replace(loaded, incrementals="none").with_incrementals is False


def test_a_single_backup_has_no_chain_to_close(tmp_path: Path, mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v23.1")
    code, events, _ = events_of(spec_file(tmp_path, era.path, incrementals="closed"))
    assert code == 2
    [error] = [e.fields for e in events if e.event == "error"]
    assert "needs a collection" in str(error["message"])


def test_dry_run_says_what_it_would_lock_and_until_when(
    tmp_path: Path, mirror: MirrorServer, s3_env: MotoS3
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    bucket = s3_env.bucket(object_lock=True)
    spec = spec_file(tmp_path, era.path, incrementals="closed",
                     destination=f"s3://{bucket}/orders",
                     extra='format = "tar"\n[destination.object_lock]\nmode = "COMPLIANCE"\n'
                           "days = 3650\n")
    done = run_subprocess("run", str(spec), "--dry-run", env={
        **os.environ, "CRDB_ARCHIVE_MIRROR": mirror.url,
        "CRDB_ARCHIVE_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)).date().isoformat()
    assert "plan: 2 would archive, 0 already archived, 1 skipped" in done.stdout
    assert f"plan: would lock 2 new bundles in COMPLIANCE mode until {until}" in done.stdout
    assert s3_env.all_keys(bucket) == []
