"""Publish a bundle into any storage: assembled in the storage's staging area, then made visible.

A reader never sees a half-written bundle under its final name. How that is done is the
storage's (:meth:`Storage.staging`): on disk the bundle is assembled in a locked hidden
directory and renamed into place; in an object store the directory form is written in place
with ``tagmanifest-sha256.txt`` last (a prefix without it is incomplete, and readers say so),
and the tar form is one upload, visible only when complete. Here: the bundle's content, the
order of its files, and what to do about what an interrupted upload left.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from crdb_archive.bundle import layout
from crdb_archive.bundle.writer import (
    BundleFormat,
    DescribeCallback,
    Guard,
    MemberFile,
    OpenSink,
    Payload,
    PayloadResult,
    Sink,
    WrittenBundle,
    payload_bytes,
    unguarded,
    write_tar,
    write_tree,
)
from crdb_archive.errors import BadInput, StorageError
from crdb_archive.progress import ProgressCallback, no_progress
from crdb_archive.storage.base import ObjectWriter, Storage, WriteOptions, storage_errors
from crdb_archive.storage.capabilities import Staging

if TYPE_CHECKING:
    from crdb_archive.bundle.signature import SigningKey


def bundle_key(name: str, fmt: BundleFormat) -> str:
    """The key of a bundle below its destination: the tar object, or the directory prefix."""
    return f"{name}.tar" if fmt == "tar" else name


def bundle_exists(storage: Storage, name: str, fmt: BundleFormat) -> bool:
    """Whether a bundle of that name is there to be checked rather than written.

    A tar is there once its object is (one upload). A directory is there once its tag
    manifest, written last, is; where trees are published by a rename, once anything is there
    under its name.
    """
    if fmt == "tar":
        return storage.exists(bundle_key(name, fmt))
    if storage.exists(f"{name}/{layout.TAGMANIFEST_SHA256}"):
        return True
    if not storage.publishes_atomically:
        return False
    # Anything under the name is in the way: a damaged bundle is found and named, not cleared.
    return storage.exists(name) or any(True for _ in storage.list_level(name))


def clear_incomplete(storage: Storage, name: str, fmt: BundleFormat, *,
                     guard: Guard = unguarded) -> list[str]:
    """Remove what an interrupted directory-form upload left (after ``guard``); returns
    warnings. Nothing to do where trees are published whole.

    Objects under Object Lock cannot be removed: they are overwritten by the new upload (S3
    keeps the locked versions), and the caller is told.
    """
    if fmt == "tar" or storage.publishes_atomically or not any(
            True for _ in storage.list(f"{name}/")):
        return []
    guard(f"clearing the interrupted upload of {name}")
    try:
        storage.delete_tree(f"{name}/")
    except StorageError as error:
        return [f"an interrupted upload of {name} could not be removed ({error}); its objects "
                "are overwritten"]
    return []


class _TarTarget:
    """The tar's byte sink with the position tarfile asks for."""

    def __init__(self, writer: ObjectWriter) -> None:
        self._writer = writer

    def write(self, data: bytes, /) -> object:
        self._writer.write(data)
        return len(data)

    def tell(self) -> int:
        return self._writer.bytes_written


class BundleStaging:
    """The storage's staging area for one bundle.

    Use as a context manager: ``scratch`` is a local directory for files the bundle is made
    from (downloaded binaries), and :meth:`write` assembles the bundle and publishes it.
    Whatever happens, the staging area is gone on exit (see :meth:`Storage.staging`).
    Raises BadInput for a name that is not a portable file name; entering raises StorageError
    when another run is writing the same bundle (where the storage can tell).
    """

    def __init__(self, storage: Storage, name: str, fmt: BundleFormat = "dir") -> None:
        if not layout.is_valid_name(name):
            raise BadInput(f"bundle name {name!r} is not a portable file name")
        self.storage = storage
        self.name = name
        self.format: BundleFormat = fmt
        self.key = bundle_key(name, fmt)
        self._stack = contextlib.ExitStack()
        self._staging: Staging | None = None

    def __enter__(self) -> BundleStaging:
        self._staging = self._stack.enter_context(self.storage.staging(self.name))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.__exit__(exc_type, exc, tb)

    @property
    def scratch(self) -> Path:
        return self._entered().scratch

    def _entered(self) -> Staging:
        if self._staging is None:
            raise RuntimeError("BundleStaging used outside its with-block")
        return self._staging

    def write(
        self,
        payload: Payload,
        *,
        bag_info: Sequence[tuple[str, str]],
        describe: DescribeCallback,
        options: WriteOptions | None = None,
        progress: ProgressCallback = no_progress,
        guard: Guard = unguarded,
        sign_key: SigningKey | None = None,
    ) -> WrittenBundle:
        """Write ``payload`` and its tag files, then publish the bundle.

        ``bag_info`` adds labels to bag-info.txt after the standard ones; ``sign_key`` signs
        the tag manifest (tagmanifest-sha256.txt.sig, published with it); ``guard`` is called
        just before the bundle becomes visible (the rename, the tag manifest, the completion of
        the tar's upload), and what it raises leaves it unpublished. Raises BadInput for a
        payload path outside data/ or options the storage cannot honour, StorageError (and
        NeedsRestoreFromColdStorage from a cold source) when a transfer fails.
        """
        staging = self._entered()
        total = payload_bytes(payload)
        with storage_errors(self.storage.display(self.key)):
            if self.format == "tar":
                result = self._write_tar(staging, payload, total, bag_info, describe,
                                         options, progress, guard, sign_key)
            else:
                result = write_tree(self._tree_sinks(staging, options, guard), self.name,
                                    payload, bag_info, describe, progress, staging.scratch,
                                    sign_key, self._member_file(staging, options), total)
        return WrittenBundle(self.storage.display(self.key), self.name, self.format, result,
                             tuple(staging.receipts()))

    def _write_tar(self, staging: Staging, payload: Payload, payload_total: int,
                   bag_info: Sequence[tuple[str, str]], describe: DescribeCallback,
                   options: WriteOptions | None, progress: ProgressCallback,
                   guard: Guard, sign_key: SigningKey | None) -> PayloadResult:
        total = payload_total + 512 * (2 * len(payload) + 64)
        with staging.open_object(self.key, size_hint=total, options=options,
                                 check=lambda: guard(f"publishing {self.key}")) as upload:
            return write_tar(_TarTarget(upload), self.name, payload, bag_info, describe,
                             progress, staging.scratch, sign_key, payload_total)

    def _tree_sinks(self, staging: Staging, options: WriteOptions | None, guard: Guard
                    ) -> OpenSink:
        # Tag files stay in the default storage class (under the same lock): they are small,
        # and a quick check or an inspect can read them without restoring the payload.
        tag_options = (None if options is None or options.lock_mode is None
                       else WriteOptions(None, options.lock_mode, options.retain_until))
        name = self.name

        @contextlib.contextmanager
        def publishing(path: str, chosen: WriteOptions | None) -> Iterator[Sink]:
            # Written last: it makes the bundle complete, so it goes in with the publication.
            content = io.BytesIO()
            yield content
            staging.publish_tree(f"{name}/{path}", content.getvalue(), options=chosen,
                                 check=lambda: guard(f"publishing {name}"))

        def open_sink(path: str, size: int) -> AbstractContextManager[Sink]:
            chosen = options if path.startswith(_PAYLOAD_PREFIX) else tag_options
            if path == layout.TAGMANIFEST_SHA256:
                return publishing(path, chosen)
            # The member's writer itself: 100k small files pay for no wrapper around it.
            return staging.open_member(f"{name}/{path}", size_hint=size, options=chosen)

        return open_sink


    def _member_file(self, staging: Staging, options: WriteOptions | None
                     ) -> MemberFile | None:
        """Where payload files are files of this host, the path of each (see write_tree)."""
        files = staging.member_files()
        if files is None:
            return None
        name = self.name
        return lambda path: files.member_file(f"{name}/{path}", options=options)


_PAYLOAD_PREFIX = layout.PAYLOAD_DIR + "/"


def write_bundle(
    storage: Storage,
    name: str,
    payload: Payload,
    *,
    bag_info: Sequence[tuple[str, str]],
    describe: DescribeCallback,
    fmt: BundleFormat = "dir",
    options: WriteOptions | None = None,
    progress: ProgressCallback = no_progress,
    guard: Guard = unguarded,
    sign_key: SigningKey | None = None,
) -> WrittenBundle:
    """Write bundle ``name`` below ``storage`` in one call (see BundleStaging); raises as
    :meth:`BundleStaging.write`."""
    with BundleStaging(storage, name, fmt) as staging:
        return staging.write(payload, bag_info=bag_info, describe=describe, options=options,
                             progress=progress, guard=guard, sign_key=sign_key)
