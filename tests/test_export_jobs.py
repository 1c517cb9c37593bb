"""Job specs with changefeed output as their source: the latest resolved snapshot is archived
once; a re-run is a no-op until the feed resolves a later time; retention applies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crdb_archive.errors import InvalidJobSpec
from crdb_archive.jobs import load_spec
from support.changefeeds import Feed, History, hlc
from support.cli import run_cli, run_subprocess
from support.export_demo import (
    RESOLVED,
    SCHEMA,
    SCHEMA_SQL,
    customer,
    expected_rows,
    write_shop_changefeed,
)
from support.s3 import MotoS3


def write_spec(tmp_path: Path, source: str, *, kind: str | None = "export",
               extra_source: str = "", destination: str = "bundles", extra: str = "") -> Path:
    (tmp_path / "schema.sql").write_text(SCHEMA_SQL)
    kind_line = f'kind = "{kind}"\n' if kind else ""
    spec = tmp_path / "job.toml"
    spec.write_text(
        f'[job]\nname = "shop-feed"\n[source]\nuri = "{source}"\n{kind_line}'
        f'schema = "schema.sql"\n{extra_source}'
        f'[destination]\nuri = "{destination}"\n{extra}'
        "[retention]\nkeep_last = 2\n")
    return spec


def events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def of(found: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in found if e["event"] == kind]


def resolve_more(feed: Path, history: History, seconds: int) -> None:
    """A later session writes a change and resolves a later time."""
    sink = Feed(feed, SCHEMA)
    session = sink.session(node=3, sink=1)
    session.file(hlc(seconds - 10), "customers",
                 [history.put("customers", customer(9, seconds), hlc(seconds - 5))])
    sink.resolved(hlc(seconds))


def test_a_job_archives_the_latest_snapshot_once(tmp_path: Path) -> None:
    feed = tmp_path / "sink"
    history = write_shop_changefeed(feed)
    spec = write_spec(tmp_path, str(feed))
    first = run_subprocess("run", str(spec), "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    found = events(first.stdout)
    (archived,) = of(found, "archive")
    assert archived["created"] is True
    assert archived["kind"] == "export"
    assert archived["as_of"] == RESOLVED[-1].decimal()
    assert archived["tables"] == {"public.customers": 6, "public.orders": 5}
    (verified,) = of(found, "verify")
    assert verified["ok"] is True
    assert of(found, "done")[0]["bundles_written"] == 1
    bundles = tmp_path / "bundles"
    (bundle,) = [p for p in bundles.iterdir() if not p.name.startswith(".")]
    assert bundle.name == archived["bundle"]

    # Nothing new resolved: a no-op.
    second = run_subprocess("run", str(spec), "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    found = events(second.stdout)
    (plan,) = of(found, "plan")
    assert (plan["to_archive"], plan["archived"]) == ([], [bundle.name])
    assert of(found, "done")[0]["bundles_written"] == 0
    assert [p.name for p in bundles.iterdir() if not p.name.startswith(".")] == [bundle.name]

    # Two later resolved times, two runs: retention keeps the newest two bundles.
    for seconds in (400, 500):
        resolve_more(feed, history, seconds)
        later = run_subprocess("run", str(spec), "--json")
        assert later.returncode == 0, later.stdout + later.stderr
    found = events(later.stdout)
    (archived,) = of(found, "archive")
    assert archived["as_of"] == hlc(500).decimal()
    assert [e["bundle"] for e in of(found, "delete")] == [bundle.name]
    names = sorted(p.name for p in bundles.iterdir() if not p.name.startswith("."))
    assert len(names) == 2
    assert names[-1] == archived["bundle"]
    description = json.loads((bundles / names[-1] / "crdb-archive.json").read_text())
    assert description["export"]["tables"]["public.customers"]["rows"] == \
        len(expected_rows(history, hlc(500), "customers"))


def test_kind_auto_with_an_s3_destination(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                          s3_env: MotoS3) -> None:
    feed = tmp_path / "sink"
    write_shop_changefeed(feed)
    bucket = s3_env.bucket()
    spec = write_spec(tmp_path, str(feed), kind=None, destination=f"s3://{bucket}/shop",
                      extra='format = "tar"\n')
    first = run_cli(capsys, "run", str(spec), "--json")
    assert first.code == 0, first.out + first.err
    (archived,) = of(events(first.out), "archive")
    assert archived["created"] is True
    again = run_cli(capsys, "run", str(spec), "--json")
    assert again.code == 0, again.out + again.err
    found = events(again.out)
    assert of(found, "plan")[0]["to_archive"] == []
    assert [e.get("created") for e in of(found, "archive")] == [False]
    keys = s3_env.all_keys(bucket)
    assert f"shop/{archived['bundle']}.tar" in keys
    assert f"shop/.crdb-archive-index/{archived['bundle']}.tar.json" in keys


def test_a_gap_fails_the_run_and_writes_nothing(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    feed = tmp_path / "sink"
    write_shop_changefeed(feed)
    next(feed.rglob("*-00000001-customers-1.ndjson")).unlink()
    spec = write_spec(tmp_path, str(feed))
    done = run_cli(capsys, "run", str(spec), "--json")
    assert done.code == 1
    (error,) = of(events(done.out), "error")
    assert error["step"] == "inspect"
    assert "lost changefeed file" in error["message"]
    assert not any(p for p in (tmp_path / "bundles").iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize(("source", "problem"), [
    ('kind = "export"\n', "source.schema: missing (required)"),
    ('kind = "backup"\nschema = "schema.sql"\n',
     "source.schema: applies to changefeed and EXPORT output"),
    ('kind = "export"\nschema = "s.sql"\nbackups = "all"\n',
     "source.backups: applies to backups"),
    ('kind = "export"\nschema = "s.sql"\nas_of = "yesterday"\n',
     "source.as_of: 'yesterday' is neither latest nor an HLC timestamp"),
    ('kind = "stream"\n', "source.kind: 'stream' is not one of auto, backup, export"),
])
def test_spec_mistakes(tmp_path: Path, source: str, problem: str) -> None:
    spec = tmp_path / "job.toml"
    spec.write_text(f'[job]\nname = "j"\n[source]\nuri = "sink"\n{source}'
                    '[destination]\nuri = "bundles"\n')
    with pytest.raises(InvalidJobSpec) as raised:
        load_spec(spec)
    assert any(p.startswith(problem) for p in raised.value.problems), raised.value.problems


def test_export_spec_keys_are_read(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "sink", extra_source=(
        f'as_of = "{RESOLVED[0].decimal()}"\nallow_gaps = true\ntable = "customers"\n'))
    job = load_spec(spec)
    assert job.kind == "export"
    assert job.export is not None
    assert job.export.schema == tmp_path / "schema.sql"
    assert (job.export.as_of, job.export.allow_gaps, job.export.table) == (
        RESOLVED[0].decimal(), True, "customers")
    assert job.to_json()["export"]["as_of"] == RESOLVED[0].decimal()


def test_the_hourly_changefeed_example_runs_as_it_is(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parents[1] / "archive-specs" / "examples" / \
        "hourly-changefeed.toml"
    write_shop_changefeed(tmp_path / "sink")
    (tmp_path / "schema.sql").write_text(SCHEMA_SQL)
    monkeypatch.setenv("CRDB_CHANGEFEED", str(tmp_path / "sink"))
    monkeypatch.setenv("CRDB_SCHEMA", str(tmp_path / "schema.sql"))
    monkeypatch.setenv("CRDB_EXPORTS", str(tmp_path / "exports"))
    first = run_cli(capsys, "run", str(example), "--json")
    assert first.code == 0, first.out + first.err
    assert [e["event"] for e in events(first.out)] == [
        "plan", "archive", "verify", "retention", "keep", "done"]
    second = run_cli(capsys, "run", str(example))
    assert second.code == 0, second.err
    assert second.out.splitlines()[0].startswith("plan: 0 to archive, 1 already archived")
