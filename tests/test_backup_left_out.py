"""inspect names the files of a collection that a bundle of the chosen backup leaves out."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from crdb_archive.backup import inspect_backup
from support.backups import (
    Manifest,
    MixedCollection,
    incremental_name,
    latest_history_name,
    mixed_collection,
    upload,
    write,
    write_backup,
)
from support.cli import run_cli
from support.s3 import MotoS3

OTHER_FULL = "another full backup"
OTHER_INCREMENTAL = "an incremental backup of another full backup"
OTHER_LATEST = "a LATEST file that does not name the chosen full backup"
UNFINISHED_FULL = "an unfinished full backup (no manifest)"
UNFINISHED_INCREMENTAL = "an unfinished incremental backup (no manifest)"
STRAY = "not part of any backup"


def on_disk(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_size
            for p in root.rglob("*") if p.is_file()}


def expected_reasons(c: MixedCollection) -> tuple[set[str], dict[str, str]]:
    """What a bundle takes (the chosen full backup, the LATEST file naming it, its complete
    incrementals) and why it leaves out every other file, from how the fixture was written."""
    chosen_latest = ("metadata/latest/"
                     + latest_history_name(dt.datetime(2024, 12, 8, tzinfo=dt.UTC)))
    taken: set[str] = set()
    reasons: dict[str, str] = {}
    for path in on_disk(c.root):
        if (path.startswith(c.chosen + "/") or path == chosen_latest
                or any(path.startswith(inc + "/") for inc in c.chosen_incrementals)):
            taken.add(path)
        elif path.startswith(c.older + "/"):
            reasons[path] = OTHER_FULL
        elif path.startswith(f"incrementals/{c.older}/"):
            reasons[path] = OTHER_INCREMENTAL
        elif path.startswith(f"incrementals/{c.chosen}/"):
            reasons[path] = UNFINISHED_INCREMENTAL
        elif path.startswith("metadata/latest/LATEST-"):
            reasons[path] = OTHER_LATEST
        elif path.startswith(c.unfinished + "/"):
            reasons[path] = UNFINISHED_FULL
        else:
            assert path == c.stray
            reasons[path] = STRAY
    return taken, reasons


def by_reason(reasons: dict[str, str]) -> dict[str, int]:
    return dict(Counter(reasons.values()))


def test_a_collection_names_every_file_the_bundle_leaves_out(tmp_path: Path) -> None:
    c = mixed_collection(tmp_path)
    taken, reasons = expected_reasons(c)
    sizes = on_disk(c.root)
    # Every kind of left-out file is in the fixture, so that each reason is exercised.
    assert set(reasons.values()) == {OTHER_FULL, OTHER_INCREMENTAL, OTHER_LATEST,
                                     UNFINISHED_FULL, UNFINISHED_INCREMENTAL, STRAY}

    with inspect_backup(c.root, with_left_out=True) as info:
        assert info.subdir == c.chosen
        assert {f.path for f in info.files + info.incremental_files} == taken
        payload = info.to_json()

    assert payload["left_out"] == [{"path": path, "reason": reasons[path]}
                                   for path in sorted(reasons)]
    assert payload["left_out_count"] == len(reasons)
    assert payload["left_out_bytes"] == sum(sizes[path] for path in reasons)
    assert payload["left_out_reasons"] == by_reason(reasons)
    # Most frequent reason first: what the one-line summary leads with.
    counts = list(payload["left_out_reasons"].values())
    assert counts == sorted(counts, reverse=True)


def test_the_older_full_backup_chosen_leaves_out_the_newer(tmp_path: Path) -> None:
    c = mixed_collection(tmp_path)
    with inspect_backup(c.root, subdir=c.older, with_left_out=True) as info:
        assert info.left_out is not None
        reasons = {f.path: f.reason for f in info.left_out.files}
    assert {p for p, r in reasons.items() if r == OTHER_FULL} == {
        p for p in on_disk(c.root) if p.startswith(c.chosen + "/")}
    # The newer backup's incrementals, finished or not, belong to another full backup now.
    assert {p for p, r in reasons.items() if r == OTHER_INCREMENTAL} == {
        p for p in on_disk(c.root) if p.startswith(f"incrementals/{c.chosen}/")}
    assert reasons["notes.txt"] == STRAY


def test_only_the_first_files_are_named_and_every_one_is_counted(tmp_path: Path) -> None:
    c = mixed_collection(tmp_path, older_ssts=150)
    _, reasons = expected_reasons(c)
    assert len(reasons) > 150
    with inspect_backup(c.root, with_left_out=True) as info:
        payload = info.to_json()
    assert payload["left_out"] == [{"path": path, "reason": reasons[path]}
                                   for path in sorted(reasons)[:100]]
    assert payload["left_out_count"] == len(reasons)
    assert payload["left_out_reasons"] == by_reason(reasons)


def test_a_collection_in_s3_leaves_out_the_same_files(s3_env: MotoS3, tmp_path: Path) -> None:
    c = mixed_collection(tmp_path)
    with inspect_backup(c.root, with_left_out=True) as local:
        expected = local.to_json()
    uri = upload(s3_env, c.root, "collection")
    with inspect_backup(uri, with_left_out=True) as remote:
        found = remote.to_json()
    for key in ("left_out", "left_out_count", "left_out_bytes", "left_out_reasons"):
        assert found[key] == expected[key]
    assert found["left_out_count"] == len(expected_reasons(c)[1])


def test_a_single_backup_leaves_out_only_its_unfinished_incrementals(tmp_path: Path) -> None:
    when = dt.datetime(2021, 9, 10, 1, 2, 3, tzinfo=dt.UTC)
    root = tmp_path / "single"
    write_backup(root, Manifest(end_time=when))
    done = incremental_name(when + dt.timedelta(hours=1))
    write_backup(root / done, Manifest(start_time=when, end_time=when + dt.timedelta(hours=1)),
                 ssts=1)
    cut = incremental_name(when + dt.timedelta(hours=2))
    write(root / cut / "data" / "800000.sst", b"no manifest yet")
    with inspect_backup(root, with_left_out=True) as info:
        assert info.incrementals == [done]
        payload = info.to_json()
    assert payload["left_out"] == [{"path": f"{cut}/data/800000.sst",
                                    "reason": UNFINISHED_INCREMENTAL}]
    assert payload["left_out_count"] == 1
    assert payload["left_out_bytes"] == len(b"no manifest yet")


def test_without_asking_nothing_is_listed(tmp_path: Path) -> None:
    c = mixed_collection(tmp_path)
    with inspect_backup(c.root) as info:
        assert info.left_out is None
        payload = info.to_json()
    assert {k: payload[k] for k in ("left_out", "left_out_count", "left_out_bytes",
                                    "left_out_reasons")} == dict.fromkeys(
        ("left_out", "left_out_count", "left_out_bytes", "left_out_reasons"))


@pytest.mark.parametrize("subdir", [None, "LATEST"])
def test_latest_chooses_the_newest_full_backup(tmp_path: Path, subdir: str | None) -> None:
    c = mixed_collection(tmp_path)
    with inspect_backup(c.root, subdir=subdir, with_left_out=True) as info:
        assert info.subdir == c.chosen
        assert info.left_out is not None
        assert info.left_out.count == len(expected_reasons(c)[1])


def test_inspect_says_which_files_it_leaves_out(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    c = mixed_collection(tmp_path)
    taken, reasons = expected_reasons(c)
    result = run_cli(capsys, "inspect", str(c.root))
    assert result.code == 0, result.err
    line = next(x for x in result.out.splitlines() if x.startswith("left out:"))
    left = {path for path in on_disk(c.root) if path not in taken}
    assert f"in {len(left)} files (" in line
    for reason, number in by_reason(reasons).items():
        assert f"{reason}: {number}" in line
    files_line = next(x for x in result.out.splitlines() if x.startswith("files:"))
    assert "2 incremental backups (archived with --with-incrementals)" in files_line
