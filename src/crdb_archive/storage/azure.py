"""Storage in an Azure Blob Storage container below a name prefix, through azure-storage-blob.

Blobs are block blobs. Deleting never reaches past a retention: a blob under an unexpired
immutability policy or a legal hold is refused by us before any request.

Azure has the :class:`~crdb_archive.storage.capabilities.ColdStorage` capability (the Archive
tier, rehydrated on request) and the :class:`~crdb_archive.storage.capabilities.RetentionLock`
capability (version-level immutability, on containers that have it); see azure_options.py.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import IO, TYPE_CHECKING, Any

from azure.storage.blob import BlobPrefix, RehydratePriority

from crdb_archive.errors import BadInput, ObjectNotFound, StorageError
from crdb_archive.storage import azure_conditional
from crdb_archive.storage.azure_client import make_service
from crdb_archive.storage.azure_config import AzureTarget, azure_target, max_attempts
from crdb_archive.storage.azure_errors import Translator, origin
from crdb_archive.storage.azure_options import (
    LOCK_MODES,
    PRIORITIES,
    REHYDRATE_TO,
    restore_state,
    tier_problem,
    validate_options,
)
from crdb_archive.storage.azure_read import BlobRead, open_blob_range
from crdb_archive.storage.azure_upload import AzureUpload
from crdb_archive.storage.base import (
    DEFAULT_PARALLELISM,
    SMALL_OBJECT_LIMIT,
    ObjectInfo,
    Prefix,
    RestoreRequestState,
    Versioned,
    WriteOptions,
    level_order,
)
from crdb_archive.storage.object_store import ObjectStore, utc
from crdb_archive.storage.receipts import MD5, Receipt, Reported, b64
from crdb_archive.storage.uri import Location
from crdb_archive.text import count

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient, BlobProperties, BlobServiceClient


class AzureStorage(ObjectStore[AzureTarget]):
    """Blobs below ``azure://container/prefix``; thread-safe (one shared client)."""

    RETENTION_WORDS = "immutability{mode} retention"
    HOLD_WORDS = "a legal hold"
    DELETE_BATCH = 256  # Blob Batch's limit

    def __init__(self, service: BlobServiceClient, target: AzureTarget, location: Location,
                 *, owns_client: bool) -> None:
        self._service = service
        self._container = service.get_container_client(target.container)
        self._target = target
        self._owns_client = owns_client
        self._errors = Translator(target.secrets, origin(target.account_url))
        self._immutable: bool | None = None
        self.location = location

    @classmethod
    def open(cls, location: Location, *, endpoint_url: str | None = None,
             parallelism: int = DEFAULT_PARALLELISM) -> AzureStorage:
        """The storage at an ``azure://`` location; raises BadInput for a malformed one."""
        target = azure_target(location, endpoint_url=endpoint_url)
        return cls(make_service(target, pool_size=parallelism), target, location,
                   owns_client=True)

    def cold_storage(self) -> AzureStorage:
        return self

    def retention_lock(self) -> AzureStorage:
        return self

    @property
    def container(self) -> str:
        return self._target.container

    def _root(self) -> str:
        return f"{self._target.scheme}://{self.container}"

    def _blob(self, key: str) -> BlobClient:
        return self._container.get_blob_client(self._full(key))

    def _around(self, action: str, key: str = "") -> AbstractContextManager[None]:
        return self._errors.around(action, self.display(key))

    def child(self, key: str) -> AzureStorage:
        return AzureStorage(self._service, self._target.below(self._full(key)),
                            self.location.child(key), owns_client=False)

    def close(self) -> None:
        if self._owns_client:
            self._service.close()

    # --- reading -------------------------------------------------------------------------

    def _list(self, name_prefix: str, prefix: str) -> Iterator[ObjectInfo]:
        with self._around("list", prefix):
            for blob in self._container.list_blobs(name_starts_with=name_prefix or None):
                # "folder/" placeholders made by tools are not objects.
                if not blob.name.endswith("/"):
                    yield self._info(self._key_of(blob.name), blob)

    def _list_level(self, name_prefix: str, prefix: str) -> Iterator[ObjectInfo | Prefix]:
        pages = self._container.walk_blobs(name_starts_with=name_prefix or None,
                                           delimiter="/").by_page()
        with self._around("list", prefix):
            for page in pages:
                found: builtins.list[ObjectInfo | Prefix] = []
                for item in page:
                    if isinstance(item, BlobPrefix):
                        level = self._level(item.name, name_prefix)
                        found += [level] if level is not None else []
                    elif not item.name.endswith("/"):
                        found.append(self._info(self._key_of(item.name), item))
                yield from sorted(found, key=level_order)

    def _info(self, key: str, blob: BlobProperties) -> ObjectInfo:
        tier = _text(blob.blob_tier)
        policy = blob.immutability_policy
        mode = (_text(policy.policy_mode) or "").lower() if policy is not None else ""
        return ObjectInfo(
            key=key, size=int(blob.size), mtime=utc(blob.last_modified), storage_class=tier,
            restore=restore_state(tier, _text(blob.archive_status)),
            retain_until=utc(policy.expiry_time) if policy is not None else None,
            lock_mode=LOCK_MODES.get(mode), legal_hold=bool(blob.has_legal_hold),
        )

    def stat(self, key: str) -> ObjectInfo | None:
        blob = self._blob(key)
        try:
            with self._around("read", key):
                properties = blob.get_blob_properties()
        except ObjectNotFound:
            return None
        return self._info(key, properties)

    def reported(self, receipt: Receipt) -> Reported | None:
        try:
            with self._around("read", receipt.key):
                properties = self._blob(receipt.key).get_blob_properties()
        except ObjectNotFound:
            return None
        md5 = properties.content_settings.content_md5
        return Reported(properties.size, {MD5: b64(bytes(md5))} if md5 else {})

    def _open_range(self, key: str, full: str, start: int, length: int | None
                    ) -> IO[bytes] | None:
        read = BlobRead(self._container.get_blob_client(full), self.display(key),
                        self._errors, max_attempts())
        return open_blob_range(read, start, length)

    # --- writing -------------------------------------------------------------------------

    def _target_of(self, key: str) -> azure_conditional.Target:
        return azure_conditional.Target(self._blob(key), self.display(key), self._errors)

    def read_versioned(self, key: str, *, limit: int = SMALL_OBJECT_LIMIT) -> Versioned | None:
        return azure_conditional.read_versioned(self._target_of(key), limit, max_attempts())

    def put_if_absent(self, key: str, data: bytes) -> str:
        return azure_conditional.put_if_absent(self._target_of(key), data)

    def put_if_version(self, key: str, data: bytes, version: str) -> str:
        return azure_conditional.put_if_version(self._target_of(key), data, version)

    def delete_if_version(self, key: str, version: str) -> None:
        azure_conditional.delete(self._target_of(key), version)

    def open_write(
        self, key: str, *, size_hint: int | None = None, options: WriteOptions | None = None
    ) -> AbstractContextManager[AzureUpload]:
        blob = self._blob(key)
        if options is not None:
            validate_options(options, self.display(key))
        return _committed(AzureUpload(blob, self.display(key), self._errors,
                                      size_hint=size_hint, options=options, receipt_key=key))

    def check_write_options(self, options: WriteOptions) -> None:
        validate_options(options, self.display())
        if options.lock_mode is not None and not self.retention_enabled():
            raise BadInput(
                f"container {self.container} has no version-level immutability: "
                f"{options.lock_mode} retention needs a container with version-level "
                "immutability support enabled; nothing was uploaded")
        if options.storage_class is not None:
            problem = self._tier_problem(options.storage_class)
            if problem is not None:
                raise BadInput(f"{problem} (container {self.container}); nothing was uploaded")

    def _tier_problem(self, tier: str) -> str | None:
        try:
            with self._around("read the account information of"):
                answer: dict[str, Any] = dict(self._container.get_account_information())
        except StorageError:
            return None  # not allowed to ask: the first upload tells, before any is visible
        return tier_problem(tier, self._target.account, answer.get("sku_name"),
                            answer.get("account_kind"))

    def retention_enabled(self) -> bool:
        if self._immutable is None:
            with self._errors.around("read the properties of", self.display()):
                properties = self._container.get_container_properties()
            self._immutable = bool(properties.immutable_storage_with_versioning_enabled)
        return self._immutable

    # --- deleting ------------------------------------------------------------------------

    def _delete_object(self, key: str) -> None:
        try:
            with self._around("delete", key):
                self._blob(key).delete_blob()
        except ObjectNotFound:
            return  # deleted meanwhile

    def _delete_batch(self, keys: builtins.list[str], prefix: str) -> None:
        names = [self._full(key) for key in keys]
        with self._around("delete blobs below", prefix):
            answers = self._container.delete_blobs(*names, raise_on_any_failure=False)
        failed = [(name, answer.status_code) for name, answer in zip(names, answers, strict=True)
                  if answer.status_code not in (200, 202, 404)]
        if failed:
            name, status = failed[0]
            raise StorageError(f"cannot delete {self._target.scheme}://{self.container}/{name}:"
                               f" HTTP {status} ({count(len(failed), 'blob')} not deleted)")

    # --- cold storage --------------------------------------------------------------------

    def request_restore(self, key: str, *, days: int, tier: str) -> RestoreRequestState:
        # Rehydration moves the blob to the Hot tier for good: ``days`` has nothing to bound.
        if days < 1:
            raise BadInput(f"restore for {days} days: expected at least 1 day")
        if tier not in PRIORITIES:
            raise BadInput(f"restore tier {tier!r}: expected one of {', '.join(PRIORITIES)}")
        info = self.stat(key)
        if info is None:
            raise ObjectNotFound(f"{self.display(key)} does not exist")
        if info.restore != "needed":
            return "not-needed" if info.restore == "not-needed" else info.restore
        with self._around("rehydrate", key):
            self._blob(key).set_standard_blob_tier(
                REHYDRATE_TO, rehydrate_priority=RehydratePriority(PRIORITIES[tier]))
        after = self.stat(key)
        return "available" if after is not None and after.readable else "requested"


@contextmanager
def _committed(upload: AzureUpload) -> Iterator[AzureUpload]:
    try:
        yield upload
        upload.finish()
    except BaseException:
        upload.abort()
        raise


def _text(value: object) -> str | None:
    """An SDK enum or string as its plain text; None for None."""
    if value is None:
        return None
    return str(getattr(value, "value", value))
