"""Bundle names are ISO 8601 basic throughout, and bundles under the old names are still found.

The expected names are written out from the fixtures' own facts (cluster 5f0e3c1a-..., the end
times the fixtures encode), not derived by the code under test.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from crdb_archive.jobs import load_spec, run_job
from support.bundles import era_with_binaries
from support.cli import run_cli
from support.mirror import MirrorServer

# v24.3 collection fixtures: full backups on 2024-12-01, 08 and 15 at midnight; the newest has
# three incrementals, the last ending 2024-12-15 18:00.
V24_3_LATEST = "crdb-5f0e3c1a-20241215T000000Z-v24.3.1"
V24_3_CHAIN = "crdb-5f0e3c1a-20241215T000000Z-v24.3.1-inc3-20241215T180000Z"
V24_3_LEGACY = "crdb-5f0e3c1a-20241215T00000000Z-v24.3.1"
V24_3_LEGACY_CHAIN = "crdb-5f0e3c1a-20241215T00000000Z-v24.3.1-inc3-20241215180000"
# v22.2 single-collection fixture: end time 2023-01-12 03:00:00.12.
V22_2_NAME = "crdb-5f0e3c1a-20230112T030000.12Z-v22.2.17"

_BASIC = re.compile(r"(\d{8}T\d{6}(?:\.\d{2})?Z)")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                 mirror: MirrorServer) -> None:
    monkeypatch.setenv("CRDB_ARCHIVE_MIRROR", mirror.url)
    monkeypatch.setenv("CRDB_ARCHIVE_CACHE", str(tmp_path / "cache"))


def archive(capsys: pytest.CaptureFixture[str], source: Path, dest: Path,
            *extra: str) -> dict[str, object]:
    result = run_cli(capsys, "archive", str(source), "--dest", str(dest), "--json", *extra)
    assert result.code == 0, result.err
    return result.json()


def times_in(name: str) -> list[dt.datetime]:
    """Every time in a name, parsed as ISO 8601 basic (UTC, optional hundredths)."""
    found = []
    for text in _BASIC.findall(name):
        layout = "%Y%m%dT%H%M%S.%f%z" if "." in text else "%Y%m%dT%H%M%S%z"
        found.append(dt.datetime.strptime(text.replace("Z", "+0000"), layout))
    return found


@pytest.mark.parametrize(("incrementals", "expected"), [
    (False, V24_3_LATEST),
    (True, V24_3_CHAIN),
])
def test_names_are_iso_8601_basic(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                  mirror: MirrorServer, incrementals: bool,
                                  expected: str) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    extra = ("--with-incrementals",) if incrementals else ()
    done = archive(capsys, era.path, tmp_path / "bundles", *extra)
    assert done["name"] == expected
    parsed = times_in(expected)
    assert parsed[0] == dt.datetime(2024, 12, 15, tzinfo=dt.UTC)
    if incrementals:
        assert parsed[1] == dt.datetime(2024, 12, 15, 18, tzinfo=dt.UTC)


def test_hundredths_appear_only_when_not_zero(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path, mirror: MirrorServer) -> None:
    era = era_with_binaries(tmp_path, mirror, "v22.2")
    done = archive(capsys, era.path, tmp_path / "bundles")
    assert done["name"] == V22_2_NAME
    assert times_in(V22_2_NAME) == [dt.datetime(2023, 1, 12, 3, 0, 0, 120000, tzinfo=dt.UTC)]


@pytest.mark.parametrize(("incrementals", "legacy"), [
    (False, V24_3_LEGACY),
    (True, V24_3_LEGACY_CHAIN),
])
@pytest.mark.parametrize("fmt", ["dir", "tar"])
def test_archive_finds_a_bundle_under_its_old_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mirror: MirrorServer,
    incrementals: bool, legacy: str, fmt: str,
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    dest = tmp_path / "bundles"
    extra = ["--format", fmt, *(["--with-incrementals"] if incrementals else [])]
    first = archive(capsys, era.path, dest, *extra)
    written = Path(str(first["bundle"]))
    # As an earlier version would have named it (the name is not part of the bundle's digests).
    old = dest / (legacy + (".tar" if fmt == "tar" else ""))
    written.rename(old)
    again = archive(capsys, era.path, dest, *extra)
    assert again["created"] is False
    assert again["bundle"] == str(old)
    assert again["name"] == legacy
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == [old.name]


def test_a_job_never_archives_a_backup_again_under_its_new_name(
    tmp_path: Path, mirror: MirrorServer
) -> None:
    era = era_with_binaries(tmp_path, mirror, "v24.3")
    spec_path = tmp_path / "job.toml"
    spec_path.write_text(f'[job]\nname = "orders"\n[source]\nuri = "{era.path}"\n'
                         'backups = "latest"\n[destination]\nuri = "bundles"\n')
    dest = tmp_path / "bundles"
    first = run_job(load_spec(spec_path))
    assert first.written == [V24_3_LATEST]
    (dest / V24_3_LATEST).rename(dest / V24_3_LEGACY)
    events: list[dict[str, object]] = []
    second = run_job(load_spec(spec_path),
                     on_event=lambda e: events.append(json.loads(e.to_line())))
    assert second.written == []
    assert int(second.exit_code) == 0
    plan = next(e for e in events if e["event"] == "plan")
    assert plan["archived"] == [V24_3_LEGACY]
    assert plan["to_archive"] == []
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == [
        V24_3_LEGACY]
