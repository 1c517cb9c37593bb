"""`crdb-archive list` on every storage backend: each bundle with what it is, from its tag files
and the store alone, and `--restorable-into` answered from the restore policy."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from support.bundles import run_cli
from support.catalog import Destination, copy_into, make_destination
from support.storage_backends import Backend

# The restore policy's answer for each bundle's major (DESIGN 2.1): restore into N or N+1 (N+2
# past an innovation release), else upgrade a temporary cluster until its backups restore into
# the target. Written out by hand from the tables, not computed by our code.
INTO_V23_2 = {
    "v20.1": ["v20.1", "v20.2", "v21.1", "v21.2", "v22.1", "v22.2", "v23.1", "v23.2"],
    "v20.2": ["v20.2", "v21.1", "v21.2", "v22.1", "v22.2", "v23.1", "v23.2"],
    "v21.1": ["v21.1", "v21.2", "v22.1", "v22.2", "v23.1", "v23.2"],
    "v22.2": ["v22.2", "v23.1", "v23.2"],
    "v23.1": ["v23.1", "v23.2"],  # direct: v23.1 backups restore into v23.2
}
INTO_V22_1 = {
    "v20.1": ["v20.1", "v20.2", "v21.1", "v21.2", "v22.1"],
    "v20.2": ["v20.2", "v21.1", "v21.2", "v22.1"],
    "v21.1": ["v21.1", "v21.2", "v22.1"],
    "v22.2": None,  # a downgrade
    "v23.1": None,
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Destination:
    return make_destination(tmp_path_factory.mktemp("catalog"))


def list_json(capsys: pytest.CaptureFixture[str], uri: str, *extra: str) -> dict[str, Any]:
    result = run_cli(capsys, "list", uri, "--json", *extra)
    assert result.code == 0, result.err
    payload: dict[str, Any] = json.loads(result.out)
    return payload


def tags_are_read_here(backend: Backend, form: str) -> bool:
    """A tar in object storage is listed from its job record, which these have none of."""
    return form == "dir" or "local_paths" in backend.capabilities


def test_list_describes_every_bundle(capsys: pytest.CaptureFixture[str], backend: Backend,
                                     made: Destination) -> None:
    copy_into(made, backend.storage)
    listed = list_json(capsys, backend.uri)
    by_key = {b["key"]: b for b in listed["bundles"]}
    assert set(by_key) == {m.key for m in made.bundles}
    for m in made.bundles:
        entry = by_key[m.key]
        assert entry["name"] == m.key.removesuffix(".tar")
        assert entry["form"] == m.form
        assert entry["bytes"] == made.size(m.key)
        assert entry["last_verified"] is None
        assert entry["last_result"] is None
        assert entry["readable"] is True
        if not tags_are_read_here(backend, m.form):
            assert (entry["kind"], entry["version"], entry["signed"]) == (None, None, None)
            assert "crdb-archive audit" in entry["problem"]
            continue
        assert entry["problem"] is None
        assert (entry["kind"], entry["version"], entry["major_version"]) == (
            m.kind, m.version, m.major)
        assert entry["backup_time"][:19] == m.time.isoformat()[:19]
        assert entry["signature"] == m.signed_by
        assert entry["signed"] is (m.signed_by is not None)
    assert listed["stale_records"] == []
    assert listed["incomplete"] == []


def test_text_is_an_aligned_table(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                  made: Destination) -> None:
    result = run_cli(capsys, "list", str(made.root), "--restorable-into", "v23.2")
    assert result.code == 0, result.err
    header, *rows = result.out.splitlines()
    assert header.split()[:3] == ["NAME", "KIND", "VERSION"]
    assert header.endswith("RESTORE INTO v23.2")
    starts = [m.start() for m in re.finditer(r"(?:^|(?<=  ))\S", header)]
    assert len(rows) == len(made.bundles)
    for row in rows:
        for start in starts[1:]:
            assert row[start - 2:start] == "  ", (row, start)
            assert row[start] != " ", (row, start)
    assert any("direct" in row for row in rows)
    assert any("yes (no CockroachDB needed)" in row for row in rows)
    assert any("via v20.1 -> v20.2 -> v21.1" in row for row in rows)


def test_restorable_into(capsys: pytest.CaptureFixture[str], made: Destination) -> None:
    for target, expected in (("v23.2", INTO_V23_2), ("v22.1.0", INTO_V22_1)):
        listed = list_json(capsys, str(made.root), "--restorable-into", target)
        assert listed["restorable_into"] == target
        for entry in listed["bundles"]:
            if entry["kind"] == "export":
                assert entry["restore"] == {"direct": True, "path": None,
                                            "needs_cockroachdb": False}
                continue
            path = expected[entry["major_version"]]
            direct = path is not None and len(path) <= 2
            assert entry["restore"] == {"direct": direct, "path": path,
                                        "needs_cockroachdb": True}, entry["name"]


def test_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                   made: Destination) -> None:
    unknown = run_cli(capsys, "list", str(made.root), "--restorable-into", "v99.9")
    assert unknown.code == 2
    assert len(unknown.err.strip().splitlines()) == 1
    file = tmp_path / "file"
    file.write_text("x")
    assert run_cli(capsys, "list", str(file)).code == 2
    bundle = made.root / next(m.key for m in made.bundles if m.form == "dir")
    mistaken = run_cli(capsys, "list", str(bundle))
    assert mistaken.code == 2
    assert "is a bundle, not a destination" in mistaken.err
    assert run_cli(capsys, "audit", str(bundle)).code == 2
    empty = run_cli(capsys, "list", str(tmp_path / "nothing-here"))
    assert empty.code == 0, empty.err
    assert empty.out.strip() == "no bundles"


def test_damaged_tag_files_are_a_note_not_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, made: Destination,
) -> None:
    root = tmp_path / "dest"
    shutil.copytree(made.root, root)
    bundle = next(m for m in made.bundles if m.form == "dir" and m.kind == "backup")
    description = root / bundle.key / "crdb-archive.json"
    description.write_bytes(description.read_bytes().replace(b'"backup"', b'"bakup"', 1))
    listed = list_json(capsys, str(root))
    entry = next(b for b in listed["bundles"] if b["key"] == bundle.key)
    assert "does not match tagmanifest-sha256.txt" in entry["problem"]
    assert entry["version"] is None
    text = run_cli(capsys, "list", str(root))
    assert f"note: {bundle.key}: " in text.out
