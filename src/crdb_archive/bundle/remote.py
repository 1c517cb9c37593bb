"""Bundles in object storage, where nothing can be renamed into place.

The directory form uploads every payload object first (in parallel), then the tag files, and
``tagmanifest-sha256.txt`` last: a bundle prefix without its tag manifest is incomplete, and
readers say so. The tar form is one object uploaded by multipart, visible only when complete;
an interrupted upload is aborted by the storage layer and leaves nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from crdb_archive.bundle import layout
from crdb_archive.bundle.writer import (
    BundleFormat,
    DescribeCallback,
    Guard,
    PayloadItem,
    Sink,
    WrittenBundle,
    check_payload_paths,
    unguarded,
    write_tar,
    write_tree,
)
from crdb_archive.errors import StorageError
from crdb_archive.progress import ProgressCallback, no_progress
from crdb_archive.storage.base import ObjectWriter, Storage, WriteOptions


def bundle_key(name: str, fmt: BundleFormat) -> str:
    """The key of a bundle below its destination: the tar object, or the directory prefix."""
    return f"{name}.tar" if fmt == "tar" else name


def complete_bundle_exists(storage: Storage, name: str, fmt: BundleFormat) -> bool:
    """Whether a finished bundle of that name is there (the tag manifest is written last)."""
    if fmt == "tar":
        return storage.exists(bundle_key(name, fmt))
    return storage.exists(f"{name}/{layout.TAGMANIFEST_SHA256}")


def clear_incomplete(storage: Storage, name: str, fmt: BundleFormat, *,
                     guard: Guard = unguarded) -> list[str]:
    """Remove what an interrupted directory-form upload left (after ``guard``); returns
    warnings.

    Objects under Object Lock cannot be removed: they are overwritten by the new upload (S3
    keeps the locked versions), and the caller is told.
    """
    if fmt == "tar" or not any(True for _ in storage.list(f"{name}/")):
        return []
    guard(f"clearing the interrupted upload of {name}")
    try:
        storage.delete_tree(f"{name}/")
    except StorageError as error:
        return [f"an interrupted upload of {name} could not be removed ({error}); its objects "
                "are overwritten"]
    return []


class _TarUpload:
    """The tar's byte sink with the position tarfile asks for."""

    def __init__(self, writer: ObjectWriter) -> None:
        self._writer = writer

    def write(self, data: bytes, /) -> object:
        self._writer.write(data)
        return len(data)

    def tell(self) -> int:
        return self._writer.bytes_written


def write_bundle_to_storage(
    storage: Storage,
    name: str,
    payload: Sequence[PayloadItem],
    *,
    bag_info: Sequence[tuple[str, str]],
    describe: DescribeCallback,
    fmt: BundleFormat = "dir",
    options: WriteOptions | None = None,
    progress: ProgressCallback = no_progress,
    guard: Guard = unguarded,
) -> WrittenBundle:
    """Upload bundle ``name`` below ``storage`` (directory prefix or one tar object).

    ``guard`` is called just before the bundle becomes complete (the tag manifest written, the
    tar's upload completed); what it raises leaves it incomplete (the tar's upload aborted).
    Raises BadInput for a payload path outside data/ or options the storage cannot honour,
    StorageError (and NeedsRestoreFromColdStorage from a cold source) when a transfer fails.
    """
    check_payload_paths(payload)
    if fmt == "tar":
        total = sum(item.size for item in payload) + 512 * (2 * len(payload) + 64)
        with storage.open_write(bundle_key(name, fmt), size_hint=total,
                                options=options) as upload:
            result = write_tar(_TarUpload(upload), name, payload, bag_info, describe, progress)
            guard(f"publishing {name}.tar")  # inside the block: raising aborts the upload
        return WrittenBundle(storage.display(bundle_key(name, fmt)), name, fmt, result)

    # Tag files stay in the default storage class (under the same lock): they are small, and a
    # quick check or an inspect can read them without restoring the payload from cold storage.
    tag_options = (None if options is None or options.lock_mode is None
                   else WriteOptions(None, options.lock_mode, options.retain_until))

    @contextlib.contextmanager
    def open_sink(path: str, size: int) -> Iterator[Sink]:
        if path == layout.TAGMANIFEST_SHA256:  # written last: it makes the bundle complete
            guard(f"publishing {name}")
        chosen = options if path.startswith(layout.PAYLOAD_DIR + "/") else tag_options
        with storage.open_write(f"{name}/{path}", size_hint=size, options=chosen) as writer:
            yield writer

    result = write_tree(open_sink, name, payload, bag_info, describe, progress)
    return WrittenBundle(storage.display(name), name, fmt, result)
