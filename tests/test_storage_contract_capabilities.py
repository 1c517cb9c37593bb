"""The contract's optional part: each backend has exactly the capabilities it says, and each
capability does what its protocol promises wherever it is present."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crdb_archive.errors import BadInput, ObjectNotFound, StorageError
from crdb_archive.storage import WriteOptions
from support.storage_backends import CAPABILITIES, Backend


def test_a_backend_has_the_capabilities_it_declares(backend: Backend) -> None:
    storage = backend.storage
    present = {name for name in CAPABILITIES if getattr(storage, name)() is not None}
    assert present == backend.capabilities
    assert storage.is_local is ("local_paths" in present)
    # A child has what its parent has.
    child = storage.child("below")
    assert {name for name in CAPABILITIES if getattr(child, name)() is not None} == present


def test_local_paths_name_the_files_of_the_objects(backend: Backend) -> None:
    paths = backend.storage.local_paths()
    if paths is None:
        pytest.skip("objects are not files of this host")
    backend.storage.put_bytes("dir/file.bin", b"content")
    assert paths.path() == paths.local_path
    assert paths.path("dir/file.bin") == paths.local_path / "dir" / "file.bin"
    assert paths.path("dir/file.bin").read_bytes() == b"content"
    with pytest.raises(BadInput):
        paths.path("../outside")
    child = backend.storage.child("dir").local_paths()
    assert child is not None
    assert child.local_path == paths.path("dir")


def test_local_listings_leave_out_what_is_not_an_object(backend: Backend) -> None:
    paths = backend.storage.local_paths()
    if paths is None:
        pytest.skip("objects are not files of this host")
    backend.storage.put_bytes("real", b"x")
    (paths.local_path / "link").symlink_to(paths.path("real"))
    (paths.local_path / "empty").mkdir()
    (paths.local_path / ".crdb-archive-partial-0000").write_bytes(b"half")
    level = [entry.key for entry in backend.storage.list_level()]
    assert level == ["empty", "real"]  # a directory is a level on disk, even when empty
    with pytest.raises(BadInput, match="symbolic link"):
        backend.storage.read_versioned("link")


def test_cold_storage_restores_on_request(backend: Backend) -> None:
    cold = backend.storage.cold_storage()
    if cold is None:
        assert all(info.restore == "not-needed" for info in backend.storage.list())
        pytest.skip("no archive storage classes")
    backend.storage.put_bytes("warm", b"x")
    assert cold.request_restore("warm", days=1, tier="Standard") == "not-needed"
    with pytest.raises(ObjectNotFound):
        cold.request_restore("missing", days=1, tier="Standard")
    with pytest.raises(BadInput):
        cold.request_restore("warm", days=0, tier="Standard")


def test_retention_lock_is_reported_and_enforced(backend: Backend) -> None:
    storage = backend.storage
    lock = storage.retention_lock()
    until = datetime.now(UTC) + timedelta(days=1)
    options = WriteOptions(lock_mode="GOVERNANCE", retain_until=until)
    if lock is None:
        with pytest.raises(BadInput):
            storage.check_write_options(options)
        pytest.skip("no retention lock")
    assert lock.retention_enabled() is False  # a plain root: refused before any write
    with pytest.raises(BadInput):
        storage.check_write_options(options)
    if backend.locked_root is None:
        pytest.skip("the emulator cannot make a root with retention")
    with backend.locked_root() as locked:
        enabled = locked.retention_lock()
        assert enabled is not None
        assert enabled.retention_enabled() is True
        locked.check_write_options(options)
        locked.put_bytes("kept", b"data", options=options)
        info = locked.stat("kept")
        assert info is not None
        assert info.lock_mode == "GOVERNANCE"
        assert info.retain_until is not None
        assert abs(info.retain_until - until) < timedelta(seconds=1)
        with pytest.raises(StorageError, match="retention"):
            locked.delete("kept")
        assert locked.read_bytes("kept") == b"data"
