"""Storage in an S3 bucket (or an S3-compatible store) below a key prefix, through boto3.

Deleting never destroys history: on a versioned bucket ``delete`` adds a delete marker, and an
object under Object Lock retention or legal hold is refused by us, before any request that S3
would turn into a delete marker while keeping the locked version.

S3 has the :class:`~crdb_archive.storage.base.ColdStorage` capability (GLACIER and
DEEP_ARCHIVE, restored on request) and the :class:`~crdb_archive.storage.base.RetentionLock`
capability (Object Lock, on buckets that have it).
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import IO, TYPE_CHECKING, Any, Literal, cast

from botocore.exceptions import ClientError

from crdb_archive.errors import BadInput, ObjectNotFound, StorageError
from crdb_archive.storage import s3_conditional
from crdb_archive.storage.base import (
    DEFAULT_PARALLELISM,
    SMALL_OBJECT_LIMIT,
    ObjectInfo,
    Prefix,
    RestoreRequestState,
    RestoreState,
    Versioned,
    WriteOptions,
    level_order,
)
from crdb_archive.storage.object_store import ObjectStore, utc
from crdb_archive.storage.receipts import SHA256, SHA256_COMPOSITE, Receipt, Reported
from crdb_archive.storage.s3_config import S3Target, make_client, max_attempts, s3_target
from crdb_archive.storage.s3_errors import error_code, s3_errors
from crdb_archive.storage.s3_read import ObjectRead, open_object_range
from crdb_archive.storage.s3_upload import COLD_CLASSES, S3Upload, validate_options
from crdb_archive.storage.uri import Location
from crdb_archive.text import count

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

TIERS = ("Standard", "Bulk", "Expedited")
_ONGOING = re.compile(r'ongoing-request\s*=\s*"(true|false)"')


def restore_state(storage_class: str | None, restore_header: str | None) -> RestoreState:
    """Whether an object must be restored before reading, from its class and Restore header."""
    if storage_class not in COLD_CLASSES:
        return "not-needed"
    match = _ONGOING.search(restore_header or "")
    if match is None:
        return "needed"
    return "in-progress" if match.group(1) == "true" else "available"


class S3Storage(ObjectStore[S3Target]):
    """Objects below ``s3://bucket/prefix``; thread-safe (one shared boto3 client)."""

    RETENTION_WORDS = "Object Lock{mode} retention"
    HOLD_WORDS = "an Object Lock legal hold"
    DELETE_BATCH = 1000  # DeleteObjects' limit

    def __init__(
        self, client: S3Client, target: S3Target, location: Location, *, owns_client: bool
    ) -> None:
        self._client = client
        self._target = target
        self._owns_client = owns_client
        self._lock_enabled: bool | None = None
        self._bucket_seen = False
        self.location = location

    @classmethod
    def open(
        cls,
        location: Location,
        *,
        endpoint_url: str | None = None,
        parallelism: int = DEFAULT_PARALLELISM,
    ) -> S3Storage:
        """The storage at an ``s3://`` location; raises BadInput for a malformed one."""
        target = s3_target(location, endpoint_url=endpoint_url)
        client = make_client(target, pool_size=parallelism)
        return cls(client, target, location, owns_client=True)

    def cold_storage(self) -> S3Storage:
        return self

    def retention_lock(self) -> S3Storage:
        return self

    def retention_enabled(self) -> bool:
        return self._bucket_has_lock()

    @property
    def bucket(self) -> str:
        return self._target.bucket

    def _root(self) -> str:
        return f"s3://{self.bucket}"

    def _errors(self, action: str, key: str = "") -> AbstractContextManager[None]:
        return s3_errors(action, self.display(key), self._target.secrets)

    def child(self, key: str) -> S3Storage:
        target = S3Target(
            bucket=self.bucket, prefix=self._full(key), region=self._target.region,
            endpoint_url=self._target.endpoint_url, path_style=self._target.path_style,
            access_key_id=self._target.access_key_id,
            secret_access_key=self._target.secret_access_key,
            session_token=self._target.session_token,
        )
        return S3Storage(self._client, target, self.location.child(key), owns_client=False)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # --- reading -------------------------------------------------------------------------

    def _list(self, s3_prefix: str, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=s3_prefix, OptionalObjectAttributes=["RestoreStatus"]
        )
        with self._errors("list", prefix):
            for page in pages:
                for entry in page.get("Contents", []):
                    full = entry["Key"]
                    # "folder/" placeholders made by consoles are not objects.
                    if full.endswith("/"):
                        continue
                    yield self._listed(self._key_of(full), entry)

    def _list_level(self, s3_prefix: str, prefix: str) -> Iterator[ObjectInfo | Prefix]:
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=s3_prefix, Delimiter="/",
                                   OptionalObjectAttributes=["RestoreStatus"])
        with self._errors("list", prefix):
            for page in pages:
                levels = (self._level(entry["Prefix"], s3_prefix)
                          for entry in page.get("CommonPrefixes", []))
                found: builtins.list[ObjectInfo | Prefix] = [
                    level for level in levels if level is not None]
                found += [self._listed(self._key_of(entry["Key"]), entry)
                          for entry in page.get("Contents", [])
                          if not entry["Key"].endswith("/")]
                yield from sorted(found, key=level_order)

    def _listed(self, key: str, entry: Any) -> ObjectInfo:
        storage_class = entry.get("StorageClass") or "STANDARD"
        restore: RestoreState = "not-needed"
        if storage_class in COLD_CLASSES:
            status = entry.get("RestoreStatus")
            if status is None:
                # Listings omit the status of never-restored objects, and some S3-compatible
                # stores omit it always: ask the object itself.
                info = self.stat(key)
                restore = info.restore if info is not None else "needed"
            elif status.get("IsRestoreInProgress"):
                restore = "in-progress"
            else:
                restore = "available"
        return ObjectInfo(key=key, size=entry["Size"], mtime=utc(entry.get("LastModified")),
                          storage_class=storage_class, restore=restore)

    def stat(self, key: str) -> ObjectInfo | None:
        full = self._full(key)
        try:
            with self._errors("read", key):
                head = self._client.head_object(Bucket=self.bucket, Key=full)
        except ObjectNotFound:
            self._check_bucket()
            return None
        storage_class = head.get("StorageClass") or "STANDARD"
        return ObjectInfo(
            key=key, size=head["ContentLength"], mtime=utc(head.get("LastModified")),
            storage_class=storage_class,
            restore=restore_state(storage_class, head.get("Restore")),
            retain_until=utc(head.get("ObjectLockRetainUntilDate")),
            lock_mode=head.get("ObjectLockMode"),
            legal_hold=head.get("ObjectLockLegalHoldStatus") == "ON",
        )

    def reported(self, receipt: Receipt) -> Reported | None:
        full = self._full(receipt.key)
        try:
            with self._errors("read", receipt.key):
                head = self._client.head_object(Bucket=self.bucket, Key=full,
                                                ChecksumMode="ENABLED")
        except ObjectNotFound:
            return None
        return Reported(head["ContentLength"], reported_sha256(
            head.get("ChecksumSHA256"), head.get("ChecksumType"), receipt))

    def _open_range(self, key: str, full: str, start: int, length: int | None
                    ) -> IO[bytes] | None:
        read = ObjectRead(self._client, self.bucket, full, self.display(key),
                          self._target.secrets, max_attempts())
        return open_object_range(read, start, length)

    # --- writing -------------------------------------------------------------------------

    def _object(self, key: str) -> s3_conditional.Target:
        return s3_conditional.Target(self._client, self.bucket, self._full(key),
                                     self.display(key), self._target.secrets)

    def read_versioned(self, key: str, *, limit: int = SMALL_OBJECT_LIMIT) -> Versioned | None:
        return s3_conditional.read_versioned(self._object(key), limit, max_attempts())

    def put_if_absent(self, key: str, data: bytes) -> str:
        return s3_conditional.put(self._object(key), data, IfNoneMatch="*")

    def put_if_version(self, key: str, data: bytes, version: str) -> str:
        return s3_conditional.put(self._object(key), data, IfMatch=version)

    def delete_if_version(self, key: str, version: str) -> None:
        s3_conditional.delete(self._object(key), version)

    def open_write(
        self, key: str, *, size_hint: int | None = None, options: WriteOptions | None = None
    ) -> AbstractContextManager[S3Upload]:
        full = self._full(key)
        if options is not None:
            validate_options(options, self.display(key))
        upload = S3Upload(self._client, self.bucket, full, self.display(key),
                          self._target.secrets, size_hint=size_hint, options=options,
                          receipt_key=key)
        return _committed(upload)

    def check_write_options(self, options: WriteOptions) -> None:
        validate_options(options, self.display())
        if options.lock_mode is not None and not self._bucket_has_lock():
            raise BadInput(
                f"bucket {self.bucket} has no Object Lock: {options.lock_mode} retention "
                "needs a bucket created with Object Lock enabled (or enabled on a versioned "
                "bucket); nothing was uploaded")

    def _check_bucket(self) -> None:
        # HEAD answers a bare 404 for a missing key and for a missing bucket alike; asking the
        # bucket once keeps "no such bucket" from passing for "no such file".
        if self._bucket_seen:
            return
        with s3_errors("read", f"s3://{self.bucket}", self._target.secrets):
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError as error:
                if error_code(error) in ("404", "NoSuchBucket", "NotFound"):
                    raise StorageError(f"bucket {self.bucket} does not exist "
                                       f"({self.display()})") from None
                raise
        self._bucket_seen = True

    def _bucket_has_lock(self) -> bool:
        if self._lock_enabled is None:
            try:
                with s3_errors("read the Object Lock configuration of",
                               f"s3://{self.bucket}", self._target.secrets):
                    try:
                        answer = self._client.get_object_lock_configuration(Bucket=self.bucket)
                    except ClientError as error:
                        if error_code(error) != "ObjectLockConfigurationNotFoundError":
                            raise
                        answer = None
            except ObjectNotFound:  # S3 answers a bare 404 for a missing bucket here
                raise StorageError(f"bucket {self.bucket} does not exist") from None
            enabled = None
            if answer is not None:
                enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
            self._lock_enabled = enabled == "Enabled"
        return self._lock_enabled

    # --- deleting ------------------------------------------------------------------------

    def _delete_object(self, key: str) -> None:
        with self._errors("delete", key):
            self._client.delete_object(Bucket=self.bucket, Key=self._full(key))

    def _delete_batch(self, keys: builtins.list[str], prefix: str) -> None:
        with self._errors("delete objects below", prefix):
            answer = self._client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": self._full(k)} for k in keys], "Quiet": True},
            )
        errors = answer.get("Errors", [])
        if errors:
            first = errors[0]
            raise StorageError(
                f"cannot delete s3://{self.bucket}/{first.get('Key', '?')}: "
                f"{first.get('Code', 'Unknown')} ({count(len(errors), 'object')} not deleted)")

    # --- cold storage --------------------------------------------------------------------

    def request_restore(self, key: str, *, days: int, tier: str) -> RestoreRequestState:
        check_restore_request(days, tier)
        info = self.stat(key)
        if info is None:
            raise ObjectNotFound(f"{self.display(key)} does not exist")
        if info.restore == "not-needed":
            return "not-needed"
        if info.restore != "needed":
            return info.restore
        if tier == "Expedited" and info.storage_class == "DEEP_ARCHIVE":
            raise BadInput(f"{self.display(key)} is in DEEP_ARCHIVE, which has no Expedited "
                           "restores: use Standard or Bulk")
        with self._errors("request a restore of", key):
            try:
                answer = self._client.restore_object(
                    Bucket=self.bucket, Key=self._full(key),
                    RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": cast(
                        Literal["Bulk", "Expedited", "Standard"], tier)}},
                )
            except ClientError as error:
                if error_code(error) == "RestoreAlreadyInProgress":
                    return "in-progress"
                raise
        # 202: a restore started; 200: a restored copy exists (its expiry is now extended).
        status = answer["ResponseMetadata"]["HTTPStatusCode"]
        return "available" if status == 200 else "requested"


def reported_sha256(value: str | None, kind: str | None, receipt: Receipt) -> dict[str, str]:
    """S3's ``x-amz-checksum-sha256`` of an object in the receipt's forms: nothing when it has
    none; a multipart upload's is composite (``<digest>-<parts>``, or ``ChecksumType``
    COMPOSITE; some S3-compatible stores give neither, and the receipt then says which)."""
    if not value:
        return {}
    digest, _, parts = value.partition("-")
    composite = bool(parts) or kind == "COMPOSITE" or (
        kind is None and SHA256_COMPOSITE in receipt.checksums)
    if not composite:
        return {SHA256: value}
    # The part count is implied by the digest (it hashes one 32-byte digest per part).
    return {SHA256_COMPOSITE: f"{digest}-{parts or len(receipt.parts)}"}


def check_restore_request(days: int, tier: str) -> None:
    """Raises BadInput unless ``days`` >= 1 and ``tier`` is Standard, Bulk or Expedited."""
    if days < 1:
        raise BadInput(f"restore for {days} days: expected at least 1 day")
    if tier not in TIERS:
        raise BadInput(f"restore tier {tier!r}: expected one of {', '.join(TIERS)}")


@contextmanager
def _committed(upload: S3Upload) -> Iterator[S3Upload]:
    try:
        yield upload
        upload.finish()
    except BaseException:
        upload.abort()
        raise
