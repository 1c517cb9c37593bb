"""Where inspect_backup reads from: a Path, a path or file:// URI as text, or a Storage.

Every file it lists is a key of ``info.storage``; reading it there gives the file's bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crdb_archive.backup import inspect_backup
from crdb_archive.errors import BadInput, NotABackup
from crdb_archive.storage.local import LocalStorage
from support.backups import ERAS, RecordingStorage, write


@pytest.mark.parametrize("name", ["v21.1", "v22.2", "v23.1"])
def test_files_read_back_through_the_storage(tmp_path: Path, name: str) -> None:
    era = ERAS[name](tmp_path)
    with inspect_backup(era.path) as info:
        assert (info.root, info.location) == (era.path, str(era.path))
        assert info.storage.is_local
        for f in info.files + info.incremental_files:
            assert info.storage.read_bytes(f.path) == (era.path / f.path).read_bytes()


def test_path_string_uri_and_storage_give_one_answer(tmp_path: Path) -> None:
    era = ERAS["v24.3"](tmp_path)
    expected = inspect_backup(era.path).to_json()
    assert inspect_backup(str(era.path)).to_json() == expected
    assert inspect_backup(era.path.as_uri()).to_json() == expected
    with LocalStorage(era.path) as storage:
        info = inspect_backup(storage)
        assert info.to_json() == expected
        assert info.storage is storage
        assert info.owns_storage is False


def test_not_a_backup_given_as_text(tmp_path: Path) -> None:
    write(tmp_path / "file", b"x")
    with pytest.raises(NotABackup, match="file is not a directory: expected a CockroachDB"):
        inspect_backup(str(tmp_path / "file"))
    with pytest.raises(NotABackup, match="missing does not exist: expected a CockroachDB"):
        inspect_backup(str(tmp_path / "missing"))
    with pytest.raises(BadInput, match="nodelocal://"):
        inspect_backup("nodelocal://1/backups")


@pytest.mark.parametrize("name", list(ERAS))
def test_one_listing_reads_as_the_directory_walk(tmp_path: Path, name: str) -> None:
    # Not a LocalStorage: read as object stores are, from one listing of keys.
    era = ERAS[name](tmp_path)
    storage = RecordingStorage(LocalStorage(era.path))
    with inspect_backup(storage) as listed:
        assert listed.to_json() == inspect_backup(era.path).to_json()
        assert (listed.root, listed.location) == (None, str(era.path))
    assert [call for call in storage.calls if call[0] != "read"] == [("list", "")]
