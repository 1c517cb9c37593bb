"""Storage in a Google Cloud Storage bucket below a name prefix, through google-cloud-storage.

Metadata requests (listings, stats, deletes, single-request uploads) go through the SDK; the
bytes of large objects go over the same authorized HTTP session, where resumable uploads
(storage/gcs_upload.py) and resumed ranged reads (storage/gcs_read.py) are under our control.

Cloud Storage has no archive class that must be restored before reading: NEARLINE, COLDLINE and
ARCHIVE objects are read as they are (billed per read), so this storage has no
:class:`~crdb_archive.storage.capabilities.ColdStorage` capability. It has the
:class:`~crdb_archive.storage.capabilities.RetentionLock` capability: object retention or a
bucket retention policy (storage/gcs_retention.py). An object under retention or a hold is
refused by us before any delete request.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import IO, TypeVar

import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.client_info import ClientInfo
from google.cloud import storage
from google.cloud.storage import Blob

from crdb_archive import __version__
from crdb_archive.errors import ObjectNotFound, StorageError
from crdb_archive.storage import gcs_conditional
from crdb_archive.storage.base import (
    DEFAULT_PARALLELISM,
    SMALL_OBJECT_LIMIT,
    ObjectInfo,
    Prefix,
    Versioned,
    WriteOptions,
    level_order,
    validate_prefix,
)
from crdb_archive.storage.conditional import versioned
from crdb_archive.storage.gcs_config import (
    GcsTarget,
    gcs_target,
    make_credentials,
    make_session,
    max_attempts,
)
from crdb_archive.storage.gcs_errors import with_retries
from crdb_archive.storage.gcs_read import ObjectRead, media_url, open_object_range, read_small
from crdb_archive.storage.gcs_retention import (
    BucketRetention,
    Placement,
    check_static,
    lock_of,
    placement,
)
from crdb_archive.storage.gcs_upload import TIMEOUT, GcsUpload, ObjectTarget
from crdb_archive.storage.object_store import ObjectStore
from crdb_archive.storage.receipts import CRC32C, MD5, Receipt, Reported
from crdb_archive.storage.uri import Location

T = TypeVar("T")
_DELETE_THREADS = 8
_NO_BUCKET_METADATA_ENV = "DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"


class GcsStorage(ObjectStore[GcsTarget]):
    """Objects below ``gs://bucket/prefix``; thread-safe (one shared client and session)."""

    RETENTION_WORDS = "retention{mode}"
    HOLD_WORDS = "a hold"

    def __init__(self, client: storage.Client, session: requests.Session, target: GcsTarget,
                 location: Location, *, owns_client: bool) -> None:
        self._client = client
        self._session = session
        self._target = target
        self._owns_client = owns_client
        self._bucket = client.bucket(target.bucket, user_project=target.billing_project)
        self._retention: BucketRetention | None = None
        self._bucket_seen = False
        self._attempts = max_attempts()
        self.location = location

    @classmethod
    def open(cls, location: Location, *, endpoint_url: str | None = None,
             parallelism: int = DEFAULT_PARALLELISM) -> GcsStorage:
        """The storage at a ``gs://`` location.

        Raises BadInput for a malformed one, StorageError when application default
        credentials are asked for and cannot be found.
        """
        target = gcs_target(location, endpoint_url=endpoint_url)
        # The SDK otherwise fetches each bucket's metadata in a background thread, for tracing
        # attributes: a request nobody asked for (needing storage.buckets.get), outliving close.
        os.environ.setdefault(_NO_BUCKET_METADATA_ENV, "true")
        credentials = make_credentials(target)
        session = make_session(credentials, pool_size=parallelism)
        client = storage.Client(
            project=target.billing_project, credentials=credentials, _http=session,
            client_info=ClientInfo(user_agent=f"crdb-archive/{__version__}"),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": target.endpoint},
        )
        return cls(client, session, target, location, owns_client=True)

    def retention_lock(self) -> GcsStorage:
        return self

    def retention_enabled(self) -> bool:
        return self._bucket_retention().any

    @property
    def bucket(self) -> str:
        return self._target.bucket

    def _root(self) -> str:
        return f"gs://{self.bucket}"

    def _retried(self, call: Callable[[], T], action: str, key: str = "") -> T:
        return with_retries(call, action, self.display(key), self._target.secrets,
                            attempts=self._attempts, endpoint=self._target.endpoint)

    def _object(self, key: str) -> ObjectTarget:
        return ObjectTarget(self._bucket, self._full(key), self.display(key),
                            self._target.secrets, self._session, self._attempts,
                            self._target.endpoint)

    def child(self, key: str) -> GcsStorage:
        child = GcsStorage(self._client, self._session, self._target.with_prefix(self._full(key)),
                           self.location.child(key), owns_client=False)
        child._retention = self._retention
        return child

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
            self._session.close()

    # --- reading -------------------------------------------------------------------------

    def _list(self, name_prefix: str, prefix: str) -> Iterator[ObjectInfo]:
        for blobs, _ in self._pages(name_prefix, None, prefix):
            for blob in blobs:
                # "folder/" placeholders made by consoles are not objects.
                if not blob.name.endswith("/"):
                    yield self._info(self._key_of(blob.name), blob)

    def _list_level(self, name_prefix: str, prefix: str) -> Iterator[ObjectInfo | Prefix]:
        seen: set[str] = set()
        for blobs, prefixes in self._pages(name_prefix, "/", prefix):
            levels = (self._level(name, name_prefix) for name in prefixes if name not in seen)
            found: builtins.list[ObjectInfo | Prefix] = [
                level for level in levels if level is not None]
            seen.update(prefixes)
            found += [self._info(self._key_of(blob.name), blob) for blob in blobs
                      if not blob.name.endswith("/")]
            yield from sorted(found, key=level_order)

    def _pages(self, name_prefix: str, delimiter: str | None, prefix: str
               ) -> Iterator[tuple[builtins.list[Blob], tuple[str, ...]]]:
        token: str | None = None
        while True:
            def page(token: str | None = token) -> tuple[builtins.list[Blob], tuple[str, ...],
                                                          str | None]:
                listing = self._client.list_blobs(
                    self._bucket, prefix=name_prefix or None, delimiter=delimiter,
                    page_token=token, retry=None, timeout=TIMEOUT)
                first = next(listing.pages)
                return (builtins.list(first), tuple(getattr(first, "prefixes", ())),
                        listing.next_page_token)
            try:
                blobs, prefixes, token = self._retried(page, "list", prefix)
            except ObjectNotFound:  # a listing answers 404 only for a missing bucket
                raise StorageError(f"bucket {self.bucket} does not exist "
                                   f"({self.display()})") from None
            yield blobs, prefixes
            if not token:
                return

    def _info(self, key: str, blob: Blob) -> ObjectInfo:
        until, mode, hold = lock_of(blob)
        created = blob.time_created or blob.updated
        return ObjectInfo(key=key, size=int(blob.size or 0),
                          mtime=created.astimezone(dt.UTC) if created is not None else None,
                          storage_class=blob.storage_class or "STANDARD",
                          retain_until=until, lock_mode=mode, legal_hold=hold)

    def stat(self, key: str) -> ObjectInfo | None:
        blob = self._get_blob(key)
        if blob is None:
            self._check_bucket()
            return None
        return self._info(key, blob)

    def reported(self, receipt: Receipt) -> Reported | None:
        blob = self._get_blob(receipt.key)
        if blob is None:
            return None
        checksums = {CRC32C: blob.crc32c, MD5: blob.md5_hash}  # MD5: not of composed objects
        return Reported(blob.size or 0, {k: v for k, v in checksums.items() if v})

    def _get_blob(self, key: str) -> Blob | None:
        full = self._full(key)
        found: Blob | None = self._retried(
            lambda: self._bucket.get_blob(full, retry=None, timeout=TIMEOUT), "read", key)
        return found

    def _check_bucket(self) -> None:
        # A missing object and a missing bucket both answer 404; a listing tells them apart.
        if self._bucket_seen:
            return
        for _ in self._pages(self.prefix, "/", ""):
            break
        self._bucket_seen = True

    def _reader(self, key: str, full: str) -> ObjectRead:
        return ObjectRead(self._session,
                          media_url(self._target.endpoint, self.bucket, full,
                                    self._target.billing_project),
                          self.display(key), self._target.secrets, self._attempts,
                          self._target.endpoint)

    def _open_range(self, key: str, full: str, start: int, length: int | None
                    ) -> IO[bytes] | None:
        return open_object_range(self._reader(key, full), start, length)

    # --- writing -------------------------------------------------------------------------

    def read_versioned(self, key: str, *, limit: int = SMALL_OBJECT_LIMIT) -> Versioned | None:
        full = self._full(key)

        def size_and_generation() -> tuple[int, str] | None:
            blob = self._get_blob(key)
            return None if blob is None else (int(blob.size or 0), str(blob.generation))

        found = read_small(self._reader(key, full), limit, size_and_generation)
        return versioned(found, limit, self.display(key))

    def put_if_absent(self, key: str, data: bytes) -> str:
        return gcs_conditional.put(self._object(key), data, None)

    def put_if_version(self, key: str, data: bytes, version: str) -> str:
        return gcs_conditional.put(self._object(key), data, version)

    def delete_if_version(self, key: str, version: str) -> None:
        gcs_conditional.delete(self._object(key), version)

    def open_write(
        self, key: str, *, size_hint: int | None = None, options: WriteOptions | None = None
    ) -> AbstractContextManager[GcsUpload]:
        target = self._object(key)
        upload = GcsUpload(target, self._placement(options), lambda generation: self._discard(
            target.name, generation, key), receipt_key=key)
        return _committed(upload)

    def _placement(self, options: WriteOptions | None) -> Placement:
        if options is None:
            return Placement()
        check_static(options, self.bucket)
        retention = self._bucket_retention() if options.lock_mode is not None else None
        return placement(options, self.bucket, retention, dt.datetime.now(dt.UTC))

    def check_write_options(self, options: WriteOptions) -> None:
        self._placement(options)

    def _bucket_retention(self) -> BucketRetention:
        if self._retention is None:
            try:
                bucket = self._retried(lambda: self._client.get_bucket(
                    self._bucket, retry=None, timeout=TIMEOUT),
                    "read the retention settings of")
            except ObjectNotFound:
                raise StorageError(f"bucket {self.bucket} does not exist") from None
            self._retention = BucketRetention.of(bucket)
        return self._retention

    def _discard(self, name: str, generation: int, key: str) -> None:
        """Remove the generation ``generation`` we wrote, if it is still the live one."""
        def delete() -> None:
            # Gone, or replaced by another writer: not ours to remove.
            with contextlib.suppress(api_exceptions.NotFound, api_exceptions.PreconditionFailed):
                self._bucket.blob(name).delete(if_generation_match=generation, retry=None,
                                               timeout=TIMEOUT)

        self._retried(delete, "remove", key)

    # --- deleting ------------------------------------------------------------------------

    def _delete_object(self, key: str) -> None:
        full = self._full(key)

        def delete() -> None:
            # Deleted meanwhile, or by our own attempt whose answer was lost.
            with contextlib.suppress(api_exceptions.NotFound):
                self._bucket.blob(full).delete(retry=None, timeout=TIMEOUT)

        self._retried(delete, "delete", key)

    def delete_tree(self, prefix: str) -> None:
        prefix = validate_prefix(prefix)
        # Listings carry each object's retention: look at every object before deleting any,
        # so that a retained bundle stays whole.
        infos = builtins.list(self.list(prefix))
        for info in infos:
            self._refuse_locked(info)
        self._delete_batch([info.key for info in infos], prefix)

    def _delete_batch(self, keys: builtins.list[str], prefix: str) -> None:
        # One request an object (of any number), several in flight.
        with ThreadPoolExecutor(_DELETE_THREADS) as pool:
            for _ in pool.map(self._delete_object, keys):
                pass


@contextmanager
def _committed(upload: GcsUpload) -> Iterator[GcsUpload]:
    try:
        yield upload
        upload.finish()
    except BaseException:
        upload.abort()
        raise
