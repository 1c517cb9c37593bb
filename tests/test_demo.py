"""crdb_archive.demo: what make_demo writes, checked with independent tools where there are."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from crdb_archive.backup import inspect_backup
from crdb_archive.demo import make_demo
from crdb_archive.errors import BadInput, ExitCode
from crdb_archive.versions import release_index


def test_the_demo_holds_a_collection_a_mirror_and_a_changefeed(tmp_path: Path) -> None:
    demo = make_demo(tmp_path / "demo")
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [
        "backup", "changefeed", "mirror", "schema.sql"]  # nothing left of the work folder
    with inspect_backup(demo.backup) as info:
        assert info.kind == "collection"
        assert info.manifest.build_tag == "v24.3.1"
        assert [b.subdir for b in info.backups] == [
            "2024/12/01-000000.00", "2024/12/08-000000.00", "2024/12/15-000000.00"]
        assert info.subdir == "2024/12/15-000000.00"
        assert len(info.incrementals) == 3
    platforms = release_index().release("v24.3.1").platforms
    sums = sorted(demo.mirror.glob("*.sha256sum"))
    assert len(sums) == len(platforms)
    for checksum_file in sums:
        checked = subprocess.run(["sha256sum", "-c", checksum_file.name], cwd=demo.mirror,
                                 capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "CREATE TABLE public.orders" in demo.schema.read_text()
    assert sorted(demo.changefeed.rglob("*.RESOLVED"))


def test_a_second_demo_in_the_same_place_is_refused(tmp_path: Path) -> None:
    demo = make_demo(tmp_path / "demo")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(BadInput, match="already holds a demo") as refused:
        make_demo(tmp_path / "demo")
    assert refused.value.exit_code == ExitCode.BAD_INPUT
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert demo.backup.is_dir()
