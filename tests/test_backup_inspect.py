"""inspect_backup: every era's version, collection layouts, LATEST resolution, file lists."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from crdb_archive.backup import BackupInfo, assess_versions, decode_manifest, inspect_backup
from crdb_archive.errors import (
    DamagedManifest,
    NotABackup,
    UnsupportedBackupFile,
)
from support.backups import (
    ERAS,
    T0,
    Era,
    Manifest,
    incremental_name,
    latest_history_name,
    write,
    write_backup,
    write_fulls,
    write_latest,
)


def tree(root: Path) -> dict[str, int]:
    """Every regular file under ``root`` with its size: what the file lists must match."""
    return {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in root.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize("name", list(ERAS))
def test_each_era_reports_its_version(tmp_path: Path, name: str) -> None:
    era: Era = ERAS[name](tmp_path)
    info = inspect_backup(era.path)
    assert info.kind == era.kind
    assert info.subdir == era.subdir
    assert info.manifest.build_tag == era.build_tag
    assert info.manifest.cluster_version == era.cluster_version
    assert info.major_version == era.major_version
    assert info.restorable_into == era.restorable_into
    assert info.manifest.encrypted is era.encrypted
    assert info.manifest.end_time == era.end_time
    assert info.incrementals == era.incrementals
    text = " ".join(info.warnings)
    for word in era.warning_words:
        assert word in text
    payload = info.to_json()
    for key_name in ("kind", "subdir", "build_tag", "cluster_version", "major_version",
                     "encrypted", "end_time", "cluster_id", "files", "bytes", "incrementals",
                     "restorable_into", "warnings", "backups"):
        assert key_name in payload


@pytest.mark.parametrize("name", ["v20.1", "v20.2", "v23.1", "encrypted", "dev", "mixed"])
def test_single_backup_lists_every_file(tmp_path: Path, name: str) -> None:
    era = ERAS[name](tmp_path)
    info = inspect_backup(era.path)
    assert {f.path: f.size for f in info.files} == tree(era.path)
    assert [f.path for f in info.files] == sorted(f.path for f in info.files)
    assert info.incremental_files == []
    assert info.backups == []


def test_v20_1_ssts_at_the_root(tmp_path: Path) -> None:
    info = inspect_backup(ERAS["v20.1"](tmp_path).path)
    assert info.manifest.file == "BACKUP"
    assert info.manifest.gzip is False
    assert info.manifest.checksum_verified is False
    assert "800000.sst" in {f.path for f in info.files}


def test_v23_1_prefers_backup_manifest(tmp_path: Path) -> None:
    info = inspect_backup(ERAS["v23.1"](tmp_path).path)
    assert info.manifest.file == "BACKUP_MANIFEST"
    assert info.manifest.checksum_verified is True
    assert {"BACKUP_METADATA", "BACKUP_METADATA-CHECKSUM", "metadata.sst"} <= {
        f.path for f in info.files
    }


def test_v21_1_nested_incrementals_split_from_the_full(tmp_path: Path) -> None:
    era = ERAS["v21.1"](tmp_path)
    info = inspect_backup(era.path)
    full = {f.path for f in info.files}
    incremental = {f.path for f in info.incremental_files}
    assert not full & incremental
    assert full | incremental == set(tree(era.path))
    assert "LATEST" in full
    assert all(p.startswith(tuple(era.incrementals)) for p in incremental)
    assert f"{era.subdir}/data/800000.sst" in full


def test_v22_2_both_pointers_kept_when_they_name_the_backup(tmp_path: Path) -> None:
    era = ERAS["v22.2"](tmp_path)
    info = inspect_backup(era.path)
    pointers = sorted(f.path for f in info.files if "LATEST" in f.path)
    second = dt.datetime(2023, 1, 12, 3, 0, 0, 120000, tzinfo=dt.UTC)
    assert pointers == ["LATEST", f"metadata/latest/{latest_history_name(second)}"]
    assert not any(f.path.startswith("2023/01/05") for f in info.files)
    assert [b.subdir for b in info.backups] == ["2023/01/05-030000.00", era.subdir]
    assert info.warnings == []


def test_v24_3_choose_an_older_full_backup(tmp_path: Path) -> None:
    era = ERAS["v24.3"](tmp_path)
    info = inspect_backup(era.path, subdir="/2024/12/08-000000.00/")
    assert info.subdir == "2024/12/08-000000.00"
    assert info.latest == era.subdir
    assert len(info.incrementals) == 3
    assert all(i.startswith("incrementals/2024/12/08-000000.00/") for i in info.incrementals)
    history = [f.path for f in info.files if f.path.startswith("metadata/")]
    when = dt.datetime(2024, 12, 8, tzinfo=dt.UTC)
    assert history == [f"metadata/latest/{latest_history_name(when)}"]
    assert all(f.path.startswith(("2024/12/08-000000.00/", "metadata/")) for f in info.files)
    payload = json.loads(json.dumps(info.to_json()))
    assert [b["latest"] for b in payload["backups"]] == [False, False, True]
    assert payload["end_time"] == "2024-12-08T00:00:00.000000Z"
    assert payload["end_wall_time"] % 1000 == 123


def test_subdir_latest_means_the_default(tmp_path: Path) -> None:
    era = ERAS["v24.3"](tmp_path)
    assert inspect_backup(era.path, subdir="LATEST").subdir == era.subdir


def test_unknown_or_escaping_subdir(tmp_path: Path) -> None:
    era = ERAS["v24.3"](tmp_path)
    with pytest.raises(NotABackup, match=r"not a full backup .*found: 2024/12/01"):
        inspect_backup(era.path, subdir="2024/12/02-000000.00")
    for bad in ("../v22.2", "2024/../../x", "", "/"):
        with pytest.raises(NotABackup):
            inspect_backup(era.path, subdir=bad)


def test_subdir_on_a_single_backup(tmp_path: Path) -> None:
    with pytest.raises(NotABackup, match="--subdir does not apply"):
        inspect_backup(ERAS["v23.1"](tmp_path).path, subdir="2023/06/02-093257.93")


# --- LATEST resolution ---------------------------------------------------------------------------


def test_newest_history_pointer_wins_over_root_latest(tmp_path: Path) -> None:
    old, new = write_fulls(tmp_path, 1, 2)
    write_latest(tmp_path, old, at=T0, root_file=True, history=False)
    write_latest(tmp_path, old, at=T0, root_file=False, history=True)
    write_latest(tmp_path, new, at=T0 + dt.timedelta(days=1), root_file=False, history=True)
    info = inspect_backup(tmp_path)
    assert info.subdir == new
    assert any("root LATEST names" in w and "follow metadata/latest" in w for w in info.warnings)
    assert [f.path for f in info.files if "LATEST" in f.path] == [
        f"metadata/latest/{latest_history_name(T0 + dt.timedelta(days=1))}"
    ]


def test_root_latest_when_metadata_latest_is_empty(tmp_path: Path) -> None:
    old, _ = write_fulls(tmp_path, 1, 2)
    (tmp_path / "metadata" / "latest").mkdir(parents=True)
    write_latest(tmp_path, old, at=T0, root_file=True, history=False)
    info = inspect_backup(tmp_path)
    assert info.subdir == old
    assert info.latest == old


def test_bad_newest_pointer_falls_back_to_root(tmp_path: Path) -> None:
    old, _ = write_fulls(tmp_path, 1, 2)
    write_latest(tmp_path, old, at=T0, root_file=True, history=False)
    write(tmp_path / "metadata" / "latest" / latest_history_name(T0), b"")
    info = inspect_backup(tmp_path)
    assert info.subdir == old
    assert any("falling back to the root LATEST" in w for w in info.warnings)


def test_no_latest_uses_the_newest_full_backup(tmp_path: Path) -> None:
    _, new = write_fulls(tmp_path, 1, 2)
    info = inspect_backup(tmp_path)
    assert info.subdir == new
    assert info.latest is None
    assert any("no LATEST file" in w for w in info.warnings)


def test_latest_naming_a_missing_backup(tmp_path: Path) -> None:
    write_fulls(tmp_path, 1)
    write(tmp_path / "LATEST", b"/2023/03/09-010000.00")
    with pytest.raises(NotABackup, match="holds no backup manifest; choose a full backup"):
        inspect_backup(tmp_path)


def test_latest_naming_an_undated_subdirectory(tmp_path: Path) -> None:
    # Before v22.2, BACKUP INTO 'subdir' IN could place a full backup anywhere.
    write_backup(tmp_path / "weekly" / "one", Manifest(end_time=T0))
    write(tmp_path / "LATEST", b"weekly/one")
    info = inspect_backup(tmp_path)
    assert info.subdir == "weekly/one"
    assert [(b.subdir, b.end_time) for b in info.backups] == [("weekly/one", T0)]


def test_unfinished_full_backup_is_not_listed(tmp_path: Path) -> None:
    (done,) = write_fulls(tmp_path, 1)
    write(tmp_path / "2023/03/05-010000.00/BACKUP-CHECKPOINT-123", b"x")
    write_latest(tmp_path, done, at=T0, root_file=True, history=False)
    info = inspect_backup(tmp_path)
    assert [b.subdir for b in info.backups] == [done]
    assert any("2023/03/05-010000.00 holds no manifest" in w for w in info.warnings)


# --- incrementals ------------------------------------------------------------------------------


def test_unfinished_incremental_left_out_with_a_warning(tmp_path: Path) -> None:
    (full,) = write_fulls(tmp_path, 1)
    when = dt.datetime(2023, 3, 1, 5, 0, tzinfo=dt.UTC)
    done = f"incrementals/{full}/{incremental_name(when)}"
    write_backup(tmp_path / done, Manifest(end_time=when))
    unfinished = f"incrementals/{full}/{incremental_name(when + dt.timedelta(hours=1))}"
    write(tmp_path / unfinished / "BACKUP-CHECKPOINT-1", b"x")
    info = inspect_backup(tmp_path)
    assert info.incrementals == [done]
    assert not any(f.path.startswith(unfinished) for f in info.incremental_files)
    assert any(unfinished in w for w in info.warnings)


def test_incrementals_in_both_layouts_warn(tmp_path: Path) -> None:
    (full,) = write_fulls(tmp_path, 1)
    when = dt.datetime(2023, 3, 1, 5, 0, tzinfo=dt.UTC)
    nested = f"{full}/{incremental_name(when)}"
    separate = f"incrementals/{full}/{incremental_name(when + dt.timedelta(hours=1))}"
    for rel in (nested, separate):
        write_backup(tmp_path / rel, Manifest(end_time=when))
    info = inspect_backup(tmp_path)
    assert info.incrementals == [nested, separate]
    assert any("incremental_location" in w for w in info.warnings)


def test_single_backup_with_appended_incrementals(tmp_path: Path) -> None:
    # BACKUP TO the same directory again (v20.2-v21.2) nests incrementals inside it.
    write_backup(tmp_path, Manifest(end_time=T0))
    rel = incremental_name(T0 + dt.timedelta(hours=1))
    write_backup(tmp_path / rel, Manifest(end_time=T0 + dt.timedelta(hours=1)))
    info = inspect_backup(tmp_path)
    assert info.incrementals == [rel]
    assert {f.path for f in info.files}.isdisjoint(f.path for f in info.incremental_files)
    assert len(info.files) + len(info.incremental_files) == len(tree(tmp_path))


def test_full_backup_inside_a_collection_hints_at_the_collection(tmp_path: Path) -> None:
    era = ERAS["v22.2"](tmp_path)
    assert era.subdir is not None
    info = inspect_backup(era.path / era.subdir)
    assert info.kind == "backup"
    assert any("inspect the collection" in w for w in info.warnings)


# --- what is not a backup ----------------------------------------------------------------------


def test_not_a_backup(tmp_path: Path) -> None:
    with pytest.raises(NotABackup, match="does not exist: expected a CockroachDB backup"):
        inspect_backup(tmp_path / "missing")
    write(tmp_path / "file", b"x")
    with pytest.raises(NotABackup, match="is not a directory"):
        inspect_backup(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotABackup, match="holds no CockroachDB backup"):
        inspect_backup(tmp_path / "empty")
    write(tmp_path / "running" / "BACKUP-CHECKPOINT-1", b"x")
    with pytest.raises(NotABackup):
        inspect_backup(tmp_path / "running")


def test_symlink_inside_the_backup_is_refused(tmp_path: Path) -> None:
    era = ERAS["v23.1"](tmp_path)
    outside = write(tmp_path / "elsewhere.sst", b"x")
    (era.path / "data" / "linked.sst").symlink_to(outside)
    with pytest.raises(UnsupportedBackupFile, match=r"data/linked.sst is a symbolic link"):
        inspect_backup(era.path)


def test_symlinked_directory_is_not_followed(tmp_path: Path) -> None:
    era = ERAS["v23.1"](tmp_path)
    (tmp_path / "other").mkdir()
    (era.path / "progress").symlink_to(tmp_path / "other", target_is_directory=True)
    with pytest.raises(UnsupportedBackupFile, match="progress is a symbolic link"):
        inspect_backup(era.path)


def test_socket_inside_the_backup_is_refused(tmp_path: Path) -> None:
    era = ERAS["v23.1"](tmp_path)
    # AF_UNIX paths are short; bind from inside the directory.
    cwd = Path.cwd()
    os.chdir(era.path)
    try:
        with socket.socket(socket.AF_UNIX) as server:
            server.bind("sock")
            with pytest.raises(UnsupportedBackupFile, match="sock is not a regular file"):
                inspect_backup(era.path)
    finally:
        os.chdir(cwd)


def test_symlinks_outside_the_chosen_backup_are_ignored(tmp_path: Path) -> None:
    era = ERAS["v24.3"](tmp_path)
    (era.path / "shortcut").symlink_to(era.path / "2024")
    assert inspect_backup(era.path).subdir == era.subdir


def test_symlinked_full_backup_directory_is_refused(tmp_path: Path) -> None:
    write_backup(tmp_path / "real", Manifest(end_time=T0))
    root = tmp_path / "collection"
    (root / "2023" / "06").mkdir(parents=True)
    (root / "2023" / "06" / "02-093257.93").symlink_to(tmp_path / "real")
    write(root / "LATEST", b"/2023/06/02-093257.93")
    with pytest.raises(UnsupportedBackupFile, match="symbolic link"):
        inspect_backup(root)


def test_damaged_manifest_in_a_collection(tmp_path: Path) -> None:
    era = ERAS["v22.2"](tmp_path)
    assert era.subdir is not None
    manifest = era.path / era.subdir / "BACKUP_MANIFEST"
    data = bytearray(manifest.read_bytes())
    data[-5] ^= 0x10
    manifest.write_bytes(bytes(data))
    with pytest.raises(DamagedManifest, match=f"{era.subdir}/BACKUP_MANIFEST does not match"):
        inspect_backup(era.path)


# --- version reasoning -------------------------------------------------------------------------


def versions_of(manifest: Manifest) -> tuple[str | None, list[str], list[str]]:
    major, window, warnings = assess_versions(decode_manifest(manifest.encode()))
    return (major.name if major else None), [m.name for m in window], warnings


def test_withdrawn_release_is_flagged() -> None:
    major, _, warnings = versions_of(Manifest(end_time=T0, build_tag="v23.1.0"))
    assert major == "v23.1"
    assert any("withdrawn" in w for w in warnings)


def test_unknown_future_version_is_a_warning_not_a_crash() -> None:
    major, window, warnings = versions_of(
        Manifest(end_time=T0, build_tag="v31.1.0", cluster_version=(31, 1, 0, 0))
    )
    assert (major, window) == (None, [])
    assert any("v31.1" in w for w in warnings)
    assert any("--version" in w for w in warnings)


def test_garbage_tag_falls_back_to_cluster_version() -> None:
    major, _, warnings = versions_of(Manifest(end_time=T0, build_tag="not-a-version"))
    assert major == "v23.1"
    assert any("build tag not-a-version" in w for w in warnings)


def test_no_cluster_version_and_garbage_tag_is_unknown() -> None:
    major, _, warnings = versions_of(
        Manifest(end_time=T0, build_tag="garbage", cluster_version=None)
    )
    assert major is None
    assert any("--version" in w for w in warnings)


def test_intermediate_cluster_version_is_flagged() -> None:
    _, _, warnings = versions_of(Manifest(end_time=T0, cluster_version=(22, 2, 0, 12)))
    assert any("22.2-12" in w and "not finalized" in w for w in warnings)


def test_cluster_version_newer_than_the_binary_is_doubted() -> None:
    major, _, warnings = versions_of(
        Manifest(end_time=T0, build_tag="v22.1.8", cluster_version=(22, 2, 0, 0))
    )
    assert major == "v22.2"
    assert any("origin is doubtful" in w for w in warnings)


def test_open_restore_window_is_mentioned() -> None:
    _, window, warnings = versions_of(
        Manifest(end_time=T0, build_tag="v26.2.0", cluster_version=(26, 2, 0, 0))
    )
    assert window[0] == "v26.2"
    assert any("a later major may also restore" in w for w in warnings)


def test_to_json_is_plain_data(tmp_path: Path) -> None:
    info: BackupInfo = inspect_backup(ERAS["v21.1"](tmp_path).path)
    payload = json.loads(json.dumps(info.to_json()))
    assert payload["files"] == len(info.files) + len(info.incremental_files)
    assert payload["bytes"] == sum(f.size for f in info.files + info.incremental_files)
    assert payload["incremental_files"] == len(info.incremental_files)
    assert payload["cluster_id"] == "5f0e3c1a-8c2b-4c36-9d3e-2a1b0c9d8e7f"
    assert payload["manifest_checksum"] == "verified"
    assert replace(info, warnings=["x"]).to_json()["warnings"] == ["x"]


def test_symlinked_manifest_is_refused(tmp_path: Path) -> None:
    write_backup(tmp_path / "real", Manifest(end_time=T0))
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "BACKUP_MANIFEST").symlink_to(tmp_path / "real" / "BACKUP_MANIFEST")
    with pytest.raises(UnsupportedBackupFile, match="BACKUP_MANIFEST is a symbolic link"):
        inspect_backup(tmp_path / "linked")
